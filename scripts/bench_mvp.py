"""Benchmark MVP's gradient-similarity focal loss and one MVP train step (CPU by default).

1. ``ign_i = 1 − cos(g_i, ḡ_{y_i})`` in closed form (one batched op,
   :func:`strategies.continual.mvp.gsf_ignorance`) vs the per-sample-backward reference
   (B + 1 autograd calls, :func:`gsf_ignorance_reference`): time ratio and max difference.
2. One ``train_step`` and one evaluation forward of each ``--learners`` (default MVP) on the
   small ViT (``--model tiny``: ``vit_tiny_test`` defaults, 32×32, patch 4, width 96, depth
   6) or ViT-B/16 at 224 (``--model base``, random weights; 32×32 inputs resized).

Usage: ``python scripts/bench_mvp.py [--batch 64 --classes 100 --dim 768 --threads 1]``;
GPU: ``python scripts/bench_mvp.py --device cuda --model base --batch 96 --learners mvp l2p
dualprompt``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from fedlt.models import build_model
from strategies.continual import CONTINUAL_LEARNERS, parse_options
from strategies.continual.mvp import gsf_ignorance, gsf_ignorance_reference, mask_scale


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time (s) of ``repeats`` calls after one warm-up call."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_gsf(batch: int, classes: int, dim: int, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    head = nn.Linear(dim, classes)
    features = torch.randn(batch, dim, generator=g)
    mask = torch.randn(10, classes, generator=g)
    scale = mask_scale(mask, torch.randint(0, 10, (batch,), generator=g))
    exposed = torch.ones(classes, dtype=torch.bool)
    labels = torch.randint(0, classes, (batch,), generator=g)
    with torch.no_grad():
        logits = head(features) * scale
    fast_t, fast = timed(lambda: gsf_ignorance(features, logits, scale, labels), repeats)
    slow_t, slow = timed(
        lambda: gsf_ignorance_reference(features, head, scale, exposed, labels),
        max(1, repeats // 5),
    )
    diff = (fast - slow).abs().max().item()
    print(f"GSF ignorance  B={batch} C={classes} D={dim}")
    print(f"  batched closed form : {1e3 * fast_t:8.3f} ms")
    print(f"  per-sample backward : {1e3 * slow_t:8.3f} ms")
    print(f"  speed-up            : {slow_t / fast_t:8.1f}x   max |diff| = {diff:.2e}")


def bench_step(
    batch: int, classes: int, repeats: int, model: str, device: str, learners: list[str]
) -> None:
    """Median time of one ``train_step`` and one evaluation forward per learner."""
    if model == "base":
        name, options, title = "vit_base_patch16_224", {"pretrained": "none"}, "ViT-B/16 224"
    else:
        name, options, title = "vit_tiny_test", {}, "vit_tiny_test (32x32, patch 4, D=96, depth 6)"

    def factory() -> nn.Module:
        return build_model(name, classes, (3, 32, 32), options)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, min(classes, 20), (batch,), generator=g).to(device)
    exposed = torch.zeros(classes, dtype=torch.bool, device=device)
    exposed[:20] = True
    print(f"{title} on {device}, batch {batch}, C={classes} (inputs 32x32, resized)")
    for learner_name in learners:
        cls = CONTINUAL_LEARNERS.get(learner_name)
        learner = cls(parse_options(cls, {}), factory, classes, device, 0)

        def sync() -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        def step(learner=learner) -> None:
            learner.train_step(x, y, exposed)
            sync()

        def forward(learner=learner) -> None:
            with torch.no_grad():
                learner.eval()
                learner(x, exposed)
            sync()

        step_t, _ = timed(step, repeats)
        eval_t, _ = timed(forward, repeats)
        print(
            f"  {learner_name:10s} train_step {1e3 * step_t:8.1f} ms   "
            f"forward {1e3 * eval_t:8.1f} ms   ({learner.num_trainable():,} trainable)"
        )
        del learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=["tiny", "base"], default="tiny")
    parser.add_argument("--learners", nargs="+", default=["mvp"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    bench_gsf(args.batch, args.classes, args.dim, args.repeats)
    bench_step(args.batch, args.classes, args.repeats, args.model, args.device, args.learners)
    if args.device.startswith("cuda"):
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()

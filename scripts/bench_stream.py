"""Stream engine throughput vs a minimal hand-written online loop doing the same steps.

Both sides train the same model (``cnn_small``) with ER on the same Si-Blurry stream: the
same batches in the same order, ``online_iter`` Adam steps per batch, ``memory_batch_size``
reservoir samples appended to every step, exposed-class masking, no augmentation. The plain
loop has no evaluation, checkpoints, metrics log or progress bar; the engine runs with
periodic evaluation off (``eval_period: 0``) and a one-image-per-class test set, so its only
extras are the 5 task-end evaluations and checkpoints it always makes. Reported: stream
samples per second of each (best of ``--repeats``, alternating) and the overhead ratio.

    python scripts/bench_stream.py                       # CPU, 16x16 synthetic images
    python scripts/bench_stream.py --device cuda --image-size 32 --per-class 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedlt.config import ExperimentConfig
from fedlt.configtools import from_dict
from fedlt.continual.engine import StreamEngine, build_stream
from fedlt.data.base import ArrayDataset, DataSplits
from fedlt.models import build_model
from fedlt.runs import RunDirectory


def synthetic_splits(num_classes: int, per_class: int, size: int, seed: int = 0) -> DataSplits:
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(num_classes, size, size, 3))
    labels = np.tile(np.arange(num_classes), per_class)
    noise = rng.integers(0, 256, size=(len(labels), size, size, 3))
    images = ((templates[labels] + noise) // 2).astype(np.uint8)
    classes = [str(c) for c in range(num_classes)]
    test = np.arange(num_classes)
    return DataSplits(
        ArrayDataset(images, labels, classes),
        ArrayDataset(images[test], labels[test], classes),
        "bench",
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
    )


def make_config(args: argparse.Namespace, output: str) -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "name": "bench",
            "seed": 1,
            "engine": "continual",
            "output_dir": output,
            "model": {"name": "cnn_small"},
            "strategy": {"name": "er", "options": {"lr": 0.001}},
            "stream": {
                "batch_size": args.batch_size,
                "online_iter": args.online_iter,
                "memory_size": args.memory_size,
                "memory_batch_size": args.memory_batch_size,
                "eval_period": 0,
                "checkpoint_every": 0,
            },
            "resources": {"device": args.device, "num_threads": args.threads},
        },
    )


def time_engine(cfg: ExperimentConfig, splits: DataSplits, output: str) -> float:
    run = RunDirectory.create(cfg, Path(output) / f"engine-{time.perf_counter_ns()}")
    start = time.perf_counter()
    engine = StreamEngine(cfg, splits, run, progress=False)
    engine.run_all()
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_plain(cfg: ExperimentConfig, splits: DataSplits) -> float:
    """The same online ER steps in a bare loop (model, Adam, reservoir, masking)."""
    device = torch.device(cfg.resources.device)
    s = cfg.stream
    stream = build_stream(cfg, splits)
    labels = splits.train.labels
    num_classes = splits.num_classes
    start = time.perf_counter()
    images = torch.from_numpy(splits.train.images).permute(0, 3, 1, 2).contiguous().to(device)
    mean = torch.tensor(splits.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(splits.std, device=device).view(1, -1, 1, 1)
    torch.manual_seed(cfg.seed)
    model = build_model("cnn_small", num_classes, splits.image_shape).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    rng = np.random.default_rng(0)
    label_of = np.full(num_classes, -1)
    exposed = torch.zeros(num_classes, dtype=torch.bool, device=device)
    mem_idx: list[int] = []
    mem_lab: list[int] = []
    seen = 0
    model.train()
    for task in stream.tasks:
        for begin in range(0, len(task.indices), s.batch_size):
            idx = task.indices[begin : begin + s.batch_size]
            for c in labels[idx]:
                if label_of[c] < 0:
                    label_of[c] = exposed.sum().item()
                    exposed[label_of[c]] = True
            y_new = torch.from_numpy(label_of[labels[idx]]).to(device)
            x_new = images[torch.from_numpy(idx).to(device)]
            for _ in range(s.online_iter):
                x, y = x_new, y_new
                if mem_idx:
                    pick = rng.choice(
                        len(mem_idx), min(s.memory_batch_size, len(mem_idx)), replace=False
                    )
                    m_idx = torch.from_numpy(np.asarray(mem_idx)[pick]).to(device)
                    x = torch.cat([x, images[m_idx]])
                    y = torch.cat([y, torch.from_numpy(np.asarray(mem_lab)[pick]).to(device)])
                x = (x.float() / 255 - mean) / std
                logits = model(x).masked_fill(~exposed, float("-inf"))
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            for i, c in zip(idx.tolist(), label_of[labels[idx]].tolist(), strict=True):
                seen += 1
                if len(mem_idx) < s.memory_size:
                    mem_idx.append(i)
                    mem_lab.append(c)
                else:
                    j = int(rng.integers(seen))
                    if j < s.memory_size:
                        mem_idx[j], mem_lab[j] = i, c
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--online-iter", type=int, default=3)
    parser.add_argument("--memory-size", type=int, default=500)
    parser.add_argument("--memory-batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    splits = synthetic_splits(args.classes, args.per_class, args.image_size)
    with tempfile.TemporaryDirectory() as output:
        cfg = make_config(args, output)
        n = len(build_stream(cfg, splits))
        time_plain(cfg, splits)  # warm-up (CUDA context, allocator, kernels)
        engine_times, plain_times = [], []
        for _ in range(args.repeats):
            plain_times.append(time_plain(cfg, splits))
            engine_times.append(time_engine(cfg, splits, output))
    te, tp = min(engine_times), min(plain_times)
    print(
        f"stream of {n} samples, {args.image_size}x{args.image_size}x3, batch {args.batch_size}"
        f" + {args.memory_batch_size} memory, online_iter {args.online_iter}, device {args.device}"
    )
    print(f"plain loop : {n / tp:9.1f} samples/s  (best of {args.repeats}: {tp:.2f} s)")
    print(f"engine     : {n / te:9.1f} samples/s  (best of {args.repeats}: {te:.2f} s)")
    print(f"overhead   : {te / tp:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

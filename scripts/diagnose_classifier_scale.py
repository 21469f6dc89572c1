"""Diagnose what the classifier of a federated run sees: feature norms, logit scales, bias.

For each run directory and checkpointed round, loads the global model and measures on the
balanced test set:

- ``‖h‖``: mean feature norm of the backbone;
- ``logit spread``: the mean over test images of the standard deviation across classes of
  the head's weight part ``W h`` (what separates the classes), next to the spread of the
  head's bias ``b`` across classes (what the bias alone adds);
- top-1 of the head with and without its bias, and the share of test images predicted as the
  most-predicted class (a head that collapses onto a few classes shows it here).

The head is FedLoGe's frozen SSE-C (``universal``) for FedLoGe runs and the model's trained
linear head for the others. Written for issue 4's question of why SSE-C's generic accuracy
trails FedAvg's early in training (docs/results/cifar10lt.md)::

    python scripts/diagnose_classifier_scale.py runs/sweeps/cifar10-lt-cpu/fedavg/seed-3407 \
        runs/sweeps/cifar10-lt-cpu/fedloge/seed-3407 --rounds 10 30 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fedlt.errors import RunError
from fedlt.runs import RunDirectory


def head_of(strategy) -> torch.nn.Linear:
    """FedLoGe's SSE-C layer, or the model's own linear head."""
    return strategy.sse_c if hasattr(strategy, "sse_c") else strategy.model.head


def load_runtime(run: RunDirectory, threads: int):
    """The run's federated runtime (data, strategy, model) on the CPU, built once per run."""
    from fedlt.federated.runtime import FederatedRuntime

    cfg = run.config
    cfg.resources.device = "cpu"
    cfg.resources.num_threads = threads
    return FederatedRuntime(cfg)


@torch.no_grad()
def diagnose(runtime, checkpoint: Path) -> dict[str, float]:
    """Measure the global model stored in ``checkpoint`` on the balanced test set."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state"]
    strategy = runtime.strategy
    strategy.load_global(state["global_state"])
    strategy.model.eval()
    head = head_of(strategy)
    test_u8, labels = runtime.t.test_u8, runtime.t.test_y
    feats = torch.cat(
        [
            strategy.model.features(runtime._normalise(test_u8[i : i + 500]))
            for i in range(0, len(test_u8), 500)
        ]
    )
    weight_part = feats @ head.weight.T
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    with_bias = (weight_part + bias).argmax(1)
    without_bias = weight_part.argmax(1)
    counts = with_bias.bincount(minlength=head.out_features)
    top_class = int(counts.argmax())
    return {
        "feature_norm": feats.norm(dim=1).mean().item(),
        "logit_spread": weight_part.std(dim=1).mean().item(),
        "bias_spread": bias.std().item(),
        "top1": (with_bias == labels).float().mean().item(),
        "top1_no_bias": (without_bias == labels).float().mean().item(),
        "top_class": top_class,
        "top_class_share": counts[top_class].item() / len(labels),
        "top_class_bias_rank": int((bias > bias[top_class]).sum()) + 1,
        "head_row_norm": head.weight.norm(dim=1).mean().item(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--rounds", nargs="+", type=int, default=[10, 30, 60])
    parser.add_argument("--labels", nargs="+", default=None, help="one label per run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
    print(
        "| run | round | head row norm | ‖h‖ | logit spread (Wh) | bias spread | top-1 | "
        "top-1 without bias | most-predicted class: share (its bias rank) |\n|---|---|---|---|---|---|---|---|---|"
    )
    for label, run_dir in zip(labels, args.runs, strict=True):
        try:
            run = RunDirectory.open(run_dir)
        except RunError as exc:
            raise SystemExit(str(exc)) from None
        checkpoints = {step: path for step, path in run.checkpoints() if step in args.rounds}
        missing = sorted(set(args.rounds) - set(checkpoints))
        if missing:
            print(f"{run_dir}: no checkpoint for rounds {missing}", file=sys.stderr)
        runtime = load_runtime(run, args.threads) if checkpoints else None
        for round_, checkpoint in sorted(checkpoints.items()):
            d = diagnose(runtime, checkpoint)
            print(
                f"| {label} | {round_} | {d['head_row_norm']:.3f} | {d['feature_norm']:.2f} "
                f"| {d['logit_spread']:.3f} | {d['bias_spread']:.3f} | {100 * d['top1']:.2f} "
                f"| {100 * d['top1_no_bias']:.2f} | class {d['top_class']}: {100 * d['top_class_share']:.1f} % "
                f"({d['top_class_bias_rank']}) |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

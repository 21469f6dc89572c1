"""Cost of a federated continual round against a plain federated round over the same samples.

Both runs train FedAvg on the same model with SGD, batches of ``--batch-size``, one step per
batch, no augmentation, every client every round, through the same executor:

- **federated**: ``--clients`` IID clients of ``--per-client`` synthetic images each,
  one local epoch a round;
- **federated continual**: the same clients with ``--rounds`` × as many images each, every
  client's Si-Blurry stream (K = ``--tasks``, N = 50, M = 10) read ``--per-client`` samples a
  round, one online step per batch (``online_iter: 1``), no replay memory.

So every round of both trains each client on ``--per-client`` new samples. The continual
round adds its stream bookkeeping (plan, exposure mask, position in the client state) and,
where a round's chunk crosses a task end, one more (shorter) batch. Reported: median
``train_s`` of rounds 2.. (``timings.json``), new samples and optimizer steps a round, and
the ratios per sample and per step; each configuration run ``--repeats`` times alternately,
the best median kept.

    python scripts/bench_fedcl.py                        # cnn_small, 16x16, 10 clients
    python scripts/bench_fedcl.py --model resnet8 --image-size 32
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from fedlt.config import load_config
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory


def overrides(args: argparse.Namespace, continual: bool, output: str) -> list[str]:
    per_class = args.per_client * args.clients // 10
    common = [
        f"output_dir={output}",
        "name=bench_fedcl",
        "seed=0",
        "data.source=synthetic",
        f"data.options={{num_classes: 10, image_size: {args.image_size}, "
        f"train_per_class: {per_class * (args.rounds if continual else 1)}, test_per_class: 20}}",
        "data.longtail.profile=none",
        "data.partition.name=iid",
        f"data.partition.num_clients={args.clients}",
        f"model.name={args.model}",
        "strategy.name=fedavg",
        "strategy.options={}",
        f"federated.rounds={args.rounds}",
        "federated.local_epochs=1",
        f"federated.batch_size={args.batch_size}",
        "federated.lr=0.05",
        f"federated.eval_every={args.rounds}",
        f"federated.checkpoint_every={args.rounds}",
        "federated.augment=false",
        "logging.progress=false",
        "resources.device=cpu",
        f"resources.num_threads={args.threads}",
    ]
    if not continual:
        return [*common, "engine=federated"]
    return [
        *common,
        "engine=federated_continual",
        f"stream.num_tasks={args.tasks}",
        "stream.disjoint_percent=50",
        "stream.blurry_percent=10",
        f"stream.samples_per_round={args.per_client}",
        f"stream.batch_size={args.batch_size}",
        "stream.online_iter=1",
        "stream.memory_size=0",
        "stream.augment=none",
    ]


def steps_per_round(cfg) -> float:
    """Optimizer steps a round over all clients (rounds 2.., as timed)."""
    from fedlt.federated.runtime import runtime_for

    runtime = runtime_for(cfg)
    batch = cfg.federated.batch_size
    if cfg.engine == "federated":
        return float(sum(-(-len(ix) // batch) for ix in runtime.data.client_indices))
    streams, rounds = runtime.streams, cfg.federated.rounds
    total = 0
    for k in range(streams.num_clients):
        position = 0
        for round_ in range(1, rounds + 1):
            plan = streams.plan(k, position)
            position += sum(len(b.indices) for b in plan)
            if round_ >= 2:
                total += len(plan) * cfg.stream.online_iter
    return total / (rounds - 1)


def measure(args: argparse.Namespace, continual: bool) -> tuple[float, float, float]:
    base = Path(__file__).resolve().parents[1] / "simulations"
    config = base / ("fedcl/digits.yaml" if continual else "default.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(config, overrides(args, continual, tmp))
        path = run_experiment(cfg, backend="inprocess", progress=False)
        run = RunDirectory.open(path)
        steady = [t["train_s"] for t in run.read_timings() if t["round"] >= 2]
        summary = run.read_summary() or {}
        samples = (
            summary.get("samples_seen", 0) / args.rounds
            if continual
            else args.per_client * args.clients
        )
        return statistics.median(steady), samples, steps_per_round(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn_small")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--per-client", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, tuple[float, float, float]] = {}
    for _ in range(args.repeats):
        for name, continual in (("federated", False), ("federated continual", True)):
            result = measure(args, continual)
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    print(
        f"model {args.model}, {args.image_size}x{args.image_size}x3, {args.clients} clients x "
        f"{args.per_client} new samples a round, batch {args.batch_size}, {args.rounds} rounds, "
        f"best of {args.repeats}"
    )
    header = f"{'engine':<22}{'train s/round':>15}{'samples/round':>15}{'steps/round':>13}"
    print(f"{header}{'us/sample':>11}{'ms/step':>9}")
    for name, (seconds, samples, steps) in best.items():
        print(
            f"{name:<22}{seconds:>15.3f}{samples:>15.0f}{steps:>13.1f}"
            f"{1e6 * seconds / samples:>11.1f}{1e3 * seconds / steps:>9.2f}"
        )
    fed, fcl = best["federated"], best["federated continual"]
    per_sample = (fcl[0] / fcl[1]) / (fed[0] / fed[1])
    per_step = (fcl[0] / fcl[2]) / (fed[0] / fed[2])
    print(
        f"federated continual / federated: {per_sample:.3f}x per sample, "
        f"{per_step:.3f}x per optimizer step"
    )


if __name__ == "__main__":
    main()

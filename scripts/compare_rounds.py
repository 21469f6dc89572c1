"""Side-by-side accuracy of several federated runs at each evaluated round (ablations).

Reads ``metrics.jsonl`` of each run directory (finished or not) and prints one markdown row
per (run, evaluated round) with every generic and personal mode's top-1, optionally a
figure of the chosen keys against the round. Used for the FedLoGe SSE-C ablations of
docs/results/cifar10lt.md::

    python scripts/compare_rounds.py runs/sweeps/cifar10-lt-cpu/fedloge/seed-3407 \
        runs/sweeps/cifar10-lt-cpu-fedloge-ablation/fedloge-bias-none/seed-3407 \
        --labels default bias=none --max-round 30 --plot ablation.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedlt.errors import RunError
from fedlt.runs import RunDirectory


def evaluated_rounds(run_dir: Path) -> list[dict]:
    """The records of ``metrics.jsonl`` that hold evaluation results (``generic.*`` keys)."""
    try:
        records = RunDirectory.open(run_dir).read_metrics()
    except RunError as exc:
        raise SystemExit(str(exc)) from None
    return [r for r in records if any(k.startswith("generic.") for k in r)]


def accuracy_columns(records: list[dict]) -> list[str]:
    """``generic.<mode>.top1`` and ``personal.<mode>.top1_mean`` keys, in first-seen order."""
    keys: list[str] = []
    for r in records:
        for k in r:
            wanted = (k.startswith("generic.") and k.endswith(".top1")) or (
                k.startswith("personal.") and k.endswith(".top1_mean")
            )
            if wanted and k not in keys:
                keys.append(k)
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+", default=None, help="one label per run")
    parser.add_argument(
        "--modes", nargs="+", default=None, help="only these modes (e.g. global gla_fr universal)"
    )
    parser.add_argument("--max-round", type=int, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of the curves")
    args = parser.parse_args()
    labels = args.labels or [str(r) for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
    data = {}
    for label, run in zip(labels, args.runs, strict=True):
        records = evaluated_rounds(run)
        if args.max_round is not None:
            records = [r for r in records if r["round"] <= args.max_round]
        data[label] = records
    columns = accuracy_columns([r for recs in data.values() for r in recs])
    if args.modes:
        columns = [c for c in columns if c.split(".")[1] in args.modes]
    short = [c.replace(".top1_mean", "").replace(".top1", "") for c in columns]
    print("| run | round | " + " | ".join(short) + " |")
    print("|---|---|" + "---|" * len(columns))
    for label, records in data.items():
        for r in records:
            cells = [f"{100 * r[c]:.2f}" if c in r else "—" for c in columns]
            print(f"| {label} | {r['round']} | " + " | ".join(cells) + " |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        styles = ("-", "--", ":", "-.")  # colour = run, line style = mode
        for colour, (label, records) in enumerate(data.items()):
            for ax, prefix in ((axes[0], "generic."), (axes[1], "personal.")):
                modes = [
                    (c, n) for c, n in zip(columns, short, strict=True) if c.startswith(prefix)
                ]
                for i, (c, name) in enumerate(modes):
                    pts = [(r["round"], 100 * r[c]) for r in records if c in r]
                    if pts:
                        ax.plot(
                            *zip(*pts, strict=True),
                            color=f"C{colour}",
                            linestyle=styles[i % len(styles)],
                            marker="o",
                            markersize=3,
                            label=f"{label}: {name.split('.', 1)[1]}",
                        )
        axes[0].set_title("generic (balanced test set)")
        axes[1].set_title("personalised (mean over clients)")
        for ax in axes:
            ax.set_xlabel("round")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        axes[0].set_ylabel("top-1 (%)")
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())

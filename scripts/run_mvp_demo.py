"""CPU demo: MVP, MVP-R, L2P, DualPrompt and ER on a Si-Blurry stream of digits.

1. Trains the small ViT (``vit_tiny_test``, 16×16 input, patch 4, width 96, depth 6) from
   scratch on the digits *train* split restricted to ``--pretrain-classes`` (default 0-4),
   so half of the stream's classes are new to the frozen backbone.
2. Runs every method of ``simulations/continual/*_digits_demo.yaml`` (ER reuses the MVP
   demo config with ``strategy.name=er``, a 100-sample memory and full fine-tuning of the
   same pretrained ViT) with the pretrained weights, for each seed.
3. Prints a Markdown table of A_auc / A_avg / A_last / F_last (mean ± std over seeds, in %).

Usage: ``python scripts/run_mvp_demo.py [--seeds 1 2 3] [--out runs/mvp_demo]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from pretrain_vit_digits import pretrain_backbone

from fedlt.config import SIMULATIONS_DIR, load_config
from fedlt.continual.engine import run_stream
from fedlt.runs import RunDirectory

DEMO = SIMULATIONS_DIR / "continual"
METHODS = {
    "MVP": ("mvp_digits_demo.yaml", []),
    "MVP-R (mem 100)": ("mvp_r_digits_demo.yaml", []),
    "L2P": ("l2p_digits_demo.yaml", []),
    "DualPrompt": ("dualprompt_digits_demo.yaml", []),
    "ER (mem 100)": (
        "mvp_digits_demo.yaml",
        ["strategy.name=er", "strategy.options={lr: 0.0005}", "stream.memory_size=100"],
    ),
}
METRICS = ("A_auc", "A_avg", "A_last", "F_last")


def run_method(name: str, config: str, overrides: list[str], seed: int, out: Path) -> dict:
    cfg = load_config(DEMO / config, [*overrides, f"seed={seed}"])
    run = RunDirectory.create(cfg, out / f"{name.split()[0].lower()}-seed{seed}")
    start = time.perf_counter()
    summary = run_stream(cfg, run, progress=False)
    final = summary["final"]
    print(
        f"{name:16s} seed {seed}: "
        + "  ".join(f"{m} {100 * final[m]:5.1f}" for m in METRICS)
        + f"  ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="runs/mvp_demo")
    parser.add_argument("--pretrain-classes", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pretrain-epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    checkpoint = pretrain_backbone(
        out / "vit_tiny_digits.pth", args.pretrain_classes, args.pretrain_epochs, seed=0
    )
    weights = [f"model.options.checkpoint_path={checkpoint}"]
    results: dict[str, list[dict]] = {}
    for name, (config, overrides) in METHODS.items():
        results[name] = [
            run_method(name, config, [*overrides, *weights], seed, out) for seed in args.seeds
        ]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n| method | {' | '.join(METRICS)} |\n|---|{'---|' * len(METRICS)}")
    for name, finals in results.items():
        cells = []
        for metric in METRICS:
            values = [100 * f[metric] for f in finals]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

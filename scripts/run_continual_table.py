"""Run continual baselines over seeds and print a markdown table of A_auc / A_avg / A_last / F_last.

Each (strategy, seed) is a full run directory under ``--output`` (``fedlt report`` reads them);
the data are loaded once per seed. Example (the digits table in docs/continual.md):

    python scripts/run_continual_table.py simulations/continual/er_digits.yaml \
        --strategies finetune er ewcpp lwf --seeds 1 2 3 --output runs/continual-digits

``--strategy-options NAME KEY=VALUE ...`` sets ``strategy.options`` for one strategy (e.g. the
LwF temperature); ``--set`` applies to every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fedlt.config import load_config
from fedlt.continual.engine import load_stream_data, run_stream
from fedlt.runs import RunDirectory
from strategies.continual import CONTINUAL_LEARNERS

METRICS = ("A_auc", "A_avg", "A_last", "F_last")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--strategies", nargs="+", default=["finetune", "er", "ewcpp", "lwf"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--strategy-options",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME KEY=VALUE",
        help="strategy.options for one strategy, e.g. --strategy-options ewcpp ewc_lambda=1000",
    )
    parser.add_argument("--output", default="runs/continual-table")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    parser.add_argument("--json", default=None, help="write all per-run finals to this file")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    per_strategy: dict[str, list[str]] = {}
    for item in args.strategy_options:
        per_strategy.setdefault(item[0], []).extend(f"strategy.options.{kv}" for kv in item[1:])

    results: dict[str, list[dict]] = {s: [] for s in args.strategies}
    for seed in args.seeds:
        base = load_config(args.config, [*args.overrides, f"seed={seed}"])
        splits = load_stream_data(base)
        for strategy in args.strategies:
            overrides = [
                *args.overrides,
                f"seed={seed}",
                f"strategy.name={strategy}",
                f"output_dir={args.output}",
                f"name={base.name}-{strategy}-s{seed}",
                *per_strategy.get(strategy, []),
            ]
            if strategy != base.strategy.name:
                # keep the base options this strategy also has (lr, optimizer, ...)
                fields = {
                    f.name for f in dataclasses.fields(CONTINUAL_LEARNERS.get(strategy).Options)
                }
                shared = {k: v for k, v in base.strategy.options.items() if k in fields}
                overrides.insert(0, f"strategy.options={json.dumps(shared)}")
            cfg = load_config(args.config, overrides)
            if cfg.resources.num_threads > 0:
                torch.set_num_threads(cfg.resources.num_threads)
            run = RunDirectory.create(cfg)
            start = time.perf_counter()
            summary = run_stream(cfg, run, progress=args.progress, splits=splits)
            final = summary["final"]
            results[strategy].append({"seed": seed, "run": str(run.path), **final})
            print(
                f"{strategy:9s} seed {seed}: "
                + "  ".join(f"{k} {100 * final[k]:5.2f}" for k in METRICS)
                + f"  ({time.perf_counter() - start:.1f} s, {summary['device']})",
                flush=True,
            )

    lines = [
        f"| method | {' | '.join(METRICS)} |",
        "|---|" + "---|" * len(METRICS),
    ]
    for strategy, rows in results.items():
        cells = []
        for k in METRICS:
            values = 100 * np.array([r[k] for r in rows])
            cells.append(
                f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"
                if len(values) > 1
                else f"{values[0]:.2f}"
            )
        lines.append(f"| {strategy} | {' | '.join(cells)} |")
    table = "\n".join(lines)
    print(f"\nseeds {args.seeds} (mean ± sample std over seeds, %):\n{table}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

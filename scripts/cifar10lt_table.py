"""Reproduction driver: the CIFAR-10-LT methods table (FedLoGe and its baselines).

Runs every method on the same partition — CIFAR-10 (a JPEG copy in ImageFolder layout,
``data/cifar10``: ``scripts/cifar_to_imagefolder.py`` makes it from the python version, or
``--data-tar`` extracts an archive of one) with an exponential long tail IF=100, Dirichlet
α=0.5 over 40 clients, all clients every round, ResNet-8, 1 local epoch — each as its own
process with the in-process engine (several in parallel, e.g. on one GPU), then writes a
markdown table, a CSV and figures.

    python scripts/cifar10lt_table.py --rounds 100 --device cuda --parallel 8 \
        --out runs/cifar10lt --doc docs/results/cifar10lt.md

``--smoke`` swaps in tiny synthetic data and 2 rounds to check the pipeline in a minute.
A run directory under ``--out`` that has no ``summary.json`` (stopped by ``--deadline`` or a
crash) is continued from its last checkpoint with its own saved config — this invocation's
overrides do not apply to it. ``--set KEY=VALUE`` adds an override to every new run
(ablations); ``--table-only`` runs nothing and tabulates what is under ``--out``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fedlt.runs import RunDirectory

METHODS = ["fedavg", "fedprox", "fedrep", "fedbabu", "fedrod", "ditto", "fedetf", "fedloge"]
# Compute-matched deviations from a method's defaults (stated in the table's notes):
# FedRep's 10 head epochs per round would cost ~4x a FedAvg round on a CPU budget.
METHOD_OVERRIDES = {"fedrep": ["strategy.options.head_epochs=1"]}


def base_overrides(args: argparse.Namespace, root: Path) -> list[str]:
    common = [
        f"seed={args.seed}",
        "data.longtail.profile=exponential",
        "data.longtail.imbalance_factor=100",
        "data.partition.name=dirichlet",
        f"data.partition.alpha={args.alpha}",
        f"federated.rounds={args.rounds}",
        "federated.participation=1.0",
        "federated.local_epochs=1",
        f"federated.batch_size={args.batch_size}",
        "federated.lr=0.03",
        "federated.momentum=0.5",
        f"federated.eval_every={args.eval_every}",
        f"federated.checkpoint_every={args.eval_every}",
        "logging.progress=false",
        f"resources.device={args.device}",
        "resources.num_threads=1",
        *args.extra,
    ]
    if args.smoke:
        return [
            *common,
            "data.source=synthetic",
            "data.options={num_classes: 10, image_size: 32, channels: 3, "
            "train_per_class: 100, test_per_class: 20}",
            "data.partition.num_clients=4",
            "model.name=resnet8",
            "federated.augment=true",
        ]
    return [
        *common,
        "data.source=imagefolder",
        f"data.root={root}",
        f"data.partition.num_clients={args.clients}",
        f"model.name={args.model}",
        "federated.augment=true",
    ]


def prepare_data(args: argparse.Namespace) -> Path:
    root = Path(args.data_dir) / "cifar10"
    if args.smoke or (root / "train").is_dir():
        return root
    if args.data_tar is None:
        raise SystemExit(
            f"{root}/train not found: make the ImageFolder copy with `python "
            f"scripts/cifar_to_imagefolder.py data/cifar {root}` (CIFAR-10 python version from "
            "https://www.cs.toronto.edu/~kriz/cifar.html in data/cifar), or pass --data-tar"
        )
    print(f"extracting {args.data_tar} into {args.data_dir} ...", flush=True)
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.data_tar) as tar:
        tar.extractall(args.data_dir, filter="data")
    return root


def warm_cache(overrides: list[str]) -> None:
    """Decode the images once (cached as uint8) before the parallel runs start."""
    from fedlt.config import load_config
    from fedlt.data.sources import load_source

    cfg = load_config(None, overrides)
    t0 = time.perf_counter()
    splits = load_source(cfg.data, cfg.seed)
    print(
        f"data: {len(splits.train)} train / {len(splits.test)} test images "
        f"({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )


def run_method(
    method: str, overrides: list[str], out: Path, deadline: float | None
) -> tuple[str, Path | None, str]:
    run_dir = out / method
    run = RunDirectory.at(run_dir)
    if run.has_summary:
        return method, run_dir, "already done"
    cmd = [sys.executable, "-m", "fedlt.cli", "run", "--backend", "inprocess", "--no-progress"]
    if run.has_config:
        # An earlier invocation stopped (deadline, crash): continue from its last checkpoint
        # with its saved config, so a table can be finished over several sessions.
        cmd += ["--resume", str(run_dir)]
        print(f"{method}: continuing {run_dir} with its saved config", flush=True)
    else:
        cmd += ["--run-dir", str(run_dir), "--set", f"strategy.name={method}"]
        cmd += ["--set", f"name={method}"]
        for o in [*overrides, *METHOD_OVERRIDES.get(method, [])]:
            cmd += ["--set", o]
    t0 = time.perf_counter()
    timeout = None if deadline is None else max(1.0, deadline - time.time())
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        partial = last_evaluation(run_dir)
        if partial is None:
            return method, None, "stopped at the deadline before its first evaluation"
        return method, run_dir, f"stopped at the deadline after round {partial[0]['round']}"
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        return method, None, f"FAILED after {took:.0f} s:\n{proc.stderr[-3000:]}"
    return method, run_dir, f"{took:.0f} s"


def last_evaluation(run_dir: Path) -> tuple[dict, dict] | None:
    """(final metrics, headline) of a run: its summary, or else its last evaluated round."""
    run = RunDirectory.at(run_dir)
    summary = run.read_summary()
    if summary is not None:
        return {"round": summary["rounds"], **summary["final"]}, summary["headline"]
    records = run.read_metrics(skip_torn=True)
    evaluated = [r for r in records if any(k.startswith("generic.") for k in r)]
    if not evaluated:
        return None
    from strategies.federated import FEDERATED_STRATEGIES

    cls = FEDERATED_STRATEGIES.get(run.config.strategy.name)
    return evaluated[-1], {"generic": cls.generic_modes[0], "personal": cls.personal_modes[0]}


def pct(x: float | None) -> str:
    return "—" if x is None or x != x else f"{100 * x:.2f}"


def write_table(results: dict[str, Path], args: argparse.Namespace, overrides: list[str]) -> str:
    rows = []
    header = (
        "| method | generic mode | generic top-1 | many / med / few (count) | many / med / few (mass) "
        "| personal mode | personal top-1 (mean) | personal (weighted) | many / med / few (mass) "
        "| s / round | rounds |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for method in METHODS:
        if method not in results:
            continue
        final, head = last_evaluation(results[method])
        timings = RunDirectory.at(results[method]).read_timings()
        g, p = head["generic"], head["personal"]

        def groups(kind: str, mode: str, definition: str, final: dict = final) -> str:
            return " / ".join(
                pct(final.get(f"{kind}.{mode}.{grp}.{definition}"))
                for grp in ("many", "medium", "few")
            )

        sec = sum(t["train_s"] for t in timings) / len(timings) if timings else float("nan")
        rows.append(
            f"| {method} | {g} | {pct(final.get(f'generic.{g}.top1'))} | {groups('generic', g, 'count')} "
            f"| {groups('generic', g, 'mass')} | {p} | {pct(final.get(f'personal.{p}.top1_mean'))} "
            f"| {pct(final.get(f'personal.{p}.top1_weighted'))} | {groups('personal', p, 'mass')} "
            f"| {sec:.2f} | {final['round']} |"
        )
        extra = [
            f"generic {k.split('.')[1]} {pct(v)}"
            for k, v in final.items()
            if k.startswith("generic.") and k.endswith(".top1") and k.split(".")[1] != g
        ] + [
            f"personal {k.split('.')[1]} {pct(v)}"
            for k, v in final.items()
            if k.startswith("personal.") and k.endswith(".top1_mean") and k.split(".")[1] != p
        ]
        if extra:
            rows.append(f"| ↳ other modes | {'; '.join(extra)} |||||||||| ")
    command = " ".join(["python scripts/cifar10lt_table.py", *sys.argv[1:]])
    return "\n".join(
        [
            header,
            *rows,
            "",
            f"Command: `{command}`",
            "",
            "Overrides of every run:",
            "",
            "```",
            *overrides,
            "```",
        ]
    )


def plot(results: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, run_dir in results.items():
        _, head = last_evaluation(run_dir)
        records = RunDirectory.at(run_dir).read_metrics(skip_torn=True)
        for ax, key in (
            (axes[0], f"generic.{head['generic']}.top1"),
            (axes[1], f"personal.{head['personal']}.top1_mean"),
        ):
            pts = [(r["round"], 100 * r[key]) for r in records if key in r]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    marker="o",
                    markersize=2,
                    label=method,
                    linewidth=2.5 if method == "fedloge" else 1.2,
                )
    axes[0].set_title("generic accuracy (balanced test set)")
    axes[1].set_title("personalised accuracy (mean over clients)")
    for ax in axes:
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 (%)")
    axes[1].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--data-tar", default=None, help="archive of the ImageFolder copy (cifar10/...) to extract"
    )
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="runs/cifar10lt")
    parser.add_argument("--doc", default=None, help="write the markdown table here too")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="stop every run after this many seconds and tabulate its last evaluation",
    )
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra override for every run (ablations), e.g. strategy.options.bias=none",
    )
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing: tabulate the runs already under --out",
    )
    args = parser.parse_args()

    root = prepare_data(args)
    overrides = base_overrides(args, root)
    if not args.table_only:
        warm_cache(overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    results: dict[str, Path] = {}
    t0 = time.perf_counter()
    deadline = None if args.deadline is None else time.time() + args.deadline
    if args.table_only:
        results = {m: out / m for m in methods if last_evaluation(out / m) is not None}
    else:
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            runs = pool.map(lambda m: run_method(m, overrides, out, deadline), methods)
            for method, run_dir, note in runs:
                print(f"{method}: {note}", flush=True)
                if run_dir is not None:
                    results[method] = run_dir
    print(f"all runs: {time.perf_counter() - t0:.0f} s", flush=True)
    table = write_table(results, args, overrides)
    (out / "table.md").write_text(table + "\n")
    plot(results, out / "curves.png")
    print(table)
    if args.doc:
        doc = Path(args.doc)
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(table + "\n")
        plot(results, doc.with_suffix(".png"))
    return 0 if len(results) == len(methods) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``fedlt`` command line: run | partition | stream | sweep | report | config."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fedlt.errors import FedltError, RunInterrupted

console = Console()
err_console = Console(stderr=True)


def _add_config_args(p: argparse.ArgumentParser, config_required: bool = False) -> None:
    p.add_argument(
        "config",
        nargs=None if config_required else "?",
        help="experiment YAML (default: the embedded simulations/default.yaml)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set data.partition.alpha=0.1 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedlt",
        description="Federated long-tailed learning and online continual learning simulator.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment (default: the embedded FedLoGe demo)")
    _add_config_args(run)
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    run.add_argument(
        "--backend",
        choices=["flower", "inprocess"],
        default="flower",
        help="flower: Flower ServerApp + ClientApps on Ray (default); inprocess: plain loop",
    )
    run.add_argument("--ray-address", help="join an existing Ray cluster (or set RAY_ADDRESS)")
    run.add_argument("--run-dir", help="explicit run directory (must not exist)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even though config.yaml was edited since the run started",
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="show Flower/Ray logs and error tracebacks"
    )

    part = sub.add_parser("partition", help="build and inspect a client partition")
    _add_config_args(part)
    part.add_argument("--out", help="output folder (default partitions/<name>-seed<seed>)")

    stream = sub.add_parser("stream", help="build and inspect a Si-Blurry stream")
    _add_config_args(stream)
    stream.add_argument("--out", help="output folder (default streams/<name>-seed<seed>)")
    stream.add_argument(
        "--client",
        type=int,
        help="engine federated_continual: show this client's stream (default: every client)",
    )

    sweep = sub.add_parser("sweep", help="run configs x seeds as Ray tasks")
    sweep.add_argument("sweep", help="sweep YAML")
    sweep.add_argument("--ray-address", help="join an existing Ray cluster (or set RAY_ADDRESS)")
    sweep.add_argument("--out", help="sweep output folder")
    sweep.add_argument("--max-parallel", type=int, help="at most this many runs at once")
    sweep.add_argument("--no-progress", action="store_true")
    sweep.add_argument(
        "--status",
        action="store_true",
        help="print where each run of the sweep is (from its output folder); run nothing",
    )
    sweep.add_argument(
        "--backend",
        choices=["tasks", "flower"],
        default="tasks",
        help="tasks: each run is one Ray task (default); flower: runs in turn, each run's "
        "clients spread over a pool of Flower SuperNodes (one big run over a cluster)",
    )

    report = sub.add_parser("report", help="tables and figures from run directories")
    report.add_argument("paths", nargs="+", help="run or sweep directories")
    report.add_argument("--out", help="report folder (default: <first path>/report)")
    report.add_argument(
        "--group-by",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY",
        help="config keys (globs) that separate groups although ignored by default, "
        "e.g. federated.eval_every",
    )
    report.add_argument(
        "--ignore",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY",
        help="more config keys (globs; a section name covers its keys) that do not separate "
        "groups, e.g. federated.local_epochs",
    )

    show = sub.add_parser("config", help="print the resolved config")
    _add_config_args(show)
    return parser


def print_summary(summary: dict, run_dir: Path) -> None:
    """A table of the final metrics, headline modes first."""
    final = summary.get("final", {})
    table = Table(
        title=escape(
            f"{summary.get('name')} · {summary.get('strategy')} · seed {summary.get('seed')}"
        )
    )
    if summary.get("engine") == "continual":
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in ("A_auc", "A_avg", "A_last", "F_last"):
            if key in final:
                table.add_row(key, f"{100 * final[key]:.2f}%")
    elif summary.get("engine") == "federated_continual":
        headline = summary.get("headline", {})
        table.add_column("evaluation")
        for key in ("A_auc", "A_avg", "A_last", "F_last"):
            table.add_column(key, justify="right")
        for kind, prefix in (("generic", ""), ("personal", "personal.")):
            values = [final.get(prefix + key) for key in ("A_auc", "A_avg", "A_last", "F_last")]
            table.add_row(
                f"{kind} ({headline.get(kind)})",
                *("—" if v is None or v != v else f"{100 * v:.2f}%" for v in values),
            )
        rounds = summary.get("rounds", 0)
        ended = {k: r for k, r in summary.get("streams_ended", {}).items() if r < rounds}
        if ended:
            table.caption = (
                f"{len(ended)} client stream(s) ended before the last round; see summary.json"
            )
    else:
        table.add_column("evaluation")
        table.add_column("mode")
        table.add_column("top-1", justify="right")
        table.add_column("many / medium / few (count)", justify="right")
        table.add_column("many / medium / few (mass)", justify="right")
        headline = summary.get("headline", {})
        modes: dict[str, list[str]] = {"generic": [], "personal": []}
        for key in final:
            kind, mode = key.split(".")[:2]
            if mode not in modes.setdefault(kind, []):
                modes[kind].append(mode)
        for kind, top_key in (("generic", "top1"), ("personal", "top1_mean")):
            ordered = sorted(modes.get(kind, []), key=lambda m: m != headline.get(kind))
            for mode in ordered:

                def fmt(definition: str, kind: str = kind, mode: str = mode) -> str:
                    vals = [
                        final.get(f"{kind}.{mode}.{g}.{definition}")
                        for g in ("many", "medium", "few")
                    ]
                    return " / ".join(
                        "—" if v is None or v != v else f"{100 * v:.1f}" for v in vals
                    )

                label = f"{mode} *" if mode == headline.get(kind) else mode
                value = final.get(f"{kind}.{mode}.{top_key}")
                table.add_row(
                    kind,
                    label,
                    f"{100 * value:.2f}%" if value is not None else "—",
                    fmt("count"),
                    fmt("mass"),
                )
    console.print(table)
    console.print(
        f"run directory: [bold]{escape(str(run_dir))}[/bold]  (* = headline mode)", soft_wrap=True
    )


def _cmd_run(args: argparse.Namespace) -> int:
    """``fedlt run``: :func:`fedlt.api.run` (or :func:`fedlt.api.resume`), then the table."""
    from fedlt import api

    if args.resume and (args.config or args.overrides):
        raise FedltError("--resume continues a run with its saved config; drop CONFIG/--set")
    if args.resume and args.run_dir:
        raise FedltError(
            f"--resume continues a run in its own directory ({args.resume}); drop --run-dir"
        )
    if args.force and not args.resume:
        raise FedltError("--force only applies to --resume (a changed config.yaml)")
    common = {
        "backend": args.backend,
        "progress": not args.no_progress,
        "ray_address": args.ray_address,
        "verbose": args.verbose,
    }
    if args.resume:
        result = api.resume(args.resume, force=args.force, **common)
    else:
        cfg = api.load_config(args.config, args.overrides)
        if args.verbose:
            cfg.logging.verbose = True
        result = api.run(cfg, run_dir=args.run_dir, **common)
    print_summary(result.summary, result.path)
    return 0


def _print_error(exc: BaseException, args: argparse.Namespace) -> None:
    """``error: <message>`` on stderr, printed literally (no rich markup: messages hold paths
    and values such as ``[[1]]``), not wrapped; with ``-v`` the traceback first."""
    if getattr(args, "verbose", False):
        traceback.print_exception(exc)
    message = Text("error: ", style="bold red")
    message.append(str(exc))
    err_console.print(message, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "partition":
            from fedlt.data.inspect import partition_command

            return partition_command(args.config, args.overrides, args.out)
        if args.command == "stream":
            from fedlt.continual.inspect import stream_command

            return stream_command(args.config, args.overrides, args.out, args.client)
        if args.command == "sweep" and args.status:
            from fedlt.sweep import load_sweep, status_lines

            for line in status_lines(load_sweep(args.sweep, args.out)):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            return 0
        if args.command == "sweep":
            from fedlt.api import sweep

            result = sweep(
                args.sweep,
                out=args.out,
                backend=args.backend,
                max_parallel=args.max_parallel,
                ray_address=args.ray_address,
                progress=not args.no_progress,
            )
            return 1 if result.count("failed") else 0
        if args.command == "report":
            from fedlt.api import report

            report(args.paths, out=args.out, group_by=args.group_by, ignore=args.ignore, echo=True)
            return 0
        if args.command == "config":
            from fedlt.api import load_config

            text = load_config(args.config, args.overrides).to_yaml()
            console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
            return 0
    except RunInterrupted as exc:
        err_console.print(f"interrupted: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except FedltError as exc:
        _print_error(exc, args)
        return 2
    except OSError as exc:  # the file system refused something (disk full, permissions)
        _print_error(exc, args)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted; a run can continue with `fedlt run --resume RUN_DIR`")
        return 130
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The Python API: configure, run, load, sweep and report from a notebook or a script.

::

    import fedlt

    result = fedlt.run(overrides={"federated.rounds": 2}, backend="inprocess")
    result.summary["final"]["generic.global.top1"]
    frame = result.to_pandas()           # one row per metrics record (needs pandas)
    again = fedlt.load_run(result.path)  # the same RunResult, read back from the folder

The command line (:mod:`fedlt.cli`) is a thin layer over these functions. Every import of
the heavy parts (torch, Flower, Ray) happens inside the functions, so ``import fedlt``
stays cheap. Usage and the full argument lists: docs/api.md.
"""

from __future__ import annotations

import copy
import os
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from fedlt.errors import ConfigError, FedltError, RunError

if TYPE_CHECKING:
    import pandas

    from fedlt.config import ExperimentConfig, OverridePair
    from fedlt.sweep import Runner, SweepPlan

Backend = Literal["flower", "inprocess"]
SweepBackend = Literal["tasks", "flower"]
ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any], "ExperimentConfig", None]
"""A config file path, a mapping with the YAML's structure, an ExperimentConfig, or None
(the embedded default, ``simulations/default.yaml``)."""
Overrides = Mapping[str, Any] | Sequence[str] | None
"""``{"dotted.key": value}`` (values kept as given: numbers, lists, mappings, paths) or the
command line's ``["dotted.key=yaml value", ...]``."""
BACKENDS = ("flower", "inprocess")


# ----------------------------------------------------------------------------- results
@dataclass(repr=False)
class RunResult:
    """One run directory, read back (docs/api.md).

    ``path``: the run directory; ``config``: its resolved config (from ``config.yaml``);
    ``summary``: ``summary.json`` (empty while the run is unfinished or after it failed);
    ``metrics``: the records of ``metrics.jsonl``, oldest first (one per round for the
    federated engine, one per evaluation for the stream engine); ``status``: ``complete``,
    ``running``, ``failed``, ``interrupted`` or ``unknown``.
    """

    path: Path
    config: ExperimentConfig
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    status: str = "unknown"

    @property
    def final(self) -> dict[str, Any]:
        """The final metrics of the summary (``summary["final"]``; empty if unfinished)."""
        return dict(self.summary.get("final") or {})

    def to_pandas(self) -> pandas.DataFrame:
        """The metrics as a pandas DataFrame, one row per record (nested values such as the
        stream engine's ``per_class`` stay one cell). Needs pandas."""
        try:
            import pandas
        except ImportError as exc:
            raise ImportError(
                "RunResult.to_pandas() needs pandas, which is not installed; install it "
                "(pip install pandas) or use RunResult.metrics, a list of dicts"
            ) from exc
        return pandas.DataFrame.from_records(self.metrics)

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"RunResult(path={str(self.path)!r}, engine={cfg.engine!r}, "
            f"strategy={cfg.strategy.name!r}, seed={cfg.seed}, status={self.status!r}, "
            f"{len(self.metrics)} metrics records)"
        )


@dataclass(repr=False)
class SweepResult:
    """What :func:`sweep` did: the plan, each run's state and the report (docs/api.md).

    ``states`` maps ``<label>/seed-<seed>`` to the run's outcome (``state`` is ``done``,
    ``failed`` or ``skipped``, with ``error`` for a failed run); ``report`` is the report
    folder, or None when no report was written (``report_error`` says why).
    """

    path: Path
    plan: SweepPlan
    states: dict[str, dict[str, Any]]
    report: Path | None = None
    report_error: str | None = None

    def count(self, state: str) -> int:
        """How many runs ended in ``state`` (``done``, ``failed``, ``skipped``)."""
        return sum(1 for s in self.states.values() if s.get("state") == state)

    @property
    def failed(self) -> list[str]:
        """The keys of the runs that failed."""
        return [key for key, s in self.states.items() if s.get("state") == "failed"]

    def runs(self) -> list[RunResult]:
        """Every finished run of the sweep, read back with :func:`load_run` (plan order)."""
        from fedlt.sweep import is_finished

        return [load_run(r.run_dir) for r in self.plan.runs if is_finished(r.run_dir)]

    def __repr__(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("done", "failed", "skipped"))
        return f"SweepResult(path={str(self.path)!r}, {len(self.plan.runs)} runs: {counts})"


@dataclass(repr=False)
class ReportResult:
    """What :func:`report` wrote: ``path`` (the report folder), ``markdown`` (the text of
    ``report.md``, figure links relative to ``path``), ``files`` and ``notes``."""

    path: Path
    markdown: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    groups: list[Any] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"ReportResult(path={str(self.path)!r}, {len(self.groups)} groups, "
            f"{len(self.files)} files)"
        )


# ----------------------------------------------------------------------------- configs
def load_config(config: ConfigSource = None, overrides: Overrides = None) -> ExperimentConfig:
    """Resolve and validate an experiment config (docs/api.md).

    ``config``: a YAML path (a relative path that does not exist here but names a shipped
    file, such as ``simulations/continual/er_digits.yaml``, reads the shipped one), a
    mapping with the YAML's structure, an :class:`~fedlt.config.ExperimentConfig`, or None
    for the embedded default. ``overrides``: see :data:`Overrides`. Errors are
    :class:`~fedlt.errors.ConfigError` naming the dotted key.
    """
    from fedlt.config import resolve

    return resolve(_raw_config(config), override_pairs(overrides))


def _raw_config(config: ConfigSource) -> dict[str, Any]:
    """The plain mapping behind ``config`` (a fresh copy, safe to modify)."""
    from fedlt.config import ExperimentConfig, read_yaml

    if config is None:
        from fedlt.resources import default_config_path

        return read_yaml(default_config_path())
    if isinstance(config, ExperimentConfig):
        return config.to_dict()
    if isinstance(config, Mapping):
        return _plain(dict(config))
    if isinstance(config, (str, os.PathLike)):
        return read_yaml(_config_file(Path(config)))
    raise TypeError(
        "config: expected a YAML path, a mapping or an ExperimentConfig, got "
        f"{type(config).__name__}"
    )


def _config_file(path: Path) -> Path:
    """``path``, or the shipped config of that name when ``path`` does not exist here."""
    if path.exists():
        return path
    from fedlt.resources import bundled_config

    return bundled_config(path) or path


def _plain(value: Any) -> Any:
    """A deep copy of ``value`` with paths as strings and tuples as lists (YAML's types)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def apply_overrides(raw: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """A copy of ``raw`` with ``overrides`` set: a mapping ``{"a.b": value}`` (the value
    kept as given, no round trip through text) or ``["a.b=value", ...]`` strings."""
    from fedlt.config import apply_overrides as apply_pairs

    return apply_pairs(raw, override_pairs(overrides))


def override_pairs(overrides: Overrides) -> list[OverridePair]:
    """``overrides`` as (key path, value) pairs, the form :func:`fedlt.config.resolve`
    applies: a mapping's values as given (paths as strings, tuples as lists), strings parsed
    as the command line's ``key=yaml value``."""
    from fedlt.config import override_pairs as parse_pairs

    if overrides is None:
        return []
    if isinstance(overrides, (str, bytes)):
        raise TypeError(
            "overrides: expected a mapping {'dotted.key': value} or a list of 'key=value' "
            f"strings, got the string {overrides!r}"
        )
    if not isinstance(overrides, Mapping):
        return parse_pairs(list(overrides))
    return [(_split_key(key), _plain(value)) for key, value in overrides.items()]


def _split_key(key: Any) -> list[str]:
    """``"a.b.c"`` -> ``["a", "b", "c"]``; a ConfigError for anything else."""
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(
            "overrides", f"expected a dotted key such as 'federated.rounds', got {key!r}"
        )
    parts = key.strip().split(".")
    if any(not part for part in parts):
        raise ConfigError("overrides", f"bad key {key!r} (an empty part between dots)")
    return parts


# ----------------------------------------------------------------------------- runs
def run(
    config: ConfigSource = None,
    *,
    overrides: Overrides = None,
    backend: Backend = "flower",
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    ray_address: str | None = None,
    verbose: bool = False,
) -> RunResult:
    """Run one experiment, federated, continual or federated continual (by ``engine`` in the
    config), and return its :class:`RunResult` (docs/api.md).

    The config is resolved and checked, and the data, model and strategy built, before the
    run directory (``run_dir``, or a new folder under ``output_dir``) is made: a refused run
    leaves nothing behind. ``backend``: ``flower`` (Flower's simulation on Ray) or
    ``inprocess`` (the same client code in a plain loop, no Ray); the stream engine ignores
    it. ``progress`` / ``verbose`` combine with ``logging.progress`` / ``logging.verbose``.
    """
    _check_backend(backend)
    cfg = load_config(config, overrides)
    from fedlt.runner import run_experiment

    path = run_experiment(
        cfg,
        run_dir=run_dir,
        backend=backend,
        progress=progress and cfg.logging.progress,
        ray_address=ray_address,
        verbose=verbose or cfg.logging.verbose,
    )
    return load_run(path)


def resume(
    path: str | os.PathLike[str],
    *,
    backend: Backend = "flower",
    progress: bool = True,
    ray_address: str | None = None,
    verbose: bool = False,
    force: bool = False,
) -> RunResult:
    """Continue the unfinished run in ``path`` from its newest checkpoint (docs/api.md).

    Refused for a complete run, a run another process holds, or one whose ``config.yaml``
    was edited since it started (unless ``force``).
    """
    _check_backend(backend)
    from fedlt.runner import run_experiment

    done = run_experiment(
        None,
        resume=path,
        backend=backend,
        progress=progress,
        ray_address=ray_address,
        verbose=verbose,
        force=force,
    )
    return load_run(done)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected 'flower' or 'inprocess', got {backend!r}")


def load_run(path: str | os.PathLike[str]) -> RunResult:
    """Read a run directory (finished or not) into a :class:`RunResult`; a RunError when
    ``path`` holds no ``config.yaml`` (docs/api.md)."""
    from fedlt.runs import RunDirectory

    run_directory = RunDirectory.open(path)
    return RunResult(
        path=run_directory.path,
        config=run_directory.config,
        summary=run_directory.read_summary() or {},
        metrics=run_directory.read_metrics(),
        status=str(run_directory.status.get("status", "unknown")),
    )


# ----------------------------------------------------------------------------- sweeps
def sweep(
    sweep_file: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    backend: SweepBackend = "tasks",
    max_parallel: int | None = None,
    ray_address: str | None = None,
    progress: bool = True,
    report: bool = True,
    runner: Runner | None = None,
    console: Any = None,
) -> SweepResult:
    """Run a sweep file (override sets × seeds) and, with ``report``, write its report into
    ``<out>/report`` (docs/sweeps.md, docs/api.md).

    Every run's config is checked before anything starts. ``backend``: ``tasks`` (each run
    one Ray task, several at once) or ``flower`` (one run after another, each run's clients
    over a pool of Flower SuperNodes). Finished runs are skipped, checkpointed ones resumed;
    a failed run is recorded and the others go on. ``runner`` replaces
    :func:`fedlt.runner.run_experiment` (a test hook); ``console``: a rich Console for the
    progress lines (default: stdout).
    """
    from rich.console import Console

    from fedlt.sweep import load_sweep, run_sweep

    console = console or Console()
    plan = load_sweep(sweep_file, out)
    console.print(
        f"sweep {plan.name}: {len(plan.runs)} runs ({len({r.label for r in plan.runs})} "
        f"override sets × {len({r.seed for r in plan.runs})} seeds) -> {plan.output_dir}"
    )
    outcome = run_sweep(
        plan,
        ray_address=ray_address,
        max_parallel=max_parallel,
        progress=progress,
        runner=runner,
        console=console,
        backend=backend,
    )
    result = SweepResult(path=plan.output_dir, plan=plan, states=outcome.states)
    if report:
        _report_sweep(result, console)
    return result


def _report_sweep(result: SweepResult, console: Any) -> None:
    """Write ``<sweep>/report``; a sweep without finished runs gets none (and says why)."""
    target = result.path / "report"
    try:
        report([result.path], out=target)
    except FedltError as exc:
        result.report_error = str(exc)
        console.print(f"[yellow]no report[/]: {exc}")
        return
    result.report = target
    console.print(f"report: {target / 'report.md'}")


# ----------------------------------------------------------------------------- reports
def report(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    out: str | os.PathLike[str] | None = None,
    formats: Sequence[str] | None = None,
    group_by: Sequence[str] = (),
    ignore: Sequence[str] = (),
    echo: bool = False,
) -> ReportResult:
    """Tables and figures comparing the runs under ``paths`` (run or sweep folders), written
    to ``out`` (default ``<first path>/report``); see docs/api.md.

    ``group_by`` / ``ignore``: config keys (globs) that do / do not separate groups beyond
    the defaults. ``formats``: some of ``md``, ``csv``, ``png`` (default: all three).
    ``echo``: also print the markdown to stdout and a one-line summary to stderr (what
    ``fedlt report`` does).
    """
    from fedlt.report import FORMATS, Grouping, build_report

    folders = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not folders:
        raise RunError("fedlt report: give at least one run or sweep folder")
    first = Path(folders[0])
    target = Path(out) if out else (first if first.is_dir() else first.parent) / "report"
    grouping = Grouping.from_options(group_by, ignore)
    built = build_report(folders, target, FORMATS if formats is None else formats, grouping)
    result = ReportResult(
        path=target,
        markdown=built["markdown"],
        files=list(built["files"]),
        notes=list(built["notes"]),
        groups=list(built["groups"]),
    )
    if echo:
        _echo_report(result)
    return result


def _echo_report(result: ReportResult) -> None:
    """The markdown on stdout (figure links relative to the current folder), the number of
    files written on stderr."""
    from fedlt.report import _echo, relink_figures

    markdown = relink_figures(result.markdown, result.path / "figures")
    _echo(markdown, f"wrote {len(result.files)} files to {result.path}")


# ----------------------------------------------------------------------------- names
class CallableModule(types.ModuleType):
    """A submodule that shares its name with an API function (``fedlt.sweep``,
    ``fedlt.report``) and forwards calls to it.

    Importing the submodule makes Python rebind the package attribute (``fedlt.report``)
    from the function to the module; with this class the module is callable with the
    function's arguments, so ``fedlt.report(paths)`` works before and after that import.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        function = getattr(sys.modules[__name__], self.__name__.rpartition(".")[2])
        return function(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Turn the (imported) module ``module_name`` into a :class:`CallableModule`."""
    sys.modules[module_name].__class__ = CallableModule


__all__ = [
    "ConfigSource",
    "Overrides",
    "ReportResult",
    "RunResult",
    "SweepResult",
    "apply_overrides",
    "load_config",
    "load_run",
    "override_pairs",
    "report",
    "resume",
    "run",
    "sweep",
]

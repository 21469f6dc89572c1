"""``fedlt sweep SWEEP.yaml``: fan (override set × seed) out as Ray tasks, then report.

A sweep file (format in ``docs/sweeps.md``)::

    name: digits-demo                 # default: the file's stem
    base: ../default.yaml             # experiment file, relative to this file (or a mapping)
    set: {federated.rounds: 2}        # overrides applied to every run (optional)
    seeds: [0, 1]
    grid:                             # cartesian product of dotted keys -> value lists
      strategy.name: [fedavg, fedloge]
    runs:                             # and/or explicit override sets, each with a label
      - {label: fedprox-mu0.01, strategy.name: fedprox, strategy.options.mu: 0.01}
    resources: {num_cpus: 1, num_gpus: 0.25}   # per run (Ray task); a run may override it
    output_dir: runs/sweeps/digits-demo         # relative to the working directory

The file is read into a typed :class:`SweepSpec` (:func:`fedlt.configtools.from_dict`, so
every error names its key and the file). Every (override set × seed) becomes (key path,
value) override pairs and one resolved :class:`~fedlt.config.ExperimentConfig`, checked
before Ray starts, and one Ray task running
``run_experiment(cfg, run_dir=<out>/<label>/seed-<seed>, backend="inprocess")``. Run
directories are deterministic, so invoking the sweep again skips finished runs (summary.json
and status "complete"), resumes runs that left a checkpoint, and retries the others; a failed
run is recorded in ``sweep_status.json`` and in its own ``status.json`` without stopping the
rest. At the end the sweep writes a report (:mod:`fedlt.report`) into ``<out>/report``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedlt.config import ExperimentConfig, OverridePair, read_yaml, resolve
from fedlt.configtools import from_dict, require, require_range
from fedlt.errors import ConfigError, FedltError
from fedlt.runs import RunDirectory, RunLock

Runner = Callable[..., Path]

RESOURCE_KEYS = ("num_cpus", "num_gpus")
STATUS_FILE = "sweep_status.json"
DEFAULT_RUNNER = "fedlt.runner:run_experiment"
LABEL_NAMES = {
    "data.longtail.imbalance_factor": "IF",
    "data.partition.num_clients": "clients",
}


# -- the sweep file ------------------------------------------------------------------------
@dataclass
class SweepResources:
    """Ray resources of each run (task); a key left out takes the base's ``resources``."""

    num_cpus: float | None = None
    num_gpus: float | None = None

    def validate(self, prefix: str) -> None:
        if self.num_cpus is not None:
            require_range(self.num_cpus, f"{prefix}.num_cpus", 0, low_open=True)
        if self.num_gpus is not None:
            require_range(self.num_gpus, f"{prefix}.num_gpus", 0)

    def given(self) -> dict[str, float]:
        """The amounts the sweep file sets, by name."""
        amounts = {name: getattr(self, name) for name in RESOURCE_KEYS}
        return {name: float(v) for name, v in amounts.items() if v is not None}


@dataclass
class SweepRun:
    """One entry of ``runs:``: its label, overrides (dotted key -> value) and resources.

    In the file the overrides sit beside ``label`` and ``resources``
    (``{label: prox, strategy.name: fedprox}``); :func:`read_sweep_spec` gathers them."""

    label: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    resources: SweepResources = field(default_factory=SweepResources)

    def validate(self, prefix: str) -> None:
        require(bool(self.label.strip()), f"{prefix}.label", "every run needs a non-empty label")


@dataclass
class SweepSpec:
    """A sweep file, typed (keys and meaning: docs/sweeps.md)."""

    name: str | None = None
    base: str | dict[str, Any] | None = field(
        default=None, metadata={"expected": "a file path or a mapping"}
    )
    set: dict[str, Any] | None = field(
        default=None, metadata={"expected": "a mapping of dotted keys to values"}
    )
    seeds: list[int] | int | None = field(
        default=None, metadata={"expected": "a non-empty list of integers"}
    )
    grid: dict[str, list[Any]] | None = None
    runs: list[SweepRun] | None = None
    resources: SweepResources = field(default_factory=SweepResources)
    output_dir: str | None = None

    def __post_init__(self) -> None:
        if self.seeds is None:
            self.seeds = [0]
        elif isinstance(self.seeds, int):
            self.seeds = [self.seeds]

    def validate(self, prefix: str) -> None:
        seeds = self.seed_list
        require(bool(seeds), "seeds", f"expected a non-empty list of integers, got {seeds!r}")
        require(len(set(seeds)) == len(seeds), "seeds", f"seeds repeat: {seeds}")
        for key, values in (self.grid or {}).items():
            require(bool(values), f"grid.{key}", f"expected a non-empty list, got {values!r}")
        if self.runs is not None:
            require(bool(self.runs), "runs", "expected a non-empty list of mappings, got []")

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if isinstance(self.seeds, list) else [0]


def _gather_run_overrides(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with every ``runs:`` entry's dotted keys moved under ``overrides``."""
    runs = raw.get("runs")
    if not isinstance(runs, list):
        return raw

    def gather(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        kept = {k: item[k] for k in ("label", "resources") if k in item}
        rest = {str(k): v for k, v in item.items() if k not in kept}
        return {**kept, "overrides": rest}

    return {**raw, "runs": [gather(item) for item in runs]}


def read_sweep_spec(source: Path) -> SweepSpec:
    """Read and check a sweep file; every error names the key and the file."""
    raw = read_yaml(source)
    try:
        return from_dict(SweepSpec, _gather_run_overrides(raw))
    except ConfigError as exc:
        raise _sweep_error(source, exc.key, exc.detail) from None


# -- the plan ------------------------------------------------------------------------------
@dataclass
class PlannedRun:
    """One (override set × seed) of a sweep, resolved and ready to submit.

    ``overrides``: the (key path, value) pairs applied to the base, in order."""

    label: str
    seed: int
    overrides: list[OverridePair]
    run_dir: Path
    config: ExperimentConfig
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.label}/seed-{self.seed}"


@dataclass
class SweepPlan:
    """A parsed sweep file: where it writes and the runs it makes."""

    name: str
    source: Path
    output_dir: Path
    runs: list[PlannedRun] = field(default_factory=list)


@dataclass
class _OverrideSet:
    """A labelled override set (a ``runs:`` entry combined with a grid point)."""

    label: str
    overrides: list[OverridePair]
    resources: dict[str, float]


def _sweep_error(source: Path, key: str, message: str) -> ConfigError:
    return ConfigError(key, f"{message} (in sweep file {source})")


def _label_text(value: Any) -> str:
    """A value as it appears in a label (strings bare, anything else as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def _pairs(mapping: dict[str, Any], where: str, source: Path) -> list[OverridePair]:
    """(key path, value) pairs of ``{dotted.key: value}``, values as the file gives them."""
    pairs: list[OverridePair] = []
    for key, value in mapping.items():
        path = str(key).split(".")
        if not all(part.strip() for part in path):
            raise _sweep_error(source, f"{where}.{key}", "bad dotted key (an empty part)")
        pairs.append((path, value))
    return pairs


def _safe_label(text: str) -> str:
    """A label usable as a directory name: letters, digits and ``. _ = + -`` only."""
    cleaned = re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("._")
    return cleaned or "run"


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that is unique among ``keys`` (for labels)."""
    short = {}
    for key in keys:
        if key in LABEL_NAMES:
            short[key] = LABEL_NAMES[key]
            continue
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            candidate = ".".join(parts[-n:])
            clashes = [k for k in keys if k != key and k.endswith(candidate)]
            if not clashes:
                short[key] = candidate
                break
        else:
            short[key] = key
    return short


def _grid_points(grid: dict[str, list[Any]], source: Path) -> list[tuple[str, list[OverridePair]]]:
    """(label, overrides) for every point of the cartesian product of ``grid``.

    The label joins ``short_key=value`` parts with ``_``; a ``strategy.name`` part is written as
    the bare method name (``fedavg_alpha=0.5``).
    """
    if not grid:
        return [("", [])]
    keys = list(grid)
    short = _short_keys(keys)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        parts = [
            _label_text(v) if k == "strategy.name" else f"{short[k]}={_label_text(v)}"
            for k, v in point.items()
        ]
        points.append(("_".join(parts), _pairs(point, "grid", source)))
    return points


def _read_base(spec: SweepSpec, source: Path) -> dict[str, Any]:
    """The base experiment mapping: inline, a file relative to the sweep file, or the
    embedded default."""
    if spec.base is None:
        from fedlt.config import DEFAULT_CONFIG

        return read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else {}
    if isinstance(spec.base, dict):
        return spec.base
    path = Path(spec.base)
    if not path.is_absolute():
        path = source.parent / path
    if not path.is_file():
        raise _sweep_error(source, "base", f"experiment file not found: {path}")
    return read_yaml(path)


def _override_sets(spec: SweepSpec, source: Path) -> list[_OverrideSet]:
    """Every ``runs:`` entry (or none) combined with every grid point; labels unique."""
    entries = spec.runs or [SweepRun()]
    sets = []
    for i, entry in enumerate(entries):
        run_pairs = _pairs(entry.overrides, f"runs[{i}]", source)
        for grid_label, grid_pairs in _grid_points(spec.grid or {}, source):
            label = "_".join(p for p in (entry.label, grid_label) if p) or "base"
            sets.append(
                _OverrideSet(_safe_label(label), run_pairs + grid_pairs, entry.resources.given())
            )
    labels = [s.label for s in sets]
    repeated = sorted({lb for lb in labels if labels.count(lb) > 1})
    if repeated:
        raise _sweep_error(source, "runs", f"labels repeat (each must be unique): {repeated}")
    return sets


def _plan_run(
    base: dict[str, Any],
    common: list[OverridePair],
    chosen: _OverrideSet,
    seed: int,
    output_dir: Path,
    defaults: dict[str, float],
    source: Path,
) -> PlannedRun:
    """Resolve one (override set × seed); a config error names the run and the file."""
    label = chosen.label
    pairs: list[OverridePair] = [
        *common,
        *chosen.overrides,
        (["seed"], seed),
        (["name"], label),
        (["output_dir"], str(output_dir)),
        (["logging", "progress"], False),
    ]
    try:
        config = resolve(base, pairs)
    except ConfigError as exc:
        raise ConfigError(
            exc.key, f"{exc.detail} (sweep run '{label}' seed {seed}, sweep file {source})"
        ) from exc
    resources = {**defaults, **chosen.resources}
    return PlannedRun(
        label=label,
        seed=seed,
        overrides=pairs,
        run_dir=output_dir / label / f"seed-{seed}",
        config=config,
        num_cpus=resources.get("num_cpus", config.resources.num_cpus),
        num_gpus=resources.get("num_gpus", config.resources.num_gpus),
    )


def load_sweep(sweep_path: str | Path, out: str | Path | None = None) -> SweepPlan:
    """Parse a sweep file and resolve every run's config (all errors before anything runs).

    Config errors name the run and the key: ``strategy.options.mu: expected a number, got 'x'
    (sweep run 'fedprox' seed 0, sweep file s.yaml)``.
    """
    source = Path(sweep_path)
    spec = read_sweep_spec(source)
    name = spec.name or source.stem
    base = _read_base(spec, source)
    common = _pairs(spec.set or {}, "set", source)
    output_dir = Path(out or spec.output_dir or Path("runs") / "sweeps" / name).resolve()
    plan = SweepPlan(name=name, source=source, output_dir=output_dir)
    defaults = spec.resources.given()
    for chosen in _override_sets(spec, source):
        for seed in spec.seed_list:
            plan.runs.append(_plan_run(base, common, chosen, seed, output_dir, defaults, source))
    return plan


# -- run-directory states ------------------------------------------------------------------
def is_finished(run_dir: Path) -> bool:
    """A finished run: summary.json present and status.json says ``complete``."""
    return RunDirectory.at(run_dir).is_complete


def has_checkpoint(run_dir: Path) -> bool:
    """A run that can be resumed: a config and at least one checkpoint."""
    return RunDirectory.at(run_dir).has_checkpoint


def config_differences(run_dir: Path, config: ExperimentConfig) -> list[str]:
    """Dotted keys whose value in ``run_dir/config.yaml`` differs from ``config``.

    A run folder is keyed by label and seed only, so editing a sweep without renaming the
    label would silently reuse old results; the sweep warns with these keys.
    """
    try:
        stored = RunDirectory.at(run_dir).read_config_mapping()
    except FedltError:
        return []
    # keys added to fedlt since the run was made take their defaults, as on resume; a config
    # this fedlt cannot resolve is compared as written
    with contextlib.suppress(Exception):
        stored = resolve(stored).to_dict()
    old, new = _flat(stored), _flat(config.to_dict())
    ignored = lambda k: k == "output_dir" or k.startswith("logging.")  # noqa: E731
    return sorted(k for k in set(old) | set(new) if not ignored(k) and old.get(k) != new.get(k))


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (empty mappings and lists kept as values)."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def set_aside(run_dir: Path) -> Path:
    """Rename an unfinished run without checkpoint to ``<dir>.attempt-<k>`` (kept, not deleted),
    so that the run can start afresh in its deterministic directory."""
    for k in range(1, 10_000):
        target = run_dir.with_name(f"{run_dir.name}.attempt-{k}")
        if not target.exists():
            run_dir.rename(target)
            return target
    raise FedltError(f"too many earlier attempts beside {run_dir}")  # pragma: no cover


def _write_failed_status(run_dir: Path, message: str) -> None:
    """Record a failure in the run's status.json (creating the folder if the run never did)."""
    RunDirectory.at(run_dir).record_failure(message)


# -- the Ray task ---------------------------------------------------------------------------
def execute_run(
    config: ExperimentConfig,
    run_dir: str,
    driver_cwd: str | None = None,
    runner: Runner | None = None,
    backend: str = "inprocess",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Body of one sweep task: run (or resume) the experiment; never raises.

    Returns ``{"state": "done" | "failed", "resumed": bool, "wall_time_s", "error", "node"}``.
    ``runner`` replaces :func:`fedlt.runner.run_experiment` (test hook; it is pickled into the
    task, so a function defined inside a test works).
    """
    import socket

    start = time.time()
    if driver_cwd and Path(driver_cwd).is_dir():
        os.chdir(driver_cwd)  # relative paths in configs mean the same thing as on the driver
    path = Path(run_dir)
    resumed = has_checkpoint(path)
    outcome: dict[str, Any] = {
        "resumed": resumed,
        "node": socket.gethostname(),
        "pid": os.getpid(),
        "started": start,
    }
    try:
        import ray

        if ray.is_initialized():
            outcome["ray_node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # run outside Ray (tests, debugging)
        pass
    try:
        from fedlt.devices import configure_torch

        configure_torch(config.resources.num_threads, config.resources.flush_denormal)
        if runner is None:
            from fedlt.registry import import_reference

            runner = import_reference(DEFAULT_RUNNER)  # type: ignore[assignment]
        # Inside a Ray task: the in-process federated loop (no Flower simulation nested in a
        # task). With the flower backend the sweep driver calls this directly and the run's
        # clients go through the pool of SuperNodes. Continual configs go to the stream
        # engine whatever the backend.
        kwargs: dict[str, Any] = {"backend": backend, "progress": False}
        if backend == "flower":
            kwargs["ray_address"] = ray_address
        if resumed:
            kwargs["resume"] = path
        else:
            kwargs["run_dir"] = path
        assert runner is not None
        runner(config, **kwargs)
        if not is_finished(path):
            raise FedltError(f"the runner returned but {path} has no complete summary.json")
        outcome.update(state="done", error=None)
    except BaseException as exc:  # a failed run must never stop the sweep
        message = f"{type(exc).__name__}: {exc}"
        if not is_finished(path) and RunDirectory.at(path).status.get("status") != "failed":
            _write_failed_status(path, message)
        outcome.update(state="failed", error=message, traceback=traceback.format_exc(limit=8))
    outcome["finished"] = time.time()
    outcome["wall_time_s"] = round(outcome["finished"] - start, 3)
    return outcome


# -- driver -------------------------------------------------------------------------------
@dataclass
class SweepOutcome:
    """What a sweep invocation did, run by run."""

    plan: SweepPlan
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_seen: dict[str, tuple[float, int]] = field(default_factory=dict)
    """(monotonic time, position) at which this invocation first saw each run running."""

    def count(self, state: str) -> int:
        return sum(1 for s in self.states.values() if s.get("state") == state)

    @property
    def counts(self) -> dict[str, int]:
        return {k: self.count(k) for k in ("done", "failed", "skipped", "running", "pending")}

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep": str(self.plan.source),
            "name": self.plan.name,
            "output_dir": str(self.plan.output_dir),
            "counts": self.counts,
            "time": time.time(),
            "runs": [
                {"label": r.label, "seed": r.seed, "run_dir": str(r.run_dir), **self.states[r.key]}
                for r in self.plan.runs
            ],
        }

    def save(self) -> None:
        from fedlt.runs import atomic_write_text, dumps

        atomic_write_text(self.plan.output_dir / STATUS_FILE, dumps(self.to_json()))


def _init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray; return True when this call started it (so we shut it down)."""
    import logging
    import warnings

    import ray

    if ray.is_initialized():
        return False
    # Ray 2.55 announces a future change of CUDA_VISIBLE_DEVICES handling on every init.
    warnings.filterwarnings(
        "ignore", message="Tip: In future versions of Ray", category=FutureWarning
    )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        # Joining a cluster: its resources are fixed; num_cpus / dashboard options are errors.
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    return True


PROGRESS_EVERY_S = 5.0
"""How often a sweep reads its running runs' progress (the tail of their metrics.jsonl)."""


def last_json_line(path: Path, chunk: int = 1 << 16) -> dict[str, Any] | None:
    """The last complete line of a JSON-lines file, parsed (None if the file is missing,
    empty, or its last complete line is not a JSON object). Reads from the end, doubling
    the window until it holds the whole line, so a long log costs one small read."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            window = chunk
            while True:
                start = max(0, size - window)
                fh.seek(start)
                data = fh.read(size - start)
                end = data.rfind(b"\n")  # an unterminated last line is still being written
                if end >= 0:
                    begin = data.rfind(b"\n", 0, end) + 1
                    if begin > 0 or start == 0:
                        record = json.loads(data[begin:end])
                        return record if isinstance(record, dict) else None
                elif start == 0:
                    return None
                window *= 2
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class RunPosition:
    """Where a running run is: ``done`` rounds of ``total`` (federated engines) or ``done``
    stream samples (stream engine, ``total`` None)."""

    done: int
    total: int | None

    def text(self) -> str:
        return f"round {self.done}/{self.total}" if self.total else f"{self.done:,} samples"


def run_position(run: PlannedRun) -> RunPosition | None:
    """A running run's position from the last line of its ``metrics.jsonl`` (its ``round``,
    or the stream engine's ``samples_seen``); None before its first line."""
    record = last_json_line(RunDirectory.at(run.run_dir).metrics_path)
    if not record:
        return None
    if isinstance(record.get("round"), int):
        return RunPosition(record["round"], run.config.federated.rounds)
    if isinstance(record.get("samples_seen"), int):
        return RunPosition(record["samples_seen"], None)
    return None


def _duration_text(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "<1 min"
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def note_running(
    outcome: SweepOutcome, in_flight: list[PlannedRun], look: bool, now: float | None = None
) -> list[str]:
    """Mark the submitted runs whose run directory has appeared as "running" and, when
    ``look``, note where each is: ``progress`` (``round 25/100``), and once a run has moved
    on since this sweep first saw it, ``eta_s``, the seconds left at the pace seen so far
    (rounds of a run take about the same time; a resumed run that goes back to its
    checkpoint's round is paced from there). ``now``: ``time.monotonic()`` by default.
    Rewrites ``sweep_status.json`` when anything changed; returns ``key progress`` per
    running run for the progress line."""
    now = time.monotonic() if now is None else now
    changed = False
    where = []
    for run in in_flight:
        state = outcome.states[run.key]
        if state["state"] == "pending" and RunDirectory.at(run.run_dir).status_path.exists():
            state["state"] = "running"
            changed = True
        position = run_position(run) if state["state"] == "running" and look else None
        if position is not None:
            t0, done0 = outcome.first_seen.setdefault(run.key, (now, position.done))
            if position.done < done0:  # a resumed run cut its metrics back to a checkpoint:
                t0, done0 = outcome.first_seen[run.key] = (now, position.done)  # pace anew
                changed |= state.pop("eta_s", None) is not None
            update: dict[str, Any] = {"progress": position.text()}
            if position.total and position.done > done0:
                pace = (now - t0) / (position.done - done0)
                update["eta_s"] = round(pace * (position.total - position.done))
            if any(state.get(k) != v for k, v in update.items()):
                state.update(update)
                changed = True
        if state.get("progress"):
            left = f", ~{_duration_text(state['eta_s'])} left" if "eta_s" in state else ""
            where.append(f"{run.key} {state['progress']}{left}")
    if changed:
        outcome.save()
    return where


def _progress_text(counts: dict[str, int], where: list[str] | None = None) -> str:
    running = f"[cyan]{counts['running']} running[/]"
    if where:
        shown = ", ".join(where[:3]) + (f", +{len(where) - 3}" if len(where) > 3 else "")
        running += f" ({shown})"
    return (
        f"[green]{counts['done']} done[/] · [red]{counts['failed']} failed[/] · "
        f"{running} · {counts['pending']} queued · [dim]{counts['skipped']} skipped[/]"
    )


def run_sweep(
    plan: SweepPlan,
    *,
    ray_address: str | None = None,
    max_parallel: int | None = None,
    progress: bool = True,
    runner: Runner | None = None,
    console: Any = None,
    backend: str = "tasks",
) -> SweepOutcome:
    """Execute a plan on Ray: skip finished runs, resume checkpointed ones, retry the rest.

    ``backend``: ``tasks`` runs every run as one Ray task (its clients in a loop inside it,
    many runs at once); ``flower`` runs one run after another, each spreading its clients
    over a pool of Flower SuperNodes on the local Ray or the cluster at ``ray_address`` — for
    runs too big for one worker."""
    if backend not in ("tasks", "flower"):
        raise ConfigError("--backend", f"expected 'tasks' or 'flower', got {backend!r}")
    from rich.console import Console

    console = console or Console()
    outcome = SweepOutcome(plan)
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    todo: list[PlannedRun] = []
    for run in plan.runs:
        changed = config_differences(run.run_dir, run.config) if run.run_dir.is_dir() else []
        if changed:
            console.print(
                f"[yellow]{run.key}[/]: the sweep now asks for different {', '.join(changed[:5])}"
                f"{' ...' if len(changed) > 5 else ''} than the existing run folder; keeping the "
                "folder's config (use a new label or output_dir to rerun)"
            )
        if is_finished(run.run_dir):
            outcome.states[run.key] = {"state": "skipped", "reason": "already complete"}
            if changed:
                outcome.states[run.key]["config_changed"] = changed
            continue
        if run.run_dir.exists() and not has_checkpoint(run.run_dir):
            moved = set_aside(run.run_dir)
            console.print(f"[yellow]{run.key}[/]: unfinished without checkpoint, moved to {moved}")
        outcome.states[run.key] = {"state": "pending"}
        todo.append(run)
    outcome.save()

    if todo and backend == "flower":
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        _run_in_turn(todo, outcome, address, runner, console)
    elif todo:
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        started = _init_ray(address, None)
        try:
            _submit_and_wait(plan, todo, outcome, max_parallel, progress, runner, console)
        except KeyboardInterrupt:
            outcome.save()
            console.print("interrupted: invoke the sweep again to resume the unfinished runs")
            raise
        finally:
            if started:
                import ray

                ray.shutdown()
    counts = outcome.counts
    outcome.save()
    console.print(
        f"sweep {plan.name}: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['skipped']} skipped (of {len(plan.runs)}) -> {plan.output_dir}"
    )
    return outcome


def _run_in_turn(
    todo: list[PlannedRun],
    outcome: SweepOutcome,
    address: str | None,
    runner: Runner | None,
    console: Any,
) -> None:
    """The flower backend: runs one after another in this process, clients on the pool."""
    for i, run in enumerate(todo, 1):
        console.print(f"[{i}/{len(todo)}] {run.key} (Flower pool)")
        outcome.states[run.key] = {"state": "running"}
        outcome.save()
        result = execute_run(
            run.config,
            str(run.run_dir),
            runner=runner,
            backend="flower",
            ray_address=address,
        )
        outcome.states[run.key] = result
        outcome.save()
        if result["state"] == "failed":
            console.print(f"[red]{run.key} failed[/]: {result['error']}", markup=True)


def _submit_and_wait(
    plan: SweepPlan,
    todo: list[PlannedRun],
    outcome: SweepOutcome,
    max_parallel: int | None,
    progress: bool,
    runner: Runner | None,
    console: Any,
) -> None:
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    remote = ray.remote(max_retries=0)(execute_run)
    cwd = os.getcwd()
    queue = list(todo)
    in_flight: dict[Any, PlannedRun] = {}
    limit = max_parallel if max_parallel and max_parallel > 0 else len(queue)
    total = len(plan.runs)
    columns = (
        TextColumn("[bold]{task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        task = bar.add_task(
            "sweep", total=total, name=plan.name, completed=outcome.count("skipped"), counts=""
        )

        last_look = [0.0]

        def refresh() -> None:
            look = time.monotonic() - last_look[0] >= PROGRESS_EVERY_S
            if look:
                last_look[0] = time.monotonic()
            where = note_running(outcome, list(in_flight.values()), look)
            counts = outcome.counts
            done = counts["done"] + counts["failed"] + counts["skipped"]
            bar.update(task, completed=done, counts=_progress_text(counts, where))

        while queue or in_flight:
            while queue and len(in_flight) < limit:
                run = queue.pop(0)
                ref = remote.options(num_cpus=run.num_cpus, num_gpus=run.num_gpus).remote(
                    run.config, str(run.run_dir), cwd, runner
                )
                in_flight[ref] = run
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                run = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker died (OOM, node lost): record it
                    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    if not is_finished(run.run_dir):
                        _write_failed_status(run.run_dir, message)
                    result = {"state": "failed", "error": message}
                outcome.states[run.key] = result
                if result["state"] == "failed":
                    console.print(f"[red]✗ {run.key}[/]: {result['error']}")
                else:  # also without the bar: one line per run is what a log needs
                    how = "resumed and finished" if result.get("resumed") else "finished"
                    console.print(f"[green]✓ {run.key}[/] {how} in {result['wall_time_s']:.1f} s")
                outcome.save()
            refresh()


def status_lines(plan: SweepPlan, now: float | None = None) -> list[str]:
    """``fedlt sweep SWEEP --status``: one line per planned run — its state from its own
    ``status.json`` (``done``, ``running``, ``failed``, ``interrupted``; else the sweep's
    ``sweep_status.json``: ``pending``, or ``not started``), its position read now from its
    ``metrics.jsonl`` and the time left the sweep last estimated — after a header saying how
    long ago ``sweep_status.json`` was written. A run whose ``status.json`` still says
    ``running`` while no process holds its lock (its driver was killed without a chance to
    record it) shows as ``interrupted``; one owned by another host stays ``running``.
    Starts nothing and writes nothing."""
    now = time.time() if now is None else now
    path = plan.output_dir / STATUS_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = {}
    if not isinstance(recorded, dict):  # not a file this module wrote: ignore it
        recorded = {}
    by_key = {
        f"{r.get('label')}/seed-{r.get('seed')}": r
        for r in recorded.get("runs", [])
        if isinstance(r, dict)
    }
    rows = []
    counts: dict[str, int] = {}
    for run in plan.runs:
        entry = by_key.get(run.key, {})
        own = RunDirectory.at(run.run_dir).status.get("status") if run.run_dir.exists() else None
        own = {"complete": "done", "unknown": None}.get(own, own)
        state = own or entry.get("state") or "not started"
        position = run_position(run) if run.run_dir.exists() else None
        where = position.text() if position else ""
        if own == "running" and RunLock(run.run_dir).owner_alive() is False:
            state = "interrupted"  # its writer is gone without recording it (SIGKILL, power)
            where += "; no process writes it: run the sweep again to resume"
        elif state == "running" and "eta_s" in entry:
            where += f", ~{_duration_text(entry['eta_s'])} left (estimated then)"
        if state == "failed" and entry.get("error"):
            where = (where + "; " if where else "") + str(entry["error"])
        counts[state] = counts.get(state, 0) + 1
        rows.append((run.key, state, where))
    if isinstance(recorded.get("time"), (int, float)):
        ago = f"{_duration_text(max(0.0, now - float(recorded['time'])))} ago"
        written = f"{STATUS_FILE} written {ago}"
    else:
        written = f"no {STATUS_FILE} in {plan.output_dir}: not started here"
    order = ["done", "running", "failed", "interrupted", "pending", "not started"]
    ranked = sorted(counts, key=lambda k: (order.index(k) if k in order else len(order), k))
    summary = ", ".join(f"{counts[state]} {state}" for state in ranked)
    width = max(len(key) for key, _, _ in rows)
    states = max(len(state) for _, state, _ in rows)
    lines = [f"sweep {plan.name}: {summary} (of {len(plan.runs)}) · {written}"]
    lines += [
        f"  {key:<{width}}  {state:<{states}}  {where}".rstrip() for key, state, where in rows
    ]
    return lines


def sweep_command(
    sweep_path: str,
    ray_address: str | None = None,
    out: str | None = None,
    max_parallel: int | None = None,
    progress: bool = True,
    *,
    runner: Runner | None = None,
    backend: str = "tasks",
) -> int:
    """CLI entry (``fedlt sweep``): plan, run, report (:func:`fedlt.api.sweep`); exit code 1
    if any run failed."""
    from fedlt.api import sweep

    result = sweep(
        sweep_path,
        out=out,
        backend=backend,  # type: ignore[arg-type]
        max_parallel=max_parallel,
        ray_address=ray_address,
        progress=progress,
        runner=runner,
    )
    return 1 if result.count("failed") else 0


# ``fedlt.sweep(...)`` (the API function) keeps working after this module is imported
from fedlt.api import make_callable  # noqa: E402

make_callable(__name__)

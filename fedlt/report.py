"""``fedlt report DIR...``: tables (markdown, CSV) and figures (PNG) from run directories.

Runs are found recursively (a folder holding both ``config.yaml`` and ``summary.json``) and
grouped: runs whose configs agree on every key that is not ignored are the seeds of one group.
By default :data:`DEFAULT_IGNORED` is ignored: the seed, names and folders, logging, resources,
where the data lives, and cadence/bookkeeping keys that do not change the final numbers
(``federated.eval_every``, ``federated.checkpoint_every``, ``federated.round_timeout``, ...);
``fedlt report --ignore KEY...`` ignores more keys and ``--group-by KEY...`` makes ignored keys
count again (keys are globs over the dotted config keys; a section name covers its keys). Each
group is a (method, setting) cell. The method is ``strategy.name``, plus any method key
that differs between groups of that same method (``fedprox (mu=0.1)``): the ``strategy.*``
keys, and for ``engine: federated_continual`` also the replay memory (``stream.memory_*``: a
federated strategy trains with or without replay, FedAvg + ER vs FedAvg + fine-tuning) and
the ``model`` (a prompt learner brings its ViT), :data:`METHOD_KEYS`. The setting is built
from the other config keys that differ between groups (``cifar10 IF=100 α=0.5``). Methods are
ordered as their strategies are registered (``strategies.federated.FEDERATED_STRATEGIES``,
``strategies.continual.CONTINUAL_LEARNERS``,
``strategies.federated_continual.stream_strategy_names()``), unregistered (plug-in) methods
last.

Numbers are mean ± std over seeds, in percent; std is the sample standard deviation
(``numpy.std(ddof=1)``), left blank for a single seed. Federated tables use each run's
headline modes (``summary["headline"]``, else the first mode in ``summary["final"]``):
generic top-1 on the balanced test set, personalised top-1 (unweighted mean over clients,
docs/federated.md, and the sample-weighted mean) and many/medium/few accuracy under both the
``count`` (>100 / 20-100 / <20 training images, Kang et al. 2020) and the ``mass`` (75% / 95%
of cumulative sample mass, FedLoGe code) split; a further table lists every generic and
personal mode. s/round is the mean of ``total_s`` (training, evaluation and checkpoints of a
round) in each run's ``timings.json``, then mean ± std over seeds. Continual tables give A_auc,
A_avg, A_last and F_last (docs/continual.md). Federated continual tables give the same for the
global model on the classes exposed to any client (generic) and personal A_auc / A_last (the
mean over clients, each on its own exposed classes), with s/round, then the federated tables
by class frequency and by mode of the last evaluation. Anything missing is skipped with a
note, never a crash. Figures are drawn by :mod:`fedlt.plots`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.errors import FedltError, RunError
from fedlt.registry import did_you_mean
from fedlt.runs import CONFIG_NAME, SUMMARY_NAME, RunDirectory

FORMATS = ("md", "csv", "png")
ENGINES = ("federated", "continual", "federated_continual")
"""The engines the report knows, in the order of its sections."""
FEDERATED_ENGINES = ("federated", "federated_continual")
"""Engines with clients and rounds: headline modes, personal accuracy, ``timings.json``,
``partition.json`` and curves over rounds."""
DEFAULT_IGNORED: tuple[str, ...] = (
    # identity and bookkeeping: which seed, what the run and its folder are called
    "seed",
    "name",
    "output_dir",
    # how and where a run executes, not what it computes
    "logging",
    "resources",
    "data.root",
    "data.cache_dir",
    "data.download",
    # cadence: when a run evaluates, checkpoints or gives up; the final numbers stay the same
    "federated.eval_every",
    "federated.checkpoint_every",
    "federated.round_timeout",
    "federated.eval_batch_size",
    "federated.max_failure_fraction",
    "stream.checkpoint_every",
    "stream.eval_batch_size",
)
"""Config keys (globs; a section name covers its keys) that do not separate groups by default.
``stream.eval_period`` is *not* among them: A_auc averages over the periodic evaluations."""
BANDS = ("many", "medium", "few")
SPLITS = ("count", "mass")
SIDES = ("generic", "personal")
CONTINUAL_METRICS = ("A_auc", "A_avg", "A_last", "F_last")
STREAM_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "continual": tuple((m, m) for m in CONTINUAL_METRICS),
    "federated_continual": (
        *((f"generic {m}", m) for m in CONTINUAL_METRICS),
        *((f"personal {m}", f"personal.{m}") for m in ("A_auc", "A_avg", "A_last")),
    ),
}
"""(column, ``summary["final"]`` key) of the online-accuracy metrics of each stream engine
(all of them go to the CSV)."""
STREAM_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "continual": CONTINUAL_METRICS,
    "federated_continual": (
        *(f"generic {m}" for m in CONTINUAL_METRICS),
        "personal A_auc",
        "personal A_last",
    ),
}
"""The columns of :data:`STREAM_COLUMNS` that the markdown tables show."""
METHOD_KEYS: dict[str, dict[str, str]] = {
    "federated_continual": {"stream.memory_*": "replay memory", "model": "model"},
}
"""Per engine, config keys (globs; a section name covers its keys) that belong to the method,
not to the setting, beside ``strategy.*`` (pattern -> name in the table notes)."""
STREAM_INTROS = {
    "continual": ("Continual: online accuracy (%)", ""),
    "federated_continual": (
        "Federated continual: online accuracy (%)",
        "generic = the global model on the classes exposed to any client so far; personal = "
        "unweighted mean over clients, each on the classes exposed to it. A_auc = mean over "
        "the evaluations, A_avg = mean over the phase ends, A_last = the last evaluation, "
        "F_last = forgetting of the classes between the phase ends and the last evaluation "
        "(docs/federated_continual.md). Mean ± sample std over seeds. "
        "s/round = mean seconds per round (training, evaluation, checkpoints; `timings.json`). "
        "The tables by class frequency and by mode are those of the last evaluation.",
    ),
}
"""(section title, explanation) of each stream engine's section."""
LAST_EVALUATION = " at the last evaluation"
SETTING_NAMES = {
    "data.source": "",
    "data.longtail.imbalance_factor": "IF",
    "data.partition.alpha": "α",
    "data.partition.num_clients": "clients",
    "model.name": "",
    "federated.rounds": "rounds",
    "stream.scenario": "",
}
S_PER_ROUND = "s/round"


# -- loading --------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One finished run: its folder, flattened config and summary."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]

    @property
    def engine(self) -> str:
        return str(self.summary.get("engine") or self.config.get("engine") or "federated")

    @property
    def seed(self) -> Any:
        return self.summary.get("seed", self.config.get("seed"))

    @property
    def run(self) -> RunDirectory:
        """The run folder, for reading its files."""
        return RunDirectory.at(self.path)

    def metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (a torn last line is dropped)."""
        return self.run.read_metrics(skip_torn=True)

    def seconds_per_round(self) -> float | None:
        """Mean ``total_s`` over the rounds of ``timings.json``; None without one."""
        totals = [
            float(t["total_s"])
            for t in self.run.read_timings()
            if isinstance(t.get("total_s"), (int, float))
        ]
        return float(np.mean(totals)) if totals else None


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _load_run(folder: Path, notes: list[str]) -> RunRecord | None:
    run = RunDirectory.at(folder)
    try:
        config = run.read_config_mapping()
        summary = run.read_summary()
    except (OSError, FedltError, json.JSONDecodeError) as exc:
        notes.append(f"skipped {folder}: unreadable {CONFIG_NAME}/{SUMMARY_NAME} ({exc})")
        return None
    if not isinstance(summary, dict):
        notes.append(f"skipped {folder}: {SUMMARY_NAME} is not a mapping")
        return None
    return RunRecord(folder, flatten(config), summary)


def find_runs(paths: Sequence[str | Path]) -> tuple[list[RunRecord], list[str]]:
    """Every run folder under ``paths`` (config.yaml + summary.json), and notes on the rest."""
    notes: list[str] = []
    folders: set[Path] = set()
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            notes.append(f"{root}: no such file or folder")
            continue
        for config_file in [root / CONFIG_NAME, *root.rglob(CONFIG_NAME)]:
            run = RunDirectory.at(config_file.parent)
            if not run.has_config or run.path in folders:
                continue
            if run.has_summary:
                folders.add(run.path)
            else:
                status = run.status.get("status", "unknown")
                notes.append(f"skipped {run.path}: no {SUMMARY_NAME} (status: {status})")
    runs = [r for f in sorted(folders) if (r := _load_run(f, notes)) is not None]
    return runs, sorted(set(notes))


# -- grouping -------------------------------------------------------------------------------
def _matches(key: str, pattern: str) -> bool:
    """``pattern`` is a glob over the dotted key, or a section name covering its keys."""
    return fnmatchcase(key, pattern) or key.startswith(pattern.rstrip(".") + ".")


@dataclass(frozen=True)
class Grouping:
    """Which config keys separate groups: every key but ``defaults`` and ``ignore``, except
    that a key matching ``group_by`` always counts."""

    group_by: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    defaults: tuple[str, ...] = DEFAULT_IGNORED

    @classmethod
    def from_options(cls, group_by: Iterable[str] = (), ignore: Iterable[str] = ()) -> Grouping:
        """The defaults, changed by ``fedlt report --group-by`` / ``--ignore``."""
        return cls(tuple(group_by), tuple(ignore))

    def ignores(self, key: str) -> bool:
        if any(_matches(key, p) for p in self.group_by):
            return False
        return any(_matches(key, p) for p in (*self.defaults, *self.ignore))

    def unmatched(self, keys: Iterable[str]) -> list[str]:
        """Notes on the user's patterns (not the defaults) that match none of ``keys``."""
        keys = sorted(set(keys))
        user = [("--group-by", p) for p in self.group_by] + [("--ignore", p) for p in self.ignore]
        return [
            f"{flag} {pattern}: no config key of these runs matches{did_you_mean(pattern, keys)}"
            for flag, pattern in user
            if not any(_matches(k, pattern) for k in keys)
        ]


def method_order(engine: str) -> list[str]:
    """Strategy names in registration order (the tables' method order) for ``engine``."""
    try:
        if engine == "continual":
            from strategies.continual import CONTINUAL_LEARNERS as registry
        elif engine == "federated_continual":
            from strategies.federated_continual import stream_strategy_names

            return stream_strategy_names()
        else:
            from strategies.federated import FEDERATED_STRATEGIES as registry
    except ImportError:  # pragma: no cover - strategies ship with fedlt
        return []
    return registry.in_order()


def is_method_key(engine: str, key: str) -> bool:
    """Whether ``key`` belongs to the method (``strategy.*``, :data:`METHOD_KEYS`) rather
    than to the setting."""
    patterns = ("strategy", *METHOD_KEYS.get(engine, {}))
    return any(_matches(key, p) for p in patterns)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _fmt_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else _canon(value)


def _sort_value(value: Any) -> tuple[int, float, str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, _canon(value))


@dataclass
class Group:
    """The seeds of one (method, setting) cell."""

    engine: str
    method: str
    setting: str
    runs: list[RunRecord] = field(default_factory=list)
    method_rank: tuple[int, str] = (0, "")
    setting_rank: tuple[Any, ...] = ()
    traits: dict[str, Any] = field(default_factory=dict)
    """Values of the method keys outside ``strategy.*`` that differ between groups
    (:data:`METHOD_KEYS`), whether or not the method label shows them."""

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config


def _short(key: str) -> str:
    return SETTING_NAMES.get(key, key.rsplit(".", 1)[-1])


def _describe(config: dict[str, Any], keys: list[str], sep: str = " ") -> str:
    """``name=value`` of each key that is set (the value alone for unnamed keys)."""
    parts = []
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        name = _short(key)
        parts.append(_fmt_value(value) if not name else f"{name}={_fmt_value(value)}")
    return sep.join(parts)


def _default_setting(config: dict[str, Any]) -> str:
    """Dataset, imbalance factor and Dirichlet α of a lone setting."""
    keys = ["data.source"]
    if config.get("data.longtail.profile", "none") != "none":
        keys.append("data.longtail.imbalance_factor")
    if config.get("engine", "federated") in FEDERATED_ENGINES and (
        config.get("data.partition.name") == "dirichlet"
    ):
        keys.append("data.partition.alpha")
    return _describe(config, keys) or "default"


def _differing(configs: list[dict[str, Any]], grouping: Grouping) -> list[str]:
    """The counted config keys whose value is not the same in every config."""
    keys = sorted({k for c in configs for k in c if not grouping.ignores(k)})
    return [k for k in keys if len({_canon(c.get(k)) for c in configs}) > 1]


def _method_label(
    config: dict[str, Any], configs: list[dict[str, Any]], method_keys: list[str]
) -> str:
    """``strategy.name`` plus the method keys that differ between its groups."""
    name = str(config.get("strategy.name", "?"))
    same_method = [c for c in configs if c.get("strategy.name") == name]
    option_keys = [
        k
        for k in method_keys
        if k != "strategy.name"
        and config.get(k) not in ({}, [])  # options={} beside options.mu=0.1: the defaults
        and len({_canon(c.get(k)) for c in same_method}) > 1
    ]
    options = _describe(config, option_keys, sep=", ")
    return f"{name} ({options})" if options else name


def _engine_groups(engine: str, members: list[list[RunRecord]], grouping: Grouping) -> list[Group]:
    configs = [rs[0].config for rs in members]
    differing = _differing(configs, grouping)
    method_keys = [k for k in differing if is_method_key(engine, k)]
    trait_keys = [k for k in method_keys if not k.startswith("strategy.")]
    setting_keys = [k for k in differing if k not in method_keys]
    setting_keys.sort(key=lambda k: list(SETTING_NAMES).index(k) if k in SETTING_NAMES else 99)
    order = method_order(engine)
    groups = []
    for runs_here in members:
        config = runs_here[0].config
        name = str(config.get("strategy.name", "?"))
        method = _method_label(config, configs, method_keys)
        setting = _describe(config, setting_keys) if setting_keys else ""
        groups.append(
            Group(
                engine=engine,
                method=method,
                setting=setting or _default_setting(config),
                runs=sorted(runs_here, key=lambda r: (_sort_value(r.seed), str(r.path))),
                method_rank=(order.index(name) if name in order else len(order), method),
                setting_rank=tuple(_sort_value(config.get(k)) for k in setting_keys),
                traits={k: config.get(k) for k in trait_keys},
            )
        )
    return groups


def group_runs(runs: Iterable[RunRecord], grouping: Grouping | None = None) -> list[Group]:
    """Group runs into (engine, method, setting) cells, ordered like the papers' tables."""
    grouping = grouping or Grouping()
    by_key: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        identity = _canon({k: v for k, v in run.config.items() if not grouping.ignores(k)})
        by_key.setdefault((run.engine, identity), []).append(run)
    groups: list[Group] = []
    for engine in sorted({e for e, _ in by_key}):
        members = [rs for (e, _), rs in by_key.items() if e == engine]
        groups += _engine_groups(engine, members, grouping)
    groups.sort(key=lambda g: (g.engine, g.setting_rank, g.setting, g.method_rank))
    return groups


def grouping_notes(groups: Iterable[Group]) -> list[str]:
    """A note for each group holding two runs of the same seed (they differ only in ignored
    keys, so they count as two seeds)."""
    notes = []
    for g in groups:
        seeds = [_canon(r.seed) for r in g.runs]
        for seed in sorted({s for s in seeds if seeds.count(s) > 1}):
            folders = ", ".join(str(r.path) for r in g.runs if _canon(r.seed) == seed)
            notes.append(
                f"{g.engine} {g.method} / {g.setting}: {seeds.count(seed)} runs with seed "
                f"{seed} ({folders}) differ only in ignored keys; each counts as a seed "
                "(--group-by KEY separates them)"
            )
    return notes


# -- statistics -----------------------------------------------------------------------------
@dataclass
class Stat:
    """Mean and sample std (ddof=1; None for one value) of a metric over seeds, in %."""

    mean: float
    std: float | None
    n: int

    def text(self) -> str:
        if self.std is None:
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} ± {self.std:.2f}"


def stat(values: Sequence[float | None], scale: float = 100.0) -> Stat | None:
    """Mean ± sample std of the finite ``values`` times ``scale``; None if there are none."""
    clean = [float(v) * scale for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return None
    arr = np.asarray(clean, dtype=float)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else None
    return Stat(float(np.mean(arr)), std, int(arr.size))


def seconds_per_round(group: Group) -> Stat | None:
    """Mean ± std over seeds of each run's mean seconds per round (``timings.json``)."""
    return stat([r.seconds_per_round() for r in group.runs], scale=1.0)


def headline_modes(summary: dict[str, Any]) -> tuple[str | None, str | None]:
    """(generic mode, personal mode): ``summary["headline"]``, else first in ``final``."""
    headline = summary.get("headline") or {}
    final = summary.get("final") or {}
    found: dict[str, str | None] = {"generic": None, "personal": None}
    for key in final:
        match = re.fullmatch(r"(generic|personal)\.([^.]+)\.top1(_mean)?", key)
        if match and found[match.group(1)] is None:
            found[match.group(1)] = match.group(2)
    return (
        headline.get("generic") or found["generic"],
        headline.get("personal") or found["personal"],
    )


def _top1(side: str) -> str:
    return "top1" if side == "generic" else "top1_mean"


def run_modes(summary: dict[str, Any], side: str) -> list[str]:
    """Every ``side`` (generic / personal) mode in ``summary["final"]``, headline first."""
    pattern = re.compile(rf"{side}\.([^.]+)\.{_top1(side)}")
    modes = []
    for key in summary.get("final") or {}:
        match = pattern.fullmatch(key)
        if match and match.group(1) not in modes:
            modes.append(match.group(1))
    head = headline_modes(summary)[SIDES.index(side)]
    return sorted(modes, key=lambda m: m != head)


def federated_columns() -> list[tuple[str, str]]:
    """(column name, key template with {g}/{p} for the modes) of the federated tables."""
    cols = [("generic top-1", "generic.{g}.top1")]
    cols += [
        (f"generic {band} ({split})", f"generic.{{g}}.{band}.{split}")
        for split in SPLITS
        for band in BANDS
    ]
    cols += [
        ("personal top-1", "personal.{p}.top1_mean"),
        ("personal top-1 (weighted)", "personal.{p}.top1_weighted"),
    ]
    cols += [
        (f"personal {band} ({split})", f"personal.{{p}}.{band}.{split}")
        for split in SPLITS
        for band in BANDS
    ]
    return cols


def mode_columns(side: str) -> list[tuple[str, str]]:
    """(column name, key template with {m} for the mode) of the all-modes table."""
    cols = [("top-1", f"{side}.{{m}}.{_top1(side)}")]
    cols += [
        (f"{band} ({split})", f"{side}.{{m}}.{band}.{split}") for split in SPLITS for band in BANDS
    ]
    return cols


def group_stats(group: Group) -> tuple[dict[str, Stat | None], dict[str, str]]:
    """Per-column statistics of a group, and the headline modes used (engines with clients).

    Stream engines (continual, federated continual) have their :data:`STREAM_COLUMNS`;
    engines with clients (federated, federated continual) the :func:`federated_columns` of
    their last evaluation and an ``s/round`` entry."""
    stats: dict[str, Stat | None] = {}
    modes: dict[str, str] = {}
    if group.engine != "continual":
        stats, modes = _federated_stats(group)
    for column, key in STREAM_COLUMNS.get(group.engine, ()):
        stats[column] = stat([(r.summary.get("final") or {}).get(key) for r in group.runs])
    return stats, modes


def _federated_stats(group: Group) -> tuple[dict[str, Stat | None], dict[str, str]]:
    """The federated columns (headline modes of each run) and s/round of a group."""
    values: dict[str, list[Any]] = {}
    modes: dict[str, set[str]] = {"generic": set(), "personal": set()}
    for run in group.runs:
        generic, personal = headline_modes(run.summary)
        modes["generic"].add(str(generic))
        modes["personal"].add(str(personal))
        final = run.summary.get("final") or {}
        for column, template in federated_columns():
            values.setdefault(column, []).append(final.get(template.format(g=generic, p=personal)))
    stats = {column: stat(vals) for column, vals in values.items()}
    stats[S_PER_ROUND] = seconds_per_round(group)
    return stats, {k: "/".join(sorted(v)) for k, v in modes.items()}


@dataclass
class ModeRow:
    """One (group, side, mode) line of the all-modes table."""

    group: Group
    side: str
    mode: str
    headline: bool
    seeds: int
    stats: dict[str, Stat | None]


def mode_rows(group: Group) -> list[ModeRow]:
    """Every generic, then every personal mode of a federated group, headline modes first."""
    rows = []
    for side in SIDES:
        modes: list[str] = []
        heads = {headline_modes(r.summary)[SIDES.index(side)] for r in group.runs}
        for run in group.runs:
            modes += [m for m in run_modes(run.summary, side) if m not in modes]
        modes.sort(key=lambda m: m not in heads)
        for mode in modes:
            finals = [r.summary.get("final") or {} for r in group.runs]
            stats = {
                column: stat([f.get(template.format(m=mode)) for f in finals])
                for column, template in mode_columns(side)
            }
            top1 = f"{side}.{mode}.{_top1(side)}"
            seeds = sum(1 for f in finals if top1 in f)
            rows.append(ModeRow(group, side, mode, mode in heads, seeds, stats))
    return rows


# -- tables ---------------------------------------------------------------------------------
def _cell(s: Stat | None) -> str:
    return s.text() if s is not None else "–"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, one line per row (cells never hold a newline or a ``|``)."""

    def line(cells: list[str]) -> str:
        clean = [" ".join(str(c).split()).replace("|", "\\|") for c in cells]
        return "| " + " | ".join(clean) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def _ordered(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _by_method(groups: Iterable[Group]) -> list[Group]:
    return sorted(groups, key=lambda g: g.method_rank)


def _main_table(groups: list[Group], stats: dict[tuple[str, str], Any]) -> str:
    """Methods × settings: generic and personal top-1, and s/round where any run timed."""
    methods = _ordered(g.method for g in _by_method(groups))
    settings = _ordered(g.setting for g in groups)
    timed = any(cell[0][S_PER_ROUND] is not None for cell in stats.values())
    columns = ["generic top-1", "personal top-1"] + ([S_PER_ROUND] if timed else [])
    labels = {"generic top-1": "generic", "personal top-1": "personal", S_PER_ROUND: S_PER_ROUND}
    header = ["Method"] + [f"{s} {labels[c]}" for s in settings for c in columns]
    rows = []
    for method in methods:
        row = [method]
        for setting in settings:
            cell = stats.get((method, setting))
            row += [_cell(cell[0][c]) if cell else "–" for c in columns]
        rows.append(row)
    return _md_table(header, rows)


def _detail_tables(
    setting: str, groups: list[Group], stats: dict[tuple[str, str], Any], when: str = ""
) -> str:
    """The generic and the personal table of one setting, by class frequency (``when``:
    appended to the headings)."""
    parts = []
    for side in SIDES:
        columns = [c for c, _ in federated_columns() if c.startswith(side)]
        rows = []
        for g in _by_method(groups):
            cell_stats, modes = stats[(g.method, g.setting)]
            rows.append(
                [g.method, modes.get(side, "?"), str(len(g.runs))]
                + [_cell(cell_stats[c]) for c in columns]
            )
        header = ["Method", "mode", "seeds"] + [c.removeprefix(f"{side} ") for c in columns]
        parts += [
            f"### {setting}: {side} accuracy (%) by class frequency{when}",
            "",
            _md_table(header, rows),
            "",
        ]
    return "\n".join(parts).rstrip("\n")


def modes_markdown(setting: str, groups: list[Group], when: str = "") -> str:
    """The all-modes table of one setting: every generic and personal mode of every method
    (``when``: appended to the heading)."""
    rows = []
    for g in _by_method(groups):
        for r in mode_rows(g):
            mode = f"{r.mode} *" if r.headline else r.mode
            rows.append(
                [g.method, r.side, mode, str(r.seeds)]
                + [_cell(r.stats[c]) for c, _ in mode_columns(r.side)]
            )
    header = ["Method", "evaluation", "mode", "seeds"] + [c for c, _ in mode_columns("generic")]
    return "\n".join(
        [
            f"### {setting}: every mode (%){when}",
            "",
            "`*` = the headline mode used above; personal top-1 is the unweighted client mean.",
            "",
            _md_table(header, rows),
        ]
    )


def federated_markdown(groups: list[Group]) -> str:
    """Main table (methods × settings, generic / personal top-1, s/round), then per setting
    the generic and personal tables by class frequency and the all-modes table."""
    stats = {(g.method, g.setting): group_stats(g) for g in groups}
    parts = [
        "## Federated: top-1 accuracy (%)",
        "",
        "generic = balanced global test set; personal = unweighted mean over clients of "
        "local test top-1. Mean ± sample std over seeds. s/round = mean seconds per round "
        "(training, evaluation, checkpoints; `timings.json`).",
        "",
        _main_table(groups, stats),
        "",
        "By class frequency — count: many >100, medium 20–100, few <20 global training "
        "images (Kang et al. 2020); mass: classes sorted by count, many = the first 75% of the "
        "training samples, medium up to 95%, few the rest (FedLoGe code).",
    ]
    for setting in _ordered(g.setting for g in groups):
        in_setting = [g for g in groups if g.setting == setting]
        parts += ["", _detail_tables(setting, in_setting, stats)]
        parts += ["", modes_markdown(setting, in_setting)]
    return "\n".join(parts)


def _arrow(column: str) -> str:
    return "↓" if column.rsplit(" ", 1)[-1].startswith("F_") else "↑"


def _stream_table(groups: list[Group], stats: dict[tuple[str, str], Any]) -> str:
    """One setting of a stream engine: :data:`STREAM_TABLE_COLUMNS` per method, and s/round
    where any run timed its rounds."""
    columns = list(STREAM_TABLE_COLUMNS[groups[0].engine])
    if any(stats[(g.method, g.setting)][0].get(S_PER_ROUND) is not None for g in groups):
        columns.append(S_PER_ROUND)
    rows = []
    for g in _by_method(groups):
        cell_stats = stats[(g.method, g.setting)][0]
        rows.append([g.method, str(len(g.runs))] + [_cell(cell_stats.get(c)) for c in columns])
    header = ["Method", "seeds"] + [c if c == S_PER_ROUND else f"{c} {_arrow(c)}" for c in columns]
    return _md_table(header, rows)


def _traits_note(groups: list[Group]) -> str:
    """Which rows have which value of the method keys outside ``strategy.*`` that differ
    between them (``replay memory: memory_size=0 (fedavg, mvp); memory_size=60 (fedloge)``),
    or "" when none does."""
    engine = groups[0].engine
    parts = []
    for pattern, name in METHOD_KEYS.get(engine, {}).items():
        keys = sorted({k for g in groups for k in g.traits if _matches(k, pattern)})
        described: dict[str, list[str]] = {}
        for g in _by_method(groups):
            traits = {k: v for k, v in g.traits.items() if v not in ({}, [])}
            described.setdefault(_describe(traits, keys) or "–", []).append(g.method)
        if len(described) > 1:
            values = "; ".join(f"{d} ({', '.join(m)})" for d, m in described.items())
            parts.append(f"{name}: {values}")
    return f"Methods differ also in {'. '.join(parts)}." if parts else ""


def stream_markdown(groups: list[Group]) -> str:
    """The section of a stream engine (all ``groups`` of one engine): per setting, a table of
    the online metrics per method (continual: A_auc / A_avg / A_last / F_last; federated
    continual: generic A_auc / A_avg / A_last / F_last, personal A_auc / A_last, s/round),
    a note on the method keys that differ between its rows; federated continual settings go
    on with the tables by class frequency and by mode of the last evaluation."""
    engine = groups[0].engine
    title, intro = STREAM_INTROS.get(engine, (f"{engine}: online accuracy (%)", ""))
    stats = {(g.method, g.setting): group_stats(g) for g in groups}
    parts = [f"## {title}", ""] + ([intro, ""] if intro else [])
    for setting in _ordered(g.setting for g in groups):
        in_setting = [g for g in groups if g.setting == setting]
        parts += [f"### {setting}", "", _stream_table(in_setting, stats), ""]
        note = _traits_note(in_setting)
        if note:
            parts += [note, ""]
        if engine in FEDERATED_ENGINES:
            parts += [_detail_tables(setting, in_setting, stats, LAST_EVALUATION), ""]
            parts += [modes_markdown(setting, in_setting, LAST_EVALUATION), ""]
    return "\n".join(parts)


def _csv_slug(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", column.replace("/", " per ")).strip("_")


def _stat_cells(s: Stat | None) -> list[str]:
    return [
        "" if s is None else f"{s.mean:.4f}",
        "" if s is None or s.std is None else f"{s.std:.4f}",
    ]


def csv_columns(engine: str) -> list[str]:
    """The statistics columns of ``engine``'s CSV: its :data:`STREAM_COLUMNS` (stream
    engines), then the federated columns and s/round (engines with clients)."""
    columns = [c for c, _ in STREAM_COLUMNS.get(engine, ())]
    if engine != "continual":
        columns += [c for c, _ in federated_columns()] + [S_PER_ROUND]
    return columns


def write_csv(groups: list[Group], path: Path) -> None:
    """One row per (method, setting) of one engine: seeds, modes (engines with clients),
    then <column>_mean / <column>_std in % (``s_per_round_mean`` / ``_std`` in seconds)."""
    if not groups:
        return
    federated = groups[0].engine != "continual"
    columns = csv_columns(groups[0].engine)
    header = ["method", "setting", "seeds"]
    if federated:
        header += ["generic_mode", "personal_mode"]
    for column in columns:
        header += [f"{_csv_slug(column)}_mean", f"{_csv_slug(column)}_std"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for g in groups:
            cell_stats, modes = group_stats(g)
            row: list[Any] = [g.method, g.setting, len(g.runs)]
            if federated:
                row += [modes.get("generic", ""), modes.get("personal", "")]
            for column in columns:
                row += _stat_cells(cell_stats.get(column))
            writer.writerow(row)


def write_modes_csv(groups: list[Group], path: Path) -> None:
    """One row per (method, setting, evaluation, mode) of groups with clients, in %."""
    columns = [c for c, _ in mode_columns("generic")]
    header = ["method", "setting", "evaluation", "mode", "headline", "seeds"]
    header += [f"{_csv_slug(c)}_{part}" for c in columns for part in ("mean", "std")]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for g in groups:
            for r in mode_rows(g):
                row: list[Any] = [g.method, g.setting, r.side, r.mode, int(r.headline), r.seeds]
                for column in columns:
                    row += _stat_cells(r.stats[column])
                writer.writerow(row)


# -- figures --------------------------------------------------------------------------------
def _slug(text: str) -> str:
    text = text.replace("α", "alpha")
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_") or "default"


def _figure_path(folder: Path, kind: str, engine: str, setting: str) -> Path:
    """``<kind>_<setting>.png``; curves, and any figure of an engine other than federated and
    continual, also name the engine (a federated continual setting reads like a federated
    one)."""
    named = kind == "curves" or engine not in ("federated", "continual")
    return folder / f"{kind}_{engine + '_' if named else ''}{_slug(setting)}.png"


def _phase_ends(groups: list[Group]) -> list[float]:
    """Rounds flagged ``phase_end`` in the metrics.jsonl of every run of ``groups``."""
    found: set[float] | None = None
    for run in (r for g in groups for r in g.runs):
        rounds = {
            float(m["round"])
            for m in run.metrics()
            if m.get("phase_end") is True and isinstance(m.get("round"), (int, float))
        }
        found = rounds if found is None else found & rounds
    return sorted(found or ())


def _curve(group: Group, x_key: str, y_key_of: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x values present in every seed's metrics.jsonl, and the mean / std of y there."""
    per_seed: list[dict[float, float]] = []
    for run in group.runs:
        y_key = y_key_of(run)
        points = {}
        for record in run.metrics():
            if record.get("kind") not in (None, "periodic"):
                continue
            x, y = record.get(x_key), record.get(y_key) if y_key else None
            if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                points[float(x)] = float(y) * 100.0
        if points:
            per_seed.append(points)
    if not per_seed:
        return np.array([]), np.array([]), np.array([])
    xs = sorted(set.intersection(*(set(p) for p in per_seed)))
    ys = np.array([[p[x] for x in xs] for p in per_seed])
    return np.array(xs), ys.mean(axis=0), ys.std(axis=0)


def _curve_panels(engine: str) -> tuple[list[tuple[str, Any]], str]:
    """(y label, run -> metrics key) per panel, and the x key, of ``engine``'s curves."""
    if engine in FEDERATED_ENGINES:
        panels = [
            ("generic top-1 (%)", lambda r: f"generic.{headline_modes(r.summary)[0]}.top1"),
            ("personal top-1 (%)", lambda r: f"personal.{headline_modes(r.summary)[1]}.top1_mean"),
        ]
        return panels, "round"
    # each seed has its own stream, so the exact samples_seen values differ; the eval period
    # crossed (eval_point) is common to all seeds
    return [("accuracy (%)", lambda r: "acc")], "eval_point"


def curve_figure(groups: list[Group]) -> Any:
    """The curves figure of one setting's groups (all of one engine), or None if empty."""
    from fedlt.plots.report import Curve, Panel, curves_figure

    engine = groups[0].engine
    specs, x_key = _curve_panels(engine)
    # the task boundaries of a federated continual stream, shared by its seeds and methods
    marks = _phase_ends(groups) if engine == "federated_continual" else []
    panels = []
    for ylabel, y_key_of in specs:
        panel = Panel(ylabel, marks=marks, marks_label="phase end" if marks else "")
        for g in _by_method(groups):
            xs, mean, std = _curve(g, x_key, y_key_of)
            if xs.size:
                panel.curves.append(Curve(g.method, xs, mean, std))
        panels.append(panel)
    if not any(p.curves for p in panels):
        return None
    return curves_figure(panels, x_key.replace("_", " "), f"{engine}: {groups[0].setting}")


def plot_curves(groups: list[Group], folder: Path, notes: list[str]) -> list[Path]:
    """Accuracy vs round (federated, federated continual) / evaluation point (continual),
    mean over seeds ± std."""
    from fedlt.plots.base import save_figure

    written = []
    for setting in _ordered(g.setting for g in groups):
        in_setting = [g for g in groups if g.setting == setting]
        fig = curve_figure(in_setting)
        if fig is None:
            notes.append(f"no accuracy curves for {setting}: no metrics.jsonl with accuracy")
            continue
        path = _figure_path(folder, "curves", in_setting[0].engine, setting)
        written.append(save_figure(fig, path))
    return written


def _per_class_bars(groups: list[Group]) -> dict[str, dict[str, np.ndarray]]:
    """kind (generic / personal / continual key) -> method -> mean per-class top-1 (%)."""
    bars: dict[str, dict[str, np.ndarray]] = {}
    for g in _by_method(groups):
        lists: dict[str, list[list[float]]] = {}
        for run in g.runs:
            generic, personal = headline_modes(run.summary)
            wanted = {
                "generic": "generic",
                f"generic.{generic}": "generic",
                "personal": "personal",
                f"personal.{personal}": "personal",
            }
            for kind, values in (run.summary.get("per_class") or {}).items():
                panel = wanted.get(kind, kind if g.engine == "continual" else None)
                if panel and isinstance(values, list) and values:
                    lists.setdefault(panel, []).append(values)
        for kind, rows in lists.items():
            if len({len(r) for r in rows}) == 1:
                bars.setdefault(kind, {})[g.method] = np.asarray(rows, float).mean(0) * 100
    return bars


def plot_per_class(groups: list[Group], folder: Path, notes: list[str]) -> list[Path]:
    """Per-class accuracy bars (``summary["per_class"]``), mean over seeds, one panel per kind."""
    from fedlt.plots.base import save_figure
    from fedlt.plots.report import per_class_figure

    written = []
    for setting in _ordered(g.setting for g in groups):
        bars = _per_class_bars([g for g in groups if g.setting == setting])
        if not bars:
            notes.append(f"no per-class figure for {setting}: no summary has per_class")
            continue
        path = _figure_path(folder, "per_class", groups[0].engine, setting)
        written.append(save_figure(per_class_figure(bars, setting), path))
    return written


def _partition_counts(runs: list[RunRecord]) -> tuple[np.ndarray, RunRecord] | None:
    """Client × class counts of the first run (by seed) with a readable partition.json."""
    for run in sorted(runs, key=lambda r: (_sort_value(r.seed), str(r.path))):
        data = run.run.read_partition()
        try:
            counts = np.asarray((data or {})["client_class_counts"], dtype=float)
        except (KeyError, TypeError, ValueError):
            continue
        if counts.ndim == 2 and counts.size:
            return counts, run
    return None


def plot_partitions(groups: list[Group], folder: Path, notes: list[str]) -> list[Path]:
    """Partition heat map (client × class training counts, ``partition.json``) per setting."""
    from fedlt.plots.heatmap import save_heatmap

    written = []
    for setting in _ordered(g.setting for g in groups if g.engine in FEDERATED_ENGINES):
        in_setting = [g for g in groups if g.setting == setting]
        found = _partition_counts([r for g in in_setting for r in g.runs])
        if found is None:
            notes.append(f"no partition heat map for {setting}: no run has partition.json")
            continue
        counts, source = found
        path = _figure_path(folder, "partition", in_setting[0].engine, setting)
        written.append(save_heatmap(path, counts, f"{setting} (seed {source.seed})", dpi=110))
    return written


def _figures(by_engine: dict[str, list[Group]], out: Path, notes: list[str]) -> list[Path]:
    """Every figure into ``out/figures``; a failing figure is a note, never an error."""
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures: list[Path] = []
    for plot in (plot_curves, plot_per_class, plot_partitions):
        for engine, engine_groups in by_engine.items():
            if engine_groups and (plot is not plot_partitions or engine in FEDERATED_ENGINES):
                try:
                    figures += plot(engine_groups, fig_dir, notes)
                except Exception as exc:  # a figure must never sink the tables
                    notes.append(f"{plot.__name__} failed: {type(exc).__name__}: {exc}")
    return figures


# -- command --------------------------------------------------------------------------------
def _no_runs_error(paths: Sequence[str | Path], notes: list[str]) -> RunError:
    shown = ", ".join(str(p) for p in paths) or "(no paths given)"
    extra = f" ({'; '.join(notes)})" if notes else ""
    return RunError(
        f"no finished runs (a folder with config.yaml and summary.json) under {shown}{extra}"
    )


def build_report(
    paths: Sequence[str | Path],
    out: str | Path,
    formats: Sequence[str] = FORMATS,
    grouping: Grouping | None = None,
) -> dict[str, Any]:
    """Write the report files; return ``{"markdown", "files", "notes", "groups"}``."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise RunError(f"unknown report format(s) {unknown}; expected some of {list(FORMATS)}")
    grouping = grouping or Grouping()
    runs, notes = find_runs(paths)
    if not runs:
        raise _no_runs_error(paths, notes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs, grouping)
    notes += grouping.unmatched(k for r in runs for k in r.config)
    notes += grouping_notes(groups)
    by_engine = {e: [g for g in groups if g.engine == e] for e in ENGINES}
    by_engine = {e: engine_groups for e, engine_groups in by_engine.items() if engine_groups}
    for engine in sorted({g.engine for g in groups} - set(ENGINES)):
        count = sum(len(g.runs) for g in groups if g.engine == engine)
        notes.append(f"{count} runs of engine {engine!r} left out: the report knows {ENGINES}")
    figures = _figures(by_engine, out, notes) if "png" in formats else []
    files = list(figures)
    if "csv" in formats:
        for engine, engine_groups in by_engine.items():
            write_csv(engine_groups, out / f"{engine}.csv")
            files.append(out / f"{engine}.csv")
        for engine, engine_groups in by_engine.items():
            if engine in FEDERATED_ENGINES:
                write_modes_csv(engine_groups, out / f"{engine}_modes.csv")
                files.append(out / f"{engine}_modes.csv")
    sections = [
        f"# fedlt report\n\n{len(runs)} runs in {len(groups)} groups from "
        + ", ".join(f"`{p}`" for p in paths)
    ]
    for engine, engine_groups in by_engine.items():
        if engine == "federated":
            sections.append(federated_markdown(engine_groups))
        else:
            sections.append(stream_markdown(engine_groups))
    if figures:
        sections.append(
            "## Figures\n\n" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in figures)
        )
    if notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes))
    markdown = "\n\n".join(sections) + "\n"
    if "md" in formats:
        (out / "report.md").write_text(markdown, encoding="utf-8")
        files.append(out / "report.md")
    return {"markdown": markdown, "files": files, "notes": notes, "groups": groups}


def relink_figures(markdown: str, figures: Path) -> str:
    """Point the ``figures/...`` image links of ``markdown`` at the folder ``figures`` as
    given (relative to the current folder, or absolute): the copy printed to stdout lands
    wherever the shell redirects it, typically a file in the current folder."""
    prefix = Path(os.path.normpath(figures)).as_posix()
    return re.sub(r"^(!\[[^\]]*\]\()figures/", rf"\g<1>{prefix}/", markdown, flags=re.MULTILINE)


def _echo(markdown: str, message: str) -> None:
    """The report on stdout: raw markdown (one line per table row) unless stdout is a
    terminal, where rich prints it without hard wrapping; ``message`` on stderr."""
    from rich.console import Console

    if sys.stdout.isatty():
        Console().print(markdown, markup=False, highlight=False, soft_wrap=True, end="")
    else:
        sys.stdout.write(markdown)
        sys.stdout.flush()
    Console(stderr=True).print(message, markup=False, highlight=False, soft_wrap=True)


def report_command(
    paths: list[str],
    out: str | None = None,
    formats: Sequence[str] = FORMATS,
    echo: bool = True,
    group_by: Sequence[str] = (),
    ignore: Sequence[str] = (),
) -> int:
    """CLI entry (``fedlt report DIR... [--out DIR] [--group-by KEY...] [--ignore KEY...]``);
    default output ``<first DIR>/report``. With ``echo`` the markdown goes to stdout (figure
    links relative to the current folder) and a one-line summary to stderr."""
    from fedlt.api import report

    report(paths, out=out, formats=formats, group_by=group_by, ignore=ignore, echo=echo)
    return 0


# ``fedlt.report(...)`` (the API function) keeps working after this module is imported
from fedlt.api import make_callable  # noqa: E402

make_callable(__name__)

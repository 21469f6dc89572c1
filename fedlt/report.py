"""``fedlt report DIR...``: tables (markdown, CSV) and figures (PNG) from run directories.

Runs are found recursively (a folder holding both ``config.yaml`` and ``summary.json``) and
grouped: runs whose configs agree on everything but ``seed``, ``name``, ``output_dir``,
``logging.*`` and ``resources.*`` are seeds of one group. Each group is a (method, setting)
cell. The method is ``strategy.name``, plus any ``strategy.*`` key that differs between
groups of that same method (``fedprox (mu=0.1)``); the setting is built from the other config
keys that differ between groups (``cifar10 IF=100 α=0.5``).

Numbers are mean ± std over seeds, in percent; std is the sample standard deviation
(``numpy.std(ddof=1)``), left blank for a single seed. Federated tables use each run's
headline modes (``summary["headline"]``, else the first mode in ``summary["final"]``):
generic top-1 on the balanced test set, personalised top-1 (unweighted mean over clients,
FedLoGe spec §5, and the sample-weighted mean) and many/medium/few accuracy under both the
``count`` (>100 / 20-100 / <20 training images, Kang et al. 2020) and the ``mass`` (75% / 95%
of cumulative sample mass, FedLoGe code) split. Continual tables give A_auc, A_avg, A_last
and F_last (Si-Blurry spec §2). Anything missing is skipped with a note, never a crash.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fedlt.errors import RunError

FORMATS = ("md", "csv", "png")
IGNORED_KEYS = {"seed", "name", "output_dir"}
IGNORED_PREFIXES = ("logging.", "resources.")
FEDERATED_ORDER = ("fedavg", "fedprox", "fedrep", "fedbabu", "fedrod", "ditto", "fedetf", "fedloge")
CONTINUAL_ORDER = ("finetune", "er", "ewcpp", "lwf", "l2p", "dualprompt", "mvp")
BANDS = ("many", "medium", "few")
SPLITS = ("count", "mass")
CONTINUAL_METRICS = ("A_auc", "A_avg", "A_last", "F_last")
SETTING_NAMES = {
    "data.source": "",
    "data.longtail.imbalance_factor": "IF",
    "data.partition.alpha": "α",
    "data.partition.num_clients": "clients",
    "model.name": "",
    "federated.rounds": "rounds",
    "stream.scenario": "",
}


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

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
        return records


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
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, yaml.YAMLError, json.JSONDecodeError) as exc:
        notes.append(f"skipped {folder}: unreadable config.yaml/summary.json ({exc})")
        return None
    if not isinstance(config, dict) or not isinstance(summary, dict):
        notes.append(f"skipped {folder}: config.yaml or summary.json is not a mapping")
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
        for config_file in [root / "config.yaml", *root.rglob("config.yaml")]:
            folder = config_file.parent
            if not config_file.is_file() or folder in folders:
                continue
            if (folder / "summary.json").is_file():
                folders.add(folder)
            else:
                status = _status(folder)
                notes.append(f"skipped {folder}: no summary.json (status: {status})")
    runs = [r for f in sorted(folders) if (r := _load_run(f, notes)) is not None]
    return runs, sorted(set(notes))


def _status(folder: Path) -> str:
    try:
        return str(json.loads((folder / "status.json").read_text()).get("status", "unknown"))
    except (OSError, json.JSONDecodeError):
        return "unknown"


# -- grouping -------------------------------------------------------------------------------
def _ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


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

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config


def _short(key: str) -> str:
    return SETTING_NAMES.get(key, key.rsplit(".", 1)[-1])


def _describe(config: dict[str, Any], keys: list[str]) -> str:
    parts = []
    for key in keys:
        value = config.get(key)
        if value is None:
            continue
        name = _short(key)
        parts.append(_fmt_value(value) if not name else f"{name}={_fmt_value(value)}")
    return " ".join(parts)


def _default_setting(config: dict[str, Any]) -> str:
    """Dataset, imbalance factor and Dirichlet α of a lone setting."""
    keys = ["data.source"]
    if config.get("data.longtail.profile", "none") != "none":
        keys.append("data.longtail.imbalance_factor")
    if config.get("engine", "federated") == "federated" and (
        config.get("data.partition.name") == "dirichlet"
    ):
        keys.append("data.partition.alpha")
    return _describe(config, keys) or "default"


def group_runs(runs: Iterable[RunRecord]) -> list[Group]:
    """Group runs into (engine, method, setting) cells, ordered like the papers' tables."""
    by_key: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        identity = _canon({k: v for k, v in run.config.items() if not _ignored(k)})
        by_key.setdefault((run.engine, identity), []).append(run)
    groups: list[Group] = []
    for engine in sorted({e for e, _ in by_key}):
        members = [rs for (e, _), rs in by_key.items() if e == engine]
        configs = [rs[0].config for rs in members]
        all_keys = sorted({k for c in configs for k in c if not _ignored(k)})
        differing = [k for k in all_keys if len({_canon(c.get(k)) for c in configs}) > 1]
        setting_keys = [k for k in differing if not k.startswith("strategy.")]
        setting_keys.sort(key=lambda k: list(SETTING_NAMES).index(k) if k in SETTING_NAMES else 99)
        order = FEDERATED_ORDER if engine == "federated" else CONTINUAL_ORDER
        for runs_here in members:
            config = runs_here[0].config
            name = str(config.get("strategy.name", "?"))
            same_method = [c for c in configs if c.get("strategy.name") == name]
            option_keys = [
                k
                for k in differing
                if k.startswith("strategy.")
                and k != "strategy.name"
                and len({_canon(c.get(k)) for c in same_method}) > 1
            ]
            options = ", ".join(
                f"{_short(k)}={_fmt_value(config[k])}" for k in option_keys if k in config
            )
            method = f"{name} ({options})" if options else name
            setting = _describe(config, setting_keys) if setting_keys else ""
            groups.append(
                Group(
                    engine=engine,
                    method=method,
                    setting=setting or _default_setting(config),
                    runs=sorted(runs_here, key=lambda r: (_sort_value(r.seed), str(r.path))),
                    method_rank=(order.index(name) if name in order else len(order), method),
                    setting_rank=tuple(_sort_value(config.get(k)) for k in setting_keys),
                )
            )
    groups.sort(key=lambda g: (g.engine, g.setting_rank, g.setting, g.method_rank))
    return groups


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


def stat(values: Sequence[float], scale: float = 100.0) -> Stat | None:
    clean = [float(v) * scale for v in values if v is not None and math.isfinite(float(v))]
    if not clean:
        return None
    arr = np.asarray(clean, dtype=float)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else None
    return Stat(float(np.mean(arr)), std, int(arr.size))


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


def group_stats(group: Group) -> tuple[dict[str, Stat | None], dict[str, str]]:
    """Per-column statistics of a group, and the modes used (federated) ."""
    if group.engine == "continual":
        return {
            m: stat([(r.summary.get("final") or {}).get(m) for r in group.runs])
            for m in CONTINUAL_METRICS
        }, {}
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
    return stats, {k: "/".join(sorted(v)) for k, v in modes.items()}


# -- tables ---------------------------------------------------------------------------------
def _cell(s: Stat | None) -> str:
    return s.text() if s is not None else "–"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ordered(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def federated_markdown(groups: list[Group]) -> str:
    """Main table (methods × settings, generic / personal top-1) and per-setting detail."""
    stats = {(g.method, g.setting): group_stats(g) for g in groups}
    methods = _ordered(g.method for g in sorted(groups, key=lambda g: g.method_rank))
    settings = _ordered(g.setting for g in groups)
    header = ["Method"]
    for setting in settings:
        header += [f"{setting} generic", f"{setting} personal"]
    rows = []
    for method in methods:
        row = [method]
        for setting in settings:
            cell = stats.get((method, setting))
            row += [
                _cell(cell[0]["generic top-1"]) if cell else "–",
                _cell(cell[0]["personal top-1"]) if cell else "–",
            ]
        rows.append(row)
    parts = [
        "## Federated: top-1 accuracy (%)",
        "",
        "generic = balanced global test set; personal = unweighted mean over clients of "
        "local test top-1. Mean ± sample std over seeds.",
        "",
        _md_table(header, rows),
        "",
        "By class frequency — count: many >100, medium 20–100, few <20 global training "
        "images (Kang et al. 2020); mass: classes sorted by count, many = the first 75% of the "
        "training samples, medium up to 95%, few the rest (FedLoGe code).",
    ]
    for setting in settings:
        in_setting = [g for g in groups if g.setting == setting]
        for side in ("generic", "personal"):
            columns = [c for c, _ in federated_columns() if c.startswith(side)]
            detail_rows = []
            for g in sorted(in_setting, key=lambda g: g.method_rank):
                cell_stats, modes = stats[(g.method, g.setting)]
                detail_rows.append(
                    [g.method, modes.get(side, "?"), str(len(g.runs))]
                    + [_cell(cell_stats[c]) for c in columns]
                )
            header_detail = ["Method", "mode", "seeds"] + [
                c.removeprefix(f"{side} ") for c in columns
            ]
            parts += [
                "",
                f"### {setting}: {side} accuracy (%) by class frequency",
                "",
                _md_table(header_detail, detail_rows),
            ]
    return "\n".join(parts)


def continual_markdown(groups: list[Group]) -> str:
    """One table per setting: A_auc / A_avg / A_last / F_last (%) per method."""
    parts = ["## Continual: online accuracy (%)", ""]
    for setting in _ordered(g.setting for g in groups):
        rows = []
        for g in sorted((g for g in groups if g.setting == setting), key=lambda g: g.method_rank):
            cell_stats, _ = group_stats(g)
            rows.append(
                [g.method, str(len(g.runs))] + [_cell(cell_stats[m]) for m in CONTINUAL_METRICS]
            )
        parts += [
            f"### {setting}",
            "",
            _md_table(["Method", "seeds", "A_auc ↑", "A_avg ↑", "A_last ↑", "F_last ↓"], rows),
            "",
        ]
    return "\n".join(parts)


def write_csv(groups: list[Group], path: Path) -> None:
    """One row per (method, setting): seeds, modes, then <column>_mean / <column>_std in %."""
    if not groups:
        return
    federated = groups[0].engine == "federated"
    columns = [c for c, _ in federated_columns()] if federated else list(CONTINUAL_METRICS)
    header = ["method", "setting", "seeds"]
    if federated:
        header += ["generic_mode", "personal_mode"]
    for column in columns:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", column).strip("_")
        header += [f"{slug}_mean", f"{slug}_std"]
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
                s = cell_stats.get(column)
                row += ["" if s is None else f"{s.mean:.4f}"]
                row += ["" if s is None or s.std is None else f"{s.std:.4f}"]
            writer.writerow(row)


# -- figures --------------------------------------------------------------------------------
def _slug(text: str) -> str:
    text = text.replace("α", "alpha")
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_") or "default"


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


def plot_curves(groups: list[Group], folder: Path, notes: list[str]) -> list[Path]:
    """Accuracy vs round (federated) / samples seen (continual), mean over seeds ± std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for setting in _ordered(g.setting for g in groups):
        in_setting = [g for g in groups if g.setting == setting]
        engine = in_setting[0].engine
        if engine == "federated":
            panels = [
                ("generic top-1 (%)", lambda r: f"generic.{headline_modes(r.summary)[0]}.top1"),
                (
                    "personal top-1 (%)",
                    lambda r: f"personal.{headline_modes(r.summary)[1]}.top1_mean",
                ),
            ]
            x_key = "round"
        else:
            panels = [("accuracy (%)", lambda r: "acc")]
            # each seed has its own stream, so the exact samples_seen values differ; the
            # eval period crossed (eval_point) is common to all seeds
            x_key = "eval_point"
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        drawn = 0
        for ax, (title, y_key_of) in zip(axes[0], panels, strict=True):
            for g in sorted(in_setting, key=lambda g: g.method_rank):
                xs, mean, std = _curve(g, x_key, y_key_of)
                if xs.size == 0:
                    continue
                (line,) = ax.plot(
                    xs, mean, marker="o" if xs.size < 30 else None, ms=3, label=g.method
                )
                ax.fill_between(xs, mean - std, mean + std, alpha=0.2, color=line.get_color())
                drawn += 1
            ax.set_xlabel(x_key.replace("_", " "))
            ax.set_ylabel(title)
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(f"{engine}: {setting}")
        fig.tight_layout()
        if drawn:
            path = folder / f"curves_{engine}_{_slug(setting)}.png"
            fig.savefig(path, dpi=110)
            written.append(path)
        else:
            notes.append(f"no accuracy curves for {setting}: no metrics.jsonl with accuracy")
        plt.close(fig)
    return written


def plot_per_class(groups: list[Group], folder: Path, notes: list[str]) -> list[Path]:
    """Per-class accuracy bars (``summary["per_class"]``), mean over seeds, one panel per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for setting in _ordered(g.setting for g in groups):
        in_setting = sorted(
            (g for g in groups if g.setting == setting), key=lambda g: g.method_rank
        )
        bars: dict[str, dict[str, np.ndarray]] = {}
        for g in in_setting:
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
        if not bars:
            notes.append(f"no per-class figure for {setting}: no summary has per_class")
            continue
        fig, axes = plt.subplots(len(bars), 1, figsize=(9, 3.2 * len(bars)), squeeze=False)
        for ax, (kind, per_method) in zip(axes[:, 0], bars.items(), strict=True):
            width = 0.8 / max(len(per_method), 1)
            for i, (method, values) in enumerate(per_method.items()):
                offset = (i - (len(per_method) - 1) / 2) * width
                ax.bar(np.arange(values.size) + offset, values, width=width, label=method)
            ax.set_title(f"{kind} per-class accuracy (headline mode of each method)")
            ax.set_xlabel("class (sorted as in the dataset)")
            ax.set_ylabel("top-1 (%)")
            ax.legend(fontsize=8)
        fig.suptitle(setting)
        fig.tight_layout()
        path = folder / f"per_class_{_slug(setting)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plot_partitions(groups: list[Group], folder: Path, notes: list[str]) -> list[Path]:
    """Heat map of client × class training counts (``partition.json``), one per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for setting in _ordered(g.setting for g in groups if g.engine == "federated"):
        runs = sorted(
            (r for g in groups if g.setting == setting for r in g.runs),
            key=lambda r: (_sort_value(r.seed), str(r.path)),
        )
        counts = None
        for run in runs:
            try:
                data = json.loads((run.path / "partition.json").read_text())
                counts = np.asarray(data["client_class_counts"], dtype=float)
                if counts.ndim == 2:
                    source = run
                    break
                counts = None
            except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        if counts is None:
            notes.append(f"no partition heat map for {setting}: no run has partition.json")
            continue
        fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * counts.shape[1] + 2), 4))
        image = ax.imshow(counts, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax, label="training images")
        ax.set_xlabel("class")
        ax.set_ylabel("client")
        ax.set_title(f"{setting} (seed {source.seed})")
        fig.tight_layout()
        path = folder / f"partition_{_slug(setting)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# -- command --------------------------------------------------------------------------------
def build_report(
    paths: Sequence[str | Path], out: str | Path, formats: Sequence[str] = FORMATS
) -> dict[str, Any]:
    """Write the report files; return ``{"markdown", "files", "notes", "groups"}``."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise RunError(f"unknown report format(s) {unknown}; expected some of {list(FORMATS)}")
    runs, notes = find_runs(paths)
    if not runs:
        shown = ", ".join(str(p) for p in paths) or "(no paths given)"
        extra = f" ({'; '.join(notes)})" if notes else ""
        raise RunError(
            f"no finished runs (a folder with config.yaml and summary.json) under {shown}{extra}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    federated = [g for g in groups if g.engine == "federated"]
    continual = [g for g in groups if g.engine == "continual"]
    files: list[Path] = []
    figures: list[Path] = []
    if "png" in formats:
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        for plot in (plot_curves, plot_per_class, plot_partitions):
            for engine_groups in (federated, continual):
                if engine_groups and not (plot is plot_partitions and engine_groups is continual):
                    try:
                        figures += plot(engine_groups, fig_dir, notes)
                    except Exception as exc:  # a figure must never sink the tables
                        notes.append(f"{plot.__name__} failed: {type(exc).__name__}: {exc}")
        files += figures
    if "csv" in formats:
        for name, engine_groups in (("federated.csv", federated), ("continual.csv", continual)):
            if engine_groups:
                write_csv(engine_groups, out / name)
                files.append(out / name)
    sections = [
        f"# fedlt report\n\n{len(runs)} runs in {len(groups)} groups from "
        + ", ".join(f"`{p}`" for p in paths)
    ]
    if federated:
        sections.append(federated_markdown(federated))
    if continual:
        sections.append(continual_markdown(continual))
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


def report_command(
    paths: list[str],
    out: str | None = None,
    formats: Sequence[str] = FORMATS,
    echo: bool = True,
) -> int:
    """CLI entry (``fedlt report DIR... [--out DIR]``); default output ``<first DIR>/report``."""
    if not paths:
        raise RunError("fedlt report: give at least one run or sweep folder")
    first = Path(paths[0])
    target = Path(out) if out else (first if first.is_dir() else first.parent) / "report"
    result = build_report(paths, target, formats)
    if echo:
        from rich.console import Console

        console = Console()
        console.print(result["markdown"], markup=False, highlight=False)
        console.print(f"wrote {len(result['files'])} files to {target}")
    return 0

"""fedlt report on ``engine: federated_continual`` runs: the online-accuracy table per setting
(method order, mean ± std over seeds, s/round), replay memory and model as method keys, the
curves figure, the CSV, and a piped report that keeps every row on one line.

Run folders are written through :class:`fedlt.runs.RunDirectory` from the resolved config
of ``simulations/fedcl/digits.yaml``, as the engine writes them (config.yaml, status.json,
metrics.jsonl, timings.json, partition.json, summary.json).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedlt.config import load_config
from fedlt.report import build_report, curve_figure, find_runs, group_runs
from fedlt.runs import RunDirectory
from strategies.federated_continual import stream_strategy_names

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "simulations" / "fedcl" / "digits.yaml"
ROUNDS = (1, 2, 3, 4)
PHASE_ENDS = (2, 4)
HEADLINES = {
    "er": ("global", "global"),
    "fedavg": ("global", "global"),
    "fedloge": ("gla_fr", "gla_fr"),
    "mvp": ("global",) * 2,
}
STREAM_KEYS = (
    "A_auc",
    "A_avg",
    "A_last",
    "F_last",
    "personal.A_auc",
    "personal.A_avg",
    "personal.A_last",
)
TABLE_KEYS = ("A_auc", "A_avg", "A_last", "F_last", "personal.A_auc", "personal.A_last")
MVP_MODEL = [
    "model.name=vit_tiny_test",
    "model.options={img_size: 16, patch_size: 4, embed_dim: 96, depth: 6, num_heads: 3}",
]


def write_fcl_run(
    folder: Path,
    method: str,
    seed: int,
    rng: np.random.Generator,
    overrides: tuple[str, ...] = (),
    total_s: float = 1.0,
    base: Path | None = BASE,
) -> dict:
    """A finished run, federated continual (of ``base``; None: the embedded default, a
    federated run); returns what it wrote (final, curve in %, s/round)."""
    cfg = load_config(
        base,
        [
            f"strategy.name={method}",
            f"seed={seed}",
            f"name={folder.parent.name}",
            f"federated.rounds={ROUNDS[-1]}",
            "logging.progress=false",
            *overrides,
        ],
    )
    run = RunDirectory.create(cfg, folder, lock=False)
    generic, personal = HEADLINES[method]
    curve = rng.uniform(0.1, 0.9, size=len(ROUNDS))
    for r, acc in zip(ROUNDS, curve, strict=True):
        run.log_metrics({"round": r, "train_loss": 1.0 / r})  # a training-only record
        run.log_metrics(
            {
                "round": r,
                "train_loss": 1.0 / r,
                f"generic.{generic}.top1": float(acc),
                f"personal.{personal}.top1_mean": float(acc) / 2,
                "phase_end": r in PHASE_ENDS,
                "num_exposed": 2 * r,
                "samples_seen": 10 * r,
                "per_class": {str(c): float(acc) for c in range(10)},
                "clients": {"0": {"exposed": r, "position": 5 * r, "acc": float(acc)}},
            }
        )
    times = [total_s * (1 + 0.1 * i) for i in range(len(ROUNDS))]
    run.write_timings(
        [
            {"round": r, "started": 1.0e9 + r, "train_s": t / 2, "total_s": t}
            for r, t in zip(ROUNDS, times, strict=True)
        ]
    )
    counts = np.arange(50).reshape(5, 10).tolist()
    run.write_partition(json.dumps({"client_class_counts": counts}))
    final: dict = {f"generic.{generic}.top1": float(curve[-1])}
    final[f"personal.{personal}.top1_mean"] = float(curve[-1]) / 2
    final[f"personal.{personal}.top1_weighted"] = float(rng.uniform(0, 1))
    for side, mode in (("generic", generic), ("personal", personal)):
        for band in ("many", "medium", "few"):
            for split in ("count", "mass"):
                final[f"{side}.{mode}.{band}.{split}"] = float(rng.uniform(0, 1))
    final.update({key: float(rng.uniform(-0.1, 0.9)) for key in STREAM_KEYS})
    final.update({"phase_end": True, "num_exposed": 10, "samples_seen": 40})
    run.write_summary(
        {
            "engine": cfg.engine,
            "name": cfg.name,
            "strategy": method,
            "seed": seed,
            "status": "complete",
            "rounds": ROUNDS[-1],
            "rounds_run": ROUNDS[-1],
            "headline": {"generic": generic, "personal": personal},
            "final": final,
            "per_class": {f"generic.{generic}": [float(curve[-1])] * 10},
            "streams_ended": {"0": ROUNDS[-1]},
            "samples": 40,
            "samples_seen": 40,
            "task_sync": "shared",
        }
    )
    return {"final": final, "curve": curve * 100, "s_per_round": float(np.mean(times))}


@pytest.fixture()
def sweep(tmp_path: Path) -> tuple[Path, dict]:
    """er (a continual learner, federated) and fedloge (a federated strategy) × seeds 0 and
    1. Names and folders sort er first; the registry puts the federated strategies first."""
    rng = np.random.default_rng(11)
    written: dict = {}
    for method, folder in (("er", "a-er"), ("fedloge", "b-fedloge")):
        for seed in (0, 1):
            written.setdefault(method, []).append(
                write_fcl_run(
                    tmp_path / "sweep" / folder / f"seed-{seed}",
                    method,
                    seed,
                    rng,
                    total_s=0.5 + seed + (method == "fedloge"),
                )
            )
    return tmp_path / "sweep", written


def _text(values: list[float]) -> str:
    arr = np.asarray(values, dtype=float)
    return f"{arr.mean():.2f} ± {arr.std(ddof=1):.2f}"


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _tables(markdown: str) -> list[list[str]]:
    """Each table of ``markdown``: its consecutive lines starting with ``|``."""
    blocks: list[list[str]] = []
    previous = False
    for line in markdown.splitlines():
        row = line.startswith("|")
        if row and not previous:
            blocks.append([])
        if row:
            blocks[-1].append(line)
        previous = row
    return blocks


def _online_table(markdown: str) -> list[str]:
    return next(b for b in _tables(markdown) if "generic A_auc ↑" in _cells(b[0]))


# -- the table ------------------------------------------------------------------------------
def test_table_rows_hold_the_means_over_seeds(sweep: tuple[Path, dict], tmp_path: Path) -> None:
    root, written = sweep
    result = build_report([root], tmp_path / "r", formats=("md", "csv"))
    markdown = result["markdown"]
    assert "## Federated continual: online accuracy (%)" in markdown
    assert "### digits IF=10 α=0.5\n" in markdown
    table = _online_table(markdown)
    assert _cells(table[0]) == [
        "Method",
        "seeds",
        "generic A_auc ↑",
        "generic A_avg ↑",
        "generic A_last ↑",
        "generic F_last ↓",
        "personal A_auc ↑",
        "personal A_last ↑",
        "s/round",
    ]
    rows = [_cells(r) for r in table[2:]]
    order = stream_strategy_names()
    assert [r[0] for r in rows] == sorted(written, key=order.index) == ["fedloge", "er"]
    for row in rows:
        runs = written[row[0]]
        expected = [_text([100 * w["final"][k] for w in runs]) for k in TABLE_KEYS]
        seconds = _text([w["s_per_round"] for w in runs])
        assert row[1:] == ["2", *expected, seconds], row[0]

    with open(tmp_path / "r" / "federated_continual.csv") as fh:
        csv_rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert set(csv_rows) == {"er", "fedloge"}
    fedloge = csv_rows["fedloge"]
    assert (fedloge["generic_mode"], fedloge["personal_mode"], fedloge["seeds"]) == (
        "gla_fr",
        "gla_fr",
        "2",
    )
    for column, key in (("generic_F_last", "F_last"), ("personal_A_avg", "personal.A_avg")):
        values = np.array([100 * w["final"][key] for w in written["fedloge"]])
        assert float(fedloge[f"{column}_mean"]) == pytest.approx(values.mean(), abs=1e-4)
        assert float(fedloge[f"{column}_std"]) == pytest.approx(values.std(ddof=1), abs=1e-4)
    top1 = np.array([100 * w["final"]["generic.gla_fr.top1"] for w in written["fedloge"]])
    assert float(fedloge["generic_top_1_mean"]) == pytest.approx(top1.mean(), abs=1e-4)
    assert not (tmp_path / "r" / "federated.csv").exists()
    assert (tmp_path / "r" / "federated_continual_modes.csv").is_file()


def test_last_evaluation_tables_follow_the_online_table(
    sweep: tuple[Path, dict], tmp_path: Path
) -> None:
    root, written = sweep
    markdown = build_report([root], tmp_path / "r", formats=("md",))["markdown"]
    head = "### digits IF=10 α=0.5: generic accuracy (%) by class frequency at the last evaluation"
    assert head in markdown
    assert markdown.index("generic A_auc ↑") < markdown.index(head)
    generic = next(b for b in _tables(markdown) if "many (count)" in _cells(b[0]))
    er = next(_cells(r) for r in generic[2:] if _cells(r)[0] == "er")
    expected = _text([100 * w["final"]["generic.global.top1"] for w in written["er"]])
    assert er[1:4] == ["global", "2", expected]
    assert "every mode (%) at the last evaluation" in markdown


def test_piped_report_keeps_each_row_on_one_line(sweep: tuple[Path, dict], tmp_path: Path) -> None:
    root, written = sweep
    target = tmp_path / "report.md"
    with open(target, "w") as fh:
        subprocess.run(
            [sys.executable, "-m", "fedlt.cli", "report", str(root), "--out", "rep"],
            cwd=tmp_path,
            stdout=fh,
            stderr=subprocess.PIPE,
            check=True,
            timeout=300,
        )
    text = target.read_text()
    assert text.startswith("# fedlt report\n")
    tables = _tables(text)
    assert tables
    for table in tables:
        assert re.fullmatch(r"\|(---\|)+", table[1]), table[:2]
        width = len(_cells(table[0]))
        for row in table:
            assert row.endswith("|") and (row == table[1] or len(_cells(row)) == width), row
    er = next(line for line in text.splitlines() if line.startswith("| er | 2 |"))
    a_auc = _text([100 * w["final"]["A_auc"] for w in written["er"]])
    a_last = _text([100 * w["final"]["personal.A_last"] for w in written["er"]])
    assert f"| er | 2 | {a_auc} |" in er and f"| {a_last} |" in er
    assert max(len(row) for table in tables for row in table) > 120  # would wrap on a terminal
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "rep/figures/curves_federated_continual_digits_IF=10_alpha=0.5.png" in figures
    assert all((tmp_path / f).is_file() for f in figures)


# -- grouping -------------------------------------------------------------------------------
def test_memory_and_model_are_part_of_the_method(tmp_path: Path) -> None:
    """FedAvg with and without replay and MVP on its ViT: one table, three rows."""
    rng = np.random.default_rng(5)
    runs = {
        "fedavg-er": ("fedavg", ()),
        "fedavg-ft": ("fedavg", ("stream.memory_size=0",)),
        "mvp": ("mvp", ("stream.memory_size=0", *MVP_MODEL)),
    }
    written = {}
    for label, (method, overrides) in runs.items():
        written[label] = [
            write_fcl_run(tmp_path / "s" / label / f"seed-{s}", method, s, rng, overrides)
            for s in (0, 1)
        ]
    markdown = build_report([tmp_path / "s"], tmp_path / "r", formats=("md",))["markdown"]
    assert markdown.count("generic A_auc ↑") == 1  # one setting
    rows = [_cells(r) for r in _online_table(markdown)[2:]]
    assert [r[0] for r in rows] == ["fedavg (memory_size=0)", "fedavg (memory_size=60)", "mvp"]
    ft = next(r for r in rows if r[0] == "fedavg (memory_size=0)")
    assert ft[2] == _text([100 * w["final"]["A_auc"] for w in written["fedavg-ft"]])
    assert (
        "Methods differ also in replay memory: memory_size=0 (fedavg (memory_size=0), mvp); "
        "memory_size=60 (fedavg (memory_size=60)). model: cnn_small (fedavg (memory_size=0), "
        "fedavg (memory_size=60)); vit_tiny_test "
    ) in markdown


def test_model_still_separates_settings_of_the_federated_engine(tmp_path: Path) -> None:
    """The method keys are the federated continual engine's: federated runs on two models
    stay two settings, federated continual ones two methods."""
    rng = np.random.default_rng(6)
    for base, engine in ((None, "federated"), (BASE, "federated_continual")):
        for model in ("cnn_small", "resnet8"):
            folder = tmp_path / engine / model / "seed-0"
            write_fcl_run(folder, "fedavg", 0, rng, (f"model.name={model}",), base=base)
    groups = group_runs(find_runs([tmp_path])[0])
    assert sorted((g.engine, g.method, g.setting) for g in groups) == [
        ("federated", "fedavg", "cnn_small"),
        ("federated", "fedavg", "resnet8"),
        ("federated_continual", "fedavg (cnn_small)", "digits IF=10 α=0.5"),
        ("federated_continual", "fedavg (resnet8)", "digits IF=10 α=0.5"),
    ]


# -- figures and engines side by side --------------------------------------------------------
def test_curves_are_headline_accuracy_per_round_with_phase_ends(
    sweep: tuple[Path, dict],
) -> None:
    root, written = sweep
    fig = curve_figure(group_runs(find_runs([root])[0]))
    assert fig is not None
    generic = fig.axes[0]
    assert generic.get_xlabel() == "round"
    lines = {line.get_label(): line for line in generic.get_lines()}
    fedloge = lines["fedloge"]
    assert list(fedloge.get_xdata()) == [float(r) for r in ROUNDS]
    mean = np.mean([w["curve"] for w in written["fedloge"]], axis=0)
    assert np.allclose(fedloge.get_ydata(), mean)
    marks = [line for line in generic.get_lines() if line.get_linestyle() == ":"]
    assert sorted(float(m.get_xdata()[0]) for m in marks) == [float(r) for r in PHASE_ENDS]


def test_federated_and_federated_continual_runs_side_by_side(
    sweep: tuple[Path, dict], tmp_path: Path
) -> None:
    root, _ = sweep
    rng = np.random.default_rng(8)
    write_fcl_run(root / "federated" / "seed-0", "fedavg", 0, rng, base=None)
    result = build_report([root], tmp_path / "r")
    markdown = result["markdown"]
    assert markdown.index("## Federated: top-1") < markdown.index("## Federated continual")
    names = {p.name for p in result["files"]}
    assert {"federated.csv", "federated_continual.csv"} <= names
    assert {"federated_modes.csv", "federated_continual_modes.csv"} <= names
    setting = "digits_IF=10_alpha=0.5"
    for figure in (
        f"curves_federated_{setting}.png",
        f"curves_federated_continual_{setting}.png",
        f"per_class_{setting}.png",
        f"per_class_federated_continual_{setting}.png",
        f"partition_{setting}.png",
        f"partition_federated_continual_{setting}.png",
    ):
        assert figure in names, figure
    assert not [n for n in result["notes"] if "failed" in n]

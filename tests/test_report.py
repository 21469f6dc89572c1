"""fedlt report on hand-made run folders, and the TensorBoard logger."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fedlt.errors import ConfigError, RunError
from fedlt.report import build_report, find_runs, group_runs, report_command

METHODS = ("fedavg", "fedloge")
ALPHAS = (0.5, 1.0)
SEEDS = (0, 1, 2)


def _config(method: str, alpha: float, seed: int, engine: str = "federated") -> dict:
    return {
        "name": f"{method}-a{alpha}",
        "seed": seed,
        "engine": engine,
        "output_dir": "runs",
        "data": {
            "source": "digits",
            "longtail": {"profile": "exponential", "imbalance_factor": 10.0},
            "partition": {"name": "dirichlet", "alpha": alpha, "num_clients": 3},
        },
        "strategy": {"name": method, "options": {}},
        "logging": {"progress": False},
    }


def _write_run(
    folder: Path, config: dict, summary: dict | None, metrics: list[dict] | None = None
) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "status.json").write_text(json.dumps({"status": "complete"}))
    else:
        (folder / "status.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    if metrics:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return folder


def _federated_final(rng: np.random.Generator, generic_mode: str, personal_mode: str) -> dict:
    final = {f"generic.{generic_mode}.top1": float(rng.uniform(0.3, 0.9))}
    final["generic.other.top1"] = 0.01  # a second mode that the table must not pick
    final[f"personal.{personal_mode}.top1_mean"] = float(rng.uniform(0.3, 0.9))
    final[f"personal.{personal_mode}.top1_weighted"] = float(rng.uniform(0.3, 0.9))
    for side, mode in (("generic", generic_mode), ("personal", personal_mode)):
        for band in ("many", "medium", "few"):
            for split in ("count", "mass"):
                final[f"{side}.{mode}.{band}.{split}"] = float(rng.uniform(0.0, 1.0))
    return final


@pytest.fixture()
def federated_runs(tmp_path: Path) -> tuple[Path, dict]:
    """2 methods × 2 alphas × 3 seeds, plus one failed run without summary."""
    rng = np.random.default_rng(7)
    truth: dict = {}
    for method in METHODS:
        modes = ("global", "local") if method == "fedavg" else ("realigned", "ntransfer")
        for alpha in ALPHAS:
            for seed in SEEDS:
                final = _federated_final(rng, *modes)
                truth.setdefault((method, alpha), []).append(final)
                summary = {
                    "engine": "federated",
                    "name": method,
                    "strategy": method,
                    "seed": seed,
                    "status": "complete",
                    "final": final,
                    "per_class": {"generic": rng.uniform(0, 1, 10).tolist()},
                }
                if method == "fedloge":
                    summary["headline"] = {"generic": modes[0], "personal": modes[1]}
                metrics = [
                    {"round": r, f"generic.{modes[0]}.top1": 0.1 * r + 0.01 * seed}
                    for r in (1, 2, 3)
                ]
                folder = tmp_path / "sweep" / f"{method}_a{alpha}" / f"seed-{seed}"
                _write_run(folder, _config(method, alpha, seed), summary, metrics)
                counts = rng.integers(0, 50, size=(3, 10)).tolist()
                (folder / "partition.json").write_text(json.dumps({"client_class_counts": counts}))
    _write_run(tmp_path / "sweep" / "broken" / "seed-0", _config("fedavg", 0.5, 9), None)
    return tmp_path / "sweep", truth


def test_federated_tables_match_numpy(federated_runs: tuple[Path, dict], tmp_path: Path) -> None:
    root, truth = federated_runs
    result = build_report([root], tmp_path / "out")
    groups = [g for g in result["groups"] if g.engine == "federated"]
    assert sorted((g.method, g.setting) for g in groups) == sorted(
        (m, f"α={a:g}") for m in METHODS for a in ALPHAS
    )
    with open(tmp_path / "out" / "federated.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        alpha = float(row["setting"].split("=")[1])
        finals = truth[(row["method"], alpha)]
        g_mode, p_mode = (
            ("global", "local") if row["method"] == "fedavg" else ("realigned", "ntransfer")
        )
        assert (row["generic_mode"], row["personal_mode"]) == (g_mode, p_mode)
        assert row["seeds"] == "3"
        for column, key in [
            ("generic_top_1", f"generic.{g_mode}.top1"),
            ("personal_top_1", f"personal.{p_mode}.top1_mean"),
            ("personal_top_1_weighted", f"personal.{p_mode}.top1_weighted"),
            ("generic_few_count", f"generic.{g_mode}.few.count"),
            ("personal_many_mass", f"personal.{p_mode}.many.mass"),
        ]:
            values = np.array([f[key] for f in finals]) * 100
            assert float(row[f"{column}_mean"]) == pytest.approx(values.mean(), abs=1e-4)
            assert float(row[f"{column}_std"]) == pytest.approx(values.std(ddof=1), abs=1e-4)

    markdown = (tmp_path / "out" / "report.md").read_text()
    fedavg = np.array([f["generic.global.top1"] for f in truth[("fedavg", 0.5)]]) * 100
    expected = f"{fedavg.mean():.2f} ± {fedavg.std(ddof=1):.2f}"
    fedavg_row = next(line for line in markdown.splitlines() if line.startswith("| fedavg |"))
    assert fedavg_row.split(" | ")[1] == expected  # first column: α=0.5 generic
    assert "| Method | α=0.5 generic | α=0.5 personal | α=1 generic | α=1 personal |" in markdown
    assert "many (count)" in markdown and "few (mass)" in markdown
    assert "broken/seed-0: no summary.json (status: failed)" in markdown
    for name in ("curves_federated_alpha=0.5", "per_class_alpha=1", "partition_alpha=0.5"):
        png = tmp_path / "out" / "figures" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", name


def test_continual_table_and_missing_pieces(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = {}
    for method in ("er", "mvp"):
        for seed in (0, 1):
            final = {m: float(rng.uniform(0, 1)) for m in ("A_auc", "A_avg", "A_last", "F_last")}
            values.setdefault(method, []).append(final)
            summary = {"engine": "continual", "seed": seed, "final": final}
            # no metrics.jsonl, no per_class, no partition: the report notes it and goes on
            _write_run(
                tmp_path / f"{method}-{seed}", _config(method, 1.0, seed, "continual"), summary
            )
    result = build_report([tmp_path], tmp_path / "report", formats=("md", "csv", "png"))
    with open(tmp_path / "report" / "continual.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    for method, finals in values.items():
        a_last = np.array([f["A_last"] for f in finals]) * 100
        assert float(rows[method]["A_last_mean"]) == pytest.approx(a_last.mean(), abs=1e-4)
        assert float(rows[method]["A_last_std"]) == pytest.approx(a_last.std(ddof=1), abs=1e-4)
    assert "A_auc ↑" in result["markdown"] and "| mvp | 2 |" in result["markdown"]
    assert any("no accuracy curves" in n for n in result["notes"])
    assert any("no per-class figure" in n for n in result["notes"])
    assert not (tmp_path / "report" / "federated.csv").exists()


def test_single_seed_has_no_std_and_method_options_split(tmp_path: Path) -> None:
    for mu in (0.01, 0.1):
        config = _config("fedprox", 0.5, 0)
        config["strategy"]["options"] = {"mu": mu}
        summary = {"engine": "federated", "final": {"generic.global.top1": mu}}
        _write_run(tmp_path / f"mu{mu}", config, summary)
    runs, _ = find_runs([tmp_path])
    groups = group_runs(runs)
    assert sorted(g.method for g in groups) == ["fedprox (mu=0.01)", "fedprox (mu=0.1)"]
    markdown = build_report([tmp_path], tmp_path / "r", formats=("md",))["markdown"]
    assert "| fedprox (mu=0.1) | 10.00 | – |" in markdown  # one seed: no ± std
    assert not (tmp_path / "r" / "figures").exists()


def test_no_runs_is_a_clear_error(tmp_path: Path) -> None:
    _write_run(tmp_path / "half", _config("fedavg", 0.5, 0), None)
    with pytest.raises(RunError, match=r"no finished runs.*half.*missing-folder"):
        report_command([str(tmp_path / "half"), str(tmp_path / "missing-folder")])


# -- TensorBoard ----------------------------------------------------------------------------
def test_tensorboard_event_files_hold_the_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fedlt.tblog import TensorBoardLogger

    with TensorBoardLogger(tmp_path / "tb") as logger:
        for step in (1, 2, 3):
            n = logger.log(
                {"round": step, "generic.global.top1": 0.1 * step, "note": "x", "ok": True}, step
            )
            assert n == 2
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"round", "generic/global/top1"}
    got = [(e.step, e.value) for e in acc.Scalars("generic/global/top1")]
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([0.1, 0.2, 0.3])


def test_tensorboard_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedlt.tblog import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"logging.tensorboard.*pip install fedlt\[tensorboard\]"):
        TensorBoardLogger("unused")

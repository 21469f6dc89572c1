"""The Python API (docs/api.md): ``fedlt.run`` for both engines with dict overrides, the
fields of ``RunResult``, the ``load_run`` round trip, config sources and overrides, refused
runs, ``fedlt.sweep`` / ``fedlt.report``, a cheap ``import fedlt`` and the quickstart."""

from __future__ import annotations

import io
import json
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import fedlt
from fedlt.config import ExperimentConfig
from fedlt.errors import ConfigError, RunError

REPO = Path(__file__).resolve().parent.parent
TINY: dict[str, Any] = {
    "federated.rounds": 2,
    "federated.local_epochs": 1,
    "federated.batch_size": 32,
    "federated.eval_every": 1,
    "data.partition.num_clients": 3,
    "strategy.name": "fedavg",
    "resources.device": "cpu",
    "logging.progress": False,
}
STREAM: dict[str, Any] = {
    "name": "stream",
    "engine": "continual",
    "data": {
        "source": "synthetic",
        "options": {
            "num_classes": 4,
            "image_size": 6,
            "channels": 1,
            "train_per_class": 8,
            "test_per_class": 2,
        },
    },
    "model": {"name": "cnn_small", "options": {"width": 4, "feature_dim": 8}},
    "strategy": {"name": "er", "options": {"lr": 0.01}},
    "stream": {"num_tasks": 2, "batch_size": 8, "online_iter": 1, "memory_size": 8},
    "resources": {"device": "cpu", "num_threads": 1},
    "logging": {"progress": False},
}


@pytest.fixture(scope="module")
def federated_run(tmp_path_factory: pytest.TempPathFactory) -> fedlt.RunResult:
    """The embedded default, made tiny by a mapping of overrides, in-process."""
    out = tmp_path_factory.mktemp("api") / "runs"
    return fedlt.run(overrides={**TINY, "output_dir": out}, backend="inprocess")


# ----------------------------------------------------------------------------- runs
def test_federated_run_result_fields(federated_run: fedlt.RunResult) -> None:
    result = federated_run
    assert (result.path / "config.yaml").is_file() and result.status == "complete"
    assert isinstance(result.config, ExperimentConfig)
    assert result.config.federated.rounds == 2 and result.config.strategy.name == "fedavg"
    assert result.summary["engine"] == "federated" and result.summary["rounds"] == 2
    assert [m["round"] for m in result.metrics] == [1, 2]
    assert all(isinstance(m, dict) for m in result.metrics)
    assert result.final == result.summary["final"]
    assert 0.0 <= result.final["generic.global.top1"] <= 1.0
    assert "status='complete'" in repr(result) and "2 metrics records" in repr(result)


def test_load_run_round_trip(federated_run: fedlt.RunResult) -> None:
    for path in (federated_run.path, str(federated_run.path)):
        again = fedlt.load_run(path)
        assert again.path == federated_run.path and again.config == federated_run.config
        assert again.summary == federated_run.summary
        assert again.metrics == federated_run.metrics and again.status == "complete"


def test_metrics_as_a_dataframe(federated_run: fedlt.RunResult) -> None:
    pytest.importorskip("pandas")
    frame = federated_run.to_pandas()
    assert frame["round"].tolist() == [1, 2]
    assert "generic.global.top1" in frame.columns


def test_to_pandas_without_pandas_says_what_to_install(
    federated_run: fedlt.RunResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(ImportError, match=r"needs pandas.*pip install pandas"):
        federated_run.to_pandas()


def test_continual_run_from_a_mapping(tmp_path: Path) -> None:
    result = fedlt.run(STREAM, run_dir=tmp_path / "stream", backend="inprocess")
    assert result.path == tmp_path / "stream" and result.status == "complete"
    assert result.config.engine == "continual" and result.summary["engine"] == "continual"
    assert [m["kind"] for m in result.metrics].count("task_end") == 2
    assert 0.0 <= result.final["A_last"] <= 1.0
    again = fedlt.load_run(result.path)
    assert (again.config, again.summary, again.metrics) == (
        result.config,
        result.summary,
        result.metrics,
    )


def test_resume_of_a_complete_run_is_refused(federated_run: fedlt.RunResult) -> None:
    with pytest.raises(RunError, match="already complete"):
        fedlt.resume(federated_run.path, backend="inprocess")


def test_refused_runs_leave_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with pytest.raises(ConfigError, match=r"strategy\.name.*did you mean 'fedavg'"):
        fedlt.run(overrides={**TINY, "strategy.name": "fedavgg", "output_dir": out})
    with pytest.raises(ConfigError, match="num_clients"):  # found while building the data
        fedlt.run(
            overrides={**TINY, "data.partition.num_clients": 100_000, "output_dir": out},
            backend="inprocess",
        )
    with pytest.raises(ValueError, match="backend"):
        fedlt.run(overrides={**TINY, "output_dir": out}, backend="ray")  # type: ignore[arg-type]
    assert not out.exists()


def test_load_run_of_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a fedlt run directory"):
        fedlt.load_run(tmp_path)


# ----------------------------------------------------------------------------- configs
def test_a_path_a_mapping_and_a_config_give_the_same_config(tmp_path: Path) -> None:
    raw = {"name": "same", "federated": {"rounds": 4}, "strategy": {"name": "fedprox"}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    from_path = fedlt.load_config(path)
    assert from_path.federated.rounds == 4 and from_path.strategy.name == "fedprox"
    assert fedlt.load_config(str(path)) == from_path
    assert fedlt.load_config(raw) == from_path
    assert (
        fedlt.load_config(from_path) == from_path and fedlt.load_config(from_path) is not from_path
    )


def test_dict_overrides_keep_their_python_types() -> None:
    cfg = fedlt.load_config(
        overrides={
            "name": "123",  # a string stays a string (no YAML round trip)
            "data.partition.alpha": 1,
            "strategy": {"name": "fedprox", "options": {"mu": 0.1}},
            "output_dir": Path("somewhere") / "runs",
            "logging.sinks": ("tensorboard",),
        }
    )
    assert cfg.name == "123"
    assert cfg.data.partition.alpha == 1.0 and isinstance(cfg.data.partition.alpha, float)
    assert (cfg.strategy.name, cfg.strategy.options) == ("fedprox", {"mu": 0.1})
    assert cfg.output_dir == str(Path("somewhere") / "runs")
    assert cfg.logging.sinks == ["tensorboard"]
    with pytest.raises(ConfigError, match="name: expected a string, got 123"):
        fedlt.load_config(overrides=["name=123"])  # the command line's text is YAML


def test_command_line_overrides_still_work() -> None:
    strings = ["federated.rounds=3", "strategy.name=fedprox", "strategy.options={mu: 0.5}"]
    cfg = fedlt.load_config(None, strings)
    assert cfg.federated.rounds == 3 and cfg.strategy.options == {"mu": 0.5}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"federated.rounds.x": 1}, r"federated\.rounds: is 20, not a mapping"),
        ({"federated..rounds": 1}, "empty part"),
        ({"": 1}, "dotted key"),
        ({"federated.rounds": "many"}, r"federated\.rounds: expected an integer"),
        ({"federated.roundz": 3}, "did you mean 'rounds'"),
    ],
)
def test_bad_overrides_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fedlt.load_config(overrides=overrides)


def test_a_single_string_is_not_taken_for_overrides() -> None:
    with pytest.raises(TypeError, match="overrides"):
        fedlt.load_config(overrides="federated.rounds=3")  # type: ignore[arg-type]


def test_shipped_configs_by_name_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert fedlt.load_config("simulations/continual/er_digits.yaml").name == "er_digits"
    shipped = yaml.safe_load(
        (REPO / "simulations" / "fedloge" / "cifar10_lt_cpu_short.yaml").read_text()
    )
    assert fedlt.load_config("fedloge/cifar10_lt_cpu_short.yaml").name == shipped["name"]
    with pytest.raises(ConfigError, match="config file not found"):
        fedlt.load_config("simulations/nope.yaml")


# ----------------------------------------------------------------------------- sweep, report
def test_report_is_callable_before_and_after_its_module_is_imported(
    federated_run: fedlt.RunResult, tmp_path: Path
) -> None:
    import fedlt.report  # rebinds the attribute fedlt.report to the module

    result = fedlt.report(federated_run.path, out=tmp_path / "report")
    assert (tmp_path / "report" / "report.md").is_file() and len(result.groups) == 1
    assert result.markdown == (tmp_path / "report" / "report.md").read_text()
    assert "| fedavg" in result.markdown
    assert fedlt.api.report(federated_run.path, out=tmp_path / "again", formats=["md"]).files


def _inprocess(config: ExperimentConfig, **kwargs: Any) -> Path:
    """A sweep runner that keeps every run in this process (no Ray)."""
    from fedlt.runner import run_experiment

    kwargs.pop("ray_address", None)
    return run_experiment(config, **{**kwargs, "backend": "inprocess"})


def test_sweep_runs_reports_and_skips_finished_runs(tmp_path: Path) -> None:
    from rich.console import Console

    spec = {
        "base": str(REPO / "simulations" / "default.yaml"),
        "set": {**TINY, "federated.rounds": 1},
        "seeds": [0],
        "grid": {"strategy.name": ["fedavg", "fedprox"]},
    }
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(spec))
    import fedlt.sweep  # rebinds the attribute fedlt.sweep to the module: still callable

    console = Console(file=io.StringIO(), width=200)
    kwargs: dict[str, Any] = {"out": tmp_path / "out", "backend": "flower", "console": console}
    result = fedlt.sweep(sweep_file, runner=_inprocess, **kwargs)
    assert result.count("done") == 2 and not result.failed
    assert result.report == tmp_path / "out" / "report"
    assert (result.report / "report.md").is_file()
    assert [r.config.strategy.name for r in result.runs()] == ["fedavg", "fedprox"]
    again = fedlt.sweep(sweep_file, runner=_inprocess, report=False, **kwargs)
    assert again.count("skipped") == 2 and again.report is None


# ----------------------------------------------------------------------------- packaging
def test_import_fedlt_loads_no_heavy_library() -> None:
    code = (
        "import json, sys, fedlt; heavy = {'torch', 'flwr', 'ray', 'numpy', 'yaml', 'rich'}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.slow
def test_quickstart_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/examples/quickstart.py from an empty folder, writing under a temporary one."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("FEDLT_EXAMPLE_OUT", str(tmp_path / "out"))
    runpy.run_path(str(REPO / "docs" / "examples" / "quickstart.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "FedAvg generic top-1" in printed and "FedProx generic top-1" in printed
    assert (tmp_path / "out" / "report" / "report.md").is_file()
    assert len(list((tmp_path / "out" / "runs").glob("*/summary.json"))) == 3
    assert not any((tmp_path / "cwd").iterdir())

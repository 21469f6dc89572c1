"""Metric sinks (logging.sinks): MLflow round trip through its client API, W&B offline,
TensorBoard alias, and sinks that fail never failing the run."""

from __future__ import annotations

import json
import sys

import pytest

import fedlt.runs as runs
from fedlt.config import load_config
from fedlt.errors import ConfigError
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory
from fedlt.tblog import default_mlflow_uri, flatten_config, numeric_items

ONE_ROUND = [
    "data.source=synthetic",
    "data.options={num_classes: 3, image_size: 8, channels: 1, train_per_class: 12,"
    " test_per_class: 4}",
    "data.partition.num_clients=2",
    "federated.rounds=1",
    "federated.local_epochs=1",
    "federated.batch_size=16",
    "logging.progress=false",
    "resources.device=cpu",
    "strategy.name=fedavg",
]


def config(tmp_path, *overrides: str):
    return load_config(None, [f"output_dir={tmp_path / 'runs'}", "name=sinks", *overrides])


def mlflow_runs(tmp_path, experiment: str = "fedlt"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=default_mlflow_uri(tmp_path / "runs"))
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return client, client.search_runs([found.experiment_id])


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, round(m.value, 4)) for m in client.get_metric_history(run_id, key)]


def test_mlflow_round_trip_params_and_metrics(tmp_path):
    cfg = config(tmp_path, "logging.sinks=[mlflow]", "data.partition.alpha=0.25", "seed=7")
    run = RunDirectory.create(cfg)
    run.log_metrics({"round": 1, "generic.global.top1": 0.25, "failed": {}, "ok": True})
    run.log_metrics({"round": 2, "generic.global.top1": 0.5, "loss": {"train": 1.5}})
    run.write_summary({"final": {"generic.global.top1": 0.5}, "status": "complete"})

    client, found = mlflow_runs(tmp_path)
    assert len(found) == 1
    logged = found[0]
    assert logged.info.run_name == run.path.name and logged.info.status == "FINISHED"
    params = logged.data.params
    assert params["data.partition.alpha"] == "0.25" and params["seed"] == "7"
    assert params["logging.sinks"] == '["mlflow"]' and params["data.root"] == "null"
    assert params["strategy.name"] == cfg.strategy.name
    assert set(params) == set(flatten_config(cfg.to_dict()))
    run_id = logged.info.run_id
    assert history(client, run_id, "generic.global.top1") == [(1, 0.25), (2, 0.5)]
    assert history(client, run_id, "loss.train") == [(2, 1.5)]
    assert history(client, run_id, "summary.final.generic.global.top1") == [(2, 0.5)]
    assert "ok" not in logged.data.metrics  # booleans are not metrics
    assert json.loads((run.path / "sinks.json").read_text())["mlflow"]["run_id"] == run_id


def test_mlflow_resumed_run_continues_the_same_mlflow_run(tmp_path):
    cfg = config(tmp_path, "logging.sinks=[mlflow]", "logging.mlflow_experiment=resume")
    run = RunDirectory.create(cfg)
    run.log_metrics({"round": 1, "acc": 0.1})
    run.mark_interrupted("stopped", "SIGTERM")
    client, found = mlflow_runs(tmp_path, "resume")
    assert [r.info.status for r in found] == ["KILLED"]

    again = RunDirectory.open(run.path)
    again.log_metrics({"round": 2, "acc": 0.2})
    again.write_summary({})
    client, found = mlflow_runs(tmp_path, "resume")
    assert [r.info.status for r in found] == ["FINISHED"]
    assert history(client, found[0].info.run_id, "acc") == [(1, 0.1), (2, 0.2)]


def test_one_round_run_with_tensorboard_alias_and_mlflow(tmp_path):
    cfg = config(tmp_path, *ONE_ROUND, "logging.tensorboard=true", "logging.sinks=[mlflow]")
    assert cfg.logging.sink_names() == ["tensorboard", "mlflow"]
    path = run_experiment(cfg, backend="inprocess", progress=False)
    assert any((path / "tensorboard").iterdir())
    client, found = mlflow_runs(tmp_path)
    assert [r.info.status for r in found] == ["FINISHED"]
    assert [step for step, _ in history(client, found[0].info.run_id, "train_loss")] == [1]


class Broken:
    name = "mlflow"

    def __init__(self, context):
        self.calls = 0

    def log(self, record, step):
        raise RuntimeError("tracking server exploded\nsecond line")

    def close(self, status):
        raise AssertionError("a dropped sink is never closed")


def test_failing_sink_warns_once_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runs, "_sink_factories", lambda: {"mlflow": Broken})
    run = RunDirectory.create(config(tmp_path, "logging.sinks=[mlflow]"))
    for step in (1, 2, 3):
        run.log_metrics({"round": step, "acc": 0.1 * step})
    run.write_summary({})
    err = capsys.readouterr().err
    assert err.count("metric sink 'mlflow' failed") == 1
    assert "(RuntimeError: tracking server exploded); it is switched off" in err
    assert [r["round"] for r in run.read_metrics()] == [1, 2, 3]
    assert run.is_complete


def test_missing_package_is_a_warning_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    run = RunDirectory.create(config(tmp_path, "logging.sinks=[mlflow]"))
    run.log_metrics({"round": 1, "acc": 0.5})
    run.write_summary({})
    err = capsys.readouterr().err
    assert err.count("warning: metric sink 'mlflow' failed") == 1
    assert "pip install 'fedlt[mlflow]'" in err and run.is_complete


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = RunDirectory.create(config(tmp_path, "logging.sinks=[wandb]"))
    run.log_metrics({"round": 1, "generic.global.top1": 0.25})
    run.write_summary({})
    run_id = json.loads((run.path / "sinks.json").read_text())["wandb"]["run_id"]
    offline = list((run.path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1
    (log,) = offline[0].glob("*.wandb")
    assert b"generic/global/top1" in log.read_bytes()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("logging.sinks=[mlfow]", r"logging.sinks\[0\]: .*did you mean 'mlflow'"),
        ("logging.sinks=[mlflow, mlflow]", r"logging.sinks: \['mlflow'\] given more than once"),
        ("logging.sinks=mlflow", r"logging.sinks: expected a list"),
        ("logging.wandb_mode=cloud", r"logging.wandb_mode: expected one of 'offline', 'online'"),
    ],
)
def test_sink_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_flatten_config_and_metric_keys():
    flat = flatten_config({"a": {"b": 1, "c": [1, 2], "d": None, "e": {}}, "s": "x", "t": True})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "a.d": "null", "a.e": "{}", "s": "x", "t": "true"}
    record = {"round": 1, "x.y": 0.5, "n": {"m": 2}, "bad": float("nan")}
    assert dict(numeric_items(record, separator=".")) == {"round": 1.0, "x.y": 0.5, "n.m": 2.0}
    assert dict(numeric_items(record)) == {"round": 1.0, "x/y": 0.5, "n/m": 2.0}

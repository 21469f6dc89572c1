"""The federated engine through the in-process executor: metrics, faults, exact resume."""

from __future__ import annotations

import json
import os

import pytest

from fedlt.errors import RunError
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory


def _metrics_bytes(path):
    return (path / "metrics.jsonl").read_bytes()


def test_inprocess_run_writes_metrics_summary_and_figure(tiny_config):
    path = run_experiment(tiny_config(), backend="inprocess", progress=False)
    records = [json.loads(x) for x in _metrics_bytes(path).splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3]
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert 0.0 <= summary["final"]["generic.global.top1"] <= 1.0
    assert summary["final"]["generic.global.top1"] > 0.2  # above chance (0.1) after 3 rounds
    assert "personal.global.top1_mean" in summary["final"]
    assert (path / "figures" / "accuracy.png").stat().st_size > 0
    assert (path / "partition.json").is_file()


def test_failing_client_is_recorded_and_round_completes(tiny_config):
    cfg = tiny_config("federated.fail_clients=[[2, 1]]", "federated.max_failure_fraction=0.5")
    path = run_experiment(cfg, backend="inprocess", progress=False)
    records = [json.loads(x) for x in _metrics_bytes(path).splitlines()]
    assert records[1]["failed"].keys() == {"1"}
    assert "failed on purpose" in records[1]["failed"]["1"]
    assert records[0]["failed"] == {} and records[2]["failed"] == {}
    assert RunDirectory.open(path).is_complete


def test_too_many_failures_stop_with_resumable_checkpoint(tiny_config):
    cfg = tiny_config(
        "federated.fail_clients=[[2, 0], [2, 1], [2, 2]]",
        "federated.max_failure_fraction=0.5",
        "federated.checkpoint_every=5",
    )
    with pytest.raises(RunError, match="3 of 4 clients failed") as info:
        run_experiment(
            cfg, run_dir=cfg.output_dir + "/stopped", backend="inprocess", progress=False
        )
    assert "--resume" in str(info.value)
    run = RunDirectory.open(cfg.output_dir + "/stopped")
    assert run.status["status"] == "failed"
    assert [step for step, _ in run.checkpoints()][-1] == 1  # the last good round


def test_sigkill_then_resume_gives_byte_identical_metrics(tiny_config, tmp_path, killed_run):
    cfg = tiny_config("federated.rounds=5", "federated.checkpoint_every=2", "strategy.name=fedprox")
    reference = run_experiment(cfg, run_dir=tmp_path / "ref", backend="inprocess", progress=False)

    killed = killed_run(cfg, 3)
    partial = [json.loads(x)["round"] for x in _metrics_bytes(killed).splitlines()]
    assert partial == [1, 2, 3]  # round 3 logged after the round-2 checkpoint, then killed

    run_experiment(resume=killed, backend="inprocess", progress=False)
    assert _metrics_bytes(killed) == _metrics_bytes(reference)


def test_impossible_gpu_request_fails_before_any_run_directory(tiny_config):
    import torch

    from fedlt.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = tiny_config("resources.num_gpus=1")
    with pytest.raises(ConfigError, match=r"resources\.num_gpus: .* no CUDA GPU"):
        run_experiment(cfg, progress=False)
    with pytest.raises(ConfigError, match=r"resources\.device: is 'cuda'"):
        run_experiment(tiny_config("resources.device=cuda"), backend="inprocess", progress=False)
    assert not os.path.exists(cfg.output_dir) or os.listdir(cfg.output_dir) == []

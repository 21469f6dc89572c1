"""Numerical faults: a NaN update is a client failure, never part of the global model; a
diverged round stops the run with a checkpoint of the last good round; metrics.jsonl is
strict JSON."""

from __future__ import annotations

import json

import pytest
import torch

from fedlt.errors import RunError
from fedlt.federated.runtime import FederatedRuntime
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory


def _strict(line: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant} in metrics.jsonl")

    return json.loads(line, parse_constant=refuse)


def _poison(monkeypatch, clients: set[int], round_: int = 2) -> None:
    real = FederatedRuntime.train_client

    def train_client(self, client_id, r, global_state, client_state):
        result = real(self, client_id, r, global_state, client_state)
        if r == round_ and client_id in clients:
            key = next(k for k, v in result.update.items() if v.is_floating_point())
            result.update[key] = torch.full_like(result.update[key], float("nan"))
        return result

    monkeypatch.setattr(FederatedRuntime, "train_client", train_client)


def test_a_nan_client_is_a_recorded_failure_and_the_global_model_stays_finite(
    tiny_config, monkeypatch, tmp_path
):
    _poison(monkeypatch, {2})
    path = run_experiment(
        tiny_config(), run_dir=tmp_path / "r", backend="inprocess", progress=False
    )
    lines = (path / "metrics.jsonl").read_text().splitlines()
    records = [_strict(line) for line in lines]
    assert records[1]["failed"].keys() == {"2"}
    assert "non-finite values (NaN or inf)" in records[1]["failed"]["2"]
    assert records[0]["failed"] == {} and records[2]["failed"] == {}
    state = RunDirectory.open(path).load_checkpoint()[0]["global_state"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert records[-1]["generic.global.top1"] > 0.2


def test_a_diverged_round_stops_with_the_last_good_checkpoint(tiny_config, monkeypatch, tmp_path):
    _poison(monkeypatch, {0, 1, 2, 3})
    with pytest.raises(RunError, match=r"round 2: 4 of 4 clients failed .*non-finite"):
        run_experiment(tiny_config(), run_dir=tmp_path / "r", backend="inprocess", progress=False)
    run = RunDirectory.open(tmp_path / "r")
    assert run.status["status"] == "failed"
    assert run.load_checkpoint()[1] == 1  # the last good round
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [_strict(x)["round"] for x in lines] == [1]

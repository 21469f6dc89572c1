"""Federated continual learning through Flower's simulation engine on Ray (one Ray start)."""

from __future__ import annotations

import pytest

from fedlt.runner import run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_flower_pool_equals_in_process(fcl_config, tmp_path, monkeypatch):
    from fedlt.federated import engine

    monkeypatch.setattr(engine, "max_blocks", lambda numel: 3)  # blocks of 2, 2 and 1 client
    overrides = (
        "strategy.name=fedloge",
        "strategy.options={sse_steps: 50}",
        "federated.rounds=3",
        "stream.task_sync=per_client",
        "resources.ray_num_cpus=2",
        "resources.pool_size=3",
    )
    flower = run_experiment(fcl_config(*overrides), run_dir=tmp_path / "flower", progress=False)
    inproc = run_experiment(
        fcl_config(*overrides), run_dir=tmp_path / "inproc", backend="inprocess", progress=False
    )
    assert (inproc / "metrics.jsonl").read_bytes() == (flower / "metrics.jsonl").read_bytes()

"""Through Flower's simulation engine on Ray (slow: each simulation starts Ray, ~10 s).

Kept to two simulations: 2 workers with an injected client failure, and 1 worker; both must
give metrics identical to each other and to the in-process loop over the same clients.
"""

from __future__ import annotations

import json

import pytest

from fedlt.runner import run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _records(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def test_flower_ray_run_is_deterministic_across_workers_and_survives_a_failure(
    tiny_config, tmp_path
):
    overrides = ("federated.fail_clients=[[2, 3]]", "federated.max_failure_fraction=0.5")
    two = run_experiment(
        tiny_config(*overrides, "resources.ray_num_cpus=2"),
        run_dir=tmp_path / "two",
        progress=False,
    )
    records = _records(two)
    assert [r["round"] for r in records] == [1, 2, 3]
    assert list(records[1]["failed"]) == ["3"]
    assert "failed on purpose" in records[1]["failed"]["3"]
    summary = json.loads((two / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["final"]["generic.global.top1"] > 0.2

    one = run_experiment(
        tiny_config(*overrides, "resources.ray_num_cpus=1"),
        run_dir=tmp_path / "one",
        progress=False,
    )
    inproc = run_experiment(
        tiny_config(*overrides), run_dir=tmp_path / "inproc", backend="inprocess", progress=False
    )
    strip = lambda rs: [{k: v for k, v in r.items() if k != "failed"} for r in rs]  # noqa: E731
    assert strip(_records(one)) == strip(records)
    assert strip(_records(inproc)) == strip(records)

"""One ``partition.json`` schema: a run's own file, fed to the ``file`` partitioner, gives the
same partition, and ``fedlt partition`` writes the same bytes (docs/partition.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedlt.data.federated import build_federated_data
from fedlt.data.inspect import partition_command
from fedlt.errors import PartitionError
from fedlt.partition_file import FORMAT
from fedlt.runner import run_experiment
from fedlt.runs import RunDirectory


@pytest.fixture
def finished_run(tiny_config: Callable[..., Any]) -> RunDirectory:
    cfg = tiny_config("federated.rounds=1", "name=part")
    return RunDirectory.at(run_experiment(cfg, backend="inprocess", progress=False))


def test_a_runs_partition_json_feeds_the_file_partitioner(
    finished_run: RunDirectory, tiny_config: Callable[..., Any]
) -> None:
    document = finished_run.read_partition()
    assert document is not None and document["format"] == FORMAT
    original = build_federated_data(finished_run.config.data, finished_run.config.seed)
    cfg = tiny_config(
        "name=part",
        "data.partition.name=file",
        f"data.partition.path={finished_run.partition_path}",
    )
    again = build_federated_data(cfg.data, cfg.seed)
    assert len(again.client_indices) == len(original.client_indices)
    for mine, theirs in zip(again.client_indices, original.client_indices, strict=True):
        assert np.array_equal(mine, theirs)
    assert np.array_equal(again.client_class_counts, original.client_class_counts)
    assert document["client_class_counts"] == original.client_class_counts.tolist()


def test_fedlt_partition_writes_the_runs_schema_byte_for_byte(
    finished_run: RunDirectory, tmp_path: Path
) -> None:
    out = tmp_path / "inspected"
    assert partition_command(str(finished_run.config_path), [], str(out)) == 0
    assert (out / "partition.json").read_bytes() == finished_run.partition_path.read_bytes()


def test_a_mapping_that_is_no_partition_is_named_as_such(
    tiny_config: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"num_clients": 4, "client_indices": [[0], [1], [2], [3]]}))
    cfg = tiny_config("data.partition.name=file", f"data.partition.path={path}")
    with pytest.raises(PartitionError, match=r"'num_clients' is not a client id.*no 'clients'"):
        build_federated_data(cfg.data, cfg.seed)

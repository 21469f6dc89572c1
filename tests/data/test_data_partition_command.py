"""``fedlt partition``: outputs, determinism, custom partitioners, errors leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fedlt.data.inspect import partition_command

BASE = {
    "name": "tiny",
    "seed": 11,
    "data": {
        "source": "synthetic",
        "options": {"num_classes": 4, "image_size": 4, "train_per_class": 30, "test_per_class": 5},
        "longtail": {"profile": "exponential", "imbalance_factor": 5},
        "partition": {"name": "dirichlet", "num_clients": 5, "alpha": 0.5},
    },
}


def write_config(tmp_path: Path, update: dict | None = None, name: str = "cfg.yaml") -> str:
    config = json.loads(json.dumps(BASE))
    config["data"]["cache_dir"] = str(tmp_path / "cache")
    for dotted, value in (update or {}).items():
        node = config
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_writes_outputs_into_default_folder(tmp_path, workdir, capsys):
    assert partition_command(write_config(tmp_path), [], None) == 0
    out = workdir / "partitions" / "tiny-seed11"
    assert sorted(p.name for p in out.iterdir()) == ["heatmap.png", "partition.json", "stats.json"]
    partition = json.loads((out / "partition.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert partition["meta"]["seed"] == 11
    assert partition["meta"]["data"]["partition"]["alpha"] == 0.5
    clients = [partition["clients"][str(k)] for k in range(5)]
    assert sorted(i for c in clients for i in c) == list(range(partition["meta"]["num_train"]))
    assert [c["size"] for c in stats["clients"]] == [len(c) for c in clients]
    assert stats["class_counts"] == [int(30 * 0.2 ** (c / 3)) for c in range(4)]
    assert set(stats["class_groups"]) == {"count", "mass"}
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "local test" in printed and "tiny-seed11" in printed
    assert [p.name for p in workdir.iterdir()] == ["partitions"]  # no temp folder left


def test_same_seed_byte_identical_other_seed_different(tmp_path, workdir):
    config = write_config(tmp_path)
    assert partition_command(config, [], "a") == 0
    assert partition_command(config, [], "b") == 0
    assert partition_command(config, ["seed=12"], "c") == 0
    a, b, c = ((workdir / d / "partition.json").read_bytes() for d in "abc")
    assert a == b
    assert json.loads(a)["clients"] != json.loads(c)["clients"]


def test_refuses_existing_folder(tmp_path, workdir, capsys):
    (workdir / "taken").mkdir()
    (workdir / "taken" / "keep.txt").write_text("mine")
    assert partition_command(write_config(tmp_path), [], "taken") == 2
    assert "taken already exists; refusing to overwrite" in capsys.readouterr().err
    assert [p.name for p in (workdir / "taken").iterdir()] == ["keep.txt"]


def test_custom_partitioner_end_to_end(tmp_path, workdir, custom_partitioners):
    config = write_config(
        tmp_path,
        {
            "data.partition": {
                "name": f"{custom_partitioners}:round_robin",
                "num_clients": 3,
                "options": {"offset": 2},
            }
        },
    )
    assert partition_command(config, [], "custom") == 0
    clients = json.loads((workdir / "custom" / "partition.json").read_text())["clients"]
    assert clients["2"][:3] == [0, 3, 6]
    assert clients["0"][:3] == [1, 4, 7]


def test_file_partition_round_trip(tmp_path, workdir, capsys):
    config = write_config(tmp_path)
    assert partition_command(config, [], "first") == 0
    path = str(workdir / "first" / "partition.json")
    overrides = ["data.partition.name=file", f"data.partition.path={path}", "seed=99"]
    assert partition_command(config, [*overrides, "data.longtail.profile=none"], "again") == 2
    assert "written for a training set of 63 samples, but this config yields 120" in " ".join(
        capsys.readouterr().err.split()
    )
    # Same long tail (seed 11), read back from the file: identical clients.
    assert partition_command(config, overrides[:2], "again") == 0
    first = json.loads((workdir / "first" / "partition.json").read_text())["clients"]
    again = json.loads((workdir / "again" / "partition.json").read_text())["clients"]
    assert first == again


@pytest.mark.parametrize(
    ("update", "overrides", "message"),
    [
        ({"data.partiton": {}}, [], "data.partiton: unknown key (did you mean 'partition'?)"),
        (
            {},
            ["data.partition.alpah=1"],
            "data.partition.alpah: unknown key (did you mean 'alpha'?)",
        ),
        (
            {},
            ["data.partition.num_clients=many"],
            "data.partition.num_clients: expected an integer",
        ),
        (
            {},
            ["data.longtail.imbalance_factor=0.5"],
            "data.longtail.imbalance_factor: must be >= 1",
        ),
        ({}, ["data.partition.alpha=0"], "data.partition.alpha: must be > 0, got 0.0"),
        ({}, ["data.partition.num_clients=0"], "data.partition.num_clients: must be >= 1"),
        (
            {},
            ["data.partition.num_clients=1000"],
            "data.partition.num_clients: 1000 clients but only 63",
        ),
        (
            {},
            ["data.source=cifar11"],
            "unknown data source 'cifar11' (did you mean 'cifar10'?); known: cifar10, cifar100",
        ),
        (
            {},
            ["data.partition.name=shards"],
            "unknown partitioner 'shards' (did you mean 'shard'?); known: dirichlet, file",
        ),
        (
            {},
            ["data.partition.name=custom_partitioner:out_of_range"],
            "client 1: index 70 is out of range [0, 63)",
        ),
        (
            {},
            ["data.partition.name=custom_partitioner:duplicate"],
            "index 0 is given to clients 0 and 2",
        ),
        ({}, ["data.partition.name=custom_partitioner:too_few"], "returned 4 clients, expected 5"),
        ({}, ["data.partition.name=nosuchmodule:fn"], "cannot import module 'nosuchmodule'"),
    ],
)
def test_errors_name_key_and_leave_nothing(
    tmp_path, workdir, capsys, custom_partitioners, update, overrides, message
):
    code = partition_command(write_config(tmp_path, update), overrides, None)
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert message in err
    assert list(workdir.iterdir()) == []


def test_missing_cifar_files_leave_nothing(tmp_path, workdir, capsys, cifar_writer):
    root = cifar_writer(tmp_path / "cifar")
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    config = write_config(
        tmp_path, {"data.source": "cifar10", "data.root": str(root), "data.options": {}}
    )
    assert partition_command(config, [], "out") == 2
    assert "test_batch: not found; expected the python-pickle layout" in " ".join(
        capsys.readouterr().err.split()
    )
    assert list(workdir.iterdir()) == []


def test_corrupt_image_leaves_nothing(tmp_path, workdir, capsys, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=6, size=5)
    (root / "train" / "bee" / "0002.png").write_bytes(b"\x89PNG broken")
    config = write_config(
        tmp_path, {"data.source": "imagefolder", "data.root": str(root), "data.options": {}}
    )
    assert partition_command(config, [], "deep/nested/out") == 2
    assert "bee/0002.png: cannot decode image" in " ".join(capsys.readouterr().err.split())
    assert list(workdir.iterdir()) == []


def test_failure_while_writing_removes_temp_and_parents(tmp_path, workdir, monkeypatch):
    import fedlt.data.inspect as inspect_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(inspect_module, "save_heatmap", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        partition_command(write_config(tmp_path), [], "x/y/out")
    assert list(workdir.iterdir()) == []


def test_stats_local_test_sizes_follow_formula(tmp_path, workdir):
    assert partition_command(write_config(tmp_path), [], "s") == 0
    stats = json.loads((workdir / "s" / "stats.json").read_text())
    counts = np.array([c["class_counts"] for c in stats["clients"]])
    expected = np.minimum((counts / counts.sum() * stats["num_test"]).astype(int), 5).sum(axis=1)
    assert [c["local_test_size"] for c in stats["clients"]] == expected.tolist()

"""Partitioners and the validation of every partition."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedlt.config import PartitionConfig, resolve
from fedlt.data.partition import (
    PARTITIONERS,
    build_partition,
    dirichlet_owners,
    empty_clients,
    enforce_min_size,
)
from fedlt.errors import ConfigError, PartitionError


def labels_of(num_classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(num_classes), per_class)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_disjoint_cover(parts, n):
    flat = np.concatenate(parts)
    assert len(flat) == n
    assert np.array_equal(np.sort(flat), np.arange(n))


def test_registered_names():
    assert PARTITIONERS.names() == ["dirichlet", "file", "iid", "shard"]


def test_iid_sizes_and_cover():
    parts = build_partition(labels_of(3, 11), PartitionConfig(name="iid", num_clients=4), rng())
    assert sorted(len(p) for p in parts) == [8, 8, 8, 9]
    assert_disjoint_cover(parts, 33)


def client_mix(parts, labels, num_classes):
    counts = np.array([np.bincount(labels[p], minlength=num_classes) for p in parts], float)
    return counts / counts.sum(axis=1, keepdims=True)


def test_dirichlet_large_alpha_is_near_uniform_small_alpha_is_skewed():
    labels = labels_of(10, 2000)
    flat = build_partition(labels, PartitionConfig(num_clients=10, alpha=1000.0), rng(1))
    skew = build_partition(labels, PartitionConfig(num_clients=10, alpha=0.05), rng(1))
    assert_disjoint_cover(flat, len(labels))
    assert_disjoint_cover(skew, len(labels))
    flat_mix = client_mix(flat, labels, 10)
    assert np.abs(flat_mix - 0.1).max() < 0.05
    # With alpha = 0.05, each class lands almost entirely on one or two clients.
    per_client_class = np.array([np.bincount(labels[p], minlength=10) for p in skew])
    class_share = per_client_class.max(axis=0) / 2000
    assert np.median(class_share) > 0.8


def test_dirichlet_is_per_sample_not_proportional_split():
    # One class, two clients, alpha huge: q ~ (0.5, 0.5) and each sample flips a coin,
    # so client sizes are binomial (not exactly n/2 as a proportional split would give).
    labels = np.zeros(4000, dtype=np.int64)
    sizes = [
        np.bincount(dirichlet_owners(labels, 2, 1e6, rng(s)), minlength=2)[0] for s in range(20)
    ]
    assert len(set(sizes)) > 5
    assert abs(np.mean(sizes) - 2000) < 3 * np.sqrt(1000 / 20) + 5


def test_dirichlet_deterministic_per_generator():
    labels = labels_of(5, 50)
    cfg = PartitionConfig(num_clients=7, alpha=0.3)
    a = build_partition(labels, cfg, rng(5))
    b = build_partition(labels, cfg, rng(5))
    c = build_partition(labels, cfg, rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_min_size_variant_terminates_and_meets_minimum_at_tiny_alpha():
    labels = labels_of(20, 100)
    cfg = PartitionConfig(num_clients=100, alpha=0.01, min_size=15)
    parts = build_partition(labels, cfg, rng(0))
    assert min(len(p) for p in parts) >= 15
    assert_disjoint_cover(parts, len(labels))
    # The plain rule leaves clients empty at this alpha, so the repair did the work.
    plain = build_partition(labels, PartitionConfig(num_clients=100, alpha=0.01), rng(0))
    assert empty_clients(plain)


def test_min_size_exact_fit():
    parts = enforce_min_size([np.arange(10), np.array([], int), np.array([], int)], 3, rng())
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    assert_disjoint_cover(parts, 10)


def test_min_size_impossible_is_rejected_up_front():
    with pytest.raises(ConfigError, match=r"data\.partition\.min_size: num_clients \* min_size"):
        build_partition(labels_of(2, 10), PartitionConfig(num_clients=5, min_size=5), rng())


def test_shard_limits_classes_per_client():
    labels = labels_of(10, 40)
    parts = build_partition(
        labels, PartitionConfig(name="shard", num_clients=10, classes_per_client=2), rng(3)
    )
    assert_disjoint_cover(parts, len(labels))
    assert max(len(np.unique(labels[p])) for p in parts) <= 2


def test_file_partition_formats(tmp_path):
    labels = labels_of(2, 3)
    as_dict = tmp_path / "p.json"
    as_dict.write_text(json.dumps({"1": [0, 1], "0": [2, 3, 4, 5]}))
    as_list = tmp_path / "l.json"
    as_list.write_text(json.dumps([[5], [0, 1, 2, 3, 4]]))
    ids = tmp_path / "ids.npy"
    np.save(ids, np.array([1, 1, 0, 0, 0, 1]))
    written = tmp_path / "partition.json"
    written.write_text(json.dumps({"meta": {}, "clients": {"0": [0], "1": [1, 2, 3, 4, 5]}}))
    expected = {
        as_dict: [[2, 3, 4, 5], [0, 1]],
        as_list: [[5], [0, 1, 2, 3, 4]],
        ids: [[2, 3, 4], [0, 1, 5]],
        written: [[0], [1, 2, 3, 4, 5]],
    }
    for path, want in expected.items():
        cfg = PartitionConfig(name="file", num_clients=2, path=str(path))
        got = build_partition(labels, cfg, rng())
        assert [p.tolist() for p in got] == want, path


def test_file_partition_errors(tmp_path):
    labels = labels_of(2, 3)
    with pytest.raises(ConfigError, match=r"data\.partition\.path: required"):
        build_partition(labels, PartitionConfig(name="file", num_clients=2), rng())
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=r"data\.partition\.path: partition file not found.*nope"):
        build_partition(
            labels, PartitionConfig(name="file", num_clients=2, path=str(missing)), rng()
        )
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PartitionError, match=r"bad\.json: not valid JSON"):
        build_partition(labels, PartitionConfig(name="file", num_clients=2, path=str(bad)), rng())
    ids = tmp_path / "ids.npy"
    np.save(ids, np.array([0, 1, 2, 0, 0, 1]))
    with pytest.raises(PartitionError, match=r"sample 2 has client id 2, outside \[0, 2\)"):
        build_partition(labels, PartitionConfig(name="file", num_clients=2, path=str(ids)), rng())
    short = tmp_path / "short.npy"
    np.save(short, np.array([0, 1]))
    with pytest.raises(PartitionError, match="2 client ids for 6 training samples"):
        build_partition(labels, PartitionConfig(name="file", num_clients=2, path=str(short)), rng())


def test_custom_partitioner_by_reference(custom_partitioners):
    labels = labels_of(3, 4)
    cfg = PartitionConfig(
        name=f"{custom_partitioners}:round_robin", num_clients=3, options={"offset": 1}
    )
    parts = build_partition(labels, cfg, rng())
    assert parts[1].tolist() == [0, 3, 6, 9]
    cfg = PartitionConfig(name=f"{custom_partitioners}:as_mapping", num_clients=4)
    assert_disjoint_cover(build_partition(labels, cfg, rng()), 12)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "out_of_range",
            r"'custom_partitioner:out_of_range': client 1: index 19 is out of range \[0, 12\)",
        ),
        ("duplicate", r"'custom_partitioner:duplicate': index 0 is given to clients 0 and 2"),
        (
            "too_few",
            r"'custom_partitioner:too_few': returned 2 clients, expected 3 "
            r"\(data\.partition\.num_clients\)",
        ),
        (
            "floats",
            r"'custom_partitioner:floats': client 0: expected a 1-D list of integer indices",
        ),
    ],
)
def test_custom_partitioner_bad_results(custom_partitioners, function, message):
    cfg = PartitionConfig(name=f"{custom_partitioners}:{function}", num_clients=3)
    with pytest.raises(PartitionError, match=message):
        build_partition(labels_of(3, 4), cfg, rng())


def test_overlap_allowed_when_declared(custom_partitioners):
    cfg = PartitionConfig(name=f"{custom_partitioners}:everyone_gets_all", num_clients=2)
    parts = build_partition(labels_of(2, 2), cfg, rng())
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_custom_partitioner_bad_options(custom_partitioners):
    cfg = PartitionConfig(
        name=f"{custom_partitioners}:round_robin", num_clients=3, options={"ofset": 1}
    )
    with pytest.raises(
        ConfigError, match=r"data\.partition\.options: partitioner .* cannot be called"
    ):
        build_partition(labels_of(3, 4), cfg, rng())


def test_options_rejected_for_builtin():
    with pytest.raises(ConfigError, match=r"data\.partition\.options: only custom partitioners"):
        build_partition(labels_of(2, 5), PartitionConfig(options={"x": 1}), rng())


def test_more_clients_than_samples():
    with pytest.raises(ConfigError, match=r"data\.partition\.num_clients: 11 clients but only 10"):
        build_partition(labels_of(2, 5), PartitionConfig(num_clients=11), rng())


def test_mapping_with_missing_client_and_bad_key():
    from fedlt.data.partition import validate_partition

    with pytest.raises(PartitionError, match="client 1 is missing"):
        validate_partition({"0": [0], "2": [1]}, 3, 3, "x")
    with pytest.raises(PartitionError, match="client key 'a' is not an integer"):
        validate_partition({"a": [0]}, 3, 1, "x")
    with pytest.raises(PartitionError, match=r"client 0 \(twice\)"):
        validate_partition([[0, 0]], 3, 1, "x")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"alpha": 0}, r"data\.partition\.alpha: must be > 0, got 0"),
        ({"alpha": -1.5}, r"data\.partition\.alpha: must be > 0"),
        ({"num_clients": 0}, r"data\.partition\.num_clients: must be >= 1, got 0"),
        ({"num_clients": "ten"}, r"data\.partition\.num_clients: expected an integer, got 'ten'"),
        ({"alpah": 0.1}, r"data\.partition\.alpah: unknown key \(did you mean 'alpha'\?\)"),
        (
            {"name": "dirichlett"},
            r"unknown partitioner 'dirichlett' \(did you mean 'dirichlet'\?\); "
            r"known: dirichlet, file, iid, shard",
        ),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"data": {"partition": override}})

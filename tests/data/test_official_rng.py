"""``data.rng: fedloge-official`` against the official FedLoGe draws (docs/partition.md).

Every expected value is derived here, independently, by restating the official rules with
numpy's *global* legacy generator, as the official code calls it (``np.random.seed``,
``np.random.shuffle``, ...; the global state is saved and restored around each test), on
CIFAR-10-shaped label arrays: 5,000 training and 1,000 test images per class.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from fedlt.config import DataConfig, LongTailConfig, PartitionConfig, load_config
from fedlt.configtools import to_dict
from fedlt.data.federated import build_federated_data, client_class_counts
from fedlt.data.official import fedloge_dirichlet, fedloge_local_tests, fedloge_longtail
from fedlt.errors import ConfigError
from fedlt.seeding import copy_legacy, fedloge_partition_stream
from strategies.federated import sse_c
from strategies.federated.sse_c import (
    SSECSpec,
    column_geometry,
    compute_official_sse_c,
    official_etf,
)

NUM_CLASSES, NUM_CLIENTS, ALPHA, IF, SEED = 10, 40, 0.5, 100, 3407
TRAIN_PER_CLASS, TEST_PER_CLASS = 5000, 1000


@pytest.fixture
def global_numpy():
    """numpy's global generator for the reference draws; its state is restored afterwards."""
    state = np.random.get_state()
    yield np.random
    np.random.set_state(state)


def pickle_order_labels() -> np.ndarray:
    """CIFAR-10-shaped training labels in a mixed order (the pickles interleave classes)."""
    labels = np.repeat(np.arange(NUM_CLASSES), TRAIN_PER_CLASS)
    return np.random.RandomState(12345).permutation(labels)


def official_test_labels() -> np.ndarray:
    """CIFAR-10-shaped test labels (the test pickle interleaves classes too)."""
    return np.tile(np.arange(NUM_CLASSES), TEST_PER_CLASS)


def reference_longtail(npr, labels: np.ndarray) -> list[np.ndarray]:
    """Draw 1 restated: seed 0; per class, shuffle its indices and keep the first n_c."""
    npr.seed(0)
    blocks = []
    for c in range(NUM_CLASSES):
        n_c = int(TRAIN_PER_CLASS * (1 / IF) ** (c / (NUM_CLASSES - 1.0)))
        idx = np.where(labels == c)[0]
        npr.shuffle(idx)
        blocks.append(idx[:n_c])
    return blocks


def reference_partition(npr, y: np.ndarray) -> list[set[int]]:
    """Draw 2 restated: run seed; binomial(1, 1, (N, C)); per class Dirichlet + choice."""
    npr.seed(SEED)
    npr.binomial(1, 1, size=(NUM_CLIENTS, NUM_CLASSES))
    users: list[set[int]] = [set() for _ in range(NUM_CLIENTS)]
    for c in range(NUM_CLASSES):
        idx = np.where(y == c)[0]
        q = npr.dirichlet([ALPHA] * NUM_CLIENTS)
        owners = npr.choice(list(range(NUM_CLIENTS)), size=len(idx), p=q.tolist())
        for k in range(NUM_CLIENTS):
            users[k] |= {int(i) for i in idx[owners == k]}
    return users


def reference_local_tests(npr, counts: np.ndarray, y_test: np.ndarray) -> list[set[int]]:
    """Draw 3 restated (continuing the stream): client by client, class by class."""
    total = counts.sum()
    by_class = {c: [i for i in range(len(y_test)) if y_test[i] == c] for c in range(NUM_CLASSES)}
    out = []
    for k in range(len(counts)):
        chosen: list[int] = []
        for c in range(NUM_CLASSES):
            size = int(counts[k][c] / total * len(y_test))
            chosen += [int(i) for i in npr.choice(by_class[c], size, replace=False)]
        out.append(set(chosen))
    return out


@pytest.fixture(scope="module")
def official_data():
    """fedlt's official draws 1-3 on the label arrays, and the stream they leave."""
    labels = pickle_order_labels()
    kept = fedloge_longtail(labels, LongTailConfig(profile="exponential", imbalance_factor=IF))
    y = labels[kept]
    stream = fedloge_partition_stream(SEED)
    parts = fedloge_dirichlet(y, NUM_CLASSES, NUM_CLIENTS, ALPHA, stream)
    counts = client_class_counts(y, parts, NUM_CLASSES)
    tests = fedloge_local_tests(counts, official_test_labels(), stream)
    return {"labels": labels, "kept": kept, "parts": parts, "tests": tests, "stream": stream}


def test_longtail_index_sets_and_order(official_data, global_numpy):
    blocks = reference_longtail(global_numpy, official_data["labels"])
    assert np.array_equal(official_data["kept"], np.concatenate(blocks))  # same order too
    assert len(official_data["kept"]) == 12_406
    y = official_data["labels"][official_data["kept"]]
    assert np.all(np.diff(y) >= 0)  # class blocks, class 0 first


def test_longtail_ignores_the_run_seed(official_data):
    again = fedloge_longtail(pickle_order_labels(), LongTailConfig("exponential", IF))
    assert np.array_equal(again, official_data["kept"])


def test_partition_index_sets(official_data, global_numpy):
    y = official_data["labels"][official_data["kept"]]
    expected = reference_partition(global_numpy, y)
    assert [set(p.tolist()) for p in official_data["parts"]] == expected
    assert all(np.all(np.diff(p) > 0) for p in official_data["parts"])  # stored sorted


def test_local_test_sets_and_counts(official_data, global_numpy):
    y = official_data["labels"][official_data["kept"]]
    reference_partition(global_numpy, y)  # brings the global stream to where draw 3 starts
    counts = client_class_counts(y, official_data["parts"], NUM_CLASSES)
    expected = reference_local_tests(global_numpy, counts, official_test_labels())
    assert [set(t.tolist()) for t in official_data["tests"]] == expected
    wanted = (counts / counts.sum() * len(official_test_labels())).astype(np.int64)
    got = np.stack(
        [
            np.bincount(official_test_labels()[t], minlength=NUM_CLASSES)
            for t in official_data["tests"]
        ]
    )
    assert np.array_equal(got, wanted)
    # the stream continues exactly where the official one does
    assert _same_state(official_data["stream"], global_numpy)


def test_local_test_overflow_draws_twice_as_the_official_cifar100_code():
    counts = np.array([[30, 0], [10, 10]])  # client 0 wants int(30/50*8) = 4 of 2 class-0 images
    y_test = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    stream = np.random.RandomState(5)
    reference = np.random.RandomState(5)
    parts = fedloge_local_tests(counts, y_test, stream)
    by_class = [[0, 1], [2, 3, 4, 5, 6, 7]]
    first = set(reference.choice(by_class[0], 2, replace=False).tolist())
    first |= set(reference.choice(by_class[0], 2, replace=False).tolist())  # the overflow
    first |= set(reference.choice(by_class[1], 0, replace=False).tolist())
    second = set(reference.choice(by_class[0], 1, replace=False).tolist())
    second |= set(reference.choice(by_class[1], 1, replace=False).tolist())
    assert [set(p.tolist()) for p in parts] == [first, second] and first == {0, 1}
    assert _same_state(stream, reference)


def _same_state(stream: np.random.RandomState, other) -> bool:
    a, b = stream.get_state(), other.get_state()
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def exact_zeros(weight: torch.Tensor) -> set[int]:
    """Row-major positions of the entries that are exactly ±0, read from the bits: a float
    comparison would count denormals as zero while the CPU flushes them
    (``resources.flush_denormal``, which earlier tests may have switched on)."""
    bits = weight.contiguous().flatten().view(torch.int32) & 0x7FFFFFFF
    return {int(i) for i in torch.nonzero(bits == 0).flatten()}


def reference_sse_c_draws(npr, d: int, c: int, beta: float) -> tuple[torch.Tensor, set[int]]:
    """Draw 4 restated: ETF from QR of random((d, C)) in float32, then the zero positions."""
    basis, _ = np.linalg.qr(npr.random(size=(d, c)))
    p = torch.tensor(basis).float()
    etf = np.sqrt(c / (c - 1)) * torch.matmul(p, torch.eye(c) - (1 / c) * torch.ones(c, c))
    zeros = npr.choice(d * c, int(beta * d * c), replace=False)
    return etf, {int(z) for z in zeros}


def test_sse_c_zeros_and_statistics_at_d64(official_data, global_numpy):
    """The official float32 path (~5 s): exactly the 384 official zeros at d=64, C=10."""
    y = official_data["labels"][official_data["kept"]]
    reference_partition(global_numpy, y)
    counts = client_class_counts(y, official_data["parts"], NUM_CLASSES)
    reference_local_tests(global_numpy, counts, official_test_labels())
    etf, zeros = reference_sse_c_draws(global_numpy, 64, NUM_CLASSES, 0.6)

    stream = official_data["stream"]
    before = stream.get_state()[2]
    assert torch.equal(official_etf(64, NUM_CLASSES, copy_legacy(stream)), etf)
    spec = SSECSpec(feature_dim=64, num_classes=NUM_CLASSES, seed=SEED)
    weight = compute_official_sse_c(spec, stream)
    assert stream.get_state()[2] == before  # drawn from a copy: the data's stream is intact
    assert weight.dtype == torch.float32
    assert exact_zeros(weight) == zeros
    assert len(zeros) == 384
    norms, angles = column_geometry(weight)
    assert torch.all((norms - 0.100).abs() <= 0.002), norms
    ideal = math.degrees(math.acos(-1.0 / (NUM_CLASSES - 1)))  # 96.38°
    assert abs(float(angles.mean()) - ideal) <= 0.5, float(angles.mean())


def test_denormals_kept_inside_and_restored():
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        with sse_c._denormals_kept():
            assert not sse_c._flushes_denormals()
        assert sse_c._flushes_denormals()
    finally:
        torch.set_flush_denormal(False)


# ------------------------------------------------------------------ through the config
def official_cfg(tmp_path, **partition) -> DataConfig:
    return DataConfig(
        source="synthetic",
        options={"num_classes": 5, "image_size": 2, "train_per_class": 60, "test_per_class": 20},
        cache_dir=str(tmp_path / "cache"),
        rng="fedloge-official",
        longtail=LongTailConfig(profile="exponential", imbalance_factor=10),
        partition=PartitionConfig(**{"num_clients": 6, "alpha": 0.5, **partition}),
    )


def test_build_federated_data_uses_the_official_draws(tmp_path):
    data = build_federated_data(official_cfg(tmp_path), seed=7)
    labels = np.repeat(np.arange(5), 60)  # the synthetic source's class-sorted labels
    kept = fedloge_longtail(labels, LongTailConfig("exponential", 10))
    assert np.array_equal(data.source_indices, kept)
    stream = fedloge_partition_stream(7)
    parts = fedloge_dirichlet(labels[kept], 5, 6, 0.5, stream)
    assert all(np.array_equal(a, b) for a, b in zip(data.client_indices, parts, strict=True))
    tests = fedloge_local_tests(data.client_class_counts, data.test.labels, stream)
    assert all(np.array_equal(a, b) for a, b in zip(data.client_test_indices, tests, strict=True))
    assert _same_state(data.official_stream, stream)
    own = dataclasses.replace(official_cfg(tmp_path), rng="fedlt")
    assert build_federated_data(own, seed=7).official_stream is None


def test_runtime_hands_the_official_stream_to_fedloge(tmp_path):
    from fedlt.federated.runtime import FederatedRuntime

    cfg = load_config(
        None,
        [
            "data.rng=fedloge-official",
            "seed=5",
            "strategy.name=fedloge",
            "strategy.options={sse_steps: 3, sse_cache: false}",
            "resources.device=cpu",
            f"output_dir={tmp_path}",
        ],
    )
    runtime = FederatedRuntime(cfg)
    d = runtime.strategy.model.feature_dim
    weight = runtime.strategy.sse_c.weight.detach().T
    draws = copy_legacy(runtime.data.official_stream)
    draws.random_sample((d, runtime.data.num_classes))
    zeros = draws.choice(weight.numel(), int(0.6 * weight.numel()), replace=False)
    assert exact_zeros(weight) == set(zeros.tolist())
    assert runtime.strategy.sse_spec.stream.startswith("fedloge-official-")


def test_partition_command_records_test_class_counts(tmp_path):
    from fedlt.data.inspect import partition_command

    config = tmp_path / "official.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "official",
                "seed": 3,
                "data": to_dict(official_cfg(tmp_path)),
            }
        )
    )
    assert partition_command(str(config), [], str(tmp_path / "out")) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    data = build_federated_data(official_cfg(tmp_path), seed=3)
    for k, client in enumerate(stats["clients"]):
        assert client["class_counts"] == data.client_class_counts[k].tolist()
        expected = np.bincount(data.test.labels[data.client_test_indices[k]], minlength=5)
        assert client["test_class_counts"] == expected.tolist()
        assert sum(client["test_class_counts"]) == client["local_test_size"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["data.partition.name=iid"], "data.partition.name"),
        (["data.partition.min_size=2"], "data.partition.name"),
        ([f"seed={2**32}"], "seed"),
    ],
)
def test_config_refuses_what_the_official_code_cannot_draw(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.rng=fedloge-official", *overrides])
    assert info.value.key == key


def test_rng_values_are_checked():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.rng=official"])
    assert info.value.key == "data.rng"

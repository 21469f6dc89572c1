"""Si-Blurry stream generation: golden values of the official sampler and invariants."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedlt.configtools import from_dict
from fedlt.continual.config import StreamConfig
from fedlt.continual.stream import make_stream
from fedlt.errors import ConfigError

CIFAR100 = np.tile(np.arange(100), 500)  # 500 images per class, CIFAR-like interleaved order

# Official sampler (moonjunyyy/Si-Blurry c4024ce), K=5, N=50, M=10 — docs/continual.md.
GOLDEN_CIFAR100_SIZES = {
    1: [6500, 3000, 10264, 22000, 8236],
    2: [4500, 9500, 13500, 10500, 12000],
    3: [21000, 13000, 2500, 7500, 6000],
    4: [4000, 1300, 18000, 17000, 9700],
    5: [6500, 27500, 8061, 3389, 4550],
}
GOLDEN_SEED1_DISJOINT = [
    [45, 15, 90],
    [],
    [32, 35, 63, 17, 72, 79, 96, 48, 36, 16, 11, 23, 80, 22, 58, 3, 62, 50, 33, 66],
    [99, 43, 76, 7, 57, 81, 82, 6, 10, 24, 52, 95, 73, 91],
    [21, 38, 31, 85, 59, 13, 69, 75, 70, 64, 8, 77, 34],
]
GOLDEN_SEED1_BLURRY = [
    [46, 39, 92, 0, 44, 98, 49, 9, 4, 61],
    [12, 83, 28, 78, 40, 88],
    [],
    [
        54,
        5,
        26,
        41,
        89,
        20,
        84,
        2,
        1,
        55,
        19,
        74,
        25,
        37,
        42,
        14,
        30,
        18,
        67,
        71,
        68,
        27,
        60,
        51,
        29,
        56,
        93,
        47,
        97,
        94,
    ],
    [86, 87, 65, 53],
]


@pytest.mark.parametrize("seed", sorted(GOLDEN_CIFAR100_SIZES))
def test_cifar100_task_sizes_match_official_sampler(seed):
    assert make_stream(CIFAR100, seed=seed).task_sizes == GOLDEN_CIFAR100_SIZES[seed]


def test_cifar100_seed1_classes_match_official_sampler():
    stream = make_stream(CIFAR100, seed=1)
    assert [t.disjoint_classes for t in stream.tasks] == GOLDEN_SEED1_DISJOINT
    assert [t.blurry_classes for t in stream.tasks] == GOLDEN_SEED1_BLURRY


def test_tiny_imagenet_seed1_task_sizes():
    labels = np.tile(np.arange(200), 500)
    assert make_stream(labels, seed=1).task_sizes == [19500, 13000, 26000, 8763, 32737]


def test_sizes_depend_only_on_class_counts():
    grouped = np.repeat(np.arange(100), 500)  # ImageFolder-like class-grouped order
    assert make_stream(grouped, seed=3).task_sizes == GOLDEN_CIFAR100_SIZES[3]


def _check_partition(stream, labels):
    """Every sample streamed exactly once; disjoint classes only in their own task."""
    all_idx = np.concatenate([t.indices for t in stream.tasks])
    assert sorted(all_idx.tolist()) == list(range(len(labels)))
    for k, task in enumerate(stream.tasks):
        present = set(np.unique(labels[task.indices]).tolist())
        own = set(task.disjoint_classes) | set(task.blurry_classes)
        others_blurry = {c for j, t in enumerate(stream.tasks) if j != k for c in t.blurry_classes}
        assert present <= own | others_blurry
        for j, other in enumerate(stream.tasks):
            if j != k:
                assert not set(task.disjoint_classes) & set(
                    np.unique(labels[other.indices]).tolist()
                )


@pytest.mark.parametrize("pick", ["first", "random"])
def test_stream_is_a_partition_with_scattered_blurry_samples(pick):
    stream = make_stream(CIFAR100, seed=1, blurry_pick=pick)
    _check_partition(stream, CIFAR100)
    # about M% of the blurry-class samples leave their own task
    moved = 0
    for task in stream.tasks:
        own = task.disjoint_classes + task.blurry_classes
        moved += int((~np.isin(CIFAR100[task.indices], own)).sum())
    assert 0 < moved <= 50 * 500 * 10 // 100


def test_blurry_pick_random_spreads_scattered_samples_over_classes():
    grouped = np.repeat(np.arange(100), 500)
    first = make_stream(grouped, seed=1, blurry_pick="first")
    rand = make_stream(grouped, seed=1, blurry_pick="random")
    _check_partition(rand, grouped)

    def foreign_classes(stream):
        out = set()
        for task in stream.tasks:
            own = set(task.disjoint_classes) | set(task.blurry_classes)
            out |= set(np.unique(grouped[task.indices]).tolist()) - own
        return out

    # "first" in a class-grouped dataset gives away samples of only a few classes
    assert len(foreign_classes(rand)) > 2 * len(foreign_classes(first))


def test_stream_is_deterministic_per_seed_and_differs_between_seeds():
    a, b = make_stream(CIFAR100, seed=7), make_stream(CIFAR100, seed=7)
    assert all(np.array_equal(x.indices, y.indices) for x, y in zip(a.tasks, b.tasks, strict=True))
    c = make_stream(CIFAR100, seed=8)
    assert a.task_sizes != c.task_sizes


def test_i_blurry_splits_classes_and_quotas_evenly():
    stream = make_stream(CIFAR100, seed=2, scenario="i-blurry")
    _check_partition(stream, CIFAR100)
    assert [len(t.disjoint_classes) for t in stream.tasks] == [10] * 5
    assert [len(t.blurry_classes) for t in stream.tasks] == [10] * 5
    assert stream.params["quotas"] == [500] * 5
    assert stream.task_sizes == [10_000] * 5


def test_long_tailed_labels_and_blurry_from_tail():
    counts = (500 * 0.01 ** (np.arange(20) / 19)).astype(int)  # exponential long tail, IF=100
    labels = np.repeat(np.arange(20), counts)
    stream = make_stream(labels, num_tasks=2, seed=4, blurry_from_tail=True)
    _check_partition(stream, labels)
    blurry = sorted(c for t in stream.tasks for c in t.blurry_classes)
    assert blurry == list(range(10, 20))  # the 10 classes with the fewest samples
    plain = make_stream(labels, num_tasks=2, seed=4)
    _check_partition(plain, labels)
    assert sorted(c for t in plain.tasks for c in t.blurry_classes) != blurry


def test_empty_class_and_batches_cover_task():
    labels = np.array([0, 1, 1, 3, 3, 3, 0, 1])  # class 2 has no samples
    stream = make_stream(labels, num_tasks=2, disjoint_percent=50, seed=0, num_classes=4)
    _check_partition(stream, labels)
    for k in range(2):
        batches = list(stream.batches(k, 3))
        assert len(batches) == stream.num_batches(k, 3)
        joined = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        assert np.array_equal(joined, stream.tasks[k].indices)
        if len(batches) > 1:
            assert np.array_equal(np.concatenate(list(stream.batches(k, 3, start=1))), joined[3:])


def test_bad_inputs_name_the_key():
    with pytest.raises(ConfigError, match=r"stream\.num_tasks"):
        make_stream(CIFAR100, num_tasks=0)
    with pytest.raises(ConfigError, match=r"stream\.blurry_pick"):
        make_stream(CIFAR100, blurry_pick="last")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="1-D integer"):
        make_stream(np.zeros((3, 2), dtype=int))
    with pytest.raises(ConfigError, match=r"stream\.disjoint_percent"):
        from_dict(StreamConfig, {"disjoint_percent": 120}, "stream")
    with pytest.raises(ConfigError, match=r"stream\.scenario"):
        from_dict(StreamConfig, {"scenario": "iblurry"}, "stream")
    with pytest.raises(ConfigError, match=r"stream\.memory_polcy"):
        from_dict(StreamConfig, {"memory_polcy": "reservoir"}, "stream")


def test_to_json_lists_classes_sizes_and_counts():
    stream = make_stream(CIFAR100, seed=1)
    info = stream.to_json(CIFAR100)
    assert info["task_sizes"] == GOLDEN_CIFAR100_SIZES[1]
    assert info["tasks"][0]["disjoint_classes"] == GOLDEN_SEED1_DISJOINT[0]
    assert sum(info["tasks"][3]["class_counts"].values()) == 22000


def test_write_stream_folder_is_atomic_and_refuses_existing(tmp_path, monkeypatch):
    from fedlt.continual import inspect
    from fedlt.errors import RunError

    labels = np.repeat(np.arange(10), 20)
    stream = make_stream(labels, num_tasks=2, seed=1)
    out = inspect.write_stream_folder(stream, labels, tmp_path / "s")
    assert json.loads((out / "stream.json").read_text())["task_sizes"] == stream.task_sizes
    assert (out / "stream.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RunError, match="already exists"):
        inspect.write_stream_folder(stream, labels, tmp_path / "s")

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(inspect, "plot_stream", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        inspect.write_stream_folder(stream, labels, tmp_path / "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # nothing left behind


def test_stream_command_prints_and_writes(tmp_path, capsys):
    from fedlt.continual.inspect import stream_command

    config = tmp_path / "c.yaml"
    config.write_text(
        "name: demo\nengine: continual\nstrategy: {name: er}\n"
        "data: {source: synthetic, options: {num_classes: 10, image_size: 4, channels: 1,"
        " train_per_class: 30, test_per_class: 2}}\n"
        f"output_dir: {tmp_path}\n"
    )
    assert stream_command(str(config), ["stream.num_tasks=2", "seed=2"], str(tmp_path / "out")) == 0
    printed = capsys.readouterr().out
    info = json.loads((tmp_path / "out" / "stream.json").read_text())
    assert info["num_tasks"] == 2 and sum(info["task_sizes"]) == 300
    assert str(info["task_sizes"][0]) in printed

"""Data sources: digits, synthetic, CIFAR pickles and image folders written in their formats."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fedlt.data.sources as sources
from fedlt.config import DataConfig
from fedlt.data.sources import SOURCES, channel_stats, load_source, read_cifar_batch
from fedlt.errors import ConfigError, DataError


def load(tmp_path, source, root=None, seed=0, **options):
    cfg = DataConfig(source=source, root=str(root) if root else None, options=options)
    cfg.cache_dir = str(tmp_path / "cache")
    return load_source(cfg, seed)


def test_registered_sources():
    assert SOURCES.names() == ["cifar10", "cifar100", "digits", "imagefolder", "synthetic"]


def test_digits_shapes_balanced_test_and_seeded_split(tmp_path):
    a = load(tmp_path, "digits", seed=1)
    b = load(tmp_path, "digits", seed=1)
    c = load(tmp_path, "digits", seed=2)
    assert a.train.images.shape[1:] == (8, 8, 1) and a.train.images.dtype == np.uint8
    assert a.train.images.max() == 255
    test_counts = np.bincount(a.test.labels, minlength=10)
    assert len(set(test_counts.tolist())) == 1  # balanced
    assert len(a.train) + len(a.test) <= 1797
    assert abs(len(a.test) / (len(a.train) + len(a.test)) - 0.3) < 0.03
    assert np.array_equal(a.train.labels, b.train.labels)
    assert np.array_equal(a.train.images, b.train.images)
    assert not np.array_equal(a.test.images, c.test.images)
    assert a.image_shape == (1, 8, 8)


def test_synthetic_shapes_unequal_sizes_determinism(tmp_path):
    opts = {"num_classes": 3, "image_size": 5, "channels": 2, "train_per_class": [4, 2, 1]}
    a = load(tmp_path, "synthetic", seed=3, test_per_class=2, **opts)
    b = load(tmp_path, "synthetic", seed=3, test_per_class=2, **opts)
    c = load(tmp_path, "synthetic", seed=4, test_per_class=2, **opts)
    assert a.train.images.shape == (7, 5, 5, 2)
    assert np.bincount(a.train.labels).tolist() == [4, 2, 1]
    assert np.bincount(a.test.labels).tolist() == [2, 2, 2]
    assert np.array_equal(a.train.images, b.train.images)
    assert not np.array_equal(a.train.images, c.train.images)


def test_synthetic_is_learnable_by_nearest_class_mean(tmp_path):
    data = load(tmp_path, "synthetic", num_classes=10, image_size=8, train_per_class=50)
    x = data.train.images.reshape(len(data.train), -1).astype(float)
    means = np.stack([x[data.train.labels == c].mean(0) for c in range(10)])
    xt = data.test.images.reshape(len(data.test), -1).astype(float)
    predicted = np.argmin(((xt[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == data.test.labels).mean() > 0.9


def test_synthetic_option_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.options\.image_sise: unknown key \(did you mean"):
        load(tmp_path, "synthetic", image_sise=8)
    with pytest.raises(ConfigError, match=r"data\.options\.image_size: expected an integer"):
        load(tmp_path, "synthetic", image_size="big")
    with pytest.raises(ConfigError, match=r"data\.options\.train_per_class: has 2 entries"):
        load(tmp_path, "synthetic", num_classes=3, train_per_class=[1, 2])


def test_channel_stats_in_unit_range():
    images = np.zeros((4, 2, 2, 2), dtype=np.uint8)
    images[..., 1] = 255
    images[:2, ..., 0] = 255
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.5, 1.0))
    assert std[0] == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_pickles_load(tmp_path, cifar_writer, kind):
    root = cifar_writer(tmp_path / "data", kind=kind, per_class=2, num_classes=10)
    data = load(tmp_path, kind, root)
    batches = 5 if kind == "cifar10" else 1
    assert data.train.images.shape == (20 * batches, 32, 32, 3)
    assert data.test.images.shape == (20, 32, 32, 3)
    assert data.train.classes == [f"name{c}" for c in range(10)]
    # Channel 0 of every pixel was written as label * 20 + batch number.
    last_batch = data.train.images[-20:]
    assert np.all(last_batch[..., 0] == data.train.labels[-20:, None, None] * 20 + batches - 1)
    assert np.all(data.test.images[..., 0] == data.test.labels[:, None, None] * 20 + batches)


def test_cifar_missing_file_names_path_and_layout(tmp_path, cifar_writer):
    root = cifar_writer(tmp_path / "data")
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: not found; expected the python-pickle"):
        load(tmp_path, "cifar10", root)
    with pytest.raises(DataError, match=r"cifar-100-python/train: not found"):
        load(tmp_path, "cifar100", tmp_path / "empty")


def test_cifar_root_required(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.root: required for cifar10"):
        load(tmp_path, "cifar10")


def test_cifar_corrupt_pickle_names_file(tmp_path, cifar_writer):
    root = cifar_writer(tmp_path / "data")
    (root / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"data_batch_2: cannot read CIFAR pickle"):
        load(tmp_path, "cifar10", root)


class _RunsCode:
    """A pickle that would create a folder when loaded with plain ``pickle.load``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_cifar_pickle_runs_no_code(tmp_path, cifar_writer):
    root = cifar_writer(tmp_path / "data")
    marker = tmp_path / "ran"
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({b"data": _RunsCode(marker), b"labels": [0, 1]}, handle)
    with pytest.raises(DataError, match=r"test_batch: cannot read CIFAR pickle.*refused global"):
        load(tmp_path, "cifar10", root)
    assert not marker.exists()


def test_cifar_pickle_of_numpy_1_loads(tmp_path):
    """The published CIFAR files name numpy 1's module path (numpy.core.multiarray)."""
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    raw = pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=2)
    old = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert old != raw
    path = tmp_path / "batch"
    path.write_bytes(old)
    images, labels = read_cifar_batch(path, "labels")
    assert labels.tolist() == [3, 4]
    assert np.array_equal(images.transpose(0, 3, 1, 2).reshape(2, 3072), data)


def test_cifar_wrong_shape_names_file(tmp_path, cifar_writer):
    root = cifar_writer(tmp_path / "data")
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(DataError, match=r"test_batch: 'data' must be uint8 of shape \(N, 3072\)"):
        load(tmp_path, "cifar10", root)


def test_cifar_second_load_uses_cache(tmp_path, cifar_writer, monkeypatch):
    root = cifar_writer(tmp_path / "data")
    first = load(tmp_path, "cifar10", root)
    assert len(list((tmp_path / "cache").glob("cifar10-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(sources, "read_cifar_batch", fail)
    second = load(tmp_path, "cifar10", root)
    assert np.array_equal(first.train.images, second.train.images)
    assert second.train.classes == first.train.classes


def test_imagefolder_png_and_classes(tmp_path, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=2, size=6)
    data = load(tmp_path, "imagefolder", root, workers=2)
    assert data.train.classes == ["ant", "bee", "cat"]
    assert data.train.images.shape == (6, 6, 6, 3)
    assert data.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert np.all(data.train.images[..., 0] == data.train.labels[:, None, None] * 40)


def test_imagefolder_jpeg_resize(tmp_path, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=1, size=12, fmt="jpg")
    data = load(tmp_path, "imagefolder", root, image_size=4)
    assert data.train.images.shape == (3, 4, 4, 3)
    assert abs(int(data.train.images[2].mean()) - 80) <= 3  # JPEG is lossy


def test_imagefolder_size_mismatch_names_file(tmp_path, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=2, size=6)
    odd = root / "train" / "bee" / "0001.png"
    Image.fromarray(np.zeros((7, 6, 3), np.uint8)).save(odd)
    with pytest.raises(DataError, match=r"bee/0001\.png: image is 6x7.*data\.options\.image_size"):
        load(tmp_path, "imagefolder", root)


def test_imagefolder_corrupt_file_names_file(tmp_path, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=2, size=6, fmt="jpg")
    (root / "test" / "cat" / "0001.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match=r"test/cat/0001\.jpg: cannot decode image"):
        load(tmp_path, "imagefolder", root)


def test_imagefolder_missing_split_and_unknown_test_class(tmp_path, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=1)
    (root / "test" / "zebra").mkdir()
    with pytest.raises(DataError, match=r"zebra: class folder not present in the train split"):
        load(tmp_path, "imagefolder", root)
    with pytest.raises(DataError, match=r"nothing/train: folder not found"):
        (tmp_path / "nothing").mkdir()
        load(tmp_path, "imagefolder", tmp_path / "nothing")


def test_imagefolder_split_lists(tmp_path, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=2, size=6)
    (root / "train.txt").write_text("train/cat/0000.png 4\ntrain/ant/0001.png 0\n\n")
    (root / "test.txt").write_text("test/bee/0000.png 2\n")
    data = load(tmp_path, "imagefolder", root, train_list="train.txt", test_list="test.txt")
    assert data.train.labels.tolist() == [4, 0]
    assert data.train.classes == ["0", "1", "2", "3", "4"]
    assert data.train.images[0, 0, 0, 0] == 80  # cat is the third class folder -> 2 * 40
    (root / "bad.txt").write_text("train/cat/0000.png four\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: expected 'relative/path label'"):
        load(tmp_path, "imagefolder", root, train_list="bad.txt", test_list="test.txt")
    (root / "gone.txt").write_text("train/cat/9999.png 1\n")
    with pytest.raises(DataError, match=r"9999\.png"):
        load(tmp_path, "imagefolder", root, train_list="gone.txt", test_list="test.txt")
    with pytest.raises(ConfigError, match="give both train_list and test_list"):
        load(tmp_path, "imagefolder", root, train_list="train.txt")


def test_imagefolder_cache_hit_and_invalidation(tmp_path, image_folder_writer, monkeypatch):
    root = image_folder_writer(tmp_path / "imgs", per_class=2, size=6)
    first = load(tmp_path, "imagefolder", root)
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npz"))) == 1
    real_decode = sources._decode_image
    calls = []

    def counting_decode(path, image_size):
        calls.append(path)
        return real_decode(path, image_size)

    monkeypatch.setattr(sources, "_decode_image", counting_decode)
    second = load(tmp_path, "imagefolder", root)
    assert calls == []
    assert np.array_equal(first.train.images, second.train.images)
    # Adding a file changes the fingerprint: decoded again, a second cache file appears.
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(root / "train" / "ant" / "0009.png")
    third = load(tmp_path, "imagefolder", root)
    assert len(calls) == 13  # 7 train + 6 test images
    assert len(third.train) == 7
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npz"))) == 2


def test_corrupt_cache_file_is_rebuilt(tmp_path, image_folder_writer):
    root = image_folder_writer(tmp_path / "imgs", per_class=1, size=6)
    load(tmp_path, "imagefolder", root)
    (cache_file,) = (tmp_path / "cache").glob("imagefolder-*.npz")
    cache_file.write_bytes(b"truncated")
    data = load(tmp_path, "imagefolder", root)
    assert len(data.train) == 3
    assert np.load(cache_file)["train_images"].shape == (3, 6, 6, 3)


def test_unknown_source_lists_known(tmp_path):
    with pytest.raises(
        ConfigError, match=r"data\.source: unknown data source 'cifar' .*known: cifar10"
    ):
        load(tmp_path, "cifar")


def test_custom_source_must_return_splits(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "not_a_source", lambda **kw: 3, raising=False)
    with pytest.raises(
        ConfigError, match=r"data\.source: 'fedlt\.data\.sources:not_a_source' returned int"
    ):
        load(tmp_path, "fedlt.data.sources:not_a_source")

"""Fixtures that write tiny datasets in the exact on-disk formats the sources read."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent


def write_cifar(
    root: Path, kind: str = "cifar10", per_class: int = 3, num_classes: int = 10
) -> Path:
    """Write a CIFAR python-pickle tree (bytes keys, uint8 (N, 3072) data) under ``root``.

    Image i of a batch is filled with the value ``label * 20 + batch_number`` in channel 0 so
    tests can check pixels survived the (N, 3, 32, 32) -> NHWC reshape.
    """
    rng = np.random.default_rng(0)
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        label_key, meta_name, names_key = b"labels", "batches.meta", b"label_names"
    else:
        folder = root / "cifar-100-python"
        names = ["train", "test"]
        label_key, meta_name, names_key = b"fine_labels", "meta", b"fine_label_names"
    folder.mkdir(parents=True)
    for number, name in enumerate(names):
        labels = np.repeat(np.arange(num_classes), per_class)
        rng.shuffle(labels)
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        data[:, :1024] = (labels[:, None] * 20 + number).astype(np.uint8)
        batch = {b"data": data, label_key: [int(v) for v in labels], b"batch_label": name.encode()}
        if kind == "cifar100":
            batch[b"coarse_labels"] = [0] * len(labels)
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    meta = {names_key: [f"name{c}".encode() for c in range(num_classes)]}
    with open(folder / meta_name, "wb") as handle:
        pickle.dump(meta, handle)
    return root


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "ant", "bee"),
    per_class: int = 3,
    size: int = 6,
    fmt: str = "png",
) -> Path:
    """``root/{train,test}/<class>/NNNN.<fmt>``; pixel value = 40 * class rank (sorted)."""
    for split in ("train", "test"):
        for rank, name in enumerate(sorted(classes)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.full((size, size, 3), 40 * rank, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.{fmt}")
    return root


@pytest.fixture
def cifar_writer() -> Callable[..., Path]:
    return write_cifar


@pytest.fixture
def image_folder_writer() -> Callable[..., Path]:
    return write_image_folder


@pytest.fixture
def custom_partitioners(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``custom_partitioner`` (next to this file) importable; return its module name."""
    monkeypatch.syspath_prepend(str(HERE))
    return "custom_partitioner"

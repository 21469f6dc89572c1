"""``data.source: torchvision:<Name>``: torchvision's classification datasets from ``data.root``.

See docs/partition.md, "Sources by name". Some formats fedlt reads itself, in the layout
torchvision downloads but without its md5 check (so a re-packed or cut-down copy works):

- ``MNIST``, ``FashionMNIST``, ``KMNIST``: idx files, plain or ``.gz``, in
  ``<root>/<Name>/raw/`` (torchvision's layout), ``<root>/<Name>/`` or ``<root>/``;
- ``SVHN``: ``<root>/train_32x32.mat`` and ``<root>/test_32x32.mat``;
- ``STL10``: ``<root>/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin}``
  (``class_names.txt`` optional);
- ``CIFAR10`` / ``CIFAR100``: as the ``cifar10`` / ``cifar100`` sources.

Every other class of ``torchvision.datasets`` that takes a ``train`` flag or a ``split``
argument is built by torchvision itself (``data.options.train_split`` / ``test_split`` name
the splits, ``data.options.kwargs`` go to its constructor) and its images converted to
uint8 NHWC: straight from its ``data`` array when it has one, else image by image (PIL;
``data.options.image_size`` resizes). Files are downloaded only with ``data.download: true``.
Decoded images are cached like the other file sources (:mod:`fedlt.data.cache`).
"""

from __future__ import annotations

import functools
import gzip
import inspect
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.configtools import from_dict, require
from fedlt.data.base import DataSplits
from fedlt.data.cache import cached
from fedlt.data.images import resize_images, stack_images, to_pixels
from fedlt.data.sources import (
    CIFAR10,
    CIFAR100,
    OPTIONS_KEY,
    _cifar_source,
    _splits_from_arrays,
    _with_stats,
)
from fedlt.errors import ConfigError, DataError
from fedlt.registry import did_you_mean

KEY = "data.source"
PREFIX = "torchvision:"
MNIST_LIKE = ("MNIST", "FashionMNIST", "KMNIST")
Arrays = dict[str, np.ndarray]


@dataclass
class TorchvisionOptions:
    """``image_size``: resize every image to a square of this side (default: keep the size;
    then all images must share one). ``train_split`` / ``test_split``: the values of the
    ``split`` argument of classes that take one (e.g. Flowers102, GTSRB, Food101).
    ``kwargs``: further constructor arguments (e.g. EMNIST's ``split: balanced``)."""

    image_size: int | None = None
    train_split: str = "train"
    test_split: str = "test"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        require(
            self.image_size is None or self.image_size >= 1,
            f"{prefix}.image_size",
            f"must be >= 1, got {self.image_size}",
        )
        reserved = sorted({"root", "train", "split", "download", "transform"} & set(self.kwargs))
        require(
            not reserved,
            f"{prefix}.kwargs",
            f"{reserved} are set by fedlt (use data.root, data.download, "
            "data.options.train_split / test_split)",
        )


# ----------------------------------------------------------------------------- names
def dataset_class(name: str, key: str = KEY) -> type:
    """The ``torchvision.datasets`` class called ``name``; ConfigError with close matches."""
    from torchvision import datasets

    found = getattr(datasets, name, None)
    if inspect.isclass(found) and issubclass(found, datasets.VisionDataset):
        return found
    known = sorted(
        n
        for n in dir(datasets)
        if inspect.isclass(getattr(datasets, n))
        and issubclass(getattr(datasets, n), datasets.VisionDataset)
    )
    raise ConfigError(
        key,
        f"torchvision.datasets has no dataset class {name!r}{did_you_mean(name, known)}; "
        f"expected '{PREFIX}<Name>' with Name one of: {', '.join(known)}",
    )


def torchvision_factory(name: str, key: str = KEY) -> Callable[..., DataSplits]:
    """The source function for ``torchvision:<name>`` (the name is checked here)."""
    if not name:
        raise ConfigError(
            key, f"expected '{PREFIX}<Name>' (e.g. {PREFIX}FashionMNIST), got {PREFIX!r}"
        )
    dataset_class(name, key)
    return functools.partial(torchvision_source, name)


def torchvision_source(
    name: str, root: str | None, cache_dir: Path, download: bool, seed: int, **options: Any
) -> DataSplits:
    """Load ``torchvision.datasets.<name>`` from ``root`` as train and test ArrayDatasets."""
    opts = from_dict(TorchvisionOptions, options, OPTIONS_KEY)
    cls = dataset_class(name)
    if not root:
        raise ConfigError("data.root", f"required for {PREFIX}{name}: {layout_hint(name)}")
    base = Path(root).expanduser().resolve()
    if name in ("CIFAR10", "CIFAR100"):
        layout = CIFAR10 if name == "CIFAR10" else CIFAR100
        splits = _cifar_source(layout, str(base), cache_dir, download, {})
        return _resized(splits, opts.image_size, name)
    reader = NATIVE_READERS.get(name)
    if reader is None:
        return _generic_source(cls, name, base, cache_dir, download, opts)
    files = reader.locate(base, name)
    if files is None and download:
        _download(cls, name, base, opts)
        files = reader.locate(base, name)
    if files is None:
        raise DataError(f"{base}: no {name} files found (data.root); {layout_hint(name)}")
    key_options = {"image_size": opts.image_size}
    arrays = cached(
        cache_dir,
        f"torchvision-{name}",
        base,
        key_options,
        files,
        lambda: _build(reader, name, files, opts),
    )
    return _splits_from_arrays(name, arrays, {"root": str(base), "source": f"{PREFIX}{name}"})


def layout_hint(name: str) -> str:
    """What ``torchvision:<name>`` expects under ``data.root``."""
    download = "set data.download: true to fetch it when online"
    if name in MNIST_LIKE:
        files = ", ".join(_mnist_names(name))
        return f"expected <root>/{name}/raw/{{{files}}} (each may end in .gz); {download}"
    if name == "SVHN":
        return f"expected <root>/train_32x32.mat and <root>/test_32x32.mat; {download}"
    if name == "STL10":
        return (
            "expected <root>/stl10_binary/{train_X.bin, train_y.bin, test_X.bin, test_y.bin} "
            f"(class_names.txt optional); {download}"
        )
    return (
        f"expected the layout torchvision.datasets.{name} reads (see its documentation); {download}"
    )


# ----------------------------------------------------------------------------- native formats
@dataclass(frozen=True)
class NativeReader:
    """Finds a dataset's files under a root and reads them to arrays (no torchvision)."""

    locate: Callable[[Path, str], list[Path] | None]
    read: Callable[[list[Path], str], Arrays]


def _existing(path: Path) -> Path | None:
    """``path`` or ``path.gz``, whichever exists."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _mnist_names(name: str) -> list[str]:
    """The four idx file names of an MNIST-like class, in the order train images, train
    labels, test images, test labels (from torchvision's ``resources``)."""
    from torchvision import datasets

    resources = getattr(datasets, name).resources
    return [url.rsplit("/", 1)[-1].removesuffix(".gz") for url, _ in resources]


def _locate_mnist(base: Path, name: str) -> list[Path] | None:
    for folder in (base / name / "raw", base / name, base):
        found = [_existing(folder / f) for f in _mnist_names(name)]
        if all(p is not None for p in found):
            return [p for p in found if p is not None]
    return None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format, plain or gzip) of unsigned bytes as an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read idx file ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an idx file (expected the magic bytes 00 00 08 <ndim>)")
    if data[2] != 0x08:
        raise DataError(f"{path}: idx element type 0x{data[2]:02x}; only unsigned bytes (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{path}: idx header gives shape {shape} ({expected} bytes), the file has {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_mnist(files: list[Path], name: str) -> Arrays:
    from torchvision import datasets

    arrays: Arrays = {}
    for split, (images_file, labels_file) in (("train", files[:2]), ("test", files[2:])):
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{images_file}: expected (N, H, W) images and N labels in {labels_file.name}, "
                f"got {images.shape} and {labels.shape}"
            )
        arrays[f"{split}_images"] = images[..., None]
        arrays[f"{split}_labels"] = labels.astype(np.int64)
    arrays["classes"] = np.asarray(getattr(datasets, name).classes, dtype=str)
    return arrays


def _locate_svhn(base: Path, name: str) -> list[Path] | None:
    files = [base / "train_32x32.mat", base / "test_32x32.mat"]
    return files if all(p.is_file() for p in files) else None


def _read_svhn(files: list[Path], name: str) -> Arrays:
    """SVHN's MATLAB files: ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with 10 meaning 0."""
    from scipy.io import loadmat

    arrays: Arrays = {}
    for split, path in zip(("train", "test"), files, strict=True):
        try:
            mat = loadmat(path)
        except Exception as exc:
            raise DataError(
                f"{path}: cannot read the .mat file ({type(exc).__name__}: {exc})"
            ) from exc
        if "X" not in mat or "y" not in mat:
            raise DataError(f"{path}: expected the variables X and y, found {sorted(mat)}")
        images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != len(labels):
            raise DataError(
                f"{path}: X must be uint8 of shape (H, W, C, N) with N = len(y) = {len(labels)}, "
                f"got {images.dtype} {images.shape}"
            )
        labels[labels == 10] = 0
        arrays[f"{split}_images"] = np.ascontiguousarray(images.transpose(3, 0, 1, 2))
        arrays[f"{split}_labels"] = labels
    arrays["classes"] = np.asarray([str(c) for c in range(10)], dtype=str)
    return arrays


STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")


def _locate_stl10(base: Path, name: str) -> list[Path] | None:
    for folder in (base / "stl10_binary", base):
        files = [folder / f for f in STL10_FILES]
        if all(p.is_file() for p in files):
            names = folder / "class_names.txt"
            return [*files, names] if names.is_file() else files
    return None


def _read_stl10(files: list[Path], name: str) -> Arrays:
    """STL-10 binaries: images as uint8 (N, 3, 96, 96) in column-major order, labels 1..10."""
    side = 96
    arrays: Arrays = {}
    for split, (images_file, labels_file) in (("train", files[0:2]), ("test", files[2:4])):
        raw = np.fromfile(images_file, dtype=np.uint8)
        labels = np.fromfile(labels_file, dtype=np.uint8).astype(np.int64) - 1
        if raw.size != len(labels) * 3 * side * side:
            raise DataError(
                f"{images_file}: {raw.size} bytes, expected 3*96*96 per label of "
                f"{labels_file.name} ({len(labels)} labels)"
            )
        images = raw.reshape(-1, 3, side, side).transpose(0, 3, 2, 1)
        arrays[f"{split}_images"] = np.ascontiguousarray(images)
        arrays[f"{split}_labels"] = labels
    num_classes = (
        int(max(arrays["train_labels"].max(initial=0), arrays["test_labels"].max(initial=0))) + 1
    )
    classes = [str(c) for c in range(num_classes)]
    if len(files) > 4:
        classes = [line for line in files[4].read_text().splitlines() if line.strip()]
    arrays["classes"] = np.asarray(classes, dtype=str)
    return arrays


NATIVE_READERS: dict[str, NativeReader] = {
    **{n: NativeReader(_locate_mnist, _read_mnist) for n in MNIST_LIKE},
    "SVHN": NativeReader(_locate_svhn, _read_svhn),
    "STL10": NativeReader(_locate_stl10, _read_stl10),
}


def _build(reader: NativeReader, name: str, files: list[Path], opts: TorchvisionOptions) -> Arrays:
    arrays = reader.read(files, name)
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    if len(labels) and (labels.min() < 0 or labels.max() >= len(arrays["classes"])):
        raise DataError(
            f"{files[0].parent}: labels must lie in [0, {len(arrays['classes'])}), "
            f"found {labels.min()}..{labels.max()}"
        )
    if opts.image_size is not None:
        for split in ("train", "test"):
            arrays[f"{split}_images"] = resize_images(arrays[f"{split}_images"], opts.image_size)
    return _with_stats(arrays)


# ----------------------------------------------------------------------------- torchvision itself
def _constructor_args(cls: type, train: bool, opts: TorchvisionOptions, download: bool) -> dict:
    """Keyword arguments selecting the train or test split of ``cls``."""
    from torchvision import datasets

    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = dict(opts.kwargs)
    if "train" in params or issubclass(cls, datasets.MNIST):  # EMNIST/QMNIST take **kwargs
        kwargs["train"] = train
    elif "split" in params:
        kwargs["split"] = opts.train_split if train else opts.test_split
    else:
        raise ConfigError(
            KEY,
            f"torchvision.datasets.{cls.__name__} has neither a 'train' flag nor a 'split' "
            "argument, so fedlt cannot tell its train images from its test images; "
            "save it as train/<class>/ and test/<class>/ folders and use source: imagefolder",
        )
    if "download" in params or issubclass(cls, datasets.MNIST):
        kwargs["download"] = download
    elif download:
        raise ConfigError("data.download", f"torchvision.datasets.{cls.__name__} cannot download")
    return kwargs


def _instantiate(
    cls: type, base: Path, train: bool, opts: TorchvisionOptions, download: bool
) -> Any:
    kwargs = _constructor_args(cls, train, opts, download)
    name = cls.__name__
    try:
        return cls(str(base), **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"{OPTIONS_KEY}.kwargs", f"torchvision.datasets.{name}({kwargs}) failed: {exc}"
        ) from exc
    except (RuntimeError, FileNotFoundError, OSError, ValueError) as exc:
        raise DataError(
            f"{base}: torchvision.datasets.{name} cannot load it (data.root): {exc}; "
            f"{layout_hint(name)}"
        ) from exc


def _download(cls: type, name: str, base: Path, opts: TorchvisionOptions) -> None:
    """Let torchvision fetch both splits into ``base`` (``data.download: true``)."""
    for train in (True, False):
        _instantiate(cls, base, train, opts, download=True)


def _generic_source(
    cls: type, name: str, base: Path, cache_dir: Path, download: bool, opts: TorchvisionOptions
) -> DataSplits:
    if not base.is_dir() and not download:
        raise DataError(f"{base}: data.root folder not found; {layout_hint(name)}")

    def build() -> Arrays:
        splits = {}
        for split, train in (("train", True), ("test", False)):
            dataset = _instantiate(cls, base, train, opts, download=False)
            splits[split] = dataset_arrays(dataset, opts.image_size, f"{name} {split}")
        shapes = [splits[s][0].shape[1:] for s in ("train", "test")]
        if len(splits["test"][0]) and shapes[0] != shapes[1]:
            raise DataError(
                f"{base}: {name} test images are {shapes[1]}, train images {shapes[0]} "
                "(H, W, C); set data.options.image_size"
            )
        classes = getattr(splits["train"][2], "classes", None)
        return _with_stats(_arrays_with_classes(splits, classes))

    if download:
        _download(cls, name, base, opts)
    files = sorted(str(p) for p in _walk(base))
    key_options = {"class": name, **asdict(opts)}
    arrays = cached(cache_dir, f"torchvision-{name}", base, key_options, files, build)
    return _splits_from_arrays(name, arrays, {"root": str(base), "source": f"{PREFIX}{name}"})


def _walk(base: Path) -> list[Path]:
    """Every file under ``base`` (the cache key of a torchvision-built dataset)."""
    return [Path(d) / f for d, _, names in os.walk(base) for f in names]


def _arrays_with_classes(splits: dict[str, tuple], classes: Any) -> Arrays:
    labels = np.concatenate([splits["train"][1], splits["test"][1]])
    num_classes = int(labels.max(initial=-1)) + 1
    if isinstance(classes, (list, tuple)) and len(classes) >= num_classes:
        names = [str(c) for c in classes]
    else:
        names = [str(c) for c in range(num_classes)]
    return {
        "train_images": splits["train"][0],
        "train_labels": splits["train"][1],
        "test_images": splits["test"][0],
        "test_labels": splits["test"][1],
        "classes": np.asarray(names, dtype=str),
    }


def dataset_arrays(
    dataset: Any, image_size: int | None, what: str
) -> tuple[np.ndarray, np.ndarray, Any]:
    """(images uint8 NHWC, labels int64, dataset) of a torchvision dataset instance."""
    fast = _array_attributes(dataset)
    if fast is not None:
        images, labels = fast
        if image_size is not None:
            images = resize_images(images, image_size)
    else:
        images, labels = _decode_items(dataset, image_size, what)
    if len(labels) and labels.min() < 0:
        raise DataError(f"{what}: label {labels.min()} < 0; expected class indices >= 0")
    return images, labels, dataset


def _array_attributes(dataset: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Images and labels straight from ``dataset.data`` and ``targets`` / ``labels`` when
    they are uint8 image arrays (MNIST-like, CIFAR, SVHN, STL10, USPS ...), else None."""
    data = getattr(dataset, "data", None)
    labels = getattr(dataset, "targets", None)
    labels = getattr(dataset, "labels", None) if labels is None else labels
    if data is None or labels is None:
        return None
    data = data.numpy() if hasattr(data, "numpy") else data
    labels = labels.numpy() if hasattr(labels, "numpy") else labels
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim not in (3, 4):
        return None
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        return None
    if data.ndim == 3:
        data = data[..., None]
    elif data.shape[1] in (1, 3) and data.shape[-1] not in (1, 3):  # NCHW
        data = data.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(data), labels.astype(np.int64)


def _decode_items(dataset: Any, image_size: int | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels by indexing ``dataset[i] -> (image, label)`` one by one."""
    pixels, labels = [], []
    for i in range(len(dataset)):
        image, label = dataset[i]
        pixels.append(to_pixels(image, image_size))
        labels.append(_class_index(label, what, i))
    if not pixels:
        side = image_size or 1
        return np.zeros((0, side, side, 3), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    return stack_images(pixels, lambda i: f"{what} image {i}"), np.asarray(labels, dtype=np.int64)


def _class_index(label: Any, what: str, i: int) -> int:
    value = label.item() if hasattr(label, "item") and getattr(label, "ndim", 0) == 0 else label
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(
            f"{what}: sample {i} has target {label!r}; expected an integer class index "
            "(fedlt reads classification datasets only)"
        )
    return int(value)


def _resized(splits: DataSplits, image_size: int | None, name: str) -> DataSplits:
    """``splits`` with images resized (CIFAR read through the cifar sources)."""
    if image_size is None:
        return _renamed(splits, name)
    arrays = {
        "train_images": resize_images(splits.train.images, image_size),
        "train_labels": splits.train.labels,
        "test_images": resize_images(splits.test.images, image_size),
        "test_labels": splits.test.labels,
        "classes": np.asarray(splits.train.classes, dtype=str),
    }
    return _splits_from_arrays(
        name, _with_stats(arrays), {**splits.info, "source": f"{PREFIX}{name}"}
    )


def _renamed(splits: DataSplits, name: str) -> DataSplits:
    splits.name = name
    splits.info = {**splits.info, "source": f"{PREFIX}{name}"}
    return splits

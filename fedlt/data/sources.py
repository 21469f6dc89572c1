"""Data sources: named factories that return a :class:`~fedlt.data.base.DataSplits`.

Every factory is called as ``factory(root, cache_dir, download, seed, **options)``; built-in
sources check their ``options`` against a small dataclass so that a typo fails with the key
path (``data.options.image_sise: unknown key (did you mean 'image_size'?)``). A source may
also be given in YAML as ``package.module:callable`` with the same call signature.

Built-ins: ``digits`` (scikit-learn's bundled 8×8 digits, the offline default),
``synthetic`` (seeded class-conditional images of any size), ``cifar10`` / ``cifar100`` (the
python-pickle layout torchvision downloads) and ``imagefolder`` (``train/<class>/*.jpg``
trees, optionally with ImageNet-LT / iNaturalist style split lists). File-based sources
cache their decoded pixels (see :mod:`fedlt.data.cache`). Sources by name:
``torchvision:<Name>`` (:mod:`fedlt.data.torchvision_source`) and ``hf:<path>``
(:mod:`fedlt.data.hf_source`); see docs/partition.md.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedlt import seeding
from fedlt.config import DataConfig
from fedlt.configtools import from_dict, require
from fedlt.data.base import ArrayDataset, DataSplits
from fedlt.data.cache import cached, resolve_cache_dir
from fedlt.errors import ConfigError, DataError
from fedlt.registry import Registry, call_plugin

SourceFactory = Callable[..., DataSplits]
SOURCES: Registry[SourceFactory] = Registry("data source")

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)
OPTIONS_KEY = "data.options"


def channel_stats(
    images: np.ndarray, max_images: int = 2_000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NHWC images, in [0, 1] units.

    Exact over pixel histograms of at most ``max_images`` evenly spaced images (all of them
    for small sets), so 50,000 CIFAR images cost a few tens of milliseconds.
    """
    if len(images) > max_images:
        images = images[np.linspace(0, len(images) - 1, max_images).astype(np.int64)]
    pixels = np.ascontiguousarray(images).reshape(-1, images.shape[-1])
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(pixels.shape[1]):
        hist = np.bincount(pixels[:, c], minlength=256).astype(np.float64)
        total = hist.sum()
        if total == 0:
            means.append(0.5)
            stds.append(0.5)
            continue
        mean = float((hist * levels).sum() / total)
        var = float((hist * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        stds.append(max(var**0.5, 1e-6))
    return tuple(means), tuple(stds)


def make_splits(
    name: str, train: ArrayDataset, test: ArrayDataset, info: dict[str, object] | None = None
) -> DataSplits:
    mean, std = channel_stats(train.images)
    return DataSplits(train=train, test=test, name=name, mean=mean, std=std, info=info or {})


SOURCE_PREFIXES = {
    "torchvision": ("fedlt.data.torchvision_source", "torchvision_factory"),
    "hf": ("fedlt.data.hf_source", "hf_factory"),
}
"""``<prefix>:<name>`` sources (docs/partition.md, "Sources by name"); a prefix here wins
over a ``package.module:callable`` reference of the same spelling."""


def prefixed_source(name: str, key: str = "data.source") -> SourceFactory | None:
    """The factory of a ``torchvision:<Name>`` / ``hf:<path>`` source (its name checked),
    or None when ``name`` has no such prefix."""
    prefix, sep, rest = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not sep or prefix not in SOURCE_PREFIXES:
        return None
    module_name, function = SOURCE_PREFIXES[prefix]
    make: Callable[[str, str], SourceFactory] = getattr(
        importlib.import_module(module_name), function
    )
    return make(rest, key)


def check_source(name: str, key: str = "data.source") -> None:
    """Config-time check of ``data.source``: a registered name, a prefixed source or
    ``package.module:callable`` (files are only looked at when the data is loaded)."""
    if prefixed_source(name, key) is None:
        SOURCES.get(name, key)


def load_source(cfg: DataConfig, seed: int) -> DataSplits:
    """Load ``cfg.source`` (registered name, ``torchvision:<Name>``, ``hf:<path>`` or
    ``package.module:callable``)."""
    prefixed = prefixed_source(cfg.source)
    factory = prefixed or SOURCES.get(cfg.source, "data.source")
    kwargs: dict[str, Any] = {
        "root": cfg.root,
        "cache_dir": resolve_cache_dir(cfg.cache_dir),
        "download": cfg.download,
        "seed": seed,
        **cfg.options,
    }
    if cfg.source in SOURCES:
        splits = factory(**kwargs)
    elif prefixed is not None:
        splits = call_plugin("data source", cfg.source, prefixed, **kwargs)
    else:
        splits = call_plugin("data source", cfg.source, factory, **kwargs)
    if not isinstance(splits, DataSplits):
        raise ConfigError(
            "data.source",
            f"{cfg.source!r} returned {type(splits).__name__}, expected fedlt.data.base.DataSplits",
        )
    if len(splits.train) == 0:
        raise DataError(
            f"data source {cfg.source!r} (data.root: {cfg.root}) gave no training samples"
        )
    return splits


# --------------------------------------------------------------------------- digits


@dataclass
class DigitsOptions:
    """``test_fraction``: share of each class held out before the test set is balanced."""

    test_fraction: float = 0.3

    def validate(self, prefix: str) -> None:
        require(
            0.0 < self.test_fraction < 1.0,
            f"{prefix}.test_fraction",
            f"must lie in (0, 1), got {self.test_fraction}",
        )


@SOURCES.register("digits")
def digits_source(
    root: str | None, cache_dir: Path, download: bool, seed: int, **options: Any
) -> DataSplits:
    """scikit-learn's bundled digits: 1,797 8×8 images, 10 classes, shape (N, 8, 8, 1).

    The 17 gray levels (0..16) are scaled to uint8 0..255. Each class is split at random
    (seeded) into ``round(n_c * test_fraction)`` test and the rest train images; the test set
    is then **balanced** by cutting every class to the smallest class's test count (the cut
    images are dropped, not moved to train), so generic accuracy is a balanced accuracy.
    """
    from sklearn.datasets import load_digits

    opts = from_dict(DigitsOptions, options, OPTIONS_KEY)
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    rng = seeding.rng(seed, "digits_split")
    num_classes = int(labels.max()) + 1
    train_idx, test_by_class = [], []
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(len(members) * opts.test_fraction)
        test_by_class.append(members[:n_test])
        train_idx.append(members[n_test:])
    per_class = min(len(t) for t in test_by_class)
    test_idx = np.sort(np.concatenate([t[:per_class] for t in test_by_class]))
    train = np.sort(np.concatenate(train_idx))
    classes = [str(c) for c in range(num_classes)]
    return make_splits(
        "digits",
        ArrayDataset(images[train], labels[train], classes),
        ArrayDataset(images[test_idx], labels[test_idx], classes),
        {"test_per_class": per_class},
    )


# --------------------------------------------------------------------------- synthetic


@dataclass
class SyntheticOptions:
    """Class-conditional random images.

    ``train_per_class``: one count for every class, or a list of ``num_classes`` counts.
    ``noise`` in [0, 1]: weight of uniform pixel noise mixed into the class template (0 = the
    template itself, 1 = pure noise). ``template_grid``: the template is a random
    ``grid × grid`` pattern of colours upsampled to ``image_size``.
    """

    num_classes: int = 10
    image_size: int = 32
    channels: int = 3
    train_per_class: int | list[int] = 500
    test_per_class: int = 100
    noise: float = 0.5
    template_grid: int = 4

    def validate(self, prefix: str) -> None:
        require(self.num_classes >= 1, f"{prefix}.num_classes", "must be >= 1")
        require(self.image_size >= 1, f"{prefix}.image_size", "must be >= 1")
        require(self.channels >= 1, f"{prefix}.channels", "must be >= 1")
        require(self.test_per_class >= 0, f"{prefix}.test_per_class", "must be >= 0")
        require(
            0.0 <= self.noise <= 1.0, f"{prefix}.noise", f"must lie in [0, 1], got {self.noise}"
        )
        require(self.template_grid >= 1, f"{prefix}.template_grid", "must be >= 1")
        if isinstance(self.train_per_class, list):
            require(
                len(self.train_per_class) == self.num_classes,
                f"{prefix}.train_per_class",
                f"has {len(self.train_per_class)} entries, expected num_classes={self.num_classes}",
            )
            require(
                all(n >= 0 for n in self.train_per_class),
                f"{prefix}.train_per_class",
                "counts must be >= 0",
            )
        else:
            require(self.train_per_class >= 0, f"{prefix}.train_per_class", "must be >= 0")


def _random_bytes(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uniform uint8 values straight from the bit generator (fastest source)."""
    words = rng.bit_generator.random_raw((count + 7) // 8)
    return np.asarray(words, dtype=np.uint64).view(np.uint8)[:count]


def _synthetic_images(
    templates: np.ndarray, counts: np.ndarray, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``counts[c]`` images of class c: ``(1 - w) * template_c + w * U{0..255}``, w = noise.

    Integer arithmetic (weights in 1/256 steps) keeps 50,000 32×32×3 images at a few hundred
    milliseconds.
    """
    shape = templates.shape[1:]
    weight = round(noise * 256)
    scaled_templates = ((256 - weight) * templates.astype(np.uint16) >> 8).astype(np.uint8)
    per_image = int(np.prod(shape))
    images = np.empty((int(counts.sum()), *shape), dtype=np.uint8)
    start = 0
    for c, n in enumerate(counts):
        raw = _random_bytes(rng, int(n) * per_image).reshape(int(n), *shape)
        mixed = np.multiply(raw, weight, dtype=np.uint16)
        mixed >>= 8
        block = images[start : start + n]
        block[...] = mixed
        block += scaled_templates[c]
        start += n
    labels = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return images, labels


@SOURCES.register("synthetic")
def synthetic_source(
    root: str | None, cache_dir: Path, download: bool, seed: int, **options: Any
) -> DataSplits:
    """Seeded class-conditional images (per-class template + uniform noise), any size.

    Deterministic per ``seed``; the test set has ``test_per_class`` images of every class
    (balanced). 50,000 32×32×3 images take a fraction of a second.
    """
    opts = from_dict(SyntheticOptions, options, OPTIONS_KEY)
    rng = seeding.rng(seed, "synthetic_images")
    grid = opts.template_grid
    coarse = rng.integers(
        0, 256, size=(opts.num_classes, grid, grid, opts.channels), dtype=np.uint8
    )
    upsample = (np.arange(opts.image_size) * grid) // opts.image_size
    templates = coarse[:, upsample][:, :, upsample]
    if isinstance(opts.train_per_class, list):
        train_counts = np.asarray(opts.train_per_class, dtype=np.int64)
    else:
        train_counts = np.full(opts.num_classes, opts.train_per_class, dtype=np.int64)
    test_counts = np.full(opts.num_classes, opts.test_per_class, dtype=np.int64)
    train_images, train_labels = _synthetic_images(templates, train_counts, opts.noise, rng)
    test_images, test_labels = _synthetic_images(templates, test_counts, opts.noise, rng)
    classes = [f"class{c}" for c in range(opts.num_classes)]
    return make_splits(
        "synthetic",
        ArrayDataset(train_images, train_labels, classes),
        ArrayDataset(test_images, test_labels, classes),
        {"options": asdict(opts)},
    )


# --------------------------------------------------------------------------- CIFAR


@dataclass
class NoOptions:
    """This source takes no options."""


@dataclass(frozen=True)
class CifarLayout:
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str


CIFAR10 = CifarLayout(
    "cifar10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    "labels",
    "label_names",
)
CIFAR100 = CifarLayout(
    "cifar100", "cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"
)


def _layout_hint(layout: CifarLayout) -> str:
    files = ", ".join([*layout.train_files, layout.test_file, layout.meta_file])
    return (
        f"expected the python-pickle layout torchvision downloads: <root>/{layout.folder}/"
        f"{{{files}}} (set data.download: true to fetch it when online)"
    )


# What a CIFAR batch or meta pickle may name: numpy arrays and their dtypes (numpy 1 and 2
# module paths) and the codec protocol 2 uses for byte strings. Anything else is refused
# before it is called, so a data file cannot run code.
CIFAR_PICKLE_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """The CIFAR "python version" is pickle by definition; this unpickler resolves only the
    globals of :data:`CIFAR_PICKLE_GLOBALS` (arrays, lists, dicts, bytes and numbers)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a CIFAR pickle holds only arrays, lists "
                "and byte strings"
            )
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR pickle as a dict with str keys (files hold bytes keys), read with
    :class:`_CifarUnpickler` so that nothing in the file is executed."""
    try:
        with open(path, "rb") as handle:
            raw = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"{path}: cannot read CIFAR pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(raw).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in raw.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) of one CIFAR pickle batch."""
    batch = _read_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: missing key 'data' or {label_key!r}; found {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _download_cifar(layout: CifarLayout, root: Path) -> None:
    try:
        from torchvision import datasets

        cls = datasets.CIFAR10 if layout.name == "cifar10" else datasets.CIFAR100
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    except Exception as exc:
        raise DataError(f"downloading {layout.name} into {root} failed: {exc}") from exc


def _cifar_source(
    layout: CifarLayout, root: str | None, cache_dir: Path, download: bool, options: dict
) -> DataSplits:
    from_dict(NoOptions, options, OPTIONS_KEY)
    if not root:
        raise ConfigError("data.root", f"required for {layout.name}: {_layout_hint(layout)}")
    base = Path(root).expanduser().resolve()
    folder = base if (base / layout.test_file).is_file() else base / layout.folder
    needed = [folder / f for f in (*layout.train_files, layout.test_file)]
    missing = [p for p in needed if not p.is_file()]
    if missing and download:
        _download_cifar(layout, base)
        folder = base / layout.folder
        needed = [folder / f for f in (*layout.train_files, layout.test_file)]
        missing = [p for p in needed if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: not found; {_layout_hint(layout)}")
    meta = folder / layout.meta_file
    files = [*needed, meta] if meta.is_file() else needed

    def build() -> dict[str, np.ndarray]:
        parts = [read_cifar_batch(p, layout.label_key) for p in needed[:-1]]
        test_images, test_labels = read_cifar_batch(needed[-1], layout.label_key)
        num_classes = int(max(test_labels.max(), *(p[1].max() for p in parts))) + 1
        names = [str(c) for c in range(num_classes)]
        if meta.is_file():
            found = _read_pickle(meta).get(layout.names_key)
            if found is not None:
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in found]
        return _with_stats(
            {
                "train_images": np.concatenate([p[0] for p in parts]),
                "train_labels": np.concatenate([p[1] for p in parts]),
                "test_images": test_images,
                "test_labels": test_labels,
                "classes": np.asarray(names, dtype=str),
            }
        )

    arrays = cached(cache_dir, layout.name, folder, {}, files, build)
    return _splits_from_arrays(layout.name, arrays, {"root": str(folder)})


def _with_stats(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the train set's per-channel ``mean``/``std`` so cache hits skip computing them."""
    mean, std = channel_stats(arrays["train_images"])
    return {**arrays, "mean": np.asarray(mean), "std": np.asarray(std)}


def _splits_from_arrays(name: str, arrays: dict[str, np.ndarray], info: dict) -> DataSplits:
    classes = [str(c) for c in arrays["classes"]]
    train = ArrayDataset(arrays["train_images"], arrays["train_labels"].astype(np.int64), classes)
    test = ArrayDataset(arrays["test_images"], arrays["test_labels"].astype(np.int64), classes)
    if "mean" not in arrays:
        return make_splits(name, train, test, info)
    mean = tuple(float(v) for v in arrays["mean"])
    std = tuple(float(v) for v in arrays["std"])
    return DataSplits(train=train, test=test, name=name, mean=mean, std=std, info=info)


@SOURCES.register("cifar10")
def cifar10_source(
    root: str | None, cache_dir: Path, download: bool, seed: int, **options: Any
) -> DataSplits:
    """CIFAR-10 from ``<root>/cifar-10-batches-py/`` (50,000 train, 10,000 balanced test)."""
    return _cifar_source(CIFAR10, root, cache_dir, download, options)


@SOURCES.register("cifar100")
def cifar100_source(
    root: str | None, cache_dir: Path, download: bool, seed: int, **options: Any
) -> DataSplits:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python/{train,test,meta}``."""
    return _cifar_source(CIFAR100, root, cache_dir, download, options)


# --------------------------------------------------------------------------- imagefolder


@dataclass
class ImageFolderOptions:
    """``image_size``: resize every image to a square of this side (default: keep the size;
    then all images must share one size). ``train_list`` / ``test_list``: text files of
    ``relative/path label`` lines (paths relative to root), as ImageNet-LT and iNaturalist
    ship them; give both or neither. ``train_dir`` / ``test_dir``: sub-folders used without
    lists. ``workers``: decoding threads."""

    image_size: int | None = None
    train_list: str | None = None
    test_list: str | None = None
    train_dir: str = "train"
    test_dir: str = "test"
    workers: int = 4

    def validate(self, prefix: str) -> None:
        require(
            self.image_size is None or self.image_size >= 1,
            f"{prefix}.image_size",
            f"must be >= 1, got {self.image_size}",
        )
        require(self.workers >= 1, f"{prefix}.workers", "must be >= 1")
        require(
            (self.train_list is None) == (self.test_list is None),
            f"{prefix}.train_list" if self.train_list is None else f"{prefix}.test_list",
            "give both train_list and test_list, or neither",
        )


def _scan_split(folder: Path, classes: list[str] | None) -> tuple[list[str], list[int], list[str]]:
    """Files and labels of ``folder/<class>/*``; classes = sorted sub-folder names."""
    if not folder.is_dir():
        raise DataError(
            f"{folder}: folder not found; expected <root>/train/<class>/*.jpg and "
            "<root>/test/<class>/*.jpg (or data.options.train_list / test_list)"
        )
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
        if not classes:
            raise DataError(f"{folder}: no class sub-folders found")
    else:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise DataError(f"{folder / unknown[0]}: class folder not present in the train split")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            continue
        with os.scandir(sub) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith(".")
            )
        prefix = os.path.join(str(sub), "")
        files.extend(prefix + f for f in names)
        labels.extend([label] * len(names))
    return files, labels, classes


def _read_split_list(root: Path, list_file: str, key: str) -> tuple[list[str], list[int]]:
    path = Path(list_file).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DataError(f"{path}: split list not found ({key})")
    files, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
            raise DataError(
                f"{path}:{number}: expected 'relative/path label' (label an integer >= 0), "
                f"got {line!r}"
            )
        files.append(os.path.join(root, parts[0]))
        labels.append(int(parts[1]))
    if not files:
        raise DataError(f"{path}: split list is empty")
    return files, labels


def _decode_image(path: str | Path, image_size: int | None) -> np.ndarray:
    """Decode one file to uint8 RGB (H, W, 3), resized to a square if ``image_size``."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except Exception as exc:
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def decode_images(files: list[str], image_size: int | None, workers: int) -> np.ndarray:
    """Decode ``files`` into one (N, H, W, 3) uint8 array with a thread pool.

    Without ``image_size`` every image must have the first image's size; a mismatch raises
    DataError naming the file.
    """
    if not files:
        side = image_size or 1
        return np.zeros((0, side, side, 3), dtype=np.uint8)
    first = _decode_image(files[0], image_size)
    out = np.empty((len(files), *first.shape), dtype=np.uint8)
    out[0] = first

    def work(chunk: range) -> None:
        for i in chunk:
            pixels = _decode_image(files[i], image_size)
            if pixels.shape != first.shape:
                raise DataError(
                    f"{files[i]}: image is {pixels.shape[1]}x{pixels.shape[0]}, but "
                    f"{files[0]} is {first.shape[1]}x{first.shape[0]}; set "
                    "data.options.image_size to resize all images to one size"
                )
            out[i] = pixels

    n_chunks = max(1, min(workers, len(files) - 1))
    bounds = np.linspace(1, len(files), n_chunks + 1).astype(int)
    chunks = [range(bounds[i], bounds[i + 1]) for i in range(n_chunks)]
    if workers == 1:
        for chunk in chunks:
            work(chunk)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(work, chunk) for chunk in chunks]:
                future.result()
    return out


@SOURCES.register("imagefolder")
def imagefolder_source(
    root: str | None, cache_dir: Path, download: bool, seed: int, **options: Any
) -> DataSplits:
    """An image tree ``<root>/train/<class>/*`` + ``<root>/test/<class>/*`` (ImageFolder).

    Classes are the sorted train sub-folder names (label = position). With
    ``train_list``/``test_list`` the files and integer labels come from those lists instead
    and class names are ``"0" .. str(max label)``. Images are decoded to RGB (PIL); the test
    split is used as given (not re-balanced).
    """
    opts = from_dict(ImageFolderOptions, options, OPTIONS_KEY)
    if not root:
        raise ConfigError(
            "data.root",
            "required for imagefolder: a folder holding train/<class>/ and test/<class>/",
        )
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise DataError(f"{base}: data.root folder not found")
    if opts.train_list is not None and opts.test_list is not None:
        train_files, train_labels = _read_split_list(
            base, opts.train_list, "data.options.train_list"
        )
        test_files, test_labels = _read_split_list(base, opts.test_list, "data.options.test_list")
        num_classes = max(max(train_labels), max(test_labels)) + 1
        classes = [str(c) for c in range(num_classes)]
    else:
        train_files, train_labels, classes = _scan_split(base / opts.train_dir, None)
        test_files, test_labels, _ = _scan_split(base / opts.test_dir, classes)
        for split, files in ((opts.train_dir, train_files), (opts.test_dir, test_files)):
            if not files:
                raise DataError(
                    f"{base / split}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in its "
                    f"class sub-folders {classes[:5]}"
                )
    key_options = {k: v for k, v in asdict(opts).items() if k != "workers"}

    def build() -> dict[str, np.ndarray]:
        train_images = decode_images(train_files, opts.image_size, opts.workers)
        test_images = decode_images(test_files, opts.image_size, opts.workers)
        if (
            len(train_images)
            and len(test_images)
            and train_images.shape[1:] != test_images.shape[1:]
        ):
            raise DataError(
                f"{test_files[0]}: test images are {test_images.shape[1:3]}, train images "
                f"{train_images.shape[1:3]}; set data.options.image_size"
            )
        return _with_stats(
            {
                "train_images": train_images,
                "train_labels": np.asarray(train_labels, dtype=np.int64),
                "test_images": test_images,
                "test_labels": np.asarray(test_labels, dtype=np.int64),
                "classes": np.asarray(classes, dtype=str),
            }
        )

    arrays = cached(cache_dir, "imagefolder", base, key_options, train_files + test_files, build)
    return _splits_from_arrays("imagefolder", arrays, {"root": str(base)})

"""``data.source: hf:<path>``: a Hugging Face dataset kept on local disk (``fedlt[hf]``).

See docs/partition.md, "Sources by name". ``<path>`` (absolute, ``~``, or relative to
``data.root`` when that is set) is one of:

- a ``DatasetDict`` written by ``save_to_disk`` (``dataset_dict.json`` + one folder per
  split), or a folder holding one ``save_to_disk`` folder per split;
- ``.parquet`` / ``.arrow`` files: a file belongs to the split named by one of its folders
  (``train/0000.parquet``) or by the start of its name (``data/train-00000-of-00001.parquet``,
  ``test.parquet``).

Splits are ``data.options.train_split`` / ``test_split`` (``train`` / ``test``); columns are
``image_column`` / ``label_column`` (``image`` / ``label``). Images may be encoded (an
``Image`` feature: bytes or a path) or pixel arrays; labels integers (a ``ClassLabel`` gives
the class names) or strings (classes = sorted names). Nothing is ever downloaded. Decoded
images are cached like the other file sources (:mod:`fedlt.data.cache`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.configtools import from_dict, require
from fedlt.data.base import DataSplits
from fedlt.data.cache import cached
from fedlt.data.images import decode_encoded, resize_images
from fedlt.data.sources import OPTIONS_KEY, _splits_from_arrays, _with_stats
from fedlt.errors import ConfigError, DataError

KEY = "data.source"
PREFIX = "hf:"
INSTALL_HINT = "pip install 'fedlt[hf]'"
LAYOUT_HINT = (
    "expected a folder written by DatasetDict.save_to_disk (dataset_dict.json, <split>/) or "
    "<split>/*.parquet, <split>-*.parquet or <split>.parquet files (.arrow likewise); fedlt "
    "never downloads: save a hub dataset first with "
    "datasets.load_dataset(NAME).save_to_disk(PATH)"
)
Arrays = dict[str, np.ndarray]


@dataclass
class HFOptions:
    """Column and split names, plus ``image_size`` (resize to a square; default: keep, all
    images must share one size) and ``workers`` (decoding threads)."""

    image_column: str = "image"
    label_column: str = "label"
    train_split: str = "train"
    test_split: str = "test"
    image_size: int | None = None
    workers: int = 4

    def validate(self, prefix: str) -> None:
        require(
            self.image_size is None or self.image_size >= 1,
            f"{prefix}.image_size",
            f"must be >= 1, got {self.image_size}",
        )
        require(self.workers >= 1, f"{prefix}.workers", "must be >= 1")
        require(
            self.train_split != self.test_split,
            f"{prefix}.test_split",
            f"must differ from train_split ({self.train_split!r})",
        )


def hf_factory(path: str, key: str = KEY) -> Callable[..., DataSplits]:
    """The source function for ``hf:<path>`` (only the form is checked here)."""
    if not path.strip():
        raise ConfigError(
            key, f"expected '{PREFIX}<path>' (a local dataset folder), got {PREFIX!r}"
        )
    return functools.partial(hf_source, path)


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError(
            KEY, f"{PREFIX} sources need the Hugging Face datasets package: {INSTALL_HINT}"
        ) from exc
    return datasets


def resolve_path(path: str, root: str | None) -> Path:
    """``path`` expanded; a relative one is taken relative to ``data.root`` when given."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and root:
        candidate = Path(root).expanduser() / candidate
    return candidate.resolve()


def hf_source(
    path: str, root: str | None, cache_dir: Path, download: bool, seed: int, **options: Any
) -> DataSplits:
    """Load the train and test split of the local Hugging Face dataset at ``path``."""
    opts = from_dict(HFOptions, options, OPTIONS_KEY)
    if download:
        raise ConfigError("data.download", f"{PREFIX} sources never download; {LAYOUT_HINT}")
    base = resolve_path(path, root)
    if not base.is_dir():
        raise DataError(f"{base}: dataset folder not found ({KEY}: {PREFIX}{path}); {LAYOUT_HINT}")
    files = sorted(str(p) for p in _walk(base))
    key_options = {k: v for k, v in asdict(opts).items() if k != "workers"}
    arrays = cached(cache_dir, "hf", base, key_options, files, lambda: _build(base, opts))
    return _splits_from_arrays(
        f"{PREFIX}{base.name}", arrays, {"root": str(base), "source": f"{PREFIX}{path}"}
    )


def _walk(base: Path) -> list[Path]:
    return [Path(d) / f for d, _, names in os.walk(base) for f in names]


# ----------------------------------------------------------------------------- tables
def load_tables(base: Path, opts: HFOptions) -> dict[str, tuple[Any, Any]]:
    """``{split: (pyarrow.Table, datasets.Features)}`` for the train and test split."""
    datasets = _import_datasets()
    wanted = (opts.train_split, opts.test_split)
    if (base / "dataset_dict.json").is_file():
        saved = datasets.load_from_disk(str(base))
        return {s: _saved_table(saved, s, base) for s in wanted}
    if all((base / s / "state.json").is_file() for s in wanted):
        return {
            s: _saved_table({s: datasets.load_from_disk(str(base / s))}, s, base) for s in wanted
        }
    if (base / "state.json").is_file():
        raise DataError(
            f"{base}: holds a single saved Dataset; fedlt needs a train and a test split "
            f"({opts.train_split!r}, {opts.test_split!r}): save a DatasetDict instead"
        )
    return _file_tables(base, wanted, datasets)


def _saved_table(saved: Any, split: str, base: Path) -> tuple[Any, Any]:
    if split not in saved:
        raise DataError(
            f"{base}: no split {split!r}; found {sorted(saved)} "
            "(set data.options.train_split / test_split)"
        )
    dataset = saved[split]
    return dataset.with_format("arrow")[:], dataset.features


def split_of(file: Path, base: Path, splits: tuple[str, ...]) -> str | None:
    """The split a data file belongs to: a folder name or the first word of its name."""
    parts = file.relative_to(base).parts
    for folder in parts[:-1]:
        if folder in splits:
            return folder
    first = re.split(r"[-_.]", file.name, maxsplit=1)[0]
    return first if first in splits else None


def _file_tables(base: Path, splits: tuple[str, ...], datasets: Any) -> dict[str, tuple]:
    found: dict[str, list[Path]] = {s: [] for s in splits}
    for path in sorted(_walk(base)):
        if path.suffix in (".parquet", ".arrow"):
            split = split_of(path, base, splits)
            if split is not None:
                found[split].append(path)
    missing = [s for s, files in found.items() if not files]
    if missing:
        raise DataError(f"{base}: no data files for split {missing[0]!r}; {LAYOUT_HINT}")
    out = {}
    for split, files in found.items():
        table = _concat([_read_table(p) for p in files], files)
        out[split] = (table, datasets.Features.from_arrow_schema(table.schema))
    return out


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def _concat(tables: list[Any], files: list[Path]) -> Any:
    import pyarrow as pa

    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{files[0].parent}: files of one split differ in schema ({exc})") from exc


# ----------------------------------------------------------------------------- columns
def _build(base: Path, opts: HFOptions) -> Arrays:
    tables = load_tables(base, opts)
    label_feature = tables[opts.train_split][1].get(opts.label_column)
    raw_labels = {
        s: _column(table, opts.label_column, "label_column", s, base)
        for s, (table, _) in tables.items()
    }
    names, labels = class_labels(raw_labels, label_feature, opts.label_column)
    arrays: Arrays = {"classes": np.asarray(names, dtype=str)}
    for role, split in (("train", opts.train_split), ("test", opts.test_split)):
        column = _column(tables[split][0], opts.image_column, "image_column", split, base)
        where = f"{base} split {split!r} row"
        arrays[f"{role}_images"] = column_images(column, opts, lambda i, w=where: f"{w} {i}", base)
        arrays[f"{role}_labels"] = labels[split]
    return _with_stats(arrays)


def _column(table: Any, name: str, option: str, split: str, base: Path) -> Any:
    """Column ``name`` of ``table``; DataError naming ``data.options.<option>`` if absent."""
    if name not in table.column_names:
        raise DataError(
            f"{base} split {split!r}: no column {name!r} (data.options.{option}); columns: "
            f"{table.column_names}"
        )
    return table.column(name)


def class_labels(
    columns: dict[str, Any], feature: Any, column: str
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and int64 labels per split, from integer or string label columns."""
    values = {s: c.to_pylist() for s, c in columns.items()}
    flat = [v for vs in values.values() for v in vs]
    if any(v is None for v in flat):
        raise DataError(f"label column {column!r} has missing (null) labels")
    if flat and all(isinstance(v, str) for v in flat):
        names = sorted(set(flat))
        index = {n: i for i, n in enumerate(names)}
        return names, {
            s: np.asarray([index[v] for v in vs], dtype=np.int64) for s, vs in values.items()
        }
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        raise DataError(f"label column {column!r}: expected integer class indices or class names")
    labels = {s: np.asarray(vs, dtype=np.int64) for s, vs in values.items()}
    low = min((int(v.min()) for v in labels.values() if len(v)), default=0)
    if low < 0:
        raise DataError(f"label column {column!r}: label {low} < 0 (unlabelled rows?)")
    count = max((int(v.max()) + 1 for v in labels.values() if len(v)), default=0)
    declared = list(getattr(feature, "names", None) or [])
    names = declared if len(declared) >= count else [str(c) for c in range(count)]
    return [str(n) for n in names], labels


def column_images(
    column: Any, opts: HFOptions, where: Callable[[int], str], base: Path
) -> np.ndarray:
    """uint8 NHWC images from an encoded-image column (struct of bytes/path; relative paths
    are taken from ``base``) or an array column (nested lists of pixel values)."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        items = [_encoded(row, where, i, base) for i, row in enumerate(column.to_pylist())]
        return decode_encoded(items, opts.image_size, opts.workers, where)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return decode_encoded(column.to_pylist(), opts.image_size, opts.workers, where)
    pixels = np.asarray(column.to_pylist())
    if pixels.dtype.kind not in "iu" or pixels.ndim not in (3, 4):
        raise DataError(
            f"{where(0)}: image column holds {pixels.dtype} of shape {pixels.shape}; expected "
            "an Image feature or integer pixel arrays of shape (H, W) or (H, W, C)"
        )
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise DataError(f"{where(0)}: pixel values must lie in 0..255")
    images = pixels.astype(np.uint8)
    images = images[..., None] if images.ndim == 3 else images
    return resize_images(images, opts.image_size) if opts.image_size else images


def _encoded(row: Any, where: Callable[[int], str], i: int, base: Path) -> bytes | str:
    if isinstance(row, dict) and row.get("bytes"):
        return row["bytes"]
    if isinstance(row, dict) and row.get("path"):
        return str(base / row["path"])  # an absolute path stays as it is
    raise DataError(f"{where(i)}: image has neither bytes nor a path")

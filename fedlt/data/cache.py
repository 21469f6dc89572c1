"""Disk cache of decoded images (uint8 arrays in ``.npz`` files).

Decoding 60,000 JPEGs takes seconds; loading the same pixels from one ``.npz`` takes a
fraction of that. The cache key hashes the source name, the resolved root, the source
options and a fingerprint of the input files (relative path, size, modification time), so
editing, adding or removing a file invalidates it. Files are written atomically (temporary
file in the same folder, then ``os.replace``) so an interrupted run never leaves a truncated
cache behind; an unreadable cache file counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.errors import DataError

DEFAULT_CACHE_DIR = Path("~/.cache/fedlt")


def resolve_cache_dir(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` (``~`` expanded) or the default ``~/.cache/fedlt``."""
    return Path(cache_dir if cache_dir else DEFAULT_CACHE_DIR).expanduser()


def files_fingerprint(files: Iterable[Path | str], root: Path | str) -> str:
    """sha256 over (path relative to ``root``, size, mtime in ns) of every file, in order."""
    digest = hashlib.sha256()
    prefix = os.path.join(str(root), "")
    for path in files:
        name = str(path)
        try:
            stat = os.stat(name)
        except OSError as exc:
            raise DataError(f"{name}: cannot read file ({exc})") from exc
        rel = name[len(prefix) :] if name.startswith(prefix) else name
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(source: str, root: Path | str, options: dict[str, Any], fingerprint: str) -> str:
    """Short stable hash identifying one decoded dataset."""
    payload = json.dumps(
        {"source": source, "root": str(root), "options": options, "files": fingerprint},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def cache_path(cache_dir: Path, source: str, key: str) -> Path:
    return Path(cache_dir) / f"{source}-{key}.npz"


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path``, or None if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (tmp file + rename). Failures are not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    except OSError:
        return  # a read-only cache folder only costs speed
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(
    cache_dir: Path,
    source: str,
    root: Path,
    options: dict[str, Any],
    files: list[Path] | list[str],
    build: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Return the arrays for this (source, root, options, files), building them once."""
    key = cache_key(source, root, options, files_fingerprint(files, root))
    path = cache_path(cache_dir, source, key)
    arrays = read_cache(path)
    if arrays is None:
        arrays = build()
        write_cache(path, arrays)
    return arrays

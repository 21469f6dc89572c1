"""The experiment YAMLs that ship with fedlt: ``simulations/`` as package data.

In a source checkout (and an editable install) the files are read from the repository's
top-level ``simulations/`` folder; in an installed wheel they are the package data
``fedlt.simulations`` (the same folder, mapped into the wheel by ``pyproject.toml``), read
through :mod:`importlib.resources`. The layout is described in docs/api.md.

Nothing here imports torch or Flower, so :mod:`fedlt.config` may use it at import time.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

PACKAGE = "fedlt.simulations"
DEFAULT_NAME = "default.yaml"
_REPO_SIMULATIONS = Path(__file__).resolve().parent.parent / "simulations"
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def _packaged_default() -> Path | None:
    """``default.yaml`` of the installed ``fedlt.simulations`` package data, or None when
    that package is not installed (a source checkout, an older editable install)."""
    try:
        resource = resources.files(PACKAGE).joinpath(DEFAULT_NAME)
    except (ModuleNotFoundError, TypeError):
        return None
    if not resource.is_file():
        return None
    if isinstance(resource, Path):
        return resource
    # imported from a zip archive: extract, and keep the file until the interpreter exits
    return Path(_extracted.enter_context(resources.as_file(resource)))


def simulations_dir() -> Path:
    """The folder of shipped experiment YAMLs: the installed ``fedlt.simulations`` package
    data (a wheel, or an editable install that maps it), else the repository's
    ``simulations/`` next to the ``fedlt`` source folder."""
    packaged = _packaged_default()
    if packaged is not None:
        return packaged.parent
    if (_REPO_SIMULATIONS / DEFAULT_NAME).is_file():
        return _REPO_SIMULATIONS
    raise FileNotFoundError(
        f"fedlt's bundled configs are missing: neither the package data {PACKAGE} nor "
        f"{_REPO_SIMULATIONS} holds {DEFAULT_NAME}; reinstall fedlt"
    )


def default_config_path() -> Path:
    """The embedded default experiment (``simulations/default.yaml``)."""
    return simulations_dir() / DEFAULT_NAME


def bundled_config(name: str | Path) -> Path | None:
    """The shipped YAML called ``name`` (relative to ``simulations/``; a leading
    ``simulations/`` is dropped), e.g. ``continual/er_digits.yaml``; None if there is none.

    Lets ``fedlt.run("simulations/continual/er_digits.yaml")`` work from any folder, with a
    wheel as with a checkout (docs/api.md).
    """
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        return None
    if parts[0] == "simulations":
        parts = parts[1:]
    if not parts:
        return None
    try:
        candidate = simulations_dir().joinpath(*parts)
    except FileNotFoundError:
        return None
    return candidate if candidate.is_file() else None


def bundled_configs() -> list[str]:
    """Every shipped YAML, as a path relative to ``simulations/`` (sorted)."""
    try:
        root = simulations_dir()
    except FileNotFoundError:
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


__all__ = ["bundled_config", "bundled_configs", "default_config_path", "simulations_dir"]

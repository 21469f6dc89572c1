"""Checks and builds done before a run directory exists, so a refused run leaves nothing.

:func:`preflight` runs everything that can fail on bad input, in order of cost:

1. the device, the output folder (exists as a file? writable?) and, for the Flower backend,
   the Ray resources;
2. the data source, the global long tail and the client partition (federated) or the stream
   (continual), and the model and strategy with their options.

The federated build *is* the run's runtime: it is kept in the per-process runtime cache
(:func:`fedlt.federated.runtime.runtime_for`, built from the config object), so the engine
that follows reuses it and the data is built once. The continual engine gets the decoded
data the same way (:func:`fedlt.continual.engine.prepare_stream_data`); only its learner is
built twice.

Exceptions raised inside user plug-ins are reported by name (:func:`fedlt.registry.
call_plugin`); any other unexpected exception of the build becomes a :class:`RunError`
naming the model and strategy, with the original chained (``fedlt -v`` shows it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fedlt.config import ExperimentConfig
from fedlt.errors import ConfigError, FedltError, RunError

T = TypeVar("T")


def preflight(
    cfg: ExperimentConfig,
    backend: str = "inprocess",
    ray_address: str | None = None,
    run_dir: str | Path | None = None,
    *,
    new_run: bool = True,
) -> None:
    """Refuse what cannot run, before anything is written (see the module docstring).

    ``new_run``: also check where the run directory will be made (``run_dir`` or
    ``cfg.output_dir``); False when resuming an existing run.
    """
    from fedlt.devices import resolve_device

    resolve_device(cfg.resources.device)
    if new_run:
        check_output_target(cfg, run_dir)
    federated = cfg.engine in ("federated", "federated_continual")
    if federated and backend == "flower":
        from fedlt.federated.simulation import backend_config

        backend_config(cfg, ray_address, verbose=False)
    if federated:
        _build_federated(cfg)
    else:
        _build_continual(cfg)


# ----------------------------------------------------------------------------- output
def check_output_target(cfg: ExperimentConfig, run_dir: str | Path | None) -> None:
    """The run directory can be made: ``run_dir`` does not exist yet and the nearest
    existing folder above it (or above ``output_dir``) is a writable folder."""
    if run_dir is not None:
        target = Path(run_dir)
        if target.exists() or target.is_symlink():
            raise ConfigError(
                "--run-dir", f"{target} already exists; a run never reuses a directory"
            )
        _check_creatable(target.parent, "--run-dir", target)
    else:
        _check_creatable(Path(cfg.output_dir), "output_dir", Path(cfg.output_dir))


def _check_creatable(folder: Path, key: str, shown: Path) -> None:
    """``folder`` is a writable folder, or can be made inside one."""
    existing = folder
    while not (existing.exists() or existing.is_symlink()):
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == shown else f"is inside {existing}, which is"
        raise ConfigError(key, f"{shown} {what} a file, not a folder; expected a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            key, f"{existing}: folder is not writable; choose another {key} or fix its permissions"
        )


# ----------------------------------------------------------------------------- builds
def _build_federated(cfg: ExperimentConfig) -> None:
    """Data, long tail, partition, model and strategy: the engine's own runtime, cached."""
    from fedlt.federated.runtime import runtime_for

    runtime = _guarded(cfg, lambda: runtime_for(cfg))
    data = runtime.data
    if len(data.test) == 0:
        raise ConfigError("data.source", f"{cfg.data.source!r} gave an empty test set")


def _build_continual(cfg: ExperimentConfig) -> None:
    """Data, long tail, stream and learner (the data is kept for the engine)."""
    from fedlt.continual.engine import StreamEngine, prepare_stream_data
    from fedlt.devices import configure_torch

    configure_torch(cfg.resources.num_threads, cfg.resources.flush_denormal)
    splits = _guarded(cfg, lambda: prepare_stream_data(cfg))
    _guarded(cfg, lambda: StreamEngine(cfg, splits, run=None, progress=False))


def _guarded(cfg: ExperimentConfig, build: Callable[[], T]) -> T:
    """Run ``build``; an unexpected exception becomes a RunError naming the components."""
    try:
        return build()
    except FedltError:
        raise
    except Exception as exc:
        raise RunError(
            f"preparing the run failed while building data source {cfg.data.source!r}, model "
            f"{cfg.model.name!r} (model.options {_brief(cfg.model.options)}) and strategy "
            f"{cfg.strategy.name!r}: {type(exc).__name__}: {exc} (run with -v for the traceback)"
        ) from exc


def _brief(options: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in options.items()) + "}"

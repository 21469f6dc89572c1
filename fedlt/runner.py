"""Run one experiment (either engine) into a run directory, or resume one."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fedlt.config import ExperimentConfig
from fedlt.errors import RunError
from fedlt.runs import RunDirectory

Backend = Literal["flower", "inprocess"]


def run_experiment(
    cfg: ExperimentConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    backend: Backend = "flower",
    progress: bool = True,
    ray_address: str | None = None,
    verbose: bool = False,
) -> Path:
    """Run ``cfg`` (or continue the run in ``resume``) and return the run directory.

    ``backend``: ``flower`` runs the federated engine as a Flower ServerApp with simulated
    ClientApps on Ray; ``inprocess`` runs the very same client code in a plain loop (used by
    sweeps inside Ray tasks, benchmarks and machines without Ray). The stream engine ignores
    it. Failures mark the run directory failed (with the message) and re-raise.
    """
    if resume is not None:
        run = RunDirectory.open(resume)
        if run.is_complete:
            raise RunError(f"{run.path} is already complete; nothing to resume")
    else:
        if cfg is None:
            raise ValueError("give a config or a run directory to resume")
        _check_before_start(cfg, backend, ray_address)
        run = RunDirectory.create(cfg, run_dir)
    try:
        _dispatch(run, backend, progress, ray_address, verbose)
    except BaseException as exc:
        if run.status.get("status") != "failed":
            run.mark_failed(f"{type(exc).__name__}: {exc}")
        raise
    return run.path


def _check_before_start(cfg: ExperimentConfig, backend: Backend, ray_address: str | None) -> None:
    """Refuse what cannot run before a run directory is made (nothing half-made is left)."""
    from fedlt.devices import resolve_device

    resolve_device(cfg.resources.device)
    if cfg.engine == "federated" and backend == "flower":
        from fedlt.federated.simulation import backend_config

        backend_config(cfg, ray_address, verbose=False)


def _dispatch(
    run: RunDirectory, backend: Backend, progress: bool, ray_address: str | None, verbose: bool
) -> dict:
    if run.config.engine == "continual":
        from fedlt.continual.engine import run_stream

        return run_stream(run.config, run, progress=progress)
    from fedlt.federated.engine import FederatedEngine, InProcessExecutor

    engine = FederatedEngine(run, progress=progress)
    if backend == "inprocess":
        return engine.run_rounds(InProcessExecutor(engine.text))
    if backend != "flower":
        raise ValueError(f"unknown backend {backend!r}; expected 'flower' or 'inprocess'")
    from fedlt.federated.simulation import run_flower

    return run_flower(engine, ray_address=ray_address, verbose=verbose)

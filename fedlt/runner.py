"""Run one experiment (either engine) into a run directory, or resume one."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fedlt.config import ExperimentConfig
from fedlt.errors import RunError
from fedlt.runs import RunDirectory, warn

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
    force: bool = False,
) -> Path:
    """Run ``cfg`` (or continue the run in ``resume``) and return the run directory.

    ``backend``: ``flower`` runs the federated engine as a Flower ServerApp with simulated
    ClientApps on Ray; ``inprocess`` runs the very same client code in a plain loop (used by
    sweeps inside Ray tasks, benchmarks and machines without Ray). The stream engine ignores
    it. Everything that can fail on bad input is checked (and the data built) before the run
    directory is made, so a refused run leaves nothing behind (:mod:`fedlt.preflight`). The
    run directory is locked while it runs. Failures after that mark it failed (with the
    message) and re-raise.

    Resuming refuses a run that is complete, locked by another process, or whose
    ``config.yaml`` changed since it started (unless ``force``); ``run_dir`` cannot be given
    with ``resume``.
    """
    if resume is not None:
        if run_dir is not None:
            raise RunError(
                f"--run-dir cannot be combined with --resume: a run continues in its own "
                f"directory ({resume})"
            )
        run = _open_for_resume(resume, backend, ray_address, force)
    else:
        if cfg is None:
            raise ValueError("give a config or a run directory to resume")
        _check_before_start(cfg, backend, ray_address, run_dir)
        run = RunDirectory.create(cfg, run_dir)
    with run.supervised():
        _dispatch(run, backend, progress, ray_address, verbose)
    return run.path


def _check_before_start(
    cfg: ExperimentConfig,
    backend: Backend,
    ray_address: str | None,
    run_dir: str | Path | None = None,
    *,
    new_run: bool = True,
) -> None:
    """Refuse what cannot run before a run directory is made (nothing half-made is left):
    device, output folder, Ray resources, data, partition or stream, model and strategy."""
    from fedlt.preflight import preflight

    preflight(cfg, backend, ray_address, run_dir, new_run=new_run)


def _open_for_resume(
    path: str | Path, backend: Backend, ray_address: str | None, force: bool
) -> RunDirectory:
    """Open and lock the run in ``path`` and check it can continue; a refused resume
    releases the lock and leaves the run exactly as it was."""
    run = RunDirectory.open(path)
    run.acquire_lock()
    try:
        _check_resumable(run, force)
        _check_before_start(run.config, backend, ray_address, new_run=False)
        _check_client_state(run)
        if force:
            run.accept_config_change()
    except BaseException:
        run.release_lock()
        raise
    return run


def _check_resumable(run: RunDirectory, force: bool) -> None:
    """Not complete, and config.yaml unchanged since the start (or ``force``)."""
    if run.is_complete:
        raise RunError(f"{run.path} is already complete; nothing to resume")
    change = run.config_changed()
    if change is None:
        return
    config_file = run.config_path
    what = (
        f"{config_file} changed since the run started (sha256 {change[0][:12]}… recorded, "
        f"{change[1][:12]}… now)"
    )
    if not force:
        raise RunError(
            f"{what}; resuming would continue the logged rounds with another config. Restore "
            "the file, or pass --force to continue with the edited config"
        )
    warn(f"{what}; continuing with the edited config (--force)")


def _check_client_state(run: RunDirectory) -> None:
    """The per-client state files the newest readable checkpoint refers to all exist."""
    checkpoint = run.latest_checkpoint()
    if checkpoint is None or run.config.engine == "continual":
        return
    index = checkpoint.state.get("client_state_index") or {}
    if not index:
        return
    root = run.client_state_dir
    needed = f"{checkpoint.path.name} needs the saved state of {len(index)} clients"
    if not root.is_dir():
        raise RunError(
            f"cannot resume {run.path}: the folder {root} is missing but {needed} (personal "
            "heads or models), which cannot be rebuilt; start a new run"
        )
    from fedlt.federated.state_store import ClientStateStore

    try:
        ClientStateStore(root).restore(index)
    except FileNotFoundError as exc:
        raise RunError(f"cannot resume {run.path}: {exc}; {needed}; start a new run") from exc


def _dispatch(
    run: RunDirectory, backend: Backend, progress: bool, ray_address: str | None, verbose: bool
) -> dict:
    if run.config.engine == "continual":
        from fedlt.continual.engine import run_stream

        return run_stream(run.config, run, progress=progress)
    from fedlt.federated.engine import FederatedEngine, InProcessExecutor
    from fedlt.federated.stopping import stop_on_signals

    engine = FederatedEngine.for_run(run, progress=progress)
    if backend == "inprocess":
        with stop_on_signals(engine.stop):
            return engine.run_rounds(InProcessExecutor(engine.runtime))
    if backend != "flower":
        raise ValueError(f"unknown backend {backend!r}; expected 'flower' or 'inprocess'")
    from fedlt.federated.simulation import run_flower

    return run_flower(engine, ray_address=ray_address, verbose=verbose)

"""Flower's simulation engine on Ray — the only module that calls ``run_simulation``.

``flwr.simulation.run_simulation`` is deprecated (Flower recommends ``flwr run``) but is the
in-process entry point; keeping every call here means one place to change when it goes.

The simulation registers a *pool* of SuperNodes, one per Ray worker that the client
resources allow (``resources.pool_size`` overrides), not one per partition: each round every
node gets one cohort of clients (:mod:`fedlt.federated.flower_app`). Ctrl-C and SIGTERM stop
the run cleanly (:mod:`fedlt.federated.stopping`): a checkpoint of the last finished round,
status "interrupted", the Ray workers ended, exit status 130 / 143.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from typing import Any

from fedlt.config import ExperimentConfig
from fedlt.errors import ConfigError, RunError
from fedlt.federated.cohorts import CohortPlanner, assign_cohorts
from fedlt.federated.stopping import stop_on_signals


def quiet_flower(verbose: bool) -> None:
    """Silence Flower/Ray banners, deprecation notices and telemetry unless ``verbose``."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    if not verbose:
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        logging.getLogger("flwr").setLevel(logging.ERROR)
        logging.getLogger("ray").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def _ray_address(cfg: ExperimentConfig, ray_address: str | None) -> str | None:
    return ray_address or cfg.resources.ray_address or os.environ.get("RAY_ADDRESS")


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def local_workers(cfg: ExperimentConfig) -> int:
    """How many clients a local Ray can run at once with the configured client resources.

    Raises ConfigError when not even one fits (before Ray starts: Ray itself would only log
    "ActorPool is empty" and hang)."""
    res = cfg.resources
    cpus = res.ray_num_cpus or os.cpu_count() or 1
    source = "resources.ray_num_cpus" if res.ray_num_cpus else "this machine"
    if res.num_cpus > cpus:
        raise ConfigError(
            "resources.num_cpus",
            f"is {res.num_cpus} CPUs per client but a local Ray has {cpus} ({source}); "
            f"no client could be placed. Use at most {cpus}.",
        )
    workers = math.floor(cpus / res.num_cpus + 1e-9)
    if res.num_gpus > 0:
        gpus = _local_gpus()
        if gpus == 0:
            raise ConfigError(
                "resources.num_gpus",
                f"is {res.num_gpus} but this machine has no CUDA GPU; set it to 0 "
                "(or join a cluster with GPUs via --ray-address)",
            )
        if res.num_gpus > gpus:
            raise ConfigError(
                "resources.num_gpus",
                f"is {res.num_gpus} GPUs per client but this machine has {gpus}; "
                f"use at most {gpus}",
            )
        workers = min(workers, math.floor(gpus / res.num_gpus + 1e-9))
    return max(1, workers)


def backend_config(cfg: ExperimentConfig, ray_address: str | None, verbose: bool) -> dict[str, Any]:
    """Ray backend config: client resources, and init args for a local or an existing cluster.

    Validated before Ray starts: a failed backend start makes ``run_simulation`` hang until
    the round timeout, so impossible requests are refused here.
    """
    res = cfg.resources
    address = _ray_address(cfg, ray_address)
    if not address:
        local_workers(cfg)
    init_args: dict[str, Any] = {"include_dashboard": False}
    if not verbose:
        init_args.update({"logging_level": logging.ERROR, "log_to_driver": False})
    if address:
        init_args["address"] = address  # never together with num_cpus (Ray refuses)
    elif res.ray_num_cpus:
        init_args["num_cpus"] = res.ray_num_cpus
    return {
        "client_resources": {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus},
        "init_args": init_args,
    }


def _start_ray(init_args: dict[str, Any]) -> None:
    """Start (or join) Ray here, in the main thread, before Flower does: Flower reuses an
    initialised Ray, and our signal handlers are installed after Ray's."""
    import ray

    if ray.is_initialized():
        return
    # Workers must import what this process can (plug-ins next to a script, a source tree):
    # they inherit PYTHONPATH from the local Ray services (an env var is cheaper than a Ray
    # runtime_env, which goes through Ray's runtime-env agent for every worker).
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*sys.path, *filter(None, [previous])])
    try:
        if "address" in init_args:  # a cluster's workers do not inherit this environment
            init_args = {
                **init_args,
                "runtime_env": {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}},
            }
        ray.init(**init_args)
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous


def _cluster_workers(cfg: ExperimentConfig) -> int:
    """Workers an existing cluster can run with the client resources (refused if none)."""
    import ray

    res = cfg.resources
    fits = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        per_cpu = math.floor(have.get("CPU", 0) / res.num_cpus + 1e-9)
        per_gpu = math.floor(have.get("GPU", 0) / res.num_gpus + 1e-9) if res.num_gpus else per_cpu
        fits.append(min(per_cpu, per_gpu))
    if not any(fits):
        ray.shutdown()
        raise ConfigError(
            "resources",
            f"no node of the Ray cluster has num_cpus={res.num_cpus} and "
            f"num_gpus={res.num_gpus} free for one client",
        )
    return sum(fits)


def _descendants() -> list[Any]:
    import psutil

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _kill_ray_workers() -> None:
    """SIGKILL this process's Ray worker processes (the actors running client cohorts), so a
    stop does not wait for the cohort in flight; Ray's own services are shut down by Flower."""
    import psutil

    for proc in _descendants():
        try:
            if proc.name().startswith("ray::") or "default_worker.py" in " ".join(proc.cmdline()):
                proc.kill()
        except psutil.Error:
            pass


def _ray_descendants() -> list[Any]:
    """This process's descendants that belong to Ray (its services and workers), never the
    caller's own subprocesses."""
    import psutil

    found = []
    for proc in _descendants():
        with contextlib.suppress(psutil.Error):
            command = " ".join(proc.cmdline()) or proc.name()
            if proc.name().startswith("ray::") or "/ray/" in command or "raylet" in command:
                found.append(proc)
    return found


def _reap_local_ray(grace_s: float = 5.0) -> None:
    """After Ray shut down, wait for its local processes to exit; kill what lingers."""
    import psutil

    deadline = time.monotonic() + grace_s
    while (left := _ray_descendants()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def run_flower(
    engine: Any,
    ray_address: str | None = None,
    verbose: bool = False,
    planner: CohortPlanner = assign_cohorts,
) -> dict:
    """Run ``engine`` (a prepared FederatedEngine) as a Flower ServerApp with a pool of
    simulated SuperNodes on Ray; return its summary. Exceptions inside the ServerApp are
    re-raised here (``run_simulation`` itself only logs them)."""
    quiet_flower(verbose)
    from flwr.simulation import run_simulation

    quiet_flower(verbose)  # again: importing flwr resets its logger's level

    from fedlt.federated.flower_app import GridExecutor, client_app, make_server_app

    cfg = engine.cfg
    backend = backend_config(cfg, ray_address, verbose)
    address = _ray_address(cfg, ray_address)
    outcome: dict[str, Any] = {}
    t_start = time.perf_counter()
    _start_ray(backend["init_args"])
    workers = _cluster_workers(cfg) if address else local_workers(cfg)
    pool = cfg.resources.pool_size or workers

    def main(grid: Any) -> None:
        try:
            executor = GridExecutor.for_engine(
                grid, engine, placement="pool", pool_size=pool, planner=planner
            )
            outcome["startup_s"] = time.perf_counter() - t_start
            outcome["summary"] = engine.run_rounds(executor)
        except BaseException as exc:  # re-raised in the caller's frame below
            outcome["error"] = exc
            if engine.stop.is_set():
                if not verbose:
                    logging.getLogger("flwr").setLevel(logging.CRITICAL)
                _kill_ray_workers()

    try:
        with stop_on_signals(engine.stop):
            run_simulation(
                server_app=make_server_app(main),
                client_app=client_app,
                num_supernodes=pool,
                backend_config=backend,
                verbose_logging=verbose,
            )
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if not address:
            _reap_local_ray()
    engine.startup_s = outcome.get("startup_s")
    if "error" in outcome:
        raise outcome["error"]
    if "summary" not in outcome:
        raise RunError("the Flower simulation ended without running the ServerApp (see -v logs)")
    return outcome["summary"]

"""Flower's simulation engine on Ray — the only module that calls ``run_simulation``.

``flwr.simulation.run_simulation`` is deprecated (Flower recommends ``flwr run``) but is the
in-process entry point; keeping every call here means one place to change when it goes.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from fedlt.config import ExperimentConfig
from fedlt.errors import ConfigError


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


def backend_config(cfg: ExperimentConfig, ray_address: str | None, verbose: bool) -> dict[str, Any]:
    """Ray backend config: client resources, and init args for a local or an existing cluster.

    Validated before Ray starts: a failed backend start makes ``run_simulation`` hang until
    the round timeout (design.md), so impossible requests are refused here.
    """
    res = cfg.resources
    address = ray_address or res.ray_address or os.environ.get("RAY_ADDRESS")
    if res.num_gpus > 0 and not address:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "resources.num_gpus",
                f"is {res.num_gpus} but this machine has no CUDA GPU; set it to 0 "
                "(or join a cluster with GPUs via --ray-address)",
            )
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


def run_flower(engine: Any, ray_address: str | None = None, verbose: bool = False) -> dict:
    """Run ``engine`` (a prepared FederatedEngine) as a Flower ServerApp with one simulated
    ClientApp per partition; return its summary. Exceptions inside the ServerApp are re-raised
    here (``run_simulation`` itself only logs them)."""
    quiet_flower(verbose)
    from flwr.simulation import run_simulation

    quiet_flower(verbose)  # again: importing flwr resets its logger's level

    from fedlt.federated.flower_app import GridExecutor, client_app, make_server_app

    cfg = engine.cfg
    outcome: dict[str, Any] = {}

    def main(grid: Any) -> None:
        try:
            executor = GridExecutor(
                grid, engine.text, cfg.federated.round_timeout, cfg.data.partition.num_clients
            )
            outcome["summary"] = engine.run_rounds(executor)
        except BaseException as exc:  # re-raised in the caller's frame below
            outcome["error"] = exc

    run_simulation(
        server_app=make_server_app(main),
        client_app=client_app,
        num_supernodes=cfg.data.partition.num_clients,
        backend_config=backend_config(cfg, ray_address, verbose),
        verbose_logging=verbose,
    )
    if "error" in outcome:
        raise outcome["error"]
    if "summary" not in outcome:
        from fedlt.errors import RunError

        raise RunError("the Flower simulation ended without running the ServerApp (see -v logs)")
    return outcome["summary"]

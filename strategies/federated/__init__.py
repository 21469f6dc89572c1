"""Federated learning rules, one module per method, registered by name."""

from fedlt.registry import Registry
from strategies.federated.base import (
    ClientData,
    FederatedStrategy,
    LocalResult,
    StateDict,
    TrainConfig,
    parse_options,
)

FEDERATED_STRATEGIES: Registry[type[FederatedStrategy]] = Registry("federated strategy")


def register(name: str):
    """Class decorator: register a :class:`FederatedStrategy` subclass under ``name``."""

    def decorator(cls: type[FederatedStrategy]) -> type[FederatedStrategy]:
        cls.name = name
        return FEDERATED_STRATEGIES.register(name)(cls)

    return decorator


# Importing the modules registers the strategies (keep this list sorted).
from strategies.federated import ditto, fedavg, fedbabu, fedetf, fedloge, fedprox, fedrep, fedrod  # noqa: E402, F401

__all__ = [
    "FEDERATED_STRATEGIES",
    "ClientData",
    "FederatedStrategy",
    "LocalResult",
    "StateDict",
    "TrainConfig",
    "parse_options",
    "register",
]

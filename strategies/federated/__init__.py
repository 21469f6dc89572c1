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


# Importing the modules registers the strategies. The registration order is the order of the
# methods in `fedlt report`'s tables: the FedLoGe paper's, global baselines first, FedLoGe last.
# isort: off
from strategies.federated import fedavg  # noqa: E402, F401
from strategies.federated import fedprox  # noqa: E402, F401
from strategies.federated import fedrep  # noqa: E402, F401
from strategies.federated import fedbabu  # noqa: E402, F401
from strategies.federated import fedrod  # noqa: E402, F401
from strategies.federated import ditto  # noqa: E402, F401
from strategies.federated import fedetf  # noqa: E402, F401
from strategies.federated import fedloge  # noqa: E402, F401
from strategies.federated import fedavgm  # noqa: E402, F401
from strategies.federated import fedadam  # noqa: E402, F401
from strategies.federated import fedyogi  # noqa: E402, F401

# isort: on

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

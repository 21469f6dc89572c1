"""Strategies of the federated continual engine (``engine: federated_continual``,
docs/federated_continual.md).

``strategy.name`` names either

- a federated strategy that trains on online streams (``online_streams``: FedAvg and the
  server-optimizer variants, FedLoGe), whose ``local_update`` runs unchanged over the
  client's online steps (:class:`fedlt.federated_continual.online.OnlineClientData`); or
- an online continual learner of the stream engine (finetune, ER, EWC++, LwF, L2P,
  DualPrompt, MVP, MVP-R), federated by FedAvg (:mod:`.learner`): each client runs the
  learner's own ``train_step`` on its stream, the server averages what the learner trains.
"""

from __future__ import annotations

from strategies.federated import FEDERATED_STRATEGIES
from strategies.federated.base import FederatedStrategy


def stream_strategy(name: str, key: str = "strategy.name") -> type[FederatedStrategy]:
    """The strategy class ``name`` stands for in the federated continual engine."""
    from fedlt.errors import ConfigError
    from fedlt.registry import did_you_mean
    from strategies.continual import CONTINUAL_LEARNERS
    from strategies.federated_continual.learner import federated_learner

    if name in FEDERATED_STRATEGIES:
        cls = FEDERATED_STRATEGIES.get(name, key)
        if not cls.online_streams:
            raise ConfigError(key, f"{name!r} cannot train on online streams; {_known()}")
        return cls
    if name in CONTINUAL_LEARNERS:
        return federated_learner(CONTINUAL_LEARNERS.get(name, key))
    known = stream_strategy_names()
    raise ConfigError(key, f"unknown strategy {name!r}{did_you_mean(name, known)}; {_known()}")


def stream_strategy_names() -> list[str]:
    """Every name :func:`stream_strategy` accepts, federated strategies first."""
    from strategies.continual import CONTINUAL_LEARNERS

    federated = [
        n for n in FEDERATED_STRATEGIES.in_order() if FEDERATED_STRATEGIES.get(n).online_streams
    ]
    return federated + CONTINUAL_LEARNERS.in_order()


def _known() -> str:
    return (
        "engine federated_continual takes a federated strategy that trains on streams or a "
        f"continual learner: {', '.join(stream_strategy_names())}"
    )


__all__ = ["stream_strategy", "stream_strategy_names"]

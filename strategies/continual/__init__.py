"""Online continual learners, one module per method, registered by name."""

from __future__ import annotations

from typing import Any

from fedlt.configtools import from_dict
from fedlt.registry import Registry
from strategies.continual.base import ContinualLearner, NoOptions

CONTINUAL_LEARNERS: Registry[type[ContinualLearner]] = Registry("continual learner")


def register(name: str):
    """Class decorator: register a :class:`ContinualLearner` subclass under ``name``."""

    def decorator(cls: type[ContinualLearner]) -> type[ContinualLearner]:
        cls.name = name
        return CONTINUAL_LEARNERS.register(name)(cls)

    return decorator


def parse_options(learner_cls: type, options: Any, prefix: str = "strategy.options") -> Any:
    """Turn a ``strategy.options`` mapping into the learner's ``Options`` dataclass."""
    return from_dict(getattr(learner_cls, "Options", NoOptions), options or {}, prefix)


# Importing the modules registers the learners (the stream engine's and MVP's helpers add
# their modules here).
__all__ = ["CONTINUAL_LEARNERS", "ContinualLearner", "parse_options", "register"]
from strategies.continual import er, ewcpp, finetune, lwf  # noqa: E402, F401  (stream engine baselines)

# isort: split
from strategies.continual import dualprompt, l2p, mvp  # noqa: E402, F401  (prompt learners)

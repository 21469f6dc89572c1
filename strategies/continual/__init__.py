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


# Importing the modules registers the learners. The registration order is the order of the
# methods in `fedlt report`'s tables: the stream engine's baselines, then the prompt learners
# (mvp.py registers mvp, then mvp_r).
__all__ = ["CONTINUAL_LEARNERS", "ContinualLearner", "parse_options", "register"]
# isort: off
from strategies.continual import finetune  # noqa: E402, F401
from strategies.continual import er  # noqa: E402, F401
from strategies.continual import ewcpp  # noqa: E402, F401
from strategies.continual import lwf  # noqa: E402, F401
from strategies.continual import l2p  # noqa: E402, F401
from strategies.continual import dualprompt  # noqa: E402, F401
from strategies.continual import mvp  # noqa: E402, F401

# isort: on

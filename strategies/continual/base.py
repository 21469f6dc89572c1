"""The online continual learner plug-in interface (no Flower, no Ray).

The stream engine owns the stream, class exposure, replay memory and evaluation; a learner
only sees batches. Labels reaching a learner are already relabelled in first-seen order
(exposed class j has label j), and ``exposed`` is a boolean mask over the ``num_classes``
outputs: unexposed outputs must get a −inf logit at train and at test (spec §2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass
class NoOptions:
    """Learners without hyperparameters of their own."""


def mask_unexposed(logits: Tensor, exposed: Tensor) -> Tensor:
    """Set the logits of unexposed classes to −inf (spec §2)."""
    return logits.masked_fill(~exposed.to(logits.device), float("-inf"))


class ContinualLearner(nn.Module):
    """Base class for online learners.

    ``uses_memory``: whether the engine should mix replay-memory samples into each step.
    Subclasses implement :meth:`train_step` (one optimizer step on a batch) and
    :meth:`forward` (masked logits). ``state_dict`` must capture everything needed for an
    exact resume (optimizer state included, via :meth:`extra_state`).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    uses_memory: ClassVar[bool] = False

    def __init__(
        self,
        options: Any,
        model_factory: Callable[[], nn.Module],
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.options = options
        self.num_classes = num_classes
        self.device_ = torch.device(device)
        self.seed = seed

    def train_step(self, x: Tensor, y: Tensor, exposed: Tensor) -> dict[str, float]:
        """One optimizer step on a batch (x on device, y relabelled); returns scalars."""
        raise NotImplementedError

    def forward(self, x: Tensor, exposed: Tensor) -> Tensor:  # type: ignore[override]
        """Masked logits (unexposed classes at −inf)."""
        raise NotImplementedError

    def on_task_end(self, task: int) -> None:
        """Hook at each task boundary (e.g. EWC++ bookkeeping); default nothing."""

"""The online continual learner plug-in interface (no Flower, no Ray).

The stream engine owns the stream, class exposure, replay memory and evaluation; a learner
only sees batches. Labels reaching a learner are already relabelled in first-seen order
(exposed class j has label j), and ``exposed`` is a boolean mask over the ``num_classes``
outputs: unexposed outputs must get a −inf logit at train and at test (Si-Blurry, Moon et
al., ICCV 2023; docs/continual.md, "Online protocol").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass
class NoOptions:
    """Learners without hyperparameters of their own."""


def mask_unexposed(logits: Tensor, exposed: Tensor) -> Tensor:
    """Set the logits of unexposed classes to −inf (docs/continual.md)."""
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

    # -- federated use (strategies.federated_continual.learner) ------------------------
    def reset_optimizer(self) -> None:
        """A fresh optimizer over the trainable parameters (each federated round starts
        one, docs/federated_continual.md)."""
        raise NotImplementedError(f"{type(self).__name__} cannot reset its optimizer")

    def private_tensors(self) -> dict[str, Tensor]:
        """State outside ``state_dict``'s tensors that a client keeps between rounds
        (e.g. EWC++'s Fisher); default none."""
        return {}

    def load_private_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what :meth:`private_tensors` returned."""


# -- shared pieces of the learners that train one FeatureModel ----------------------------
@dataclass
class ModelOptions:
    """Optimiser options shared by the model-training baselines (finetune, ER, EWC++, LwF).

    ``optimizer``: ``adam`` or ``sgd`` (with ``momentum``); constant ``lr``;
    ``freeze_backbone``: train only the linear head on a frozen backbone kept in eval mode.
    """

    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    freeze_backbone: bool = False

    def validate(self, prefix: str) -> None:
        from fedlt.configtools import require

        require(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        require(
            self.optimizer in ("adam", "sgd"),
            f"{prefix}.optimizer",
            f"expected 'adam' or 'sgd', got {self.optimizer!r}",
        )
        require(self.weight_decay >= 0, f"{prefix}.weight_decay", "must be >= 0")


def build_optimizer(params: list[nn.Parameter], options: ModelOptions) -> torch.optim.Optimizer:
    """Adam or SGD (momentum) over ``params`` with the options' constant learning rate."""
    if options.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay
        )
    return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)


class ModelLearner(ContinualLearner):
    """A learner that trains one model from ``model_factory()`` with cross-entropy on the
    masked logits; subclasses add a loss term (:meth:`extra_loss`) or adjust gradients
    (:meth:`after_backward`).

    The optimizer's state travels in ``state_dict()`` (``_extra_state``), so loading a
    saved state continues training exactly.
    """

    Options: ClassVar[type] = ModelOptions

    def __init__(
        self,
        options: Any,
        model_factory: Callable[[], nn.Module],
        num_classes: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(options, model_factory, num_classes, device, seed)
        self.model = model_factory().to(self.device_)
        self.freeze_backbone = bool(getattr(options, "freeze_backbone", False))
        if self.freeze_backbone:
            for p in self.model.backbone.parameters():
                p.requires_grad_(False)
        self.optimizer = build_optimizer(self.trainable_parameters(), options)

    def reset_optimizer(self) -> None:
        self.optimizer = build_optimizer(self.trainable_parameters(), self.options)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> ModelLearner:
        super().train(mode)
        if self.freeze_backbone:
            self.model.backbone.eval()
        return self

    def forward(self, x: Tensor, exposed: Tensor) -> Tensor:  # type: ignore[override]
        return mask_unexposed(self.model(x), exposed)

    def extra_loss(self, x: Tensor, logits: Tensor, exposed: Tensor) -> Tensor | None:
        """An additional loss term (e.g. distillation); default none."""
        return None

    def after_backward(self) -> None:
        """Called between ``backward()`` and ``optimizer.step()``; default nothing."""

    def train_step(self, x: Tensor, y: Tensor, exposed: Tensor) -> dict[str, float]:
        self.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self(x, exposed)
        loss = nn.functional.cross_entropy(logits, y)
        logs = {"ce": float(loss.detach())}
        extra = self.extra_loss(x, logits, exposed)
        if extra is not None:
            logs["extra"] = float(extra.detach())
            loss = loss + extra
        loss.backward()
        self.after_backward()
        self.optimizer.step()
        logs["loss"] = float(loss.detach())
        return logs

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # deep copy: Optimizer.load_state_dict keeps same-device tensors by reference
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))

"""EWC++ (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning", §4.1).

Elastic weight consolidation with an *online* diagonal Fisher. After every step's
cross-entropy gradient ``g`` the Fisher is a moving average (their Eq. 7)

    F ← α · g² + (1 − α) · F

and, once a task has ended, every step adds the quadratic penalty (EWC, Kirkpatrick et al.
2017, Eq. 3)

    L_ewc = (λ / 2) · Σ_i F_i (θ_i − θ*_i)²

where θ* are the parameters at the last task end. The penalty's gradient ``λ F (θ − θ*)`` is
added to the cross-entropy gradient in closed form (F held constant), so one backward pass
serves both the Fisher update and the step. ``ewc_lambda`` = λ, ``alpha`` = α.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedlt.configtools import require
from strategies.continual import register
from strategies.continual.base import ModelLearner, ModelOptions


@dataclass
class EWCPPOptions(ModelOptions):
    """EWC++ options: ``ewc_lambda`` (penalty weight λ), ``alpha`` (Fisher moving-average
    weight α of the newest squared gradient)."""

    ewc_lambda: float = 100.0
    alpha: float = 0.5

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(
            self.ewc_lambda >= 0, f"{prefix}.ewc_lambda", f"must be >= 0, got {self.ewc_lambda}"
        )
        require(0 < self.alpha <= 1, f"{prefix}.alpha", f"must lie in (0, 1], got {self.alpha}")


@register("ewcpp")
class EWCPlusPlus(ModelLearner):
    """Online-Fisher EWC; see the module docstring."""

    Options = EWCPPOptions
    uses_memory = False

    def __init__(self, options: EWCPPOptions, *args: Any, **kwargs: Any) -> None:
        super().__init__(options, *args, **kwargs)
        params = self.trainable_parameters()
        self.fisher = [torch.zeros_like(p) for p in params]
        self.anchor = [p.detach().clone() for p in params]
        self.has_anchor = False
        self.last_penalty = 0.0

    def after_backward(self) -> None:
        alpha, lam = self.options.alpha, self.options.ewc_lambda
        penalty = 0.0
        with torch.no_grad():
            for p, f, a in zip(self.trainable_parameters(), self.fisher, self.anchor, strict=True):
                if p.grad is None:
                    continue
                f.mul_(1 - alpha).addcmul_(p.grad, p.grad, value=alpha)
                if self.has_anchor and lam > 0:
                    diff = p - a
                    p.grad.add_(f * diff, alpha=lam)
                    penalty += float((f * diff * diff).sum()) * lam / 2
        self.last_penalty = penalty

    def train_step(self, x: Tensor, y: Tensor, exposed: Tensor) -> dict[str, float]:
        logs = super().train_step(x, y, exposed)
        logs["ewc_penalty"] = self.last_penalty
        return logs

    def on_task_end(self, task: int) -> None:
        """θ* ← θ: the anchor of the penalty is the model at the end of this task."""
        self.anchor = [p.detach().clone() for p in self.trainable_parameters()]
        self.has_anchor = True

    def private_tensors(self) -> dict[str, Tensor]:
        out = {f"fisher.{i}": f for i, f in enumerate(self.fisher)}
        out.update({f"anchor.{i}": a for i, a in enumerate(self.anchor)})
        out["has_anchor"] = torch.tensor(self.has_anchor)
        return out

    def load_private_tensors(self, tensors: dict[str, Tensor]) -> None:
        n = len(self.fisher)
        self.fisher = [tensors[f"fisher.{i}"].to(self.device_).clone() for i in range(n)]
        self.anchor = [tensors[f"anchor.{i}"].to(self.device_).clone() for i in range(n)]
        self.has_anchor = bool(tensors["has_anchor"])

    def get_extra_state(self) -> dict[str, Any]:
        state = super().get_extra_state()
        state.update(fisher=self.fisher, anchor=self.anchor, has_anchor=self.has_anchor)
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.fisher = [t.to(self.device_).clone() for t in state["fisher"]]
        self.anchor = [t.to(self.device_).clone() for t in state["anchor"]]
        self.has_anchor = bool(state["has_anchor"])

"""Learning without Forgetting (LwF; Li & Hoiem 2016, §3, Eq. 2), online version.

At each task end the current model is frozen as the teacher and the set of classes exposed
so far is remembered as the "old" classes. Afterwards every step adds

    L_old = λ_o · mean_n [ − Σ_{j ∈ old} p_j^{(T)}(x_n) · log q_j^{(T)}(x_n) ]

to the cross-entropy, where ``p^{(T)}`` / ``q^{(T)}`` are the teacher's / the student's
softmax over the old classes' logits at temperature ``T`` (the paper's modified cross-entropy
with T = 2 and λ_o = 1; no T² factor, as in the paper).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fedlt.configtools import require
from strategies.continual import register
from strategies.continual.base import ModelLearner, ModelOptions


@dataclass
class LwFOptions(ModelOptions):
    """LwF options: ``temperature`` T, ``distill_weight`` λ_o."""

    temperature: float = 2.0
    distill_weight: float = 1.0

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(
            self.temperature > 0, f"{prefix}.temperature", f"must be > 0, got {self.temperature}"
        )
        require(self.distill_weight >= 0, f"{prefix}.distill_weight", "must be >= 0")


@register("lwf")
class LearningWithoutForgetting(ModelLearner):
    """Cross-entropy plus distillation to the previous task's model on the old classes."""

    Options = LwFOptions
    uses_memory = False

    def __init__(self, options: LwFOptions, *args: Any, **kwargs: Any) -> None:
        super().__init__(options, *args, **kwargs)
        self.teacher = copy.deepcopy(self.model)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.register_buffer(
            "old_classes", torch.zeros(self.num_classes, dtype=torch.bool, device=self.device_)
        )
        self.register_buffer("has_teacher", torch.zeros((), dtype=torch.bool, device=self.device_))
        # the exposed mask of the latest step: the "old" classes at the next task end
        self.register_buffer(
            "latest_exposed", torch.zeros(self.num_classes, dtype=torch.bool, device=self.device_)
        )

    def train(self, mode: bool = True) -> LearningWithoutForgetting:
        super().train(mode)
        self.teacher.eval()
        return self

    def extra_loss(self, x: Tensor, logits: Tensor, exposed: Tensor) -> Tensor | None:
        self.latest_exposed.copy_(exposed.to(self.device_))
        if not bool(self.has_teacher) or not bool(self.old_classes.any()):
            return None
        t = self.options.temperature
        with torch.no_grad():
            target = torch.softmax(self.teacher(x)[:, self.old_classes] / t, dim=1)
        log_q = torch.log_softmax(logits[:, self.old_classes] / t, dim=1)
        return -self.options.distill_weight * (target * log_q).sum(dim=1).mean()

    def on_task_end(self, task: int) -> None:
        """Freeze the current model as the teacher; the classes exposed so far become old."""
        self.teacher.load_state_dict(self.model.state_dict())
        self.old_classes.copy_(self.latest_exposed)
        self.has_teacher.fill_(True)

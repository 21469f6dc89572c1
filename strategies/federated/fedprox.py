"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).

Local objective ``L_k(w) + (μ/2)·‖w − w_global‖²`` (squared L2 proximal term, paper Eq. 2;
the FedLoGe official code uses the unsquared norm, a bug we do not copy). μ defaults to 0.01
as in FedLoGe's comparison. Personalisation: none (global model on local test sets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fedlt.configtools import require
from strategies.federated import register
from strategies.federated.base import (
    ClientData,
    FederatedStrategy,
    LocalResult,
    StateDict,
    TrainConfig,
)


@dataclass
class FedProxOptions:
    mu: float = 0.01

    def validate(self, prefix: str) -> None:
        require(self.mu >= 0, f"{prefix}.mu", f"must be >= 0, got {self.mu}")


@register("fedprox")
class FedProx(FederatedStrategy):
    Options = FedProxOptions
    online_streams = True  # FedAvg's local loop (masked) plus the proximal term

    def local_update(
        self,
        global_state: StateDict,
        client_state: StateDict,
        data: ClientData,
        train: TrainConfig,
        generator: torch.Generator,
    ) -> LocalResult:
        self.load_global(global_state)
        self._anchor: Sequence[Tensor] = [p.detach().clone() for p in self.model.parameters()]
        try:
            return super().local_update(global_state, client_state, data, train, generator)
        finally:
            del self._anchor

    def regulariser(self) -> Tensor | float:
        """(μ/2)·Σ‖w − w_global‖² over trainable parameters."""
        mu = self.options.mu
        if mu == 0:
            return 0.0
        penalty = sum(
            (p - a).pow(2).sum() for p, a in zip(self.model.parameters(), self._anchor, strict=True)
        )
        return 0.5 * mu * penalty

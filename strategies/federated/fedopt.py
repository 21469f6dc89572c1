"""Server optimizers over the averaged client update: the FedOpt family (Reddi et al.,
"Adaptive Federated Optimization", ICLR 2021, Algorithm 2).

Each round the clients train from the global weights x_t as in FedAvg; the server treats the
averaged change of the weights as a pseudo-gradient

    Δ_t = Σ_k p_k (x_k − x_t),   p_k = 1/|S| (``weighting: uniform``, the paper's Algorithm 2)
                                     or n_k / Σ n (``examples``, FedAvg's weights)

and applies an optimizer step to x_t with state kept on the server (``server_state``:
checkpointed and resumed, never sent to clients). :class:`ServerOptAggregation` computes Δ_t
from the same blocks of partial sums as FedAvg (so results do not depend on how clients are
spread over workers) and calls :meth:`ServerOptAggregation.step` per floating-point entry;
integer buffers take the averaged value. FedAvgM, FedAdam and FedYogi are in their own
modules (docs/fedloge.md lists every federated method).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from fedlt.configtools import require
from strategies.federated.base import Aggregation, FederatedStrategy, LocalResult, StateDict


@dataclass
class ServerOptOptions:
    """``server_lr`` η; ``weighting`` of the clients in Δ_t (see the module docstring)."""

    server_lr: float = 1.0
    weighting: Literal["uniform", "examples"] = "uniform"

    def validate(self, prefix: str) -> None:
        require(self.server_lr > 0, f"{prefix}.server_lr", f"must be > 0, got {self.server_lr}")


class ServerOptAggregation(Aggregation):
    """FedAvg's partial sums, then a server optimizer step from Δ_t."""

    def __init__(
        self,
        global_state: StateDict,
        server_state: StateDict | None = None,
        options: ServerOptOptions | None = None,
    ) -> None:
        super().__init__(global_state, server_state)
        self.options = options or ServerOptOptions()

    def weight(self, result: LocalResult) -> float:
        return 1.0 if self.options.weighting == "uniform" else float(result.num_examples)

    def step(self, key: str, x: Tensor, delta: Tensor, state: StateDict) -> Tensor:
        """The new value of entry ``key`` (float64 ``x`` and ``delta``); updates ``state``."""
        raise NotImplementedError

    def result(self) -> StateDict:
        mean = self.mean.result()
        out = dict(self.global_state)
        state = dict(self.server_state)
        for key, averaged in mean.items():
            x = self.global_state[key]
            if not x.is_floating_point():
                out[key] = averaged
                continue
            x64 = x.to(torch.float64)
            new = self.step(key, x64, averaged.to(torch.float64) - x64, state)
            out[key] = new.to(x.dtype)
        self.server_state = state
        return out


class ServerOptStrategy(FederatedStrategy):
    """FedAvg's local training with a server optimizer; subclasses name the aggregation."""

    aggregation_class: type[ServerOptAggregation] = ServerOptAggregation
    online_streams = True

    def start_aggregation(
        self, global_state: StateDict, server_state: StateDict | None = None
    ) -> Aggregation:
        return self.aggregation_class(global_state, server_state, self.options)

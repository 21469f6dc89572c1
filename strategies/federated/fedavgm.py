"""FedAvgM: FedAvg with server momentum (Hsu et al., "Measuring the Effects of Non-Identical
Data Distribution for Federated Visual Classification", 2019; in the FedOpt form of Reddi et
al., ICLR 2021).

With the pseudo-gradient Δ_t of :mod:`strategies.federated.fedopt`::

    m_t     = β·m_{t−1} + Δ_t          (m_{−1} = 0)
    x_{t+1} = x_t + η·m_t

η = ``server_lr`` (default 1.0), β = ``momentum`` (default 0.9). With β = 0 and η = 1 this is
FedAvg (with ``weighting: examples``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fedlt.configtools import require
from strategies.federated import register
from strategies.federated.base import StateDict
from strategies.federated.fedopt import ServerOptAggregation, ServerOptOptions, ServerOptStrategy


@dataclass
class FedAvgMOptions(ServerOptOptions):
    momentum: float = 0.9

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(0 <= self.momentum < 1, f"{prefix}.momentum", "must lie in [0, 1)")


class FedAvgMAggregation(ServerOptAggregation):
    def step(self, key: str, x: Tensor, delta: Tensor, state: StateDict) -> Tensor:
        m = state.get(f"m.{key}", torch.zeros_like(delta))
        m = self.options.momentum * m + delta
        state[f"m.{key}"] = m
        return x + self.options.server_lr * m


@register("fedavgm")
class FedAvgM(ServerOptStrategy):
    Options = FedAvgMOptions
    aggregation_class = FedAvgMAggregation

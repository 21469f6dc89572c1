"""FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2).

With the pseudo-gradient Δ_t of :mod:`strategies.federated.fedopt`, element-wise::

    m_t     = β₁·m_{t−1} + (1 − β₁)·Δ_t          (m_{−1} = 0)
    v_t     = β₂·v_{t−1} + (1 − β₂)·Δ_t²         (v_{−1} = τ²)
    x_{t+1} = x_t + η·m_t / (√v_t + τ)

No bias correction, as in the paper. Defaults: η = ``server_lr`` 0.01, β₁ 0.9, β₂ 0.99,
τ (``tau``, the adaptivity) 1e-3.
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
class AdaptiveOptions(ServerOptOptions):
    server_lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require(0 <= self.beta1 < 1, f"{prefix}.beta1", "must lie in [0, 1)")
        require(0 <= self.beta2 < 1, f"{prefix}.beta2", "must lie in [0, 1)")
        require(self.tau > 0, f"{prefix}.tau", f"must be > 0, got {self.tau}")


class AdaptiveAggregation(ServerOptAggregation):
    """m_t, the shared first moment, and the update; :meth:`second_moment` differs."""

    def second_moment(self, v: Tensor, delta_sq: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, key: str, x: Tensor, delta: Tensor, state: StateDict) -> Tensor:
        o = self.options
        m = state.get(f"m.{key}", torch.zeros_like(delta))
        v = state.get(f"v.{key}", torch.full_like(delta, o.tau**2))
        m = o.beta1 * m + (1 - o.beta1) * delta
        v = self.second_moment(v, delta * delta)
        state[f"m.{key}"], state[f"v.{key}"] = m, v
        return x + o.server_lr * m / (v.sqrt() + o.tau)


class FedAdamAggregation(AdaptiveAggregation):
    def second_moment(self, v: Tensor, delta_sq: Tensor) -> Tensor:
        b2 = self.options.beta2
        return b2 * v + (1 - b2) * delta_sq


@register("fedadam")
class FedAdam(ServerOptStrategy):
    Options = AdaptiveOptions
    aggregation_class = FedAdamAggregation

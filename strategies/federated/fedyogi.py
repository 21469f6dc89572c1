"""FedYogi (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2).

FedAdam with Yogi's additive second moment (Zaheer et al., NeurIPS 2018), element-wise::

    m_t     = β₁·m_{t−1} + (1 − β₁)·Δ_t                          (m_{−1} = 0)
    v_t     = v_{t−1} − (1 − β₂)·Δ_t²·sign(v_{t−1} − Δ_t²)       (v_{−1} = τ²)
    x_{t+1} = x_t + η·m_t / (√v_t + τ)

Defaults as FedAdam's (:mod:`strategies.federated.fedadam`): η 0.01, β₁ 0.9, β₂ 0.99, τ 1e-3.
"""

from __future__ import annotations

from torch import Tensor

from strategies.federated import register
from strategies.federated.fedadam import AdaptiveAggregation, AdaptiveOptions
from strategies.federated.fedopt import ServerOptStrategy


class FedYogiAggregation(AdaptiveAggregation):
    def second_moment(self, v: Tensor, delta_sq: Tensor) -> Tensor:
        return v - (1 - self.options.beta2) * delta_sq * (v - delta_sq).sign()


@register("fedyogi")
class FedYogi(ServerOptStrategy):
    Options = AdaptiveOptions
    aggregation_class = FedYogiAggregation

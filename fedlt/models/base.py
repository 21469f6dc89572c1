"""The model contract every strategy relies on: a backbone producing features and a head."""

from __future__ import annotations

from torch import Tensor, nn


class FeatureModel(nn.Module):
    """``backbone: x -> h ∈ R^d`` followed by ``head: nn.Linear(d, C)``.

    Strategies that need other heads (FedLoGe's SSE-C, ψ and φ_k; FedRoD's two heads) build
    them from ``feature_dim`` and call :meth:`features` directly. State-dict keys are
    ``backbone.*`` and ``head.*``.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

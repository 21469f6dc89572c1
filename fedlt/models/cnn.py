"""Small CNN for digits (8×8) and other small images."""

from __future__ import annotations

from torch import nn

from fedlt.models.base import FeatureModel


def _register():
    from fedlt.models import MODELS

    return MODELS


@_register().register("cnn_small")
def cnn_small(
    num_classes: int, image_shape: tuple[int, int, int], width: int = 32, feature_dim: int = 64
) -> FeatureModel:
    """Two 3×3 conv blocks (BatchNorm, ReLU), average pooling to 4×4 (keeps the layout of
    the strokes, which global pooling would lose), a linear layer to ``feature_dim``
    features. ~85k parameters at the defaults: trains in seconds on digits."""
    in_channels = image_shape[0]
    backbone = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(2 * width * 16, feature_dim),
        nn.ReLU(inplace=True),
    )
    return FeatureModel(backbone, feature_dim, num_classes)

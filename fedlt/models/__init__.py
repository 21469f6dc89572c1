"""Model registry. A factory takes ``(num_classes, image_shape, **options)`` with
``image_shape = (C, H, W)`` and returns a :class:`FeatureModel` (or, for ViT learners, the
module their strategy documents).

Besides registered names and ``package.module:callable`` references, ``timm:<name>`` and
``torchvision:<name>`` build a library model as the backbone (:mod:`fedlt.models.external`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fedlt.errors import ConfigError
from fedlt.models.base import FeatureModel
from fedlt.models.external import ModelRegistry

MODELS: ModelRegistry = ModelRegistry("model")

# Importing the modules registers the models.
from fedlt.models import cnn, resnet, vit  # noqa: E402, F401


def build_model(
    name: str,
    num_classes: int,
    image_shape: tuple[int, int, int],
    options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build a registered (or ``timm:`` / ``torchvision:``) model; bad options raise
    ConfigError naming ``model.options``."""
    factory = MODELS.get(name, "model.name")
    for key in ("num_classes", "image_shape"):
        if key in (options or {}):
            raise ConfigError(f"model.options.{key}", "not allowed: it comes from the data")
    try:
        return factory(num_classes=num_classes, image_shape=tuple(image_shape), **(options or {}))
    except TypeError as exc:
        raise ConfigError("model.options", f"model {name!r} rejected its options: {exc}") from exc


__all__ = ["MODELS", "FeatureModel", "build_model"]

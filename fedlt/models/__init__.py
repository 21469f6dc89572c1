"""Model registry. A factory takes ``(num_classes, image_shape, **options)`` with
``image_shape = (C, H, W)`` and returns a :class:`FeatureModel` (or, for ViT learners, the
module their strategy documents)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from fedlt.errors import ConfigError
from fedlt.models.base import FeatureModel
from fedlt.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

# Importing the modules registers the models.
from fedlt.models import cnn, resnet, vit  # noqa: E402, F401


def build_model(
    name: str,
    num_classes: int,
    image_shape: tuple[int, int, int],
    options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build a registered model; bad options raise ConfigError naming ``model.options``."""
    factory = MODELS.get(name, "model.name")
    try:
        return factory(num_classes=num_classes, image_shape=tuple(image_shape), **(options or {}))
    except TypeError as exc:
        raise ConfigError("model.options", f"model {name!r} rejected its options: {exc}") from exc


__all__ = ["MODELS", "FeatureModel", "build_model"]

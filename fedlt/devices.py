"""The torch device named by ``resources.device``, shared by both engines."""

from __future__ import annotations

import torch

from fedlt.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("resources.device", "is 'cuda' but no CUDA device is visible")
    return torch.device(name)

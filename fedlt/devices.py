"""The torch device named by ``resources.device`` and the process-wide torch settings of
``resources``, shared by both engines and the sweep runner."""

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


def configure_torch(num_threads: int, flush_denormal: bool) -> None:
    """Apply ``resources.num_threads`` (0 keeps torch's default) and
    ``resources.flush_denormal`` to this process (torch settings are per process)."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    torch.set_flush_denormal(flush_denormal)

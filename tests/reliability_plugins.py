"""User plug-ins that misbehave, named in test configs as ``reliability_plugins:<name>``.

The tests put this folder on ``sys.path`` (pytest's importlib mode does not).
"""

from __future__ import annotations

import numpy as np


def raises(labels, num_clients, rng):
    """A custom partitioner with a bug in it."""
    share = len(labels) // (num_clients - num_clients)
    return [np.arange(share)] * num_clients


def all_empty(labels, num_clients, rng):
    """Every client gets nothing."""
    return [np.zeros(0, dtype=np.int64) for _ in range(num_clients)]


def too_few(labels, num_clients, rng):
    """One client short."""
    return list(np.array_split(np.arange(len(labels)), num_clients))[:-1]


def broken_source(root, cache_dir, download, seed, **options):
    """A custom data source that fails while reading."""
    raise ValueError(f"cannot parse [red]{root}[/red]")

"""Custom partitioners named in test YAML as ``custom_partitioner:<function>``.

They follow the custom protocol: ``fn(labels, num_clients, rng, **options)``.
"""

from __future__ import annotations

import numpy as np


def round_robin(labels, num_clients, rng, offset=0):
    """Sample i goes to client (i + offset) % num_clients (ignores rng on purpose)."""
    owner = (np.arange(len(labels)) + offset) % num_clients
    return [np.flatnonzero(owner == k) for k in range(num_clients)]


def as_mapping(labels, num_clients, rng):
    """Shuffled contiguous blocks, returned as a dict with string keys."""
    order = rng.permutation(len(labels))
    return {str(k): part.tolist() for k, part in enumerate(np.array_split(order, num_clients))}


def out_of_range(labels, num_clients, rng):
    parts = round_robin(labels, num_clients, rng)
    parts[1] = np.append(parts[1], len(labels) + 7)
    return parts


def duplicate(labels, num_clients, rng):
    parts = round_robin(labels, num_clients, rng)
    parts[2] = np.append(parts[2], parts[0][0])
    return parts


def too_few(labels, num_clients, rng):
    return round_robin(labels, num_clients, rng)[:-1]


def floats(labels, num_clients, rng):
    return [np.asarray(p, dtype=float) + 0.5 for p in round_robin(labels, num_clients, rng)]


def everyone_gets_all(labels, num_clients, rng):
    return [np.arange(len(labels)) for _ in range(num_clients)]


everyone_gets_all.allows_overlap = True

"""Replay memory for rehearsal learners: dataset indices and their (exposed) labels.

The memory holds no images, only the dataset index of each stored sample and the label the
learner trains on (the class's exposed label, fixed once the class is first seen), so a
memory sample is always labelled correctly (the official MVP-R mislabels them, docs/mvp.md).

Policies:

- ``reservoir`` (Vitter 1985, Algorithm R): the n-th sample offered (1-based) is stored if
  the memory is not full, else it replaces slot ``j ~ U{0, …, n−1}`` when ``j < size``, so
  every sample seen so far is in memory with probability ``size / n``.
- ``class_balanced``: when full, a new sample replaces a uniformly chosen slot of the class
  with the most samples, counting the new one (ties: the smallest label), as in Rainbow
  Memory / CLIB-style balanced buffers; class sizes then differ by at most one.

Every random choice comes from one seeded ``np.random.Generator`` whose state is part of
:meth:`ReplayMemory.state_dict`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedlt.errors import ConfigError

POLICIES = ("reservoir", "class_balanced")


class ReplayMemory:
    """Fixed-size memory of ``(dataset index, label)`` pairs."""

    def __init__(
        self, size: int, policy: str = "reservoir", seed: int | np.random.SeedSequence = 0
    ) -> None:
        if size < 0:
            raise ConfigError("stream.memory_size", f"must be >= 0, got {size}")
        if policy not in POLICIES:
            raise ConfigError("stream.memory_policy", f"expected one of {POLICIES}, got {policy!r}")
        self.size = int(size)
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.indices = np.zeros(0, dtype=np.int64)
        self.labels = np.zeros(0, dtype=np.int64)
        self.num_seen = 0

    def __len__(self) -> int:
        return len(self.indices)

    def add(self, indices: np.ndarray, labels: np.ndarray) -> None:
        """Offer samples to the memory, in order."""
        indices = np.asarray(indices, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if self.size == 0 or len(indices) == 0:
            self.num_seen += len(indices)
            return
        if self.policy == "reservoir":
            self._add_reservoir(indices, labels)
        else:
            self._add_balanced(indices, labels)

    def _add_reservoir(self, indices: np.ndarray, labels: np.ndarray) -> None:
        offered = self.num_seen + 1 + np.arange(len(indices))
        slots = self.rng.integers(0, offered)  # j ~ U{0, ..., n-1} for the n-th sample
        store_idx, store_lab = list(self.indices), list(self.labels)
        for i, (idx, lab) in enumerate(zip(indices.tolist(), labels.tolist(), strict=True)):
            if len(store_idx) < self.size:
                store_idx.append(idx)
                store_lab.append(lab)
            elif slots[i] < self.size:
                store_idx[slots[i]] = idx
                store_lab[slots[i]] = lab
        self.num_seen += len(indices)
        self.indices = np.asarray(store_idx, dtype=np.int64)
        self.labels = np.asarray(store_lab, dtype=np.int64)

    def _add_balanced(self, indices: np.ndarray, labels: np.ndarray) -> None:
        store_idx, store_lab = list(self.indices), list(self.labels)
        for idx, lab in zip(indices.tolist(), labels.tolist(), strict=True):
            if len(store_idx) < self.size:
                store_idx.append(idx)
                store_lab.append(lab)
                continue
            counts = np.bincount(np.asarray(store_lab), minlength=lab + 1)
            counts[lab] += 1  # count the incoming sample too
            largest = int(np.argmax(counts))
            if counts[largest] == 1:  # only when size is 1 and the classes differ
                largest = store_lab[0]
            candidates = [i for i, y in enumerate(store_lab) if y == largest]
            slot = candidates[int(self.rng.integers(len(candidates)))]
            store_idx[slot] = idx
            store_lab[slot] = lab
        self.num_seen += len(indices)
        self.indices = np.asarray(store_idx, dtype=np.int64)
        self.labels = np.asarray(store_lab, dtype=np.int64)

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``min(batch_size, len)`` distinct stored samples, uniformly at random."""
        n = min(batch_size, len(self))
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        chosen = self.rng.choice(len(self), size=n, replace=False)
        return self.indices[chosen], self.labels[chosen]

    def class_counts(self) -> dict[int, int]:
        labels, counts = np.unique(self.labels, return_counts=True)
        return {int(y): int(c) for y, c in zip(labels, counts, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "policy": self.policy,
            "indices": self.indices.copy(),
            "labels": self.labels.copy(),
            "num_seen": self.num_seen,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self.policy = str(state["policy"])
        self.indices = np.asarray(state["indices"], dtype=np.int64)
        self.labels = np.asarray(state["labels"], dtype=np.int64)
        self.num_seen = int(state["num_seen"])
        self.rng.bit_generator.state = state["rng"]

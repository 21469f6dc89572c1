"""Replay memory: capacity, reservoir statistics, class balance, exact state round trip."""

from __future__ import annotations

import numpy as np
import pytest

from fedlt.continual.memory import ReplayMemory
from fedlt.errors import ConfigError


def test_reservoir_fills_then_keeps_capacity_and_pairs_indices_with_labels():
    mem = ReplayMemory(10, "reservoir", seed=0)
    idx = np.arange(100)
    lab = idx % 7
    for start in range(0, 100, 8):
        mem.add(idx[start : start + 8], lab[start : start + 8])
        assert len(mem) == min(10, start + len(idx[start : start + 8]))
    assert mem.num_seen == 100
    assert np.array_equal(mem.labels, mem.indices % 7)  # each label stays with its sample
    x, y = mem.sample(4)
    assert len(set(x.tolist())) == 4 and np.array_equal(y, x % 7)


def test_reservoir_keeps_each_sample_with_probability_size_over_n():
    hits = np.zeros(50)
    for seed in range(400):
        mem = ReplayMemory(10, "reservoir", seed=seed)
        for start in range(0, 50, 5):
            mem.add(np.arange(start, start + 5), np.zeros(5, dtype=int))
        hits[mem.indices] += 1
    freq = hits / 400
    # expected 10/50 = 0.2 for every sample, early and late alike
    assert abs(freq[:10].mean() - 0.2) < 0.04 and abs(freq[-10:].mean() - 0.2) < 0.04


def test_class_balanced_evicts_from_the_largest_class():
    mem = ReplayMemory(6, "class_balanced", seed=1)
    mem.add(np.arange(6), np.zeros(6, dtype=int))  # full of class 0
    mem.add(np.arange(6, 12), np.array([1, 1, 1, 2, 2, 2]))
    assert mem.class_counts() == {0: 2, 1: 2, 2: 2}
    assert np.array_equal(
        mem.labels[mem.indices >= 6], np.where(mem.indices[mem.indices >= 6] < 9, 1, 2)
    )


def test_state_dict_round_trip_continues_identically():
    a = ReplayMemory(5, "reservoir", seed=3)
    a.add(np.arange(20), np.arange(20) % 3)
    b = ReplayMemory(5, "reservoir", seed=99)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.add(np.arange(20, 40), np.arange(20, 40) % 3)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.sample(3)[0], b.sample(3)[0])


def test_zero_size_and_bad_policy():
    mem = ReplayMemory(0)
    mem.add(np.arange(5), np.zeros(5, dtype=int))
    assert len(mem) == 0 and len(mem.sample(4)[0]) == 0
    with pytest.raises(ConfigError, match=r"stream\.memory_policy"):
        ReplayMemory(3, "fifo")

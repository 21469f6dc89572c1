from __future__ import annotations

import torch

from fedlt.federated.sampling import sample_clients
from fedlt.federated.state_store import ClientStateStore


def test_store_versions_and_restores(tmp_path):
    store = ClientStateStore(tmp_path)
    store.put(3, {"phi": torch.ones(2)}, round_=1)
    snap = store.snapshot()
    store.put(3, {"phi": torch.full((2,), 7.0)}, round_=2)
    assert torch.equal(store.get(3)["phi"], torch.full((2,), 7.0))
    store.restore(snap)
    assert torch.equal(store.get(3)["phi"], torch.ones(2))
    assert store.get(4) is None


def test_garbage_collection_keeps_referenced_files(tmp_path):
    store = ClientStateStore(tmp_path)
    for r in range(1, 5):
        store.put(0, {"x": torch.tensor([float(r)])}, round_=r)
        if r == 2:
            kept = store.snapshot()
    store.collect_garbage([kept])
    assert sorted(p.name for p in (tmp_path / "0").iterdir()) == ["r2.pt", "r4.pt"]


def test_sampling_is_deterministic_sorted_and_sized():
    eligible = [0, 2, 3, 5, 7, 8, 9]
    a = sample_clients(eligible, 0.3, seed=1, round_=4)
    assert a == sample_clients(eligible, 0.3, seed=1, round_=4)
    assert a == sorted(a) and len(a) == 2 and set(a) <= set(eligible)
    rounds = {tuple(sample_clients(eligible, 0.3, seed=1, round_=r)) for r in range(1, 30)}
    assert len(rounds) > 3  # varies with the round
    assert sample_clients(eligible, 1.0, seed=1, round_=1) == eligible

"""Cohort assignment, blocks, in-order folding, packed transport and partial sums."""

from __future__ import annotations

import random

import pytest
import torch

from fedlt.federated.codec import pack, unpack
from fedlt.federated.cohorts import (
    MAX_BLOCKS,
    InOrderFold,
    assign_cohorts,
    contiguous_cohorts,
    max_blocks,
    split_blocks,
)
from strategies.federated.base import Aggregation, LocalResult, WeightedMean, weighted_average


def test_lpt_assigns_every_client_once_balanced_and_sorted():
    rng = random.Random(0)
    sizes = {k: rng.randint(1, 500) for k in range(200)}
    cohorts = assign_cohorts(list(sizes), sizes, 3)
    assert sorted(k for c in cohorts for k in c) == list(range(200))
    assert all(c == sorted(c) for c in cohorts)
    loads = [sum(sizes[k] for k in c) for c in cohorts]
    # LPT: the longest cohort exceeds the average by less than the largest single client
    assert max(loads) - sum(loads) / 3 < max(sizes.values())
    assert assign_cohorts([5, 7], {5: 1, 7: 9}, 8) == [[7], [5]]  # largest first, no empties


def test_lpt_puts_the_straggler_alone():
    sizes = {0: 100, 1: 10, 2: 10, 3: 10, 4: 10}
    assert assign_cohorts(list(sizes), sizes, 2) == [[0], [1, 2, 3, 4]]
    assert contiguous_cohorts(list(sizes), 2) == [[0, 1], [2, 3, 4]]


def test_blocks_depend_on_the_sampled_ids_only():
    assert split_blocks([3, 1, 2]) == [[1], [2], [3]]
    ids = list(range(0, 2000, 2))
    blocks = split_blocks(ids)
    assert len(blocks) <= MAX_BLOCKS and [k for b in blocks for k in b] == ids
    assert len(split_blocks(ids, limit=8)) == 8 and max_blocks(11_000_000) == 12
    assert max_blocks(100) == MAX_BLOCKS and max_blocks(10**9) == 8
    assert {len(b) for b in blocks[:-1]} == {len(blocks[0])}
    assert split_blocks(ids, mergeable=False) == [[k] for k in ids]


def test_in_order_fold_consumes_in_key_order_and_holds_only_out_of_order_items():
    seen: list[int] = []
    fold = InOrderFold(range(10), lambda k, item: seen.append(item))
    order = [9, 3, 0, 1, 2, 4, 8, 7, 6, 5]
    for k in order:
        if k == 6:
            fold.skip(k)
        else:
            fold.put(k, 10 * k)
    assert seen == [10 * k for k in range(10) if k != 6] and fold.done and fold.held == 0
    assert fold.peak_held == 3  # 9, 8 and 7 waited for 5 (6 never came)


def test_pack_round_trips_every_dtype_bit_for_bit():
    states = [
        {
            "w": torch.randn(3, 4),
            "h": torch.randn(5, dtype=torch.float64),
            "b": torch.randn(7).to(torch.bfloat16),
            "f16": torch.randn(3).half(),
            "n": torch.tensor(17),
            "mask": torch.tensor([True, False, True]),
            "empty": torch.zeros(0, 2),
            "nonc": torch.randn(4, 6).t(),
        }
        for _ in range(3)
    ]
    states.append({"other": torch.arange(5, dtype=torch.int32)})
    states.append({})
    buffer, layout = pack(states)
    back = unpack(buffer, layout)
    assert len(back) == len(states)
    for a, b in zip(states, back, strict=True):
        assert list(a) == list(b)
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
            assert (
                torch.equal(
                    a[key].reshape(-1).view(torch.uint8), b[key].reshape(-1).view(torch.uint8)
                )
                or a[key].numel() == 0
            )
    with pytest.raises(ValueError, match="bytes"):
        unpack(buffer[:-8], layout)


def test_block_partials_merged_in_order_give_the_mean():
    torch.manual_seed(0)
    states = [{"w": torch.randn(50), "n": torch.tensor(i)} for i in range(7)]
    weights = [3, 1, 4, 1, 5, 9, 2]
    results = [LocalResult(s, w) for s, w in zip(states, weights, strict=True)]
    blocks = [[0, 1, 2], [3], [4, 5, 6]]
    merged = Aggregation({"w": torch.zeros(50), "n": torch.tensor(0), "extra": torch.ones(1)})
    for block in blocks:
        part = Aggregation({})
        for i in block:
            part.add(results[i])
        merged.merge(part.partial())
    out = merged.result()
    assert out["w"].dtype == torch.float32 and torch.equal(out["extra"], torch.ones(1))
    assert out["n"] == 0  # integer buffers: the first client's value
    expected = sum(w * s["w"].double() for s, w in zip(states, weights, strict=True)) / sum(weights)
    torch.testing.assert_close(out["w"], expected.float(), rtol=0, atol=1e-6)
    # one block per client is exactly the sequential mean
    single = Aggregation({"w": torch.zeros(50), "n": torch.tensor(0)})
    for r in results:
        part = Aggregation({})
        part.add(r)
        single.merge(part.partial())
    assert torch.equal(single.result()["w"], weighted_average(states, weights)["w"])


def test_weighted_mean_refuses_empty_or_zero_weight():
    with pytest.raises(ValueError, match="nothing"):
        WeightedMean().result()
    mean = WeightedMean()
    mean.add({"w": torch.ones(2)}, 0)
    with pytest.raises(ValueError, match="zero"):
        mean.result()

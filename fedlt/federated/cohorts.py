"""Cohorts: how a round's clients are spread over a fixed pool of workers, and how their
results are folded back in partition-id order whatever order they arrive in.

Nothing here imports Flower or Ray. A *cohort* is the list of partition ids one worker
trains (or evaluates) one after another in a round. Results never depend on the pool size
or on the assignment: each client's computation is a function of (seed, round, client) and
the aggregation sees the results in increasing partition-id order (:class:`InOrderFold`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def assign_cohorts(
    client_ids: Sequence[int], sizes: Mapping[int, int], num_workers: int
) -> list[list[int]]:
    """Longest-processing-time-first assignment of clients to ``num_workers`` cohorts.

    Clients are taken largest first (ties: smaller id first) and each goes to the cohort with
    the least work so far (ties: lower cohort index), so one straggler does not hold the
    round (Graham's LPT rule: the longest cohort is at most 4/3 of the optimum). Work is the
    client's number of training samples (``sizes``). Each cohort lists its clients in
    increasing id order, so results within a cohort come back in aggregation order. Empty
    cohorts are dropped.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    num_workers = min(num_workers, len(client_ids)) or 1
    heap = [(0, w) for w in range(num_workers)]
    cohorts: list[list[int]] = [[] for _ in range(num_workers)]
    for k in sorted(client_ids, key=lambda c: (-int(sizes.get(c, 0)), c)):
        load, w = heapq.heappop(heap)
        cohorts[w].append(k)
        heapq.heappush(heap, (load + max(1, int(sizes.get(k, 0))), w))
    return [sorted(c) for c in cohorts if c]


def contiguous_cohorts(client_ids: Sequence[int], num_workers: int) -> list[list[int]]:
    """An alternative split: consecutive runs of ids of (nearly) equal count. Used by tests
    to show that results do not depend on the assignment."""
    ids = sorted(client_ids)
    num_workers = max(1, min(num_workers, len(ids)))
    bounds = [round(i * len(ids) / num_workers) for i in range(num_workers + 1)]
    return [ids[bounds[i] : bounds[i + 1]] for i in range(num_workers) if bounds[i + 1] > bounds[i]]


MAX_BLOCKS = 64
MIN_BLOCKS = 8
PARTIAL_BYTES_PER_ROUND = 1 << 30


def max_blocks(model_numel: int) -> int:
    """How many partial sums a round may send back: 64, fewer for big models so that a
    round's float64 partials stay near 1 GiB (at least 8). A function of the model alone."""
    per_partial = max(1, 8 * int(model_numel))
    return max(MIN_BLOCKS, min(MAX_BLOCKS, PARTIAL_BYTES_PER_ROUND // per_partial))


def split_blocks(
    client_ids: Sequence[int], mergeable: bool = True, limit: int = MAX_BLOCKS
) -> list[list[int]]:
    """Cut a round's sampled clients (in increasing id order) into consecutive *blocks*, the
    units whose updates are summed where they are trained and merged on the server in block
    order (:class:`strategies.federated.base.WeightedMean`).

    A function of the sampled ids (and the ``limit``, from the model size: :func:`max_blocks`)
    — never of the pool — so every pool size and cohort split sums the same numbers in the
    same order: ``ceil(n / limit)`` clients per block, at most ``limit`` blocks a round (one
    client per block up to ``limit`` clients, and always when the strategy's aggregation is
    not ``mergeable``).
    """
    ids = sorted(client_ids)
    size = 1 if not mergeable else max(1, -(-len(ids) // max(1, limit)))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


CohortPlanner = Callable[[Sequence[int], Mapping[int, int], int], list[list[int]]]
"""``(client_ids, sizes, num_workers) -> cohorts``; :func:`assign_cohorts` by default."""


class InOrderFold(Generic[T]):
    """Feed items that arrive in any order to ``consume`` in increasing key order.

    Items whose predecessors have not arrived yet are held; everything else is passed on at
    once, so only out-of-order items are ever kept in memory. ``expected`` is the full list
    of keys of the round; a key that will never arrive (a failed or lost client) is released
    with :meth:`skip`.
    """

    def __init__(self, expected: Iterable[int], consume: Callable[[int, T], None]) -> None:
        self._order = sorted(expected)
        self._pos = 0
        self._held: dict[int, T | None] = {}
        self._consume = consume
        self.peak_held = 0

    def put(self, key: int, item: T) -> None:
        self._held[key] = item
        self._drain()
        self.peak_held = max(self.peak_held, self.held)

    def skip(self, key: int) -> None:
        """``key`` will not deliver an item (it failed): do not wait for it."""
        self._held[key] = None
        self._drain()

    def _drain(self) -> None:
        while self._pos < len(self._order) and self._order[self._pos] in self._held:
            key = self._order[self._pos]
            item = self._held.pop(key)
            self._pos += 1
            if item is not None:
                self._consume(key, item)

    @property
    def done(self) -> bool:
        return self._pos == len(self._order)

    @property
    def held(self) -> int:
        """Items waiting for a predecessor (skipped keys hold nothing)."""
        return sum(item is not None for item in self._held.values())

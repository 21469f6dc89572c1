"""The federated long-tailed dataset: global long tail × client partition × local tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from fedlt.config import DataConfig, PartitionConfig
from fedlt.data.base import ArrayDataset
from fedlt.data.client_testsets import local_test_indices
from fedlt.data.official import fedloge_dirichlet, fedloge_local_tests
from fedlt.data.partition import build_partition, empty_clients
from fedlt.data.prepare import OFFICIAL, longtailed_splits
from fedlt.seeding import fedloge_partition_stream, rng

log = logging.getLogger(__name__)

COUNT_MANY_ABOVE = 100  # Kang et al. 2020: many-shot > 100 training images
COUNT_FEW_BELOW = 20  # few-shot < 20 training images


@dataclass
class FederatedData:
    """Everything an engine needs about the data of one federated experiment.

    ``client_indices[k]`` index ``train``; ``client_test_indices[k]`` index ``test``.
    ``source_indices[i]`` is the index in the source's training split of ``train`` sample i
    (the images the long tail kept). ``official_stream`` (``data.rng: fedloge-official``
    only): the official code's global numpy stream as it stands after the data draws, which
    SSE-C continues (docs/fedloge.md); None otherwise.
    """

    train: ArrayDataset
    test: ArrayDataset
    client_indices: list[np.ndarray]
    client_test_indices: list[np.ndarray]
    class_counts: np.ndarray
    client_class_counts: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    empty_clients: list[int]
    source_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    official_stream: np.random.RandomState | None = None

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def num_clients(self) -> int:
        return len(self.client_indices)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the layout models receive."""
        _, h, w, c = self.train.images.shape
        return (c, h, w)

    def client_train(self, client: int) -> ArrayDataset:
        return self.train.subset(self.client_indices[client])


def client_class_counts(
    labels: np.ndarray, parts: list[np.ndarray], num_classes: int
) -> np.ndarray:
    """(N, C) matrix of training images per client and class."""
    counts = np.zeros((len(parts), num_classes), dtype=np.int64)
    for k, part in enumerate(parts):
        counts[k] = np.bincount(labels[part], minlength=num_classes)
    return counts


def build_federated_data(cfg: DataConfig, seed: int) -> FederatedData:
    """Load the source, apply the global long tail, partition, draw local test sets.

    Deterministic in ``seed``. ``data.rng: fedlt``: the long tail, the partition and the
    local test sets each draw from their own stream of the run seed (``longtail``,
    ``partition``, ``local_test``; :mod:`fedlt.seeding`), so e.g. changing the partitioner
    does not change which images the long tail keeps. ``data.rng: fedloge-official``: the
    official FedLoGe draws (:mod:`fedlt.data.official`). The long tail is the one both
    engines share (:func:`fedlt.data.prepare.longtailed_splits`).
    """
    splits, kept = longtailed_splits(cfg, seed)
    train, test = splits.train, splits.test
    official_stream = None
    if cfg.rng == OFFICIAL:
        official_stream = fedloge_partition_stream(seed)
        parts = _official_partition(train.labels, train.num_classes, cfg.partition, official_stream)
        counts = client_class_counts(train.labels, parts, train.num_classes)
        local_tests = fedloge_local_tests(counts, test.labels, official_stream)
    else:
        parts = build_partition(train.labels, cfg.partition, rng(seed, "partition"))
        counts = client_class_counts(train.labels, parts, train.num_classes)
        local_tests = local_test_indices(counts, test.labels, rng(seed, "local_test"))
    return FederatedData(
        train=train,
        test=test,
        client_indices=parts,
        client_test_indices=local_tests,
        class_counts=np.bincount(train.labels, minlength=train.num_classes).astype(np.int64),
        client_class_counts=counts,
        mean=tuple(splits.mean),
        std=tuple(splits.std),
        empty_clients=empty_clients(parts),
        source_indices=kept,
        official_stream=official_stream,
    )


def _official_partition(
    labels: np.ndarray, num_classes: int, cfg: PartitionConfig, stream: np.random.RandomState
) -> list[np.ndarray]:
    """The official per-sample Dirichlet partition (``dirichlet`` with ``min_size: 0``, the
    only partitioner the config allows with ``data.rng: fedloge-official``)."""
    parts = fedloge_dirichlet(labels, num_classes, cfg.num_clients, cfg.alpha, stream)
    empty = empty_clients(parts)
    if empty:
        log.warning("official partition: %d empty client(s): %s", len(empty), empty[:20])
    return parts


def class_groups(class_counts: np.ndarray) -> dict[str, dict[str, list[int]]]:
    """Many/medium/few class indices under both definitions (docs/federated.md).

    ``count`` (Kang et al. 2020): many > 100, medium 20..100 (inclusive), few < 20 global
    training images.

    ``mass`` (FedLoGe code): sort classes by count, descending (ties: lower class index
    first); let ``before_i`` be the share of all training samples held by the classes ranked
    before class i. Class i is *many* (head) if ``before_i < 0.75``, *medium* if
    ``0.75 <= before_i < 0.95``, *few* (tail) otherwise. So the class that crosses the 75%
    line belongs to the head and the one that crosses 95% to the middle: the head is the
    smallest prefix covering at least 75% of the mass.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    by_count = {
        "many": np.flatnonzero(counts > COUNT_MANY_ABOVE),
        "medium": np.flatnonzero((counts >= COUNT_FEW_BELOW) & (counts <= COUNT_MANY_ABOVE)),
        "few": np.flatnonzero(counts < COUNT_FEW_BELOW),
    }
    order = np.lexsort((np.arange(len(counts)), -counts))
    total = int(counts.sum())
    # Exact integer form of before/total < 0.75 and < 0.95 (no rounding at the boundary).
    before = np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    head = before * 4 < 3 * total
    middle_or_head = before * 20 < 19 * total
    by_mass = {
        "many": order[head],
        "medium": order[~head & middle_or_head],
        "few": order[~middle_or_head],
    }
    return {
        "count": {k: sorted(int(c) for c in v) for k, v in by_count.items()},
        "mass": {k: sorted(int(c) for c in v) for k, v in by_mass.items()},
    }

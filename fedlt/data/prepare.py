"""The data preparation both engines share: the source, then the global long tail.

One function, :func:`longtailed_splits`, so one seed and one ``data`` section keep the same
training images in the federated engine (:func:`fedlt.data.federated.build_federated_data`)
and in the continual engine (:func:`fedlt.continual.engine.load_stream_data`).
docs/partition.md ("Random streams") lists the streams.
"""

from __future__ import annotations

import numpy as np

from fedlt.config import DataConfig, LongTailConfig
from fedlt.data.base import DataSplits
from fedlt.data.longtail import apply_longtail
from fedlt.data.official import fedloge_longtail
from fedlt.data.sources import load_source
from fedlt.seeding import rng

OFFICIAL = "fedloge-official"


def longtail_indices(labels: np.ndarray, cfg: LongTailConfig, mode: str, seed: int) -> np.ndarray:
    """Indices of the training images the long tail keeps, in training-array order.

    ``mode`` is ``data.rng``: ``fedlt`` draws with the ``longtail`` stream of the run seed
    (:func:`fedlt.seeding.rng`; indices sorted), ``fedloge-official`` as the official
    FedLoGe code does (:func:`fedlt.data.official.fedloge_longtail`; class blocks in
    shuffled order).
    """
    if mode == OFFICIAL:
        return fedloge_longtail(labels, cfg)
    return apply_longtail(labels, cfg, rng(seed, "longtail"))


def longtailed_splits(cfg: DataConfig, seed: int) -> tuple[DataSplits, np.ndarray]:
    """The source of ``cfg`` with its training split cut to the global long tail.

    Returns the splits (training images in the order :func:`longtail_indices` gives; test
    split, statistics and info of the source, plus ``info["longtail_kept"]``) and the kept
    indices into the source's training split.
    """
    splits = load_source(cfg, seed)
    kept = longtail_indices(splits.train.labels, cfg.longtail, cfg.rng, seed)
    if len(kept) == len(splits.train) and np.array_equal(kept, np.arange(len(kept))):
        train = splits.train  # nothing cut, nothing reordered: no copy
    else:
        train = splits.train.subset(kept)
    prepared = DataSplits(
        train=train,
        test=splits.test,
        name=splits.name,
        mean=splits.mean,
        std=splits.std,
        info={**splits.info, "longtail_kept": len(kept)},
    )
    return prepared, kept

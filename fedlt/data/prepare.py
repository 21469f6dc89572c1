"""The data preparation both engines share: the source, then the global long tail.

One function, :func:`longtailed_splits`, so one seed and one ``data`` section keep the same
training images in the federated engine (:func:`fedlt.data.federated.build_federated_data`)
and in the continual engine (:func:`fedlt.continual.engine.load_stream_data`).
docs/partition.md ("Random streams") lists the streams.
"""

from __future__ import annotations

import numpy as np

from fedlt.config import DataConfig, LongTailConfig
from fedlt.data.base import ArrayDataset, DataSplits
from fedlt.data.longtail import apply_longtail
from fedlt.data.official import fedloge_longtail
from fedlt.data.sources import load_source
from fedlt.errors import ConfigError
from fedlt.seeding import rng

OFFICIAL = "fedloge-official"
# ImageNet per-channel statistics in [0, 1] pixel units (torchvision's; the official FedLoGe
# code normalises CIFAR with them, docs/partition.md "Normalisation").
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def normalization_stats(
    mode: str, splits: DataSplits
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) for ``data.normalization`` ``mode``: ``data`` keeps the
    source's own statistics, ``imagenet`` gives :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`
    (3-channel images only; anything else raises ConfigError)."""
    if mode == "data":
        return tuple(splits.mean), tuple(splits.std)
    channels = _channels(splits.train)
    if mode != "imagenet" or channels != len(IMAGENET_MEAN):
        raise ConfigError(
            "data.normalization",
            f"imagenet needs 3-channel images, got {channels}"
            if mode == "imagenet"
            else f"must be data or imagenet, got {mode!r}",
        )
    return IMAGENET_MEAN, IMAGENET_STD


def _channels(data: ArrayDataset) -> int:
    """Channels of the (N, H, W, C) images."""
    return int(data.images.shape[-1])


def longtailed_splits(cfg: DataConfig, seed: int) -> tuple[DataSplits, np.ndarray]:
    """The source of ``cfg`` with its training split cut to the global long tail.

    Returns the splits (training images in the order :func:`longtail_indices` gives; test
    split, normalisation statistics by ``data.normalization`` (:func:`normalization_stats`),
    info of the source plus ``info["longtail_kept"]``) and the kept indices into the source's
    training split.
    """
    splits = load_source(cfg, seed)
    kept = longtail_indices(splits.train.labels, cfg.longtail, cfg.rng, seed)
    if len(kept) == len(splits.train) and np.array_equal(kept, np.arange(len(kept))):
        train = splits.train  # nothing cut, nothing reordered: no copy
    else:
        train = splits.train.subset(kept)
    mean, std = normalization_stats(cfg.normalization, splits)
    prepared = DataSplits(
        train=train,
        test=splits.test,
        name=splits.name,
        mean=mean,
        std=std,
        info={**splits.info, "longtail_kept": len(kept)},
    )
    return prepared, kept

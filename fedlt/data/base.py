"""In-memory dataset types shared by every data source, partitioner and engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ArrayDataset:
    """Decoded images and integer labels.

    ``images``: uint8 array of shape (N, H, W, C) (channels last, as decoded). ``labels``:
    int64 array of shape (N,), values in ``[0, len(classes))``.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W, C), got {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.images[indices], self.labels[indices], self.classes)


@dataclass
class DataSplits:
    """A source's train and (balanced) test split plus normalisation statistics.

    ``mean`` / ``std``: per-channel, in [0, 1] pixel units, used to normalise inputs.
    """

    train: ArrayDataset
    test: ArrayDataset
    name: str
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    info: dict[str, object] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the layout models receive."""
        _, h, w, c = self.train.images.shape
        return (c, h, w)

"""Global long-tail profiles applied to a balanced training set (FedLoGe, Xiao et al.,
ICLR 2024; docs/partition.md).

The exponential profile is the one of Cao et al. (2019, "LDAM", their Eq. in §4) as the
FedLoGe code computes it: class ``c`` of ``C`` keeps

    n_c = int(n_max * (1 / IF) ** (c / (C - 1)))

images, class 0 being the head and ``IF = n_max / n_min`` the imbalance factor. Golden totals
(``n_max`` 5,000 for CIFAR-10, 500 for CIFAR-100): CIFAR-10 IF=100 → 12,406, IF=50 → 13,996;
CIFAR-100 IF=100 → 10,847, IF=50 → 12,608.
"""

from __future__ import annotations

import numpy as np

from fedlt.config import LongTailConfig
from fedlt.errors import ConfigError

PROFILES = ("none", "exponential", "step")


def longtail_counts(
    n_max: int,
    num_classes: int,
    imbalance_factor: float,
    profile: str,
    step_minority_fraction: float = 0.5,
) -> np.ndarray:
    """Target number of training images per class, shape ``(num_classes,)``.

    - ``exponential``: ``int(n_max * (1/IF) ** (c/(C-1)))`` (class 0 keeps ``n_max``).
    - ``step``: the last ``round(C * step_minority_fraction)`` classes keep ``int(n_max / IF)``,
      the others ``n_max`` (Buda et al. 2018; the FedLoGe code's ``step`` with fraction 0.5).
    - ``none``: every class keeps ``n_max``.
    """
    if imbalance_factor < 1:
        raise ConfigError(
            "data.longtail.imbalance_factor",
            f"must be >= 1 (n_max / n_min), got {imbalance_factor}",
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if profile == "none":
        return np.full(num_classes, int(n_max), dtype=np.int64)
    if profile == "exponential":
        if num_classes == 1:
            return np.array([int(n_max)], dtype=np.int64)
        ratio = 1.0 / float(imbalance_factor)
        # Python floats, evaluated exactly as the reference code does (golden totals depend on it).
        counts = [int(n_max * ratio ** (c / (num_classes - 1.0))) for c in range(num_classes)]
        return np.array(counts, dtype=np.int64)
    if profile == "step":
        if not 0.0 < step_minority_fraction < 1.0:
            raise ConfigError(
                "data.longtail.step_minority_fraction",
                f"must lie in (0, 1), got {step_minority_fraction}",
            )
        num_minority = round(num_classes * step_minority_fraction)
        counts = np.full(num_classes, int(n_max), dtype=np.int64)
        if num_minority:
            counts[num_classes - num_minority :] = int(n_max / imbalance_factor)
        return counts
    raise ConfigError(
        "data.longtail.profile", f"expected one of {', '.join(PROFILES)}, got {profile!r}"
    )


def class_targets(labels: np.ndarray, cfg: LongTailConfig) -> tuple[np.ndarray, np.ndarray]:
    """(images available per class, images the profile keeps per class) for non-empty
    ``labels``; classes are ``0 .. labels.max()``, ``n_max`` the largest class."""
    num_classes = int(labels.max()) + 1
    available = np.bincount(labels, minlength=num_classes)
    targets = longtail_counts(
        int(available.max()),
        num_classes,
        cfg.imbalance_factor,
        cfg.profile,
        cfg.step_minority_fraction,
    )
    return available, np.asarray(targets)


def apply_longtail(labels: np.ndarray, cfg: LongTailConfig, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted, into ``labels``) of the training images kept under ``cfg``.

    ``n_max`` is the size of the largest class; each class keeps
    ``min(target_c, available_c)`` images chosen uniformly at random without replacement with
    ``rng`` (a seeded choice, as in the reference code). The number of classes is
    ``labels.max() + 1``.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    if cfg.profile == "none":
        return np.arange(len(labels), dtype=np.int64)
    available, targets = class_targets(labels, cfg)
    num_classes = len(available)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(available)])
    kept = []
    for c in range(num_classes):
        members = order[starts[c] : starts[c + 1]]
        take = min(int(targets[c]), len(members))
        kept.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(kept)).astype(np.int64)

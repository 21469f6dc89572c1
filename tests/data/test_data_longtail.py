"""Global long-tail profiles: golden totals of the FedLoGe setting, step/none, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from fedlt.config import LongTailConfig, resolve
from fedlt.configtools import from_dict
from fedlt.data.longtail import apply_longtail, longtail_counts
from fedlt.errors import ConfigError


@pytest.mark.parametrize(
    ("num_classes", "per_class", "imbalance_factor", "expected_total"),
    [(10, 5000, 100, 12406), (10, 5000, 50, 13996), (100, 500, 100, 10847), (100, 500, 50, 12608)],
)
def test_golden_totals_from_balanced_labels(
    num_classes, per_class, imbalance_factor, expected_total
):
    labels = np.repeat(np.arange(num_classes), per_class)
    cfg = LongTailConfig(profile="exponential", imbalance_factor=imbalance_factor)
    kept = apply_longtail(labels, cfg, np.random.default_rng(3407))
    assert len(kept) == expected_total
    counts = np.bincount(labels[kept], minlength=num_classes)
    assert counts[0] == per_class
    assert counts[-1] == int(per_class / imbalance_factor)
    assert np.all(np.diff(counts) <= 0)
    assert len(np.unique(kept)) == len(kept)


def test_exponential_formula_per_class():
    counts = longtail_counts(5000, 10, 100, "exponential")
    expected = [int(5000 * 0.01 ** (c / 9)) for c in range(10)]
    assert counts.tolist() == expected


def test_step_profile_and_none():
    step = longtail_counts(1000, 10, 10, "step", step_minority_fraction=0.3)
    assert step.tolist() == [1000] * 7 + [100] * 3
    assert longtail_counts(50, 4, 10, "none").tolist() == [50] * 4


def test_capped_at_available_and_seeded_choice():
    labels = np.array([0] * 100 + [1] * 5 + [2] * 100)
    cfg = LongTailConfig(profile="step", imbalance_factor=2.0, step_minority_fraction=0.34)
    kept_a = apply_longtail(labels, cfg, np.random.default_rng(1))
    kept_b = apply_longtail(labels, cfg, np.random.default_rng(1))
    kept_c = apply_longtail(labels, cfg, np.random.default_rng(2))
    counts = np.bincount(labels[kept_a], minlength=3)
    assert counts.tolist() == [100, 5, 50]  # class 1 wants 100 but only 5 exist
    assert np.array_equal(kept_a, kept_b)
    assert not np.array_equal(kept_a, kept_c)


def test_none_profile_keeps_everything():
    labels = np.array([2, 0, 1, 1])
    kept = apply_longtail(labels, LongTailConfig(), np.random.default_rng(0))
    assert kept.tolist() == [0, 1, 2, 3]


def test_imbalance_factor_below_one_is_rejected_with_key():
    with pytest.raises(ConfigError, match=r"data\.longtail\.imbalance_factor: must be >= 1"):
        resolve({"data": {"longtail": {"profile": "exponential", "imbalance_factor": 0.01}}})
    with pytest.raises(ConfigError, match="imbalance_factor"):
        longtail_counts(100, 10, 0.5, "exponential")


def test_unknown_profile_and_key_typos():
    with pytest.raises(ConfigError, match=r"profile.*'exponential'.*did you mean 'exponential'"):
        from_dict(LongTailConfig, {"profile": "exponental"}, "data.longtail")
    with pytest.raises(ConfigError, match=r"imbalance_factr: unknown key \(did you mean"):
        from_dict(LongTailConfig, {"imbalance_factr": 10}, "data.longtail")

"""Anytime metrics over rounds on a hand-made evaluation history."""

from __future__ import annotations

import pytest

from fedlt.federated_continual.engine import anytime_metrics, phase_end_rounds


def test_phase_ends_split_the_rounds_into_k_equal_phases():
    assert phase_end_rounds(10, 5) == [2, 4, 6, 8, 10]
    assert phase_end_rounds(7, 3) == [3, 5, 7]
    assert phase_end_rounds(2, 5) == [1, 2]


def test_anytime_metrics_from_a_hand_made_history():
    key = "generic.global.top1"
    records = [
        {"round": 1, key: 0.2, "phase_end": False},
        {"round": 2, key: 0.5, "phase_end": True, "per_class": {"0": 0.9, "1": 0.1}},
        {"round": 3, key: 0.4, "phase_end": False},
        {"round": 4, key: 0.6, "phase_end": True, "per_class": {"0": 0.6, "1": 0.7, "2": 0.5}},
        {"round": 5, "train_loss": 1.0},  # not an evaluation
    ]
    m = anytime_metrics(records, key, with_forgetting=True)
    assert m["A_auc"] == pytest.approx((0.2 + 0.5 + 0.4 + 0.6) / 4)
    assert m["A_avg"] == pytest.approx((0.5 + 0.6) / 2)
    assert m["A_last"] == pytest.approx(0.6)
    # class 0 dropped 0.9 -> 0.6, class 1 rose 0.1 -> 0.7; class 2 was not seen before
    assert m["F_last"] == pytest.approx(((0.9 - 0.6) + (0.1 - 0.7)) / 2)
    assert "F_last" not in anytime_metrics(records, key, with_forgetting=False)

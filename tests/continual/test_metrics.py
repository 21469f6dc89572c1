"""A_auc / A_avg / A_last / F_last on hand-made evaluation histories (docs/continual.md)."""

from __future__ import annotations

import pytest

from fedlt.evaluation.continual import continual_metrics, forgetting_last, plot_accuracy


def _history():
    return [
        {"samples_seen": 100, "kind": "periodic", "acc": 0.5},
        {"samples_seen": 150, "kind": "task_end", "acc": 0.6, "per_class": {"0": 0.6}},
        {"samples_seen": 200, "kind": "periodic", "acc": 0.3},
        {"samples_seen": 300, "kind": "periodic", "acc": 0.4},
        {
            "samples_seen": 320,
            "kind": "task_end",
            "acc": 0.45,
            "per_class": {"0": 0.2, "1": 0.7, "2": 0.0},
        },
        {
            "samples_seen": 400,
            "kind": "task_end",
            "acc": 0.35,
            "per_class": {"0": 0.1, "1": 0.5, "2": 0.3, "3": 0.5},
        },
    ]


def test_accuracy_metrics():
    m = continual_metrics(_history())
    assert m["A_auc"] == pytest.approx((0.5 + 0.3 + 0.4) / 3)
    assert m["A_avg"] == pytest.approx((0.6 + 0.45 + 0.35) / 3)
    assert m["A_last"] == pytest.approx(0.35)


def test_forgetting_excludes_classes_never_above_zero_before_last_task():
    # class 0: max(0.6, 0.2) - 0.1 = 0.5; class 1: 0.7 - 0.5 = 0.2;
    # class 2: max 0.0 -> excluded; class 3: first seen in the last task -> excluded
    m = continual_metrics(_history())
    assert m["F_last"] == pytest.approx((0.5 + 0.2) / 2)


def test_forgetting_can_be_negative_and_missing_last_counts_as_zero():
    ends = [{"a": 0.2, "b": 0.4}, {"a": 0.5}]
    # a: 0.2 - 0.5 = -0.3 (backward transfer); b missing at the end -> 0.4 - 0 = 0.4
    assert forgetting_last(ends) == pytest.approx((-0.3 + 0.4) / 2)


def test_single_task_and_empty_history():
    assert forgetting_last([{"0": 0.9}]) == 0.0
    assert continual_metrics([]) == {"A_auc": 0.0, "A_avg": 0.0, "A_last": 0.0, "F_last": 0.0}


def test_plot_writes_png(tmp_path):
    path = plot_accuracy(_history(), tmp_path / "acc.png", [150, 320], "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

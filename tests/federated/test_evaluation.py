from __future__ import annotations

import math

import torch

from fedlt.evaluation.federated import generic_metrics, personal_metrics

GROUPS = {
    "count": {"many": [0], "medium": [1], "few": [2]},
    "mass": {"many": [0, 1], "medium": [], "few": [2]},
}


def test_generic_metrics_by_hand():
    logits = torch.tensor([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    labels = torch.tensor([0, 1, 2, 2])
    metrics, per_class = generic_metrics({"m": logits}, labels, GROUPS, 3)
    assert metrics["generic.m.top1"] == 0.75
    assert metrics["generic.m.few.count"] == 0.5
    assert metrics["generic.m.many.mass"] == 1.0
    assert math.isnan(metrics["generic.m.medium.mass"])
    assert per_class["generic.m"] == [1.0, 1.0, 0.5]


def test_personal_metrics_mask_and_weighting():
    # client 0: its only local class is 1, but the raw argmax says class 0
    logits0 = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.5, 0.0]])
    labels0 = torch.tensor([1, 1])
    # client 1: 4 samples, 2 right
    logits1 = torch.eye(3)[[0, 0, 2, 2]]
    labels1 = torch.tensor([0, 1, 2, 1])
    args = ({0: {"m": logits0}, 1: {"m": logits1}}, {0: labels0, 1: labels1}, GROUPS, 3)
    unmasked = personal_metrics(*args, mask_absent_classes=False)
    assert unmasked["personal.m.top1_mean"] == (0.0 + 0.5) / 2
    masked = personal_metrics(*args, mask_absent_classes=True)
    assert masked["personal.m.top1_mean"] == (1.0 + 0.5) / 2
    assert masked["personal.m.top1_weighted"] == (2 * 1.0 + 4 * 0.5) / 6

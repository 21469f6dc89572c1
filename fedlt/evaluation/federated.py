"""Generic and personalised accuracy with many/medium/few breakdowns (FedLoGe spec §4-5).

Key names (flat, fractions in [0, 1]) shared by metrics.jsonl, summary.json and reports:

- ``generic.<mode>.top1`` — top-1 on the balanced test set;
- ``generic.<mode>.<many|medium|few>.<count|mass>`` — top-1 restricted to test samples whose
  class is in that group, under the ``count`` (>100 / 20-100 / <20 training images; Kang et
  al. 2020) or ``mass`` (75% / 95% of cumulative training mass; FedLoGe code) definition;
- ``personal.<mode>.top1_mean`` — unweighted mean over clients of local-test top-1;
- ``personal.<mode>.top1_weighted`` — the same weighted by local-test size;
- ``personal.<mode>.<group>.<definition>`` — pooled over all clients' local test samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

ABSENT_CLASS_LOGIT = -1e10  # what the FedLoGe code writes into absent-class logits
GROUPS = ("many", "medium", "few")

ClassGroups = Mapping[str, Mapping[str, Sequence[int]]]
"""definition ('count' | 'mass') -> group ('many' | 'medium' | 'few') -> class indices."""


def mask_absent(logits: Tensor, present: Tensor) -> Tensor:
    """Set the logits of classes absent from a client's local test set to −1e10 (spec §4).

    Applied identically to every method when ``federated.mask_absent_classes`` is on.
    """
    return logits.masked_fill(~present.view(1, -1), ABSENT_CLASS_LOGIT)


def _group_accuracy(correct: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> float:
    sel = np.isin(labels, np.asarray(list(classes), dtype=np.int64))
    return float(correct[sel].mean()) if sel.any() else float("nan")


def per_class_accuracy(correct: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Top-1 per class (NaN for classes without test samples)."""
    totals = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels, weights=correct.astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(v) for v in np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)]


def generic_metrics(
    logits_by_mode: Mapping[str, Tensor], labels: Tensor, groups: ClassGroups, num_classes: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Flat generic metrics and per-class accuracy, per inference mode."""
    y = labels.cpu().numpy()
    metrics: dict[str, float] = {}
    per_class: dict[str, list[float]] = {}
    for mode, logits in logits_by_mode.items():
        correct = (logits.argmax(1).cpu().numpy() == y).astype(np.float64)
        metrics[f"generic.{mode}.top1"] = float(correct.mean()) if len(y) else float("nan")
        for definition, by_group in groups.items():
            for group in GROUPS:
                metrics[f"generic.{mode}.{group}.{definition}"] = _group_accuracy(
                    correct, y, by_group.get(group, [])
                )
        per_class[f"generic.{mode}"] = per_class_accuracy(correct, y, num_classes)
    return metrics, per_class


def personal_metrics(
    client_logits: Mapping[int, Mapping[str, Tensor]],
    client_labels: Mapping[int, Tensor],
    groups: ClassGroups,
    num_classes: int,
    mask_absent_classes: bool,
) -> dict[str, float]:
    """Flat personalised metrics over the clients given (each on its own local test set).

    With ``mask_absent_classes`` the logits of classes absent from a client's local test set
    are removed before the argmax (spec §4), for every method alike. Clients without local
    test samples are skipped.
    """
    per_mode_acc: dict[str, list[tuple[float, int]]] = {}
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for client, by_mode in sorted(client_logits.items()):
        labels = client_labels[client]
        n = int(labels.shape[0])
        if n == 0:
            continue
        present = torch.bincount(labels.cpu(), minlength=num_classes) > 0
        y = labels.cpu().numpy()
        for mode, logits in by_mode.items():
            if mask_absent_classes:
                logits = mask_absent(logits.cpu(), present)
            correct = (logits.argmax(1).cpu().numpy() == y).astype(np.float64)
            per_mode_acc.setdefault(mode, []).append((float(correct.mean()), n))
            c_list, y_list = pooled.setdefault(mode, ([], []))
            c_list.append(correct)
            y_list.append(y)
    metrics: dict[str, float] = {}
    for mode, accs in per_mode_acc.items():
        values = np.array([a for a, _ in accs])
        weights = np.array([n for _, n in accs], dtype=np.float64)
        metrics[f"personal.{mode}.top1_mean"] = float(values.mean())
        metrics[f"personal.{mode}.top1_weighted"] = float((values * weights).sum() / weights.sum())
        correct = np.concatenate(pooled[mode][0])
        y = np.concatenate(pooled[mode][1])
        for definition, by_group in groups.items():
            for group in GROUPS:
                metrics[f"personal.{mode}.{group}.{definition}"] = _group_accuracy(
                    correct, y, by_group.get(group, [])
                )
    return metrics

"""Generic and personalised accuracy with many/medium/few breakdowns (FedLoGe,
Xiao et al., ICLR 2024; docs/federated.md, "Evaluation").

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
    """Set the logits of classes absent from a client's local test set to −1e10
    (docs/federated.md, "Evaluation").

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


def class_hits(
    logits: Tensor, labels: np.ndarray, num_classes: int, mask_absent_classes: bool
) -> np.ndarray:
    """Correct predictions per true class (int64, length ``num_classes``) on one client's
    local test set; with ``mask_absent_classes`` the logits of classes absent from that set
    are removed before the argmax (docs/federated.md), for every method alike."""
    y = np.asarray(labels, dtype=np.int64)
    logits = logits.cpu()
    if mask_absent_classes:
        present = torch.from_numpy(np.bincount(y, minlength=num_classes) > 0)
        logits = mask_absent(logits, present)
    correct = logits.argmax(1).numpy() == y
    return np.bincount(y[correct], minlength=num_classes).astype(np.int64)


def personal_metrics_from_hits(
    client_hits: Mapping[int, Mapping[str, np.ndarray]],
    client_totals: Mapping[int, np.ndarray],
    groups: ClassGroups,
) -> dict[str, float]:
    """Flat personalised metrics from per-client, per-class hit and test-sample counts.

    Exact, not an approximation: every personalised metric is a ratio of sums of these
    integers (a client's top-1 is Σ_c hits / Σ_c totals; a pooled group accuracy sums both
    over the clients and the group's classes). Clients without local test samples are skipped.
    """
    per_mode: dict[str, list[tuple[float, int]]] = {}
    pooled_hits: dict[str, np.ndarray] = {}
    pooled_totals: dict[str, np.ndarray] = {}
    for client in sorted(client_hits):
        totals = np.asarray(client_totals[client], dtype=np.int64)
        n = int(totals.sum())
        if n == 0:
            continue
        for mode, hits in client_hits[client].items():
            hits = np.asarray(hits, dtype=np.int64)
            per_mode.setdefault(mode, []).append((float(hits.sum()) / n, n))
            pooled_hits[mode] = pooled_hits.get(mode, 0) + hits
            pooled_totals[mode] = pooled_totals.get(mode, 0) + totals
    metrics: dict[str, float] = {}
    for mode, accs in per_mode.items():
        values = np.array([a for a, _ in accs])
        weights = np.array([n for _, n in accs], dtype=np.float64)
        metrics[f"personal.{mode}.top1_mean"] = float(values.mean())
        metrics[f"personal.{mode}.top1_weighted"] = float((values * weights).sum() / weights.sum())
        for definition, by_group in groups.items():
            for group in GROUPS:
                classes = np.asarray(list(by_group.get(group, [])), dtype=np.int64)
                total = int(pooled_totals[mode][classes].sum()) if classes.size else 0
                metrics[f"personal.{mode}.{group}.{definition}"] = (
                    float(pooled_hits[mode][classes].sum()) / total if total else float("nan")
                )
    return metrics


def personal_metrics(
    client_logits: Mapping[int, Mapping[str, Tensor]],
    client_labels: Mapping[int, Tensor],
    groups: ClassGroups,
    num_classes: int,
    mask_absent_classes: bool,
) -> dict[str, float]:
    """Flat personalised metrics over the clients given (each on its own local test set),
    from their logits: :func:`class_hits` per client, then :func:`personal_metrics_from_hits`.
    """
    hits: dict[int, dict[str, np.ndarray]] = {}
    totals: dict[int, np.ndarray] = {}
    for client, by_mode in client_logits.items():
        y = client_labels[client].cpu().numpy().astype(np.int64)
        totals[client] = np.bincount(y, minlength=num_classes)
        hits[client] = {
            mode: class_hits(z, y, num_classes, mask_absent_classes) for mode, z in by_mode.items()
        }
    return personal_metrics_from_hits(hits, totals, groups)

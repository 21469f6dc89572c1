"""Online continual learning metrics (spec ``si-blurry-mvp.md`` §2), as fractions.

From an evaluation history (one record per evaluation, ``kind`` either ``periodic`` or
``task_end``):

- ``A_auc`` = mean accuracy over the periodic evaluations (Koh et al. 2022's area under the
  accuracy curve with a constant evaluation period);
- ``A_avg`` = mean of the end-of-task accuracies, ``(1/K) Σ_k a_k``;
- ``A_last`` = accuracy at the end of the stream, ``a_{K−1}``;
- ``F_last`` = mean over classes j with ``max_{t<K−1} acc_t(j) > 0`` of
  ``max_{t<K−1} acc_t(j) − acc_{K−1}(j)``, where ``acc_t`` are per-class accuracies at the
  end of task t. A class not yet exposed at the end of task t counts as accuracy 0 there.
  With a single task (no t < K−1) or no class passing the filter, ``F_last = 0``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def forgetting_last(per_class_task_end: Sequence[Mapping[Any, float]]) -> float:
    """``F_last`` from the per-class accuracies at each task end (list over tasks of
    ``{class: accuracy}``); see the module docstring."""
    if len(per_class_task_end) < 2:
        return 0.0
    *earlier, last = per_class_task_end
    classes = set().union(*(d.keys() for d in earlier))
    drops = []
    for j in sorted(classes, key=str):
        best = max(float(d.get(j, 0.0)) for d in earlier)
        if best > 0:
            drops.append(best - float(last.get(j, 0.0)))
    return _mean(drops)


def continual_metrics(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``{"A_auc", "A_avg", "A_last", "F_last"}`` from evaluation records.

    Each record has ``kind`` (``periodic`` | ``task_end``) and ``acc``; ``task_end`` records
    carry ``per_class`` (``{class: accuracy}``) for ``F_last``.
    """
    periodic = [float(r["acc"]) for r in history if r["kind"] == "periodic"]
    task_end = [r for r in history if r["kind"] == "task_end"]
    end_acc = [float(r["acc"]) for r in task_end]
    return {
        "A_auc": _mean(periodic),
        "A_avg": _mean(end_acc),
        "A_last": end_acc[-1] if end_acc else 0.0,
        "F_last": forgetting_last([r.get("per_class", {}) for r in task_end]),
    }


def plot_accuracy(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    task_boundaries: Sequence[int] = (),
    title: str = "",
) -> Path:
    """Accuracy (periodic evaluations, line; task ends, markers) against samples seen, with
    dashed lines at the task boundaries (stream positions); writes a PNG. Drawn by
    :func:`fedlt.plots.continual.plot_stream_accuracy` (imported here on first use)."""
    from fedlt.plots.continual import plot_stream_accuracy

    return plot_stream_accuracy(history, path, task_boundaries, title)

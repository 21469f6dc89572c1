"""Figures of the online continual engine: a run's accuracy curve (``figures/accuracy.png``)
and a Si-Blurry stream (``fedlt stream``'s ``stream.png``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from fedlt.plots.base import integer_axis, new_figure, save_figure

if TYPE_CHECKING:
    from fedlt.continual.stream import Stream


def stream_accuracy_figure(
    history: Sequence[Mapping[str, Any]], task_boundaries: Sequence[int] = (), title: str = ""
) -> Figure:
    """Accuracy (periodic evaluations, line; task ends, markers) against samples seen, with
    dashed lines at the task boundaries (stream positions)."""
    fig, axes = new_figure(7, 4)
    ax = axes[0, 0]
    periodic = [r for r in history if r["kind"] == "periodic"]
    ends = [r for r in history if r["kind"] == "task_end"]
    for records, style, label in ((periodic, "-", "periodic"), (ends, "o", "task end")):
        if records:
            xs = [r["samples_seen"] for r in records]
            ax.plot(xs, [100 * r["acc"] for r in records], style, label=label)
    for b in task_boundaries:
        ax.axvline(b, color="grey", linestyle="--", linewidth=0.8)
    integer_axis(ax, [r["samples_seen"] for r in periodic + ends])
    ax.set_xlabel("samples seen")
    ax.set_ylabel("accuracy on exposed classes (%)")
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title)
    if periodic or ends:
        ax.legend(loc="lower right")
    return fig


def plot_stream_accuracy(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    task_boundaries: Sequence[int] = (),
    title: str = "",
) -> Path:
    """Write :func:`stream_accuracy_figure` to ``path`` (PNG)."""
    return save_figure(stream_accuracy_figure(history, task_boundaries, title), path, dpi=100)


def stream_figure(stream: Stream, labels: np.ndarray, title: str = "") -> Figure:
    """Class (first-seen order; class ids as tick labels up to 40 classes) against stream
    position, task boundaries dashed."""
    tasks = [t.indices for t in stream.tasks]
    order = np.concatenate(tasks) if len(stream) else np.zeros(0, int)
    seq = np.asarray(labels)[order]
    rank = {c: i for i, c in enumerate(dict.fromkeys(seq.tolist()))}
    y = np.array([rank[c] for c in seq.tolist()])
    fig, axes = new_figure(9, 5)
    ax = axes[0, 0]
    ax.scatter(np.arange(len(seq)), y, s=0.5, c=seq, cmap="tab20", marker=".", rasterized=True)
    for boundary in np.cumsum(stream.task_sizes)[:-1]:
        ax.axvline(boundary, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlabel("stream position (samples)")
    ax.set_ylabel("class (first-seen order)")
    if 0 < len(rank) <= 40:
        ax.set_yticks(range(len(rank)), [str(c) for c in rank])
    ax.set_title(title or f"{stream.scenario} stream, seed {stream.seed}")
    ax.set_xlim(0, max(len(seq), 1))
    return fig


def plot_stream(stream: Stream, labels: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write :func:`stream_figure` to ``path`` (PNG)."""
    return save_figure(stream_figure(stream, labels, title), path)

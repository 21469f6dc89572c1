"""Figures of one federated run (``figures/accuracy.png``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from fedlt.plots.base import integer_axis, new_figure, save_figure

PANELS = (("generic", "top1"), ("personal", "top1_mean"))


def _mode_keys(records: Sequence[Mapping[str, Any]], kind: str, suffix: str) -> list[str]:
    return sorted(
        {k for r in records for k in r if k.startswith(f"{kind}.") and k.endswith(f".{suffix}")}
    )


def accuracy_figure(records: Sequence[Mapping[str, Any]], headline: Mapping[str, str]) -> Figure:
    """Generic and personalised top-1 (%) of every mode against the round; the headline mode
    solid, the others dashed; integer round ticks."""
    fig, axes = new_figure(10, 3.6, ncols=2, sharey=True)
    rounds: list[float] = []
    for ax, (kind, suffix) in zip(axes[0], PANELS, strict=True):
        keys = _mode_keys(records, kind, suffix)
        for key in keys:
            points = [(r["round"], 100 * r[key]) for r in records if key in r and "round" in r]
            if not points:
                continue
            rounds += [x for x, _ in points]
            mode = key.split(".")[1]
            style = "-" if mode == headline.get(kind) else "--"
            ax.plot(*zip(*points, strict=True), style, marker="o", markersize=2.5, label=mode)
        ax.set_title(f"{kind} accuracy")
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
    for ax in axes[0]:
        integer_axis(ax, rounds)
    axes[0, 0].set_ylabel("top-1 (%)")
    return fig


def plot_accuracy(
    records: Sequence[Mapping[str, Any]], headline: Mapping[str, str], path: str | Path
) -> Path:
    """Write :func:`accuracy_figure` of a run's metrics records to ``path``."""
    return save_figure(accuracy_figure(records, headline), path, dpi=120)

"""Figures of ``fedlt report``: accuracy curves over seeds and per-class accuracy bars.

:mod:`fedlt.report` gathers the numbers (one :class:`Curve` per method, one bar series per
method); the functions here only draw them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedlt.plots.base import integer_axis, new_figure


@dataclass
class Curve:
    """One method's mean curve over seeds and its ± std band."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray


@dataclass
class Panel:
    """One subplot: a y label and the curves drawn in it; ``marks``: x positions drawn as
    dotted vertical lines (a federated continual stream's phase ends), named ``marks_label``
    in the legend."""

    ylabel: str
    curves: list[Curve] = field(default_factory=list)
    marks: Sequence[float] = ()
    marks_label: str = ""


def curves_figure(panels: Sequence[Panel], x_label: str, title: str) -> Figure:
    """One subplot per panel, a line with markers and a ± std band per curve, dotted
    vertical lines at the panel's marks, integer x ticks (rounds, evaluation points); an
    empty panel says "no data"."""
    fig, axes = new_figure(5.5 * len(panels), 4, ncols=len(panels))
    for ax, panel in zip(axes[0], panels, strict=True):
        xs: list[float] = []
        for curve in panel.curves:
            (line,) = ax.plot(
                curve.x,
                curve.mean,
                marker="o" if curve.x.size < 30 else None,
                ms=3,
                label=curve.label,
            )
            ax.fill_between(
                curve.x,
                curve.mean - curve.std,
                curve.mean + curve.std,
                alpha=0.2,
                color=line.get_color(),
            )
            xs += curve.x.tolist()
        for i, mark in enumerate(panel.marks if panel.curves else ()):
            label = panel.marks_label if i == 0 and panel.marks_label else None
            ax.axvline(mark, color="0.6", ls=":", lw=1, zorder=0, label=label)
        integer_axis(ax, xs)
        ax.set_xlabel(x_label)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if panel.curves:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return fig


def per_class_figure(bars: Mapping[str, Mapping[str, np.ndarray]], title: str) -> Figure:
    """One subplot per kind (``generic``, ``personal``, ...): grouped bars of per-class
    top-1 (%), one bar per method in each class group."""
    fig, axes = new_figure(9, 3.2 * len(bars), nrows=len(bars))
    for ax, (kind, per_method) in zip(axes[:, 0], bars.items(), strict=True):
        width = 0.8 / max(len(per_method), 1)
        for i, (method, values) in enumerate(per_method.items()):
            offset = (i - (len(per_method) - 1) / 2) * width
            ax.bar(np.arange(values.size) + offset, values, width=width, label=method)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{kind} per-class accuracy (headline mode of each method)")
        ax.set_xlabel("class (sorted as in the dataset)")
        ax.set_ylabel("top-1 (%)")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig

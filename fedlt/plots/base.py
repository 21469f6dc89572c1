"""What every fedlt figure shares: a pyplot-free ``Figure``, integer step axes, saving.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, so no global
figure registry, no backend to select and nothing to close); ``savefig`` renders with Agg.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def new_figure(
    width: float, height: float, nrows: int = 1, ncols: int = 1, **subplot_kw: object
) -> tuple[Figure, np.ndarray]:
    """A ``width`` × ``height`` inch figure and its ``nrows`` × ``ncols`` array of axes."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def integer_axis(ax: Axes, values: Iterable[float]) -> None:
    """Integer ticks on the x axis (rounds, evaluation points, samples seen), and a range of
    ±1 (or ±5 %) around a lone x value instead of matplotlib's ±0.1 (``1.9``–``2.1``)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if finite and min(finite) == max(finite):
        pad = max(1.0, 0.05 * abs(finite[0]))
        ax.set_xlim(finite[0] - pad, finite[0] + pad)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Lay the figure out and write it as a PNG; the same figure gives the same bytes
    (no software tag in the metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    return path

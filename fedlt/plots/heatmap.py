"""The partition heat map: clients × classes training counts, log colour scale, zeros white.

One style for ``fedlt partition`` (``heatmap.png``) and ``fedlt report``
(``partition_<setting>.png``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedlt.plots.base import new_figure, save_figure


def heatmap_figure(counts: np.ndarray, title: str) -> Figure:
    """Clients (rows) × classes (columns) counts on a log colour scale; empty cells white."""
    counts = np.asarray(counts, dtype=float)
    num_clients, num_classes = counts.shape
    fig, axes = new_figure(min(14.0, 2.5 + 0.3 * num_classes), min(12.0, 1.8 + 0.25 * num_clients))
    ax = axes[0, 0]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(
        np.ma.masked_equal(counts, 0),
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        norm=LogNorm(vmin=1, vmax=max(2, int(counts.max(initial=0)))),
    )
    fig.colorbar(image, ax=ax, label="training images (log scale)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("class")
    ax.set_ylabel("client")
    ax.set_title(title)
    return fig


def save_heatmap(path: str | Path, counts: np.ndarray, title: str, dpi: int = 80) -> Path:
    """Write :func:`heatmap_figure` of ``counts`` to ``path`` (PNG, byte-reproducible)."""
    return save_figure(heatmap_figure(counts, title), path, dpi=dpi)

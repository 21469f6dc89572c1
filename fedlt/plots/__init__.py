"""Every figure fedlt draws, in one package (matplotlib, no pyplot state):

- :mod:`fedlt.plots.base` — figure creation, integer step axes, reproducible PNG saving;
- :mod:`fedlt.plots.heatmap` — the partition heat map (``fedlt partition``, ``fedlt report``);
- :mod:`fedlt.plots.federated` — a federated run's ``figures/accuracy.png``;
- :mod:`fedlt.plots.continual` — a continual run's accuracy curve and ``fedlt stream``'s
  stream figure;
- :mod:`fedlt.plots.report` — ``fedlt report``'s curves and per-class bars.

Each module has a ``*_figure`` function that returns the :class:`matplotlib.figure.Figure`
(what the tests inspect) and a ``plot_*`` / ``save_*`` function that writes it.
"""

from fedlt.plots.base import integer_axis, new_figure, save_figure
from fedlt.plots.continual import (
    plot_stream,
    plot_stream_accuracy,
    stream_accuracy_figure,
    stream_figure,
)
from fedlt.plots.federated import accuracy_figure, plot_accuracy
from fedlt.plots.heatmap import heatmap_figure, save_heatmap
from fedlt.plots.report import Curve, Panel, curves_figure, per_class_figure

__all__ = [
    "Curve",
    "Panel",
    "accuracy_figure",
    "curves_figure",
    "heatmap_figure",
    "integer_axis",
    "new_figure",
    "per_class_figure",
    "plot_accuracy",
    "plot_stream",
    "plot_stream_accuracy",
    "save_figure",
    "save_heatmap",
    "stream_accuracy_figure",
    "stream_figure",
]

"""Accuracy-curve figure of a federated run: drawn by :mod:`fedlt.plots.federated`."""

from fedlt.plots.federated import plot_accuracy as plot_accuracy

"""Accuracy-curve figure of a federated run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_accuracy(records: list[dict[str, Any]], headline: dict[str, str], path: Path) -> None:
    """Generic and personalised top-1 (every mode) against the round."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, kind, suffix in ((axes[0], "generic", "top1"), (axes[1], "personal", "top1_mean")):
        keys = sorted(
            {k for r in records for k in r if k.startswith(f"{kind}.") and k.endswith(f".{suffix}")}
        )
        for key in keys:
            points = [(r["round"], 100 * r[key]) for r in records if key in r]
            if not points:
                continue
            mode = key.split(".")[1]
            style = "-" if mode == headline.get(kind) else "--"
            ax.plot(*zip(*points, strict=True), style, marker="o", markersize=2.5, label=mode)
        ax.set_title(f"{kind} accuracy")
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        if keys:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("top-1 (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

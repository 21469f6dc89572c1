"""Figures of a federated continual run (docs/federated_continual.md, "Figures").

- ``accuracy.png``: generic (global model, classes exposed to any client) and personal
  (mean over clients, each on its own exposed classes) accuracy against rounds, phase ends
  marked, with the number of exposed classes on a second axis;
- ``clients.png``: every client's personal accuracy against rounds (thin lines; the mean
  thick), when the records hold per-client values (up to 500 clients);
- ``exposure.png``: a clients × evaluation-rounds image of how many classes each client's
  stream has exposed so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.plots.base import integer_axis, new_figure, save_figure


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(int(r["round"]), float(r[key])) for r in records if r.get(key) is not None]
    return [p[0] for p in pairs], [100 * p[1] for p in pairs]


def accuracy_figure(records: Sequence[Mapping[str, Any]], headline: Mapping[str, str], title: str):
    fig, axes = new_figure(7.0, 4.0)
    ax = axes[0, 0]
    for kind, style in (("generic", "-o"), ("personal", "-s")):
        suffix = "top1" if kind == "generic" else "top1_mean"
        rounds, acc = _series(records, f"{kind}.{headline[kind]}.{suffix}")
        if rounds:
            ax.plot(rounds, acc, style, markersize=3, label=f"{kind} ({headline[kind]})")
    ends = [int(r["round"]) for r in records if r.get("phase_end")]
    for end in ends:
        ax.axvline(end, color="0.8", linestyle="--", linewidth=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy on exposed classes (%)")
    integer_axis(ax, [int(r["round"]) for r in records])
    twin = ax.twinx()
    rounds = [int(r["round"]) for r in records if "num_exposed" in r]
    twin.step(
        rounds,
        [int(r["num_exposed"]) for r in records if "num_exposed" in r],
        where="post",
        color="0.5",
        linewidth=1,
        label="classes exposed (any client)",
    )
    twin.set_ylabel("classes exposed")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    return fig


def clients_figure(records: Sequence[Mapping[str, Any]], title: str):
    fig, axes = new_figure(7.0, 4.0)
    ax = axes[0, 0]
    with_clients = [r for r in records if "client_streams" in r]
    clients = sorted({int(k) for r in with_clients for k in r["client_streams"]})
    for k in clients:
        pairs = [
            (int(r["round"]), 100 * r["client_streams"][str(k)]["acc"])
            for r in with_clients
            if r["client_streams"].get(str(k), {}).get("acc") is not None
        ]
        if pairs:
            ax.plot(*zip(*pairs, strict=True), color="tab:blue", alpha=0.25, linewidth=0.8)
    rounds = [int(r["round"]) for r in with_clients]
    means = [
        np.nanmean(
            [c["acc"] if c["acc"] is not None else np.nan for c in r["client_streams"].values()]
        )
        if any(c["acc"] is not None for c in r["client_streams"].values())
        else np.nan
        for r in with_clients
    ]
    ax.plot(
        rounds,
        100 * np.asarray(means, dtype=float),
        color="black",
        linewidth=2,
        label="mean over clients",
    )
    ax.set_xlabel("round")
    ax.set_ylabel("personal accuracy on the client's exposed classes (%)")
    integer_axis(ax, rounds)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def exposure_figure(records: Sequence[Mapping[str, Any]], title: str):
    with_clients = [r for r in records if "client_streams" in r]
    num_clients = max((len(r["client_streams"]) for r in with_clients), default=0)
    matrix = np.zeros((num_clients, len(with_clients)))
    for j, r in enumerate(with_clients):
        for key, entry in r["client_streams"].items():
            matrix[int(key), j] = entry["exposed"]
    fig, axes = new_figure(7.0, max(2.5, min(9.0, 0.12 * num_clients + 1.5)))
    ax = axes[0, 0]
    image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_xticks(range(len(with_clients)))
    ax.set_xticklabels([str(r["round"]) for r in with_clients], fontsize=7, rotation=90)
    ax.set_xlabel("round (evaluations)")
    ax.set_ylabel("client")
    fig.colorbar(image, ax=ax, label="classes exposed to the client")
    ax.set_title(title, fontsize=10)
    return fig


def plot_federated_continual(
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    accuracy_path: str | Path,
    clients_path: str | Path,
    exposure_path: str | Path,
) -> list[Path]:
    """Write the run's figures (see the module docstring); returns the paths written."""
    title = f"{summary['strategy']} · federated continual (seed {summary['seed']})"
    written = [save_figure(accuracy_figure(records, summary["headline"], title), accuracy_path)]
    if any("client_streams" in r for r in records):
        written.append(save_figure(clients_figure(records, title), clients_path))
        written.append(save_figure(exposure_figure(records, title), exposure_path))
    return written

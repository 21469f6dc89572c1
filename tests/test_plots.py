"""fedlt.plots: every figure in one package, integer step axes, one heat-map style."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import LogNorm

import fedlt
from fedlt.plots import (
    accuracy_figure,
    heatmap_figure,
    integer_axis,
    new_figure,
    save_figure,
    stream_accuracy_figure,
)


def _ticks_in_view(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]


def _records(rounds: list[int]) -> list[dict]:
    return [
        {
            "round": r,
            "generic.global.top1": 0.1 * r,
            "generic.other.top1": 0.05 * r,
            "personal.local.top1_mean": 0.2 * r,
        }
        for r in rounds
    ]


def test_run_accuracy_figure_has_integer_round_ticks() -> None:
    fig = accuracy_figure(_records([1, 2, 3]), {"generic": "global", "personal": "local"})
    assert len(fig.axes) == 2
    for ax in fig.axes:
        ticks = _ticks_in_view(ax)
        assert len(ticks) >= 2 and all(t.is_integer() for t in ticks), ticks
    generic = fig.axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in generic.get_lines()}
    assert styles == {"global": "-", "other": "--"}  # headline solid, other modes dashed


@pytest.mark.parametrize("x", [2, 40])
def test_one_point_has_a_sane_x_axis(x: int) -> None:
    fig = accuracy_figure(_records([x]), {"generic": "global"})
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo <= x - 1 and hi >= x + 1, (lo, hi)
        ticks = _ticks_in_view(ax)
        assert float(x) in ticks and all(t.is_integer() for t in ticks), ticks


def test_integer_axis_leaves_a_spread_range_alone() -> None:
    _fig, axes = new_figure(4, 3)
    ax = axes[0, 0]
    ax.plot([0, 1000], [0, 1])
    before = ax.get_xlim()
    integer_axis(ax, [0, 1000])
    assert ax.get_xlim() == before
    assert all(t.is_integer() for t in _ticks_in_view(ax))


def test_continual_curve_one_evaluation() -> None:
    history = [{"kind": "task_end", "samples_seen": 500, "acc": 0.4}]
    ax = stream_accuracy_figure(history, task_boundaries=[500]).axes[0]
    lo, hi = ax.get_xlim()
    assert lo < 500 < hi and hi - lo >= 2
    assert all(t.is_integer() for t in _ticks_in_view(ax))


def test_heatmap_is_log_scaled_with_white_zeros_and_reproducible(tmp_path: Path) -> None:
    counts = np.array([[0, 5, 100], [3, 0, 1]])
    fig = heatmap_figure(counts, "t")
    image = fig.axes[0].get_images()[0]
    assert isinstance(image.norm, LogNorm) and image.norm.vmax == 100
    assert bool(np.ma.getmaskarray(image.get_array())[0, 0])  # zero cells are masked (white)
    assert image.cmap.get_bad().tolist() == [1.0, 1.0, 1.0, 1.0]
    a = save_figure(heatmap_figure(counts, "t"), tmp_path / "a.png")
    b = save_figure(heatmap_figure(counts, "t"), tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes() and a.read_bytes()[:4] == b"\x89PNG"


def test_partition_command_and_report_share_the_heatmap(tmp_path: Path, monkeypatch) -> None:
    import fedlt.data.inspect
    import fedlt.plots.heatmap
    from fedlt.report import find_runs, group_runs, plot_partitions

    assert fedlt.data.inspect.save_heatmap is fedlt.plots.heatmap.save_heatmap
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("engine: federated\nstrategy: {name: fedavg}\n")
    (run / "summary.json").write_text(json.dumps({"engine": "federated", "final": {}}))
    counts = [[1, 0], [2, 3]]
    (run / "partition.json").write_text(json.dumps({"client_class_counts": counts}))
    drawn = []

    def spy(path, counts, title, dpi=80):
        drawn.append(np.asarray(counts).tolist())
        return Path(path)

    monkeypatch.setattr(fedlt.plots.heatmap, "save_heatmap", spy)
    runs, _ = find_runs([tmp_path])
    plot_partitions(group_runs(runs), tmp_path, [])
    assert drawn == [counts]


def test_old_import_paths_are_the_plots_package() -> None:
    import fedlt.continual.inspect
    import fedlt.federated.plots
    import fedlt.plots.continual
    import fedlt.plots.federated

    assert fedlt.federated.plots.plot_accuracy is fedlt.plots.federated.plot_accuracy
    assert fedlt.continual.inspect.plot_stream is fedlt.plots.continual.plot_stream


def test_matplotlib_is_used_only_in_fedlt_plots() -> None:
    root = Path(fedlt.__file__).parent
    users = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if "matplotlib" in p.read_text(encoding="utf-8") and p.parent.name != "plots"
    ]
    assert users == []

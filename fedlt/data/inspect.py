"""``fedlt partition``: build a partition from a config, summarise it and save it.

Writes three files into the output folder (default ``partitions/<name>-seed<seed>``):

- ``partition.json``: the schema of :mod:`fedlt.partition_file` (the same file ``fedlt run``
  writes into its run directory): ``meta`` (name, seed, data config, classes), class counts,
  ``source_indices`` (which images of the source's training split the long tail kept) and
  ``clients`` (client id -> indices into that long-tailed training set). It can be fed back
  with ``data.partition: {name: file, path: .../partition.json}``.
- ``stats.json``: per client the training and local-test class counts (``class_counts``,
  ``test_class_counts``), size, head/tail shares and local test size; global class counts
  and class groups.
- ``heatmap.png``: clients × classes training counts on a log colour scale.

The output is written into a temporary folder beside the target and renamed at the end, so
an error leaves nothing behind; an existing target is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.config import ExperimentConfig, load_config
from fedlt.data.federated import FederatedData, build_federated_data, class_groups
from fedlt.errors import ConfigError, FedltError
from fedlt.plots.heatmap import save_heatmap

MAX_TABLE_ROWS = 40


def default_output_dir(cfg: ExperimentConfig) -> Path:
    return Path("partitions") / f"{cfg.name}-seed{cfg.seed}"


def local_test_class_counts(data: FederatedData) -> np.ndarray:
    """(N, C) matrix of local-test images per client and class."""
    labels = data.test.labels
    return np.stack(
        [np.bincount(labels[idx], minlength=data.num_classes) for idx in data.client_test_indices]
    ).astype(np.int64)


def partition_stats(data: FederatedData) -> dict[str, Any]:
    """Summary numbers for ``stats.json`` and the printed table.

    Head/tail shares use the ``mass`` class groups (docs/federated.md): the share of a client's
    training samples whose class is *many* (head) or *few* (tail).
    """
    groups = class_groups(data.class_counts)
    head = np.zeros(data.num_classes, dtype=bool)
    head[groups["mass"]["many"]] = True
    tail = np.zeros(data.num_classes, dtype=bool)
    tail[groups["mass"]["few"]] = True
    clients = []
    test_counts = local_test_class_counts(data)
    for k, counts in enumerate(data.client_class_counts):
        size = int(counts.sum())
        clients.append(
            {
                "client": k,
                "size": size,
                "classes_present": int(np.count_nonzero(counts)),
                "head_share": float(counts[head].sum() / size) if size else 0.0,
                "tail_share": float(counts[tail].sum() / size) if size else 0.0,
                "local_test_size": len(data.client_test_indices[k]),
                "class_counts": [int(v) for v in counts],
                "test_class_counts": [int(v) for v in test_counts[k]],
            }
        )
    sizes = data.client_class_counts.sum(axis=1)
    return {
        "num_clients": data.num_clients,
        "num_classes": data.num_classes,
        "classes": list(data.train.classes),
        "num_train": len(data.train),
        "num_test": len(data.test),
        "class_counts": [int(v) for v in data.class_counts],
        "class_groups": groups,
        "empty_clients": list(data.empty_clients),
        "client_size": {
            "min": int(sizes.min()),
            "median": float(np.median(sizes)),
            "max": int(sizes.max()),
        },
        "clients": clients,
    }


def partition_json(cfg: ExperimentConfig, data: FederatedData) -> str:
    """Deterministic text of ``partition.json``: the schema a run directory's
    ``partition.json`` has too (:mod:`fedlt.partition_file`)."""
    from fedlt.partition_file import partition_document, partition_text

    return partition_text(partition_document(cfg, data))


def _print_summary(stats: dict[str, Any], target: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Partition: {stats['num_clients']} clients, {stats['num_train']} samples")
    for column in ("client", "train", "classes", "head %", "tail %", "local test", ""):
        table.add_column(column, justify="right")
    for row in stats["clients"][:MAX_TABLE_ROWS]:
        table.add_row(
            str(row["client"]),
            str(row["size"]),
            str(row["classes_present"]),
            f"{100 * row['head_share']:.0f}",
            f"{100 * row['tail_share']:.0f}",
            str(row["local_test_size"]),
            "[red]empty[/]" if row["size"] == 0 else "",
        )
    console.print(table)
    hidden = stats["num_clients"] - MAX_TABLE_ROWS
    if hidden > 0:
        console.print(f"... {hidden} more clients (see stats.json)")
    groups = stats["class_groups"]["mass"]
    size = stats["client_size"]
    console.print(
        f"classes: {stats['num_classes']} (mass groups: {len(groups['many'])} head, "
        f"{len(groups['medium'])} middle, {len(groups['few'])} tail); "
        f"client size min/median/max: {size['min']}/{size['median']:g}/{size['max']}; "
        f"test images: {stats['num_test']}"
    )
    empty = stats["empty_clients"]
    if empty:
        console.print(f"[yellow]empty clients ({len(empty)}):[/] {empty}")
    console.print(f"wrote {target}/partition.json, stats.json, heatmap.png")


def _write_outputs(target: Path, cfg: ExperimentConfig, data: FederatedData, stats: dict) -> None:
    """Write the three files into a temp folder beside ``target``, then rename it."""
    created = []
    for parent in reversed(target.parents):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        (tmp / "partition.json").write_text(partition_json(cfg, data))
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
        save_heatmap(
            tmp / "heatmap.png",
            data.client_class_counts,
            f"{cfg.name}: {data.num_clients} clients × {data.num_classes} classes "
            f"(seed {cfg.seed})",
        )
        tmp.chmod(0o755)  # mkdtemp makes it private
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def partition_command(config_path: str | None, overrides: list[str], out: str | None) -> int:
    """Build, summarise and save the partition described by a config; return an exit code.

    ``config_path`` None uses the embedded ``simulations/default.yaml``; ``out`` None uses
    ``partitions/<name>-seed<seed>``. Errors are printed (naming the key or file) and give
    exit code 2, with nothing written.
    """
    from rich.console import Console
    from rich.markup import escape

    try:
        cfg = load_config(config_path, overrides)
        target = Path(out) if out else default_output_dir(cfg)
        if target.exists():
            raise ConfigError(
                "--out", f"{target} already exists; refusing to overwrite it (remove it first)"
            )
        data = build_federated_data(cfg.data, cfg.seed)
        stats = partition_stats(data)
        _write_outputs(target, cfg, data, stats)
    except FedltError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(str(exc))}")
        return 2
    _print_summary(stats, target)
    return 0

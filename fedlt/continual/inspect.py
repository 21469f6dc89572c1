"""``fedlt stream CONFIG``: show and save the Si-Blurry stream a config would produce.

Prints one row per task (disjoint and blurry classes, samples, samples scattered in from
other tasks' blurry classes) and writes, into a new folder (never over an existing one;
written in a temporary sibling folder and renamed, so an error leaves nothing behind):

- ``stream.json``: classes, sizes, per-class counts and the ordered sample indices per task;
- ``stream.png``: which class (y, in first-seen order; tick labels are the class ids when
  there are at most 40) appears at which stream position (x), task boundaries dashed.

For a federated continual config (docs/federated_continual.md) every client has its own
stream: without ``--client`` one row per client (stream length, task sizes, empty tasks,
samples per round, participations needed) and ``streams.json``; with ``--client K`` client
K's stream as above (its indices are positions in the client's partition).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fedlt.continual.stream import Stream
from fedlt.errors import RunError
from fedlt.plots.continual import plot_stream


def _class_list(classes: list[int], limit: int = 12) -> str:
    if not classes:
        return "-"
    shown = ", ".join(str(c) for c in classes[:limit])
    return f"({len(classes)}) {shown}" + (", …" if len(classes) > limit else "")


def stream_table(stream: Stream, labels: np.ndarray, title: str = "") -> Any:
    """A rich Table: per task its classes, size and scattered (foreign blurry) samples."""
    from rich.table import Table

    table = Table(title=title or None)
    for name in (
        "task",
        "disjoint classes",
        "blurry classes",
        "samples",
        "scattered in",
        "classes",
    ):
        table.add_column(
            name,
            justify="right" if name in ("task", "samples", "scattered in", "classes") else "left",
        )
    for k, task in enumerate(stream.tasks):
        present = labels[task.indices]
        own = set(task.disjoint_classes) | set(task.blurry_classes)
        foreign = int((~np.isin(present, list(own))).sum()) if len(present) else 0
        table.add_row(
            str(k),
            _class_list(task.disjoint_classes),
            _class_list(task.blurry_classes),
            str(len(task)),
            str(foreign),
            str(len(np.unique(present))),
        )
    table.add_row("all", "", "", str(len(stream)), "", str(len(np.unique(labels))))
    return table


def write_stream_folder(stream: Stream, labels: np.ndarray, out: Path, title: str = "") -> Path:
    """Write ``stream.json`` and ``stream.png`` into the new folder ``out`` atomically."""
    from fedlt.runs import atomic_write_text, dumps

    def write(tmp: Path) -> None:
        atomic_write_text(tmp / "stream.json", dumps(stream.to_json(labels)))
        plot_stream(stream, labels, tmp / "stream.png", title)

    return _write_new_folder(Path(out), write)


def _write_new_folder(out: Path, write: Any) -> Path:
    """``write(tmp)`` into a temporary sibling folder, renamed to the new folder ``out``."""
    if out.exists():
        raise RunError(f"{out} already exists; not overwriting it (choose another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def stream_command(
    config_path: str | None, overrides: list[str], out: str | None, client: int | None = None
) -> int:
    """Build the stream of a config, print it, and save it under ``out`` (default
    ``streams/<name>-seed<seed>``, as the CLI says). Returns the exit code (0)."""
    from rich.console import Console

    from fedlt.config import load_config
    from fedlt.continual.engine import build_stream, load_stream_data

    cfg = load_config(config_path, overrides)
    if cfg.engine == "federated_continual":
        return client_streams_command(cfg, out, client)
    if client is not None:
        from fedlt.errors import ConfigError

        raise ConfigError(
            "--client",
            f"applies to engine federated_continual (one stream per client); this config's "
            f"engine is {cfg.engine}",
        )
    splits = load_stream_data(cfg)
    stream = build_stream(cfg, splits)
    labels = np.asarray(splits.train.labels)
    title = (
        f"{cfg.stream.scenario} · {splits.name} · K={cfg.stream.num_tasks} "
        f"N={cfg.stream.disjoint_percent} M={cfg.stream.blurry_percent} · seed {stream.seed}"
    )
    console = Console()
    console.print(stream_table(stream, labels, title))
    folder = Path(out) if out else Path("streams") / f"{cfg.name}-seed{stream.seed}"
    write_stream_folder(stream, labels, folder, title)
    console.print(f"wrote {folder / 'stream.json'} and {folder / 'stream.png'}")
    return 0


def client_streams_command(cfg: Any, out: str | None, client: int | None) -> int:
    """``fedlt stream`` for a federated continual config (see the module docstring)."""
    from rich.console import Console
    from rich.table import Table

    from fedlt.data.federated import build_federated_data
    from fedlt.errors import ConfigError
    from fedlt.federated_continual.streams import ClientStreams
    from fedlt.runs import atomic_write_text, dumps

    data = build_federated_data(cfg.data, cfg.seed)
    f = cfg.federated
    streams = ClientStreams(
        data.train.labels,
        data.client_indices,
        cfg.stream,
        cfg.seed,
        data.num_classes,
        f.rounds,
        f.participation,
    )
    console = Console()
    base = Path("streams") / f"{cfg.name}-seed{cfg.seed}"
    if client is not None:
        if not 0 <= client < streams.num_clients:
            raise ConfigError(
                "--client", f"must lie in [0, {streams.num_clients - 1}], got {client}"
            )
        stream = streams.stream(client)
        labels = np.asarray(data.train.labels)[data.client_indices[client]]
        title = (
            f"client {client} · {cfg.stream.scenario} · K={cfg.stream.num_tasks} "
            f"N={cfg.stream.disjoint_percent} M={cfg.stream.blurry_percent} · "
            f"task_sync {cfg.stream.task_sync} · stream seed {streams.client_seed(client)}"
        )
        console.print(stream_table(stream, labels, title))
        folder = Path(out) if out else base.with_name(f"{base.name}-client{client}")
        write_stream_folder(stream, labels, folder, title)
        console.print(f"wrote {folder / 'stream.json'} and {folder / 'stream.png'}")
        return 0
    document = streams.describe()
    table = Table(
        title=f"{cfg.name}: {streams.num_clients} client streams · task_sync "
        f"{cfg.stream.task_sync} · K={cfg.stream.num_tasks}"
    )
    for name in ("client", "samples", "task sizes", "empty tasks", "per round", "rounds needed"):
        table.add_column(name, justify="left" if name in ("task sizes", "empty tasks") else "right")
    for key, entry in document["clients"].items():
        table.add_row(
            key,
            str(entry["length"]),
            " ".join(str(n) for n in entry["task_sizes"]),
            " ".join(str(t) for t in entry["empty_tasks"]) or "-",
            str(entry["samples_per_round"]),
            str(entry["participations_needed"]),
        )
    console.print(table)
    folder = Path(out) if out else base
    _write_new_folder(folder, lambda tmp: atomic_write_text(tmp / "streams.json", dumps(document)))
    console.print(f"wrote {folder / 'streams.json'}; one client's stream: --client K")
    return 0

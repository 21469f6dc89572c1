"""Run directories: resolved config, metrics log, checkpoints, summary, figures.

Layout of ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>[-N]/``::

    config.yaml        the resolved experiment config (what ran)
    status.json        {"status": "running" | "complete" | "failed", ...}
    metrics.jsonl      one JSON object per round (federated) or per evaluation (stream)
    checkpoints/       step-<k>.pt: everything needed for an exact resume
    summary.json       headline numbers, written last
    figures/           PNG plots

A run never reuses a directory. Every file is written atomically (temporary file, fsync,
rename), so a killed run leaves either the old or the new version, never half a file. A
checkpoint records the byte length of ``metrics.jsonl`` at that moment; resuming truncates the
log back to it, which is what makes a resumed ``metrics.jsonl`` byte-identical to an
uninterrupted one.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from fedlt.config import ExperimentConfig, resolve
from fedlt.errors import RunError

CHECKPOINTS_KEPT = 2


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, default=_json_default)


class RunDirectory:
    """One experiment's output folder (see the module docstring for the layout)."""

    def __init__(self, path: Path, config: ExperimentConfig) -> None:
        self.path = Path(path)
        self.config = config
        self._tensorboard = None

    # -- creation -------------------------------------------------------------------
    @classmethod
    def create(cls, config: ExperimentConfig, path: str | Path | None = None) -> RunDirectory:
        """Make a fresh directory (never an existing one) and write the resolved config."""
        if path is not None:
            target = Path(path)
            try:
                target.mkdir(parents=True, exist_ok=False)
            except FileExistsError as exc:
                raise RunError(
                    f"run directory {target} already exists; not overwriting it"
                ) from exc
        else:
            root = Path(config.output_dir)
            root.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = f"{config.name}-{stamp}"
            for n in range(1, 10_000):
                target = root / (base if n == 1 else f"{base}-{n}")
                try:
                    target.mkdir(exist_ok=False)
                    break
                except FileExistsError:
                    continue
            else:  # pragma: no cover - 10,000 runs in one second
                raise RunError(f"cannot find a free run directory name under {root}")
        run = cls(target, config)
        atomic_write_text(target / "config.yaml", config.to_yaml())
        run._write_status({"status": "running", "started": time.time()})
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """An existing run (for resume or report); its config is re-validated."""
        path = Path(path)
        config_file = path / "config.yaml"
        if not config_file.is_file():
            raise RunError(f"{path} is not a fedlt run directory (no config.yaml)")
        raw = yaml.safe_load(config_file.read_text()) or {}
        return cls(path, resolve(raw))

    # -- status ---------------------------------------------------------------------
    @property
    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"status": "unknown"}

    @property
    def is_complete(self) -> bool:
        return self.status.get("status") == "complete" and (self.path / "summary.json").is_file()

    def _write_status(self, status: dict[str, Any]) -> None:
        atomic_write_text(self.path / "status.json", dumps(status))

    def mark_failed(self, message: str) -> None:
        self._write_status({"status": "failed", "error": message, "time": time.time()})

    # -- metrics --------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line to metrics.jsonl (flushed and fsynced)."""
        line = dumps(record, indent=None) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        if self.config.logging.tensorboard:
            self._log_tensorboard(record)

    def _log_tensorboard(self, record: dict[str, Any]) -> None:
        """Mirror a metrics record into TensorBoard event files under ``<run>/tensorboard``
        (step: ``round`` for federated runs, ``samples_seen`` for streams)."""
        if self._tensorboard is None:
            from fedlt.tblog import TensorBoardLogger

            self._tensorboard = TensorBoardLogger(self.path / "tensorboard")
        step = record.get("round", record.get("samples_seen", 0))
        self._tensorboard.log(record, int(step))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def _metrics_size(self) -> int:
        return self.metrics_path.stat().st_size if self.metrics_path.is_file() else 0

    # -- checkpoints ----------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of the checkpoints present, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for p in self.checkpoint_dir.glob("step-*.pt"):
            try:
                found.append((int(p.stem.split("-", 1)[1]), p))
            except ValueError:
                continue
        return sorted(found)

    def save_checkpoint(self, state: dict[str, Any], step: int) -> Path:
        """Atomically save ``state`` as step ``step``; keep the newest two."""
        payload = {"step": step, "metrics_bytes": self._metrics_size(), "state": state}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path = self.checkpoint_dir / f"step-{step}.pt"
        atomic_write_bytes(path, buffer.getvalue())
        for _, old in self.checkpoints()[:-CHECKPOINTS_KEPT]:
            old.unlink(missing_ok=True)
        return path

    def load_checkpoint(self) -> tuple[dict[str, Any], int] | None:
        """Latest checkpoint's (state, step), truncating metrics.jsonl back to it; None if none."""
        found = self.checkpoints()
        if not found:
            return None
        step, path = found[-1]
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a corrupt file cannot happen with atomic writes, but say so
            raise RunError(f"cannot read checkpoint {path}: {exc}") from exc
        size = int(payload["metrics_bytes"])
        if self.metrics_path.is_file() and self.metrics_path.stat().st_size > size:
            with open(self.metrics_path, "r+b") as fh:
                fh.truncate(size)
        self._write_status({"status": "running", "resumed_from": step, "time": time.time()})
        return payload["state"], int(payload["step"])

    # -- outputs --------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, dumps(obj))
        return path

    def write_summary(self, summary: dict[str, Any]) -> Path:
        path = self.write_json("summary.json", summary)
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        self._write_status({"status": "complete", "time": time.time()})
        return path

    def read_summary(self) -> dict[str, Any] | None:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def figure_path(self, name: str) -> Path:
        folder = self.path / "figures"
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.png"

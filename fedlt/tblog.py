"""Metric sinks: TensorBoard, MLflow and Weights & Biases (docs/tracking.md).

Each sink implements :class:`fedlt.runs.MetricSink` and is chosen with ``logging.sinks``.
Every numeric value of a metrics record becomes one scalar at the record's step (round for
federated runs, samples seen for stream runs); booleans, strings, lists and non-finite
values are left out. TensorBoard groups dotted keys with ``/`` (``generic.global.top1``
shows up as ``generic/global/top1``); MLflow keeps the dots. MLflow also receives the
resolved config as params (flattened dotted keys), W&B as its run config.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedlt.errors import ConfigError

if TYPE_CHECKING:
    from fedlt.runs import SinkContext

RUN_STATUS = {"complete": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
"""MLflow run status for fedlt's final run states."""


def numeric_items(
    record: Mapping[str, Any], prefix: str = "", separator: str = "/"
) -> Iterator[tuple[str, float]]:
    """(tag, value) for every finite number in ``record``, nested mappings included; nested
    keys and the dots of dotted keys are joined with ``separator``."""
    for key, value in record.items():
        tag = f"{prefix}{separator}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from numeric_items(value, tag, separator)
            continue
        if isinstance(value, bool):
            continue
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
            value = value.item()
        if isinstance(value, (int, float)) and math.isfinite(value):
            yield tag.replace(".", separator), float(value)


def flatten_config(node: Any, prefix: str = "") -> dict[str, str]:
    """A nested config mapping as ``{"data.partition.alpha": "0.5", ...}``: strings as they
    are, everything else (numbers, booleans, null, lists, empty mappings) as JSON."""
    if isinstance(node, Mapping) and node:
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node if isinstance(node, str) else json.dumps(node, default=str)}


def import_optional(module: str, sink: str, extra: str) -> Any:
    """Import ``module`` for the ``sink`` sink, or raise ConfigError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            "logging.sinks",
            f"the {sink} sink needs the {module} package, which is not installed; install it "
            f"with `pip install 'fedlt[{extra}]'` (or remove {sink!r} from logging.sinks)",
        ) from exc


class TensorBoardLogger:
    """Write metrics records as TensorBoard scalars under ``log_dir``.

    >>> logger = TensorBoardLogger(run_dir / "tensorboard")
    >>> logger.log({"round": 3, "generic.global.top1": 0.71}, step=3)
    >>> logger.close()
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError(
                "logging.tensorboard",
                "needs the tensorboard package, which is not installed; install it with "
                "`pip install fedlt[tensorboard]` (or set logging.tensorboard: false)",
            ) from exc
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def log(self, record: Mapping[str, Any], step: int) -> int:
        """Write every numeric value of ``record`` at ``step``; return how many were written."""
        written = 0
        for tag, value in numeric_items(record):
            self._writer.add_scalar(tag, value, global_step=int(step))
            written += 1
        self._writer.flush()
        return written

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- sinks
class TensorBoardSink:
    """``logging.sinks: [tensorboard]``: event files under ``<run>/tensorboard``."""

    name = "tensorboard"

    def __init__(self, context: SinkContext) -> None:
        self._logger = TensorBoardLogger(context.run_path / "tensorboard")

    def log(self, record: Mapping[str, Any], step: int) -> None:
        self._logger.log(record, step)

    def close(self, status: str) -> None:
        self._logger.close()


def default_mlflow_uri(output_dir: str | Path) -> str:
    """``sqlite:///<output_dir>/mlflow.db`` (absolute): one store for all runs of a folder."""
    return f"sqlite:///{Path(output_dir).expanduser().resolve() / 'mlflow.db'}"


MLFLOW_KEY = re.compile(r"[^\w\-. /:]")


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MLflowSink:
    """``logging.sinks: [mlflow]``: one MLflow run per fedlt run.

    Tracking store ``logging.mlflow_uri`` (default :func:`default_mlflow_uri`, a local
    SQLite file: no server), experiment ``logging.mlflow_experiment``, run name = the run
    folder's name. The resolved config goes in as params, each metrics record as metrics
    at ``step``. A resumed run continues the same MLflow run (its id is kept in
    ``<run>/sinks.json``).
    """

    name = "mlflow"

    def __init__(self, context: SinkContext) -> None:
        import_optional("mlflow", self.name, "mlflow")
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow.store.db.utils", "alembic"):  # table set-up chatter
            logging.getLogger(noisy).setLevel(logging.WARNING)
        config = context.config
        default_store = config.logging.mlflow_uri is None
        self.uri = config.logging.mlflow_uri or default_mlflow_uri(config.output_dir)
        self.client = MlflowClient(tracking_uri=self.uri)
        state = context.state
        if state.get("tracking_uri") == self.uri and state.get("run_id"):
            self.run_id = str(state["run_id"])
            self.client.update_run(self.run_id, status="RUNNING")
            return
        artifacts = (
            (Path(config.output_dir).expanduser().resolve() / "mlartifacts").as_uri()
            if default_store
            else None
        )
        experiment = self._experiment(config.logging.mlflow_experiment, artifacts)
        tags = {"fedlt.run_dir": str(context.run_path.resolve()), "fedlt.engine": config.engine}
        run = self.client.create_run(experiment, run_name=context.run_path.name, tags=tags)
        self.run_id = run.info.run_id
        state.update(tracking_uri=self.uri, run_id=self.run_id)
        self._log_params(flatten_config(config.to_dict()))

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        """The id of experiment ``name``, created if missing (a concurrent creation by
        another run of a sweep is tolerated)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location)
        except Exception:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        entries = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
        for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def log(self, record: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        now = int(time.time() * 1000)
        metrics = [
            Metric(MLFLOW_KEY.sub("_", key), value, now, int(step))
            for key, value in numeric_items(record, separator=".")
        ]
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=chunk)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=RUN_STATUS.get(status, "FINISHED"))


class WandbSink:
    """``logging.sinks: [wandb]``: a Weights & Biases run, offline by default
    (``logging.wandb_mode``; files under ``<run>/wandb``, ``wandb sync`` uploads them).
    Project ``logging.wandb_project``, run name = the run folder's name, config = the
    resolved config. A resumed run continues the same W&B run."""

    name = "wandb"

    def __init__(self, context: SinkContext) -> None:
        wandb = import_optional("wandb", self.name, "wandb")
        config = context.config
        resume_id = context.state.get("run_id")
        self.run = wandb.init(
            project=config.logging.wandb_project,
            name=context.run_path.name,
            dir=str(context.run_path),
            config=config.to_dict(),
            mode=config.logging.wandb_mode,
            id=str(resume_id) if resume_id else None,
            resume="allow" if resume_id else None,
        )
        context.state["run_id"] = self.run.id

    def log(self, record: Mapping[str, Any], step: int) -> None:
        self.run.log(dict(numeric_items(record)), step=int(step))

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "complete" else 1)

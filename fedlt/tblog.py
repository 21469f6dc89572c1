"""Optional TensorBoard event files for a run (``logging.tensorboard: true``).

Every numeric value of a metrics record becomes one scalar at the record's step (round for
federated runs, samples seen for stream runs). Dotted keys become TensorBoard's ``/``
groups, so ``generic.global.top1`` shows up as ``generic/global/top1``; nested mappings are
flattened the same way. Booleans, strings, lists and non-finite values are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fedlt.errors import ConfigError


def numeric_items(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every finite number in ``record``, nested mappings included."""
    for key, value in record.items():
        tag = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from numeric_items(value, tag)
            continue
        if isinstance(value, bool):
            continue
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
            value = value.item()
        if isinstance(value, (int, float)) and math.isfinite(value):
            yield tag.replace(".", "/"), float(value)


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

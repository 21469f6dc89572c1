"""fedlt: federated long-tailed learning and online continual learning on blurry streams.

The Python API (docs/api.md): :func:`run`, :func:`resume`, :func:`load_run`,
:func:`load_config`, :func:`sweep` and :func:`report`. ``import fedlt`` loads neither
torch nor Flower; they are imported when a function needs them.
"""

from fedlt.api import (
    ReportResult,
    RunResult,
    SweepResult,
    load_config,
    load_run,
    report,
    resume,
    run,
    sweep,
)
from fedlt.errors import ConfigError, DataError

__version__ = "0.1.0"
__all__ = [
    "ConfigError",
    "DataError",
    "ReportResult",
    "RunResult",
    "SweepResult",
    "__version__",
    "load_config",
    "load_run",
    "report",
    "resume",
    "run",
    "sweep",
]

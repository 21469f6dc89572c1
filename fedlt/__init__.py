"""fedlt: federated long-tailed learning and online continual learning on blurry streams."""

from fedlt.errors import ConfigError, DataError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "__version__"]

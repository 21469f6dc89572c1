"""Exceptions whose messages name the offending config key, file or input."""

from __future__ import annotations


class FedltError(Exception):
    """Base class for every error fedlt raises on purpose (shown without a traceback)."""


class ConfigError(FedltError, ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range.

    ``key`` is the dotted path of the offending key (``data.partition.alpha``).
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}" if key else message)


class DataError(FedltError, ValueError):
    """A data file or folder is missing, corrupt or not in the expected layout."""


class PartitionError(FedltError, ValueError):
    """A partition (built-in, from a file, or from a custom callable) is invalid."""


class RunError(FedltError, RuntimeError):
    """A run cannot start, continue or resume (e.g. too many client failures)."""


class RunInterrupted(FedltError):
    """The run was stopped by a signal (Ctrl-C / SIGINT, SIGTERM) after writing a resumable
    checkpoint. ``exit_code`` follows the shell convention 128 + signal number (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message)


class PluginError(FedltError, RuntimeError):
    """A user plug-in (``package.module:callable``) raised; the message names the plug-in:
    ``partitioner 'mypkg.parts:skewed' raised ZeroDivisionError: division by zero``."""

"""Stopping a run on request: SIGINT (Ctrl-C) and SIGTERM become a flag the round loop reads.

The engine checks the flag between clients and while it waits for replies; when it is set
the engine saves a resumable checkpoint of the last finished round, marks the run
"interrupted" and raises :class:`~fedlt.errors.RunInterrupted` (exit status 128 + signal).
A second Ctrl-C while stopping raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequest:
    """A thread-safe "please stop" flag that remembers which signal asked."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = int(signum)
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as a stop is requested."""
        return self._event.wait(timeout)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "request"


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to ``stop`` while the block runs (main thread only;
    elsewhere, e.g. inside a Ray task, the handlers stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: do not wait for the clean stop
        stop.request(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

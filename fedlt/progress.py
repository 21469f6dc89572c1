"""One progress display per run (rich), silent when disabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class _Silent:
    """The progress display of a disabled bar: every update is dropped."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


class Bar:
    """A progress bar with a free-text status (e.g. ``round 3 · acc 71.2%``)."""

    def __init__(self, progress: Progress | _Silent, task: Any) -> None:
        self._progress = progress
        self._task = task

    def update(self, completed: float | None = None, status: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if completed is not None:
            kwargs["completed"] = completed
        if status is not None:
            kwargs["status"] = status
        self._progress.update(self._task, **kwargs)


@contextmanager
def progress_bar(
    description: str, total: float, enabled: bool = True, start: float = 0
) -> Iterator[Bar]:
    """Context manager yielding a :class:`Bar`; a no-op bar when ``enabled`` is false."""
    if not enabled:
        yield Bar(_Silent(), None)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=start, status="")
        yield Bar(progress, task)

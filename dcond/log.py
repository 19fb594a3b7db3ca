"""Progress and messages for people, always on stderr so that stdout stays machine-readable.

On a terminal this draws Rich progress bars; otherwise (a pipe, a CI log) it prints plain lines,
at most one every few seconds per task plus one when the task ends.
"""

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, highlight=False)
PLAIN_INTERVAL_S = 5.0

_prefix = ""
_live: Progress | None = None  # one display at a time: nested tasks join it


def set_prefix(text: str) -> None:
    """Tag every later line (for example with a process rank)."""
    global _prefix
    _prefix = text


def prefix() -> str:
    return _prefix


def info(message: str) -> None:
    if console.is_terminal:
        console.print(f"{_prefix}{message}", markup=False)
    else:
        print(f"{_prefix}{message}", file=sys.stderr, flush=True)


class Task:
    """One counted unit of work; `advance` moves it on and may carry a short status text."""

    def __init__(self, description: str, total: int, bar: Progress | None):
        self.description, self.total, self.done = description, total, 0
        self._bar = bar
        self._id = bar.add_task(description, total=total, status="") if bar else None
        self._last_line = time.monotonic()

    def advance(self, n: int = 1, status: str = "") -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._id, advance=n, status=status)
            return
        now = time.monotonic()
        if self.done >= self.total or now - self._last_line >= PLAIN_INTERVAL_S:
            self._last_line = now
            info(f"{self.description}: {self.done}/{self.total} {status}".rstrip())


@contextmanager
def progress(description: str, total: int) -> Iterator[Task]:
    """A counted task: a bar on a terminal (inner tasks join the outer one's display), else plain lines."""
    global _live
    if not console.is_terminal:
        yield Task(description, total, None)
        return
    if _live is not None:
        task = Task(description, total, _live)
        try:
            yield task
        finally:
            _live.remove_task(task._id)
        return
    columns = (TextColumn(_prefix + "{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as bar:
        _live = bar
        try:
            yield Task(description, total, bar)
        finally:
            _live = None

"""Progress of a long command on stderr: rich's bar on a terminal, a line now and then otherwise.

On a terminal the bar shows the share of bytes read, the rate, the time left and the lines
read so far; a message (a bad line) is printed above it. Elsewhere (a log, a pipe) a line
every `every` lines says how many were read, how fast, the share of the bytes, the time left.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as _Bar


class Progress:
    """Progress on `stream` (stderr): a bar on a terminal, a line every `every` lines otherwise.

    Use it as a context manager: the bar is drawn from entry to exit.
    """

    def __init__(self, total_bytes: int, stream: TextIO | None = None, every: int = 100_000):
        self.stream = stream or sys.stderr
        self.every = every
        self.tty = self.stream.isatty()
        self._total = max(total_bytes, 1)
        self._started = time.monotonic()
        self._next_line = every
        self._bar: _Bar | None = None
        if self.tty:
            self._bar = _Bar(
                TextColumn("reading"),
                BarColumn(),
                TaskProgressColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[lines]:,} lines"),
                console=Console(file=self.stream, force_terminal=True),
            )
            self._task = self._bar.add_task("reading", total=max(total_bytes, 1), lines=0)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, lines: int, done_bytes: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done_bytes, lines=lines)
        elif lines >= self._next_line:
            self._next_line += self.every
            elapsed = max(time.monotonic() - self._started, 1e-6)
            share = min(done_bytes / self._total, 1.0)
            # the time left from the share of the bytes read, at the rate so far
            left = elapsed * (1 - share) / share if share else 0.0
            self.stream.write(
                f"read {lines:,} lines ({lines / elapsed:,.0f} lines/s, {share:.0%}, "
                f"~{left:,.0f} s left)\n"
            )
            self.stream.flush()

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

"""Progress of a long command on stderr: a bar on a terminal, a line now and then otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Progress on stderr: a bar on a terminal, a line every `every` lines otherwise."""

    def __init__(self, total_bytes: int, stream: TextIO | None = None, every: int = 100_000):
        self.stream = stream or sys.stderr
        self.total = max(total_bytes, 1)
        self.every = every
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._next_line = every

    def update(self, lines: int, done_bytes: int) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self._last < 0.1:
                return
            self._last = now
            fraction = min(done_bytes / self.total, 1.0)
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\rreading [{bar:<30}] {fraction:4.0%} {lines:,} lines")
            self.stream.flush()
        elif lines >= self._next_line:
            self._next_line += self.every
            self.stream.write(f"read {lines:,} lines\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()

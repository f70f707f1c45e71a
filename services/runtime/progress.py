"""Progress on long work, for people at a terminal and for logs alike.

At a terminal the line redraws in place; otherwise (CI, a log file) one line is
written every few seconds, so a long replay never looks stuck.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A bar over a known total (files, bytes) with free-form counters beside it."""

    def __init__(
        self, total: int, label: str, *, stream: TextIO | None = None, every_s: float = 5.0
    ):
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._tty = self.stream.isatty()

    def advance(self, step: int = 1, note: str = "") -> None:
        self.done += step
        now = time.monotonic()
        interval = 0.1 if self._tty else self.every_s
        if now - self._last >= interval or self.done >= self.total:
            self._last = now
            self._draw(note)

    def _draw(self, note: str) -> None:
        width = 24
        share = self.done / self.total if self.total else 1.0
        filled = int(width * min(share, 1.0))
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.monotonic() - self.started
        line = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s {note}"
        if self._tty:
            self.stream.write("\r" + line[:160].ljust(80))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

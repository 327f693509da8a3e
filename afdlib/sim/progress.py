"""A dependency-free progress bar for long runs, written to a terminal only."""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    """A one-line text progress bar.

    Parameters
    ----------
    total : int
        Number of units of work.
    stream : file-like, optional
        Where to draw (default: ``sys.stderr``).
    enabled : bool or None
        Draw at all; ``None`` (default) draws only if ``stream`` is a terminal, so pipes,
        files and notebooks stay clean.
    label : str
        Text before the bar.
    width : int
        Characters of the bar itself.
    """

    def __init__(self, total: int, *, stream=None, enabled: bool | None = None,
                 label: str = "", width: int = 30) -> None:
        self.total = max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.label = label
        self.width = width
        self.done = 0
        self._start = time.perf_counter()

    def update(self, n: int = 1, note: str = "") -> None:
        """Advance by ``n`` units and redraw (``note`` is shown after the counts)."""
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        filled = int(self.width * self.done / self.total)
        elapsed = time.perf_counter() - self._start
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label}[{bar}] {self.done}/{self.total} "
                          f"{elapsed:5.1f} s {note}".rstrip() + " ")
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""A dependency-free progress bar for long runs, written to a terminal only."""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "format_seconds", "progress_bar"]


def format_seconds(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"`` or ``"1 h 02 min"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 9.5 else f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressBar:
    """A one-line text progress bar with the time elapsed and an estimate of the rest.

    Parameters
    ----------
    total : int
        Number of units of work (e.g. steps).
    stream : file-like, optional
        Where to draw (default: ``sys.stderr``).
    enabled : bool or None
        Draw at all; ``None`` (default) draws only if ``stream`` is a terminal, so pipes,
        files and notebooks stay clean.
    label : str
        Text before the bar.
    width : int
        Characters of the bar itself.
    interval : float
        Least time between two redraws (s); the last one is always drawn.
    clock : callable
        Returns the time in seconds (default ``time.perf_counter``).

    Notes
    -----
    The estimate of the remaining time assumes the rate so far:
    ``elapsed * (total - done) / done``.
    """

    def __init__(self, total: int, *, stream=None, enabled: bool | None = None,
                 label: str = "", width: int = 30, interval: float = 0.1,
                 clock=time.perf_counter) -> None:
        self.total = max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.label = label
        self.width = width
        self.interval = interval
        self.clock = clock
        self.done = 0
        self._start = clock()
        self._drawn = None
        self._note = ""
        self._length = 0

    def line(self) -> str:
        """The text of the bar as it stands (without the carriage return)."""
        filled = int(self.width * self.done / self.total)
        elapsed = self.clock() - self._start
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"{self.label}[{bar}] {100 * self.done / self.total:3.0f}% "
                f"{self.done}/{self.total}, {format_seconds(elapsed)}")
        if 0 < self.done < self.total:
            text += f", about {format_seconds(elapsed * (self.total - self.done) / self.done)} left"
        return f"{text} {self._note}".rstrip()

    def update(self, n: int = 1, note: str = "") -> None:
        """Advance by ``n`` units and redraw (``note`` is shown after the counts)."""
        self.done = min(self.done + n, self.total)
        self._note = note
        if not self.enabled:
            return
        now = self.clock()
        if (self._drawn is not None and now - self._drawn < self.interval
                and self.done < self.total):
            return
        self._drawn = now
        text = self.line()
        # pad over the end of a longer line drawn before
        self.stream.write("\r" + text.ljust(self._length) + " ")
        self._length = len(text)
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


class _Shared:
    """A bar owned by a caller: updated, never closed, by the code it is passed to."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar

    def update(self, n: int = 1, note: str = "") -> None:
        self.bar.update(n, note)

    def __enter__(self) -> _Shared:
        return self

    def __exit__(self, *exc) -> None:
        return None


def progress_bar(progress, total: int, *, stream=None, label: str = ""):
    """The bar an engine draws: ``progress`` is True, None (on a terminal) or False, or a
    :class:`ProgressBar` of the caller's, which is then advanced (and not closed)."""
    if isinstance(progress, ProgressBar):
        return _Shared(progress)
    return ProgressBar(total, stream=stream, enabled=progress, label=label)

"""A progress bar for uploads, drawn on stderr.

:func:`format_progress` is the pure formula (bytes, %, MB/s, ETA); :class:`Progress` feeds it
from an injected clock and redraws at most every ``interval`` seconds, on a terminal only
(a log file gets just the final line).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from .tables import human_bytes

__all__ = ["format_progress", "format_eta", "Progress"]


def format_eta(seconds: float | None) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``; unknown -> ``"--:--"``."""
    if seconds is None or seconds < 0 or seconds != seconds or seconds > 99 * 3600:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_progress(done: int, total: int | None, elapsed: float, *, width: int = 24) -> str:
    """One line: ``[#####.....]  42.0%  42.0 MiB / 100.0 MiB  12.3 MB/s  ETA 0:04``.

    Rate is the average since the start (bytes / elapsed), in MB/s (10^6 bytes); ETA is the
    remaining bytes at that rate. ``total`` None (unknown size) draws no bar and no ETA.
    """
    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f"{rate / 1e6:6.1f} MB/s"
    if not total:
        return f"{human_bytes(done)}  {speed}"
    frac = min(max(done / total, 0.0), 1.0)
    filled = int(frac * width)
    bar = "#" * filled + "." * (width - filled)
    eta = (total - done) / rate if rate > 0 else None
    if done >= total:
        eta = 0.0
    return (f"[{bar}] {frac * 100:5.1f}%  {human_bytes(done)} / {human_bytes(total)}  "
            f"{speed}  ETA {format_eta(eta)}")


class Progress:
    """Counts bytes and redraws the line; ``finish()`` prints the last state and a newline."""

    def __init__(self, total: int | None, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, interval: float = 0.1,
                 live: bool | None = None, label: str = ""):
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.interval = interval
        self.live = self.stream.isatty() if live is None else live
        self.label = label
        self.started = clock()
        self._drawn_at: float | None = None
        self._finished = False

    def line(self) -> str:
        text = format_progress(self.done, self.total, self.clock() - self.started)
        return f"{self.label}{text}"

    def set(self, done: int) -> None:
        """Set the absolute count (resumable uploads move it back after a failed chunk)."""
        self.done = done
        self._maybe_draw()

    def advance(self, n: int) -> None:
        self.done += n
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        if not self.live:
            return
        now = self.clock()
        if self._drawn_at is not None and now - self._drawn_at < self.interval:
            return
        self._drawn_at = now
        self.stream.write("\r" + self.line() + "\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        prefix = "\r" if self.live else ""
        self.stream.write(prefix + self.line() + ("\x1b[K" if self.live else "") + "\n")
        self.stream.flush()

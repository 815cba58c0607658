"""A small thread-safe progress bar on stderr, for long commands (no dependency).

On a terminal it redraws one line (at most 10 times a second); in a log file it writes a line
only when a unit (a file) finishes, so logs stay readable.
"""
from __future__ import annotations

import sys
import threading
import time


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class ProgressBar:
    """Bytes done out of `total`, and units (files) done out of `units`."""

    def __init__(self, total: int, units: int, label: str = "", stream=None, min_interval: float = 0.1):
        self.total = max(int(total), 1)
        self.units = units
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval
        self.done = 0
        self.units_done = 0
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._lock = threading.Lock()
        self._closed = False

    def _line(self) -> str:
        el = time.perf_counter() - self._t0
        frac = min(self.done / self.total, 1.0)
        rate = self.done / el if el > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 and frac < 1 else 0.0
        width = 24
        fill = int(round(frac * width))
        return (f"{self.label}[{'#' * fill}{'.' * (width - fill)}] {frac:4.0%} "
                f"{human_bytes(self.done)}/{human_bytes(self.total)}, {self.units_done}/{self.units} files, "
                f"{human_bytes(rate)}/s, {el:.0f} s elapsed" + (f", ~{eta:.0f} s left" if eta else ""))

    def update(self, nbytes: int = 0, units: int = 0) -> None:
        with self._lock:
            if self._closed:
                return
            self.done += int(nbytes)
            self.units_done += units
            now = time.perf_counter()
            if self.tty:
                if units or now - self._last >= self.min_interval:
                    self._last = now
                    self.stream.write("\r" + self._line() + "\x1b[K")
                    self.stream.flush()
            elif units:
                self.stream.write(self._line() + "\n")
                self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.tty:
                self.stream.write("\r" + self._line() + "\x1b[K\n")
                self.stream.flush()

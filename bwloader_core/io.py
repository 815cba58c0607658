"""Reading byte ranges from bigWig files: positional reads with coalescing of neighbouring blocks."""
from __future__ import annotations

import os

import numpy as np

from .errors import BigWigFormatError


class LocalSource:
    """A local file read with os.pread (thread-safe, no shared file position; no mmap so a file
    truncated while open gives an error, not SIGBUS)."""

    def __init__(self, path):
        self.path = str(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise BigWigFormatError(self.path, f"cannot open: {exc.strerror}") from exc
        self.size = os.fstat(self._fd).st_size

    def pread(self, offset: int, size: int, what: str = "data") -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BigWigFormatError(
                self.path, f"{what} at offset {offset} (+{size} bytes) lies past the end of the file "
                f"({self.size} bytes): truncated or corrupt")
        if self._fd is None:
            raise ValueError(f"{self.path}: file is closed")
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as exc:
            raise BigWigFormatError(self.path, f"read of {what} failed: {exc.strerror}") from exc
        if len(data) != size:
            raise BigWigFormatError(
                self.path, f"short read of {what}: wanted {size} bytes at offset {offset}, got {len(data)} "
                "(file truncated while open?)")
        return data

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_source(path):
    """Open a byte source for a path (local files; remote URLs come through fsspec)."""
    return LocalSource(path)


def coalesce(offsets: np.ndarray, sizes: np.ndarray, max_gap: int = 4096, max_read: int = 8 << 20):
    """Group blocks (sorted by offset) into runs to read in one call.

    Returns (run_starts, run_ends, run_id_per_block) where blocks of one run lie within
    [run_start, run_end). A gap up to `max_gap` bytes is read through rather than split.
    """
    n = len(offsets)
    if n == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    ends = offsets + sizes
    gap = offsets[1:] - np.maximum.accumulate(ends)[:-1]
    new_run = np.empty(n, bool)
    new_run[0] = True
    new_run[1:] = gap > max_gap
    # split runs that grow too long (rare: only very large coalesced regions)
    run_id = np.cumsum(new_run) - 1
    run_first = np.flatnonzero(new_run)
    span = ends - offsets[run_first[run_id]]
    if span.max() > max_read:
        new_run[1:] |= (ends[1:] - offsets[run_first[run_id]][1:]) > max_read
        run_id = np.cumsum(new_run) - 1
        run_first = np.flatnonzero(new_run)
    run_starts = offsets[run_first]
    run_ends = np.maximum.reduceat(ends, run_first)
    return run_starts, run_ends, run_id


def read_blocks(source, offsets: np.ndarray, sizes: np.ndarray, max_gap: int = 4096) -> list:
    """Read blocks given by (offset, size), in the given order, with coalesced reads.

    Returns a list of memoryviews, one per block, in input order."""
    order = np.argsort(offsets, kind="stable")
    so, ss = offsets[order], sizes[order]
    run_starts, run_ends, run_id = coalesce(so, ss, max_gap=max_gap)
    runs = [memoryview(source.pread(int(a), int(b - a), "data block"))
            for a, b in zip(run_starts.tolist(), run_ends.tolist())]
    rel = (so - run_starts[run_id]).tolist()
    out = [None] * len(offsets)
    for k, (i, r, a, s) in enumerate(zip(order.tolist(), run_id.tolist(), rel, ss.tolist())):
        out[i] = runs[r][a:a + s]
    return out

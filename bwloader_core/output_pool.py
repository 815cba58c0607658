"""OutputPool: the memory of returned output arrays, used again once nothing refers to them.

A batch of 256 x 1,000 bp x 16 tracks is 16 MB of float32. Fresh memory costs a page fault and
the kernel zeroing each page on first touch: about 1.5 ms for those 16 MB, more than the fill of
an uncompressed batch itself. So outputs are handed out as arrays over pooled slabs: an array's
base is a small holder object, and when the array and every view of it (a torch tensor made by
`torch.from_numpy` holds the array) are gone, the holder's finaliser puts the slab back for the
next batch of the same size. Nothing is ever reused while anything can still read it.
"""
from __future__ import annotations

import threading

import numpy as np


class _Holder:
    """The base of a pooled array: exposes the slab's memory, returns it when collected."""

    def __init__(self, pool: "OutputPool", slab: np.ndarray, shape: tuple, dtype: np.dtype):
        self._pool = pool
        self._slab = slab
        self.__array_interface__ = dict(shape=tuple(shape), typestr=dtype.str, data=(slab.ctypes.data, False),
                                        version=3)

    def __del__(self):
        try:
            self._pool._give_back(self._slab)
        except Exception:       # interpreter shutdown: nothing to give back to
            pass


class OutputPool:
    """Pooled output arrays, thread-safe (arrays may die in any thread).

    `keep` slabs at most per size and `max_bytes` in all are kept for reuse; the rest are freed
    as usual. Slabs are exact sizes: a training run asks for the same shape batch after batch."""

    def __init__(self, keep: int = 4, max_bytes: int = 1 << 30):
        self.keep = int(keep)
        self.max_bytes = int(max_bytes)
        self._free: dict[int, list] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.reused = 0
        self.allocated = 0

    def empty(self, shape, dtype=np.float32) -> np.ndarray:
        """An uninitialised C-contiguous array, over a recycled slab when one of its size is free."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n == 0 or self.keep <= 0:
            return np.empty(shape, dtype)
        with self._lock:
            free = self._free.get(n)
            slab = free.pop() if free else None
            if slab is not None:
                self._bytes -= n
                self.reused += 1
            else:
                self.allocated += 1
        if slab is None:
            slab = np.empty(n, np.uint8)
        return np.asarray(_Holder(self, slab, tuple(int(s) for s in shape), dtype))

    def _give_back(self, slab: np.ndarray):
        n = slab.nbytes
        with self._lock:
            free = self._free.setdefault(n, [])
            if len(free) < self.keep and self._bytes + n <= self.max_bytes:
                free.append(slab)
                self._bytes += n

    def clear(self):
        with self._lock:
            self._free.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held for reuse now."""
        return self._bytes

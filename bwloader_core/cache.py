"""A bounded cache of decoded (inflated) data blocks, shared by every worker of a collection."""
from __future__ import annotations

import threading
from collections import OrderedDict


class BlockCache:
    """Least-recently-used cache of inflated blocks, bounded by bytes. Thread-safe.

    Keys are (file index, block index); values are what the fetcher stores (its placed words),
    counted at `size` bytes. `capacity_bytes=0` disables it (every lookup misses, nothing is
    stored)."""

    def __init__(self, capacity_bytes: int = 0):
        if capacity_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {capacity_bytes}")
        self.capacity = int(capacity_bytes)
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __bool__(self):
        return self.capacity > 0

    def get(self, key):
        with self._lock:
            v = self._data.get(key)
            if v is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return v[0]

    def put(self, key, value, size: int | None = None):
        n = len(value) if size is None else int(size)
        if n > self.capacity:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._data[key] = (value, n)
            self._bytes += n
            while self._bytes > self.capacity:
                _, (_, size_old) = self._data.popitem(last=False)
                self._bytes -= size_old

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self):
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"capacity_bytes": self.capacity, "bytes": self._bytes, "blocks": len(self._data),
                "hits": self.hits, "misses": self.misses, "hit_rate": self.hits / total if total else 0.0}

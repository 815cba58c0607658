"""The decoded-block cache: one arena of inflated blocks, shared by every worker of a collection.

Blocks are inflated straight into the arena (no copy) and searched where they lie there, by the
same kernels as any other block (the fetch stage's `Words` span the arena). The arena is a ring:
new blocks go after the newest, and the oldest are evicted to make room (first in, first out).
A block in use by a batch is *pinned* and never overwritten: an allocation that would overwrite
one fails, and that block is simply fetched into the batch's own buffer instead.

A block may be cached partially inflated (the prefix a batch needed, its item count patched to the
items kept, as the partial inflate leaves it); its entry records the largest key its items cover,
and a later batch that needs more treats it as a miss. So the first epoch inflates no more than
it would without a cache: with `cache_bytes` set, epoch 1 costs what no cache costs, and later
epochs skip the inflate for every block that stays cached.
"""
from __future__ import annotations

import mmap
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

WHOLE = np.iinfo(np.int64).max      # the covered key of a block inflated whole


@dataclass(eq=False)
class _Region:
    key: tuple
    start: int            # first word in the arena
    n_words: int
    nbytes: int = 0
    covered: int = 0      # largest file key whose items are all present (WHOLE: the whole block)
    pins: int = 0
    ready: bool = False   # inflated and checked (a pending region is not served)
    live: bool = True     # still the entry of its key


@dataclass(eq=False)
class Pins:
    """Regions a batch uses; `release()` (idempotent) lets them be evicted again."""
    cache: "BlockCache"
    regions: list = field(default_factory=list)

    def release(self):
        if self.regions:
            self.cache._unpin(self.regions)
            self.regions = []


class BlockCache:
    """An arena of `capacity_bytes` holding inflated blocks by key (file, block), thread-safe.

    `capacity_bytes=0` disables it (every lookup misses, nothing is stored). The arena is reserved
    as anonymous memory (transparent huge pages asked for where available, so filling it takes few
    page faults) when the first block is stored; memory is only used as blocks fill it."""

    def __init__(self, capacity_bytes: int = 0):
        if capacity_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {capacity_bytes}")
        self.capacity = int(capacity_bytes)
        self._words = self.capacity // 4
        self._lock = threading.Lock()
        self._map = None
        self._arena = None
        self._entries: dict = {}
        self._pending: dict = {}         # (key, start) -> region reserved but not yet committed
        self._ring: deque = deque()      # regions in allocation order (oldest first)
        self._head = 0
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.refused = 0                 # allocations refused because a pinned block was in the way

    def __bool__(self):
        return self.capacity > 0

    @property
    def arena(self) -> np.ndarray:
        """The arena's words (uint32), reserved on first use."""
        if self._arena is None:
            with self._lock:
                if self._arena is None:
                    self._map = mmap.mmap(-1, max(self._words, 1) * 4)
                    if hasattr(mmap, "MADV_HUGEPAGE"):
                        try:
                            self._map.madvise(mmap.MADV_HUGEPAGE)
                        except OSError:
                            pass
                    self._arena = np.frombuffer(self._map, np.uint32)
        return self._arena

    def lookup(self, keys, need_keys, pins: Pins):
        """Per key: (hit, first word, bytes). A hit is ready and covers its need key; hits are
        pinned into `pins`."""
        n = len(keys)
        hit = np.zeros(n, bool)
        start = np.zeros(n, np.int64)
        nbytes = np.zeros(n, np.int64)
        if not self.capacity or not n:
            self.misses += n
            return hit, start, nbytes
        with self._lock:
            for i, key in enumerate(keys):
                r = self._entries.get(key)
                if r is not None and r.ready and r.covered >= need_keys[i]:
                    r.pins += 1
                    pins.regions.append(r)
                    hit[i], start[i], nbytes[i] = True, r.start, r.nbytes
            n_hit = int(hit.sum())
            self.hits += n_hit
            self.misses += n - n_hit
        return hit, start, nbytes

    def reserve(self, keys, n_words, pins: Pins):
        """Arena regions for blocks about to be inflated: per key, its first word, or -1 where no
        room could be made without overwriting a pinned block (or the block is too big). Reserved
        regions are pinned and pending until `commit`."""
        out = np.full(len(keys), -1, np.int64)
        if not self.capacity:
            return out
        self.arena
        with self._lock:
            for i, key in enumerate(keys):
                r = self._allocate(key, int(n_words[i]))
                if r is None:
                    self.refused += 1
                    continue
                r.pins += 1
                pins.regions.append(r)
                out[i] = r.start
        return out

    def commit(self, keys, starts, nbytes, covered, ok):
        """Reserved regions filled: mark the good ones ready (with their bytes and covered key) and
        make them their key's entry; drop the others."""
        with self._lock:
            for i, key in enumerate(keys):
                if starts[i] < 0:
                    continue
                r = self._pending.pop((key, int(starts[i])), None)
                if r is None:
                    continue
                if not ok[i]:
                    r.live = False
                    continue
                r.ready, r.nbytes, r.covered = True, int(nbytes[i]), int(covered[i])
                old = self._entries.get(key)
                if old is not None:
                    old.live = False
                    self._bytes -= old.n_words * 4
                self._entries[key] = r
                self._bytes += r.n_words * 4

    def _allocate(self, key, n: int):
        if n <= 0 or n > self._words:
            return None
        start = self._head
        if start + n > self._words:                   # wrap: the tail of the arena first
            if not self._evict_from(start, self._words):
                return None
            start = 0
        if not self._evict_from(start, start + n):
            return None
        r = _Region(key, start, n)
        self._ring.append(r)
        self._pending[(key, start)] = r
        self._head = start + n
        return r

    def _evict_from(self, lo: int, hi: int) -> bool:
        """Evict the oldest regions lying in [lo, hi) of the arena; False if a pinned one is there."""
        ring = self._ring
        while ring and lo <= ring[0].start < hi:
            r = ring[0]
            if r.pins:
                return False
            ring.popleft()
            if r.live and self._entries.get(r.key) is r:
                del self._entries[r.key]
                self._bytes -= r.n_words * 4
            r.live = False
        return True

    def _unpin(self, regions):
        with self._lock:
            for r in regions:
                r.pins -= 1

    @property
    def nbytes(self) -> int:
        """Bytes of the arena held by cached blocks."""
        return self._bytes

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._ring.clear()
            self._pending.clear()
            self._head = 0
            self._bytes = 0
            self._arena = None
            if self._map is not None:
                try:
                    self._map.close()
                except BufferError:       # a batch still holds a view: the memory goes with it
                    pass
                self._map = None

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"capacity_bytes": self.capacity, "bytes": self._bytes, "blocks": len(self._entries),
                "hits": self.hits, "misses": self.misses, "hit_rate": self.hits / total if total else 0.0,
                "refused": self.refused}

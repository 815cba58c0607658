"""The decoded-block cache: one arena of inflated blocks, shared by every worker of a collection.

Blocks are inflated straight into the arena (no copy) and searched where they lie there, by the
same kernels as any other block (the fetch stage's `Words` span the arena). The arena is a ring:
new blocks go after the newest, and the oldest are evicted to make room (first in, first out).
A block in use by a batch is *pinned* and never overwritten: an allocation that would overwrite
one fails, and that block is simply fetched into the batch's own buffer instead.

A block may be cached partially inflated (the prefix a batch needed, its item count patched to the
items kept, as the partial inflate leaves it); its entry records the largest key its items cover,
and a later batch that needs more treats it as a miss. So the first epoch inflates no more than
it would without a cache, and later epochs skip the inflate for every block that stays cached.

Blocks are keyed by their `FlatIndex` id; lookups are vectorised (one array of region slots per
block id, made when the cache is first used: 4 bytes per block of the collection).
"""
from __future__ import annotations

import mmap
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numba import njit

WHOLE = np.iinfo(np.int64).max      # the covered key of a block inflated whole
_PENDING, _READY = 1, 2


@njit(nogil=True, cache=True)
def _unpin_slots(pins, slots):
    """np.subtract.at(pins, slots, 1), compiled (a slot may repeat)."""
    for i in range(slots.shape[0]):
        pins[slots[i]] -= 1


@njit(nogil=True, cache=True, inline="always")
def _serves(s, need, r_state, r_covered) -> bool:
    """Region slot s (-1: none) holds a ready block whose items reach key `need`: a hit. The one
    hit test, for both lookups."""
    return s >= 0 and r_state[s] == _READY and r_covered[s] >= need


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting in the loop (see stages.direct)
def _lookup_pin(blocks, need, slot_of_block, r_state, r_covered, r_start, r_nbytes, r_pins, hit, start, nbytes,
                covered, pinned):
    """Per block: a hit (`_serves`) is pinned (a block listed twice, twice) and its first word,
    bytes and covered key noted; a miss gets 0, 0, WHOLE. Returns the regions pinned (`pinned`)."""
    n_pinned = 0
    for i in range(blocks.shape[0]):
        s = np.int64(slot_of_block[blocks[i]])
        if _serves(s, need[i], r_state, r_covered):
            r_pins[s] += 1
            pinned[n_pinned] = s
            n_pinned += 1
            hit[i] = True
            start[i] = r_start[s]
            nbytes[i] = r_nbytes[s]
            covered[i] = r_covered[s]
        else:
            hit[i] = False
            start[i] = 0
            nbytes[i] = 0
            covered[i] = WHOLE
    return n_pinned


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting in the loop (see stages.direct)
def _pin_links(lo, n, key_lo, key_hi, block_end, slot_of_block, r_state, r_covered, r_start, r_nbytes, r_pins,
               link_first, link_word, link_nbytes, link_key_end, pinned):
    """Pin the region of every block of every pair (blocks lo[p]..lo[p] + n[p] - 1) and note
    where it lies; a block a pair does not reach gets word -1. Returns the regions pinned, or
    -1 (nothing left pinned) at the first block not cached, not ready, or not covering the pair."""
    n_pinned = 0
    for p in range(lo.shape[0]):
        k = link_first[p]
        for blk in range(lo[p], lo[p] + n[p]):
            if np.int64(block_end[blk]) <= key_lo[p]:
                link_word[k] = -1
            else:
                s = np.int64(slot_of_block[blk]) if blk < slot_of_block.shape[0] else np.int64(-1)
                if not _serves(s, key_hi[p], r_state, r_covered):
                    for i in range(n_pinned):
                        r_pins[pinned[i]] -= 1
                    return -1
                r_pins[s] += 1
                pinned[n_pinned] = s
                n_pinned += 1
                link_word[k] = r_start[s]
                link_nbytes[k] = r_nbytes[s]
                link_key_end[k] = min(np.int64(block_end[blk]), r_covered[s])
            k += 1
    return n_pinned


@dataclass(eq=False)
class Pins:
    """Region slots a batch uses; `release()` (idempotent) lets them be evicted again."""
    cache: "BlockCache"
    slots: list = field(default_factory=list)

    def release(self):
        if self.slots:
            self.cache._unpin(np.concatenate(self.slots))
            self.slots = []


class BlockCache:
    """An arena of `capacity_bytes` holding inflated blocks by FlatIndex block id, thread-safe.

    `capacity_bytes=0` disables it (every lookup misses, nothing is stored). The arena is reserved
    as private anonymous memory when the first block is stored; memory is only used as blocks
    fill it."""

    def __init__(self, capacity_bytes: int = 0):
        if capacity_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {capacity_bytes}")
        self.capacity = int(capacity_bytes)
        self._words = self.capacity // 4
        self._lock = threading.Lock()
        self._map = None
        self._arena = None
        self._slot_of_block = np.full(0, -1, np.int32)
        n = 1024                                         # region records, grown as needed
        self._r_block = np.zeros(n, np.int64)
        self._r_start = np.zeros(n, np.int64)
        self._r_words = np.zeros(n, np.int64)
        self._r_nbytes = np.zeros(n, np.int64)
        self._r_covered = np.zeros(n, np.int64)
        self._r_pins = np.zeros(n, np.int32)
        self._r_state = np.zeros(n, np.int8)
        self._free = list(range(n - 1, -1, -1))
        self._ring: deque = deque()      # region slots in allocation order (oldest first)
        self._head = 0
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.refused = 0                 # allocations refused because a pinned block was in the way

    def after_fork(self):
        """In a forked child: a fresh lock (another thread may have held the parent's at the fork)."""
        self._lock = threading.Lock()

    def __bool__(self):
        return self.capacity > 0

    @property
    def arena(self) -> np.ndarray:
        """The arena's words (uint32), reserved on first use."""
        if self._arena is None:
            with self._lock:
                if self._arena is None:
                    # private anonymous memory, not shared (shmem): faster to fill and to read here,
                    # and a forked worker writes its own copy of a page instead of the parent's
                    # blocks. No huge pages asked for: their faults (compaction, 2 MiB zeroed at a
                    # time) made the first epoch 25% slower than no cache, for no gain after it
                    self._map = mmap.mmap(-1, max(self._words, 1) * 4,
                                          flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                    self._arena = np.frombuffer(self._map, np.uint32)
        return self._arena

    def _ensure_blocks(self, max_block: int):
        if len(self._slot_of_block) <= max_block:
            grown = np.full(max(max_block + 1, 2 * len(self._slot_of_block)), -1, np.int32)
            grown[:len(self._slot_of_block)] = self._slot_of_block
            self._slot_of_block = grown

    def lookup(self, blocks, need_keys, pins: Pins, with_covered: bool = False):
        """Per block: (hit, first word, bytes), and with `with_covered` the largest key its kept
        items reach (WHOLE: all). A hit is ready and covers its need key; hits are pinned into
        `pins`. One compiled pass under the lock."""
        blocks = np.asarray(blocks, np.int64)
        n = len(blocks)
        if not self.capacity or not n:
            self.misses += n
            out = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int64)
            return (*out, np.full(n, WHOLE)) if with_covered else out
        need = np.broadcast_to(np.asarray(need_keys, np.int64), (n,))
        hit = np.empty(n, bool)
        start, nbytes, covered, pinned = (np.empty(n, np.int64) for _ in range(4))
        with self._lock:
            self._ensure_blocks(int(blocks.max()))
            got = _lookup_pin(blocks, need, self._slot_of_block, self._r_state, self._r_covered, self._r_start,
                              self._r_nbytes, self._r_pins, hit, start, nbytes, covered, pinned)
            if got:
                pins.slots.append(pinned[:got])
            self.hits += got
            self.misses += n - got
        return (hit, start, nbytes, covered) if with_covered else (hit, start, nbytes)

    def pin_links(self, lo, n, key_lo, key_hi, block_end, pins: Pins):
        """When every block that pairs need is a ready hit: pin them all (into `pins`) and return
        (link_first, word, bytes, largest key reached) per link, pair by pair (see
        `stages.direct.BlockPlace`); None, with nothing pinned or counted, otherwise. Each link
        counts as one hit. One compiled pass under the lock: no sort, no table."""
        if not self.capacity or self._arena is None:
            return None
        link_first = np.zeros(len(lo) + 1, np.int64)
        np.cumsum(n, out=link_first[1:])
        m = int(link_first[-1])
        word, nbytes, key_end = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
        pinned = np.empty(m, np.int64)
        with self._lock:
            got = _pin_links(lo, n, key_lo, key_hi, block_end, self._slot_of_block, self._r_state, self._r_covered,
                             self._r_start, self._r_nbytes, self._r_pins, link_first, word, nbytes, key_end, pinned)
            if got < 0:
                return None
            self.hits += got
        pins.slots.append(pinned[:got])
        return link_first, word, nbytes, key_end

    def reserve(self, blocks, n_words, pins: Pins):
        """Arena regions for blocks about to be inflated: per block, its first word, or -1 where no
        room could be made without overwriting a pinned block (or the block is too big). Reserved
        regions are pinned and pending until `commit`; returns (first words, region slots)."""
        n = len(blocks)
        out = np.full(n, -1, np.int64)
        slots = np.full(n, -1, np.int64)
        if not self.capacity or not n:
            return out, slots
        self.arena
        with self._lock:
            for i in range(n):
                r = self._allocate(int(blocks[i]), int(n_words[i]))   # pinned at once: a later
                if r < 0:                                             # block of the same batch
                    self.refused += 1                                 # must not evict it
                    continue
                out[i], slots[i] = self._r_start[r], r
            got = slots[slots >= 0]
            if len(got):
                pins.slots.append(got)
        return out, slots

    def commit(self, slots, nbytes, covered, ok):
        """Reserved regions filled: the good ones become their block's entry (with their bytes and
        covered key), replacing an older one; the others are dropped."""
        with self._lock:
            for i in np.flatnonzero(slots >= 0).tolist():
                r = int(slots[i])
                b = int(self._r_block[r])
                if not ok[i]:
                    self._r_state[r] = 0
                    continue
                self._r_state[r] = _READY
                self._r_nbytes[r] = nbytes[i]
                self._r_covered[r] = covered[i]
                old = int(self._slot_of_block[b])
                if old >= 0:                 # replaced: unreachable now, evicted in its turn
                    self._bytes -= int(self._r_words[old]) * 4
                self._slot_of_block[b] = r
                self._bytes += int(self._r_words[r]) * 4

    def _allocate(self, block: int, n: int) -> int:
        if n <= 0 or n > self._words:
            return -1
        start = self._head
        if start + n > self._words:                   # wrap: the tail of the arena first
            if not self._evict_from(start, self._words):
                return -1
            start = 0
        if not self._evict_from(start, start + n):
            return -1
        if not self._free:
            self._grow()
        r = self._free.pop()
        self._r_block[r], self._r_start[r], self._r_words[r] = block, start, n
        self._r_nbytes[r] = self._r_covered[r] = 0
        self._r_pins[r] = 1
        self._r_state[r] = _PENDING
        self._ensure_blocks(block)
        self._ring.append(r)
        self._head = start + n
        return r

    def _evict_from(self, lo: int, hi: int) -> bool:
        """Evict the oldest regions lying in [lo, hi) of the arena; False if a pinned one is there."""
        ring = self._ring
        while ring and lo <= self._r_start[ring[0]] < hi:
            r = ring[0]
            if self._r_pins[r]:
                return False
            ring.popleft()
            b = int(self._r_block[r])
            if self._slot_of_block[b] == r:
                self._slot_of_block[b] = -1
                self._bytes -= int(self._r_words[r]) * 4
            self._r_state[r] = 0
            self._free.append(r)
        return True

    def _grow(self):
        n = len(self._r_block)
        for name in ("_r_block", "_r_start", "_r_words", "_r_nbytes", "_r_covered", "_r_pins", "_r_state"):
            a = getattr(self, name)
            g = np.zeros(2 * n, a.dtype)
            g[:n] = a
            setattr(self, name, g)
        self._free.extend(range(2 * n - 1, n - 1, -1))

    def _unpin(self, slots: np.ndarray):
        with self._lock:
            _unpin_slots(self._r_pins, np.asarray(slots, np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes of the arena held by cached blocks."""
        return self._bytes

    def clear(self):
        with self._lock:
            self._slot_of_block = np.full(0, -1, np.int32)
            self._r_state[:] = 0
            self._r_pins[:] = 0
            self._free = list(range(len(self._r_block) - 1, -1, -1))
            self._ring.clear()
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
        return {"capacity_bytes": self.capacity, "bytes": self._bytes,
                "blocks": int((self._slot_of_block >= 0).sum()),
                "hits": self.hits, "misses": self.misses, "hit_rate": self.hits / total if total else 0.0,
                "refused": self.refused}

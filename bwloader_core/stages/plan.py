"""Plan (CPU, every device): which data blocks a batch needs, each block once, and which pairs
(query, track) each serves.

A *pair* is one query on one track, numbered track-major: `pair = t * batch + b`. Its bases are
the keys `[key_lo, key_hi)` in its file's key space (see `FlatIndex`), clipped to the chromosome;
`origin` is the key of output base 0 (it may lie before the chromosome start).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..index import FlatIndex


@dataclass(frozen=True, eq=False)
class Queries:
    """A validated batch of queries over some tracks, in key space."""
    tracks: np.ndarray    # int64 (T,): collection track of each output column
    batch: int            # B
    length: int           # L: bases per query
    key_lo: np.ndarray    # int64 (T * B,): first key of each pair, in its file's key space
                          # (0 with key_hi 0: nothing to read)
    key_hi: np.ndarray    # int64 (T * B,)
    origin: np.ndarray    # int64 (T * B,): key of output base 0

    @classmethod
    def in_key_space(cls, index: FlatIndex, tracks, chrom_ids, starts, ends) -> "Queries":
        """Queries (global chromosome ids, 0-based starts and ends of one length) on files
        `tracks`, clipped to each chromosome in each file's own key space."""
        B = len(chrom_ids)
        n = len(tracks) * B
        key_lo, key_hi, origin = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
        _key_space(index.file_table, index.table_chrom_key, index.table_chrom_len, tracks, chrom_ids, starts, ends,
                   key_lo, key_hi, origin)
        return cls(tracks, B, int(ends[0] - starts[0]) if B else 0, key_lo, key_hi, origin)

    @property
    def n_tracks(self) -> int:
        return len(self.tracks)

    @property
    def n_pairs(self) -> int:
        return len(self.key_lo)

    def columns(self, c0: int, c1: int) -> "Queries":
        """The queries of output columns (tracks) c0..c1-1 (their pairs are contiguous)."""
        B = self.batch
        sl = slice(c0 * B, c1 * B)
        return Queries(self.tracks[c0:c1], B, self.length, self.key_lo[sl], self.key_hi[sl], self.origin[sl])


@njit(nogil=True, cache=True)
def _key_space(file_table, table_chrom_key, table_chrom_len, tracks, chrom_ids, starts, ends, key_lo, key_hi, origin):
    """Pair p = c * B + b: bases [starts[b], ends[b]) clipped to the chromosome in file tracks[c]
    (key_lo = key_hi = 0 where nothing is left or the file lacks it); origin: the key of base 0."""
    B = chrom_ids.shape[0]
    for c in range(tracks.shape[0]):
        tab = file_table[tracks[c]]
        for b in range(B):
            ck = table_chrom_key[tab, chrom_ids[b]]
            cl = table_chrom_len[tab, chrom_ids[b]]
            room = max(cl, 0)
            qs = min(max(starts[b], 0), room)
            qe = min(max(ends[b], 0), room)
            p = c * B + b
            if cl >= 0 and qe > qs:
                key_lo[p] = ck + qs
                key_hi[p] = ck + qe
            else:
                key_lo[p] = 0
                key_hi[p] = 0
            origin[p] = ck + starts[b]


@dataclass(frozen=True, eq=False)
class Plan:
    """The blocks of one batch and the (pair, block) links between pairs and blocks.

    Links come grouped by pair, in pair order, and within a pair by block key: the order in which
    pyBigWig meets the records, which fill keeps."""
    queries: Queries
    blocks: np.ndarray       # int64 (n,): FlatIndex block ids, sorted, unique
    need_key: np.ndarray     # int64 (n,): the largest key any pair needs from each block
    link_pair: np.ndarray    # int64 (m,): pair of each link
    link_block: np.ndarray   # int64 (m,): position in `blocks` of each link's block

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)


def plan_batch(index: FlatIndex, q: Queries, compiled: bool = True) -> Plan:
    """Every block overlapping any pair: per pair, two binary searches over its file's blocks
    (`block_ranges`), then the links in a few vector operations."""
    key_lo, key_hi = q.key_lo, q.key_hi
    lo, hi = block_ranges(index, q, compiled)
    n = np.where(key_hi > key_lo, np.maximum(hi - lo, 0), 0)
    m = int(n.sum())
    pair = np.repeat(np.arange(len(key_lo)), n)
    ids = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(m)
    keep = index.block_end[ids] > key_lo[pair]
    pair, ids = pair[keep], ids[keep]
    blocks = np.sort(ids)                  # np.unique: same result, ~10x slower here (hashing)
    if len(blocks):
        blocks = blocks[np.r_[True, blocks[1:] != blocks[:-1]]]
    link_block = np.searchsorted(blocks, ids)
    need = np.zeros(len(blocks), np.int64)
    _maximum_at(need, link_block, key_hi[pair])
    return Plan(q, blocks, need, pair, link_block)


def block_ranges(index: FlatIndex, q: Queries, compiled: bool = True):
    """Per pair, the block rows [lo, hi) of its file that may overlap [key_lo, key_hi): lo is the
    first block whose running-maximum end passes key_lo, hi the first starting at or after key_hi."""
    first = index.file_block_first
    file_of_pair = np.repeat(q.tracks, q.batch)
    if compiled:
        lo = np.empty(q.n_pairs, np.int64)
        hi = np.empty(q.n_pairs, np.int64)
        kt = index.key_table
        _block_ranges(first, index.block_start, index.block_end_cummax, kt.shift, kt.first, kt.rows, file_of_pair,
                      q.key_lo, q.key_hi, lo, hi)
        return lo, hi
    # NumPy reference: one pair of searchsorted per output column (the pairs of one track)
    lo = np.zeros(q.n_pairs, np.int64)
    hi = np.zeros(q.n_pairs, np.int64)
    B = q.batch
    for c, t in enumerate(q.tracks.tolist()):
        a, b = int(first[t]), int(first[t + 1])
        sl = slice(c * B, (c + 1) * B)
        lo[sl] = a + np.searchsorted(index.block_end_cummax[a:b], q.key_lo[sl], side="right")
        hi[sl] = a + np.searchsorted(index.block_start[a:b], q.key_hi[sl], side="left")
    return lo, hi


@njit(nogil=True, cache=True)
def _maximum_at(out, at, values):
    """np.maximum.at(out, at, values), compiled (the ufunc's `at` is slow)."""
    for i in range(at.shape[0]):
        if values[i] > out[at[i]]:
            out[at[i]] = values[i]


@njit(nogil=True, cache=True, inline="always")
def block_range(f, lo_key, hi_key, file_block_first, block_start, block_end_cummax, bucket_shift, bucket_first,
                bucket_row):
    """Rows [lo, hi) of file f's blocks that may overlap keys [lo_key, hi_key): lo the first
    whose running-maximum end passes lo_key (bisected within lo_key's bucket of the index's key
    table, a block or two), hi the first starting at or after hi_key."""
    fb = file_block_first[f]
    lo = fb
    hi = fb
    if lo_key >= 0:
        n = bucket_first[f + 1] - bucket_first[f]
        k = min(lo_key >> bucket_shift[f], n - 2)
        lo = fb + np.int64(bucket_row[bucket_first[f] + k])
        hi = fb + np.int64(bucket_row[bucket_first[f] + k + 1])
    while lo < hi:                       # first row with end_cummax > lo_key
        mid = (lo + hi) >> 1
        if np.int64(block_end_cummax[mid]) <= lo_key:
            lo = mid + 1
        else:
            hi = mid
    b1 = lo                              # first row with start >= hi_key: a gallop from lo (a
    end = file_block_first[f + 1]        # query spans a block or two), then a bisection
    step = 1
    while b1 < end and np.int64(block_start[b1]) < hi_key:
        b1 += step
        step *= 2
    hi = min(b1, end)
    b1 = max(lo, b1 - step // 2)
    while b1 < hi:
        mid = (b1 + hi) >> 1
        if np.int64(block_start[mid]) < hi_key:
            b1 = mid + 1
        else:
            hi = mid
    return lo, b1


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting in the loop (see stages.direct)
def _block_ranges(first, start, end_cummax, bucket_shift, bucket_first, bucket_row, file_of_pair, key_lo, key_hi,
                  lo_out, hi_out):
    for p in range(file_of_pair.shape[0]):
        lo_out[p], hi_out[p] = block_range(file_of_pair[p], key_lo[p], key_hi[p], first, start, end_cummax,
                                           bucket_shift, bucket_first, bucket_row)

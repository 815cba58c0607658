"""Plan (CPU, every device): which data blocks a batch needs, each block once, and which pairs
(query, track) each serves.

A *pair* is one query on one track, numbered track-major: `pair = t * batch + b`. Its bases are
the keys `[key_lo, key_hi)` of the collection's `FlatIndex`, clipped to the chromosome; `origin`
is the key of output base 0 (it may lie before the chromosome start).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..index import FlatIndex


@dataclass(frozen=True, eq=False)
class Queries:
    """A validated batch of queries over some tracks, in key space."""
    tracks: np.ndarray    # int64 (T,): collection track of each output column
    batch: int            # B
    length: int           # L: bases per query
    key_lo: np.ndarray    # int64 (T * B,): first key of each pair (0 with key_hi 0: nothing to read)
    key_hi: np.ndarray    # int64 (T * B,)
    origin: np.ndarray    # int64 (T * B,): key of output base 0

    @property
    def n_tracks(self) -> int:
        return len(self.tracks)

    @property
    def n_pairs(self) -> int:
        return len(self.key_lo)


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


def plan_batch(index: FlatIndex, q: Queries) -> Plan:
    """Every block overlapping any pair, found by two `searchsorted` over all files at once."""
    key_lo, key_hi = q.key_lo, q.key_hi
    lo = np.searchsorted(index.leaf_end_cummax, key_lo, side="right")
    hi = np.searchsorted(index.leaf_start, key_hi, side="left")
    n = np.where(key_hi > key_lo, np.maximum(hi - lo, 0), 0)
    m = int(n.sum())
    pair = np.repeat(np.arange(len(key_lo)), n)
    ids = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(m)
    keep = index.leaf_end[ids] > key_lo[pair]
    pair, ids = pair[keep], ids[keep]
    blocks = np.sort(ids)                  # np.unique: same result, ~10x slower here (hashing)
    if len(blocks):
        blocks = blocks[np.r_[True, blocks[1:] != blocks[:-1]]]
    link_block = np.searchsorted(blocks, ids)
    need = np.zeros(len(blocks), np.int64)
    np.maximum.at(need, link_block, key_hi[pair])
    return Plan(q, blocks, need, pair, link_block)

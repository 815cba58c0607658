"""Parse decoded data blocks into sections and records, vectorised over all blocks of a batch.

`decode.cpu.BlockFetcher` lays every block, padded to 4 bytes, into one uint32 word buffer (big-endian blocks are
byte-swapped word by word). All section fields and items are 4-byte words, so parsing is
gathering words. Written against the array module `xp` (NumPy or CuPy).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BigWigFormatError

BEDGRAPH, VARSTEP, FIXEDSTEP = 1, 2, 3
ITEM_WORDS = np.array([0, 3, 2, 1], np.int64)      # words per item by section type
VALUE_WORD = np.array([0, 2, 1, 0], np.int64)      # word of the value inside an item
HEADER_WORDS = 6
MAX_SECTIONS_PER_BLOCK = 1 << 16


@dataclass
class Words:
    words: np.ndarray        # uint32, native order
    block_start: np.ndarray  # int64 word index of each block
    block_nbytes: np.ndarray  # int64 true byte length of each block


@dataclass
class Sections:
    block: np.ndarray      # block index of each section
    chrom_id: np.ndarray
    start: np.ndarray
    end: np.ndarray
    step: np.ndarray
    span: np.ndarray
    type: np.ndarray
    count: np.ndarray
    item_word: np.ndarray  # word index of the first item


@dataclass
class Records:
    section: np.ndarray    # section index of each record
    start: np.ndarray      # int64
    end: np.ndarray        # int64
    value: np.ndarray      # float32


def parse_section_headers(w: Words, swap, where, xp=np) -> Sections:
    """Walk the sections of every block (vectorised across blocks; one pass per section index).

    `where(block_index)` returns (path, file_offset) for error messages."""
    swap = xp.asarray(np.asarray(swap, bool))
    nblocks = len(w.block_start)
    words = w.words
    cursor = xp.asarray(w.block_start.copy())           # word index of the next section header
    block_end_byte = xp.asarray(w.block_start * 4 + w.block_nbytes)
    active = xp.asarray(w.block_nbytes > 0)
    blk_ids = xp.arange(nblocks)
    out = {k: [] for k in ("block", "chrom_id", "start", "end", "step", "span", "type", "count", "item_word")}
    for _ in range(MAX_SECTIONS_PER_BLOCK):
        idx = xp.flatnonzero(active)
        if len(idx) == 0:
            break
        c = cursor[idx]
        too_short = (c + HEADER_WORDS) * 4 > block_end_byte[idx]
        if bool(too_short.any()):
            _raise(where, int(idx[xp.flatnonzero(too_short)[0]]), "block ends inside a section header")
        h = words[c[:, None] + xp.arange(HEADER_WORDS)[None, :]].astype(xp.int64)
        last = h[:, 5]
        sw = swap[idx]
        typ = xp.where(sw, (last >> 24) & 0xFF, last & 0xFF)
        cnt = xp.where(sw, last & 0xFFFF, (last >> 16) & 0xFFFF)
        bad_type = (typ < 1) | (typ > 3)
        if bool(bad_type.any()):
            k = int(xp.flatnonzero(bad_type)[0])
            _raise(where, int(idx[k]), f"unknown section type {int(typ[k])} (expected 1 bedGraph, "
                                       "2 variableStep or 3 fixedStep)")
        iw = xp.asarray(ITEM_WORDS)[typ]
        nxt = c + HEADER_WORDS + cnt * iw
        overflow = nxt * 4 > block_end_byte[idx]
        if bool(overflow.any()):
            k = int(xp.flatnonzero(overflow)[0])
            _raise(where, int(idx[k]), f"section claims {int(cnt[k])} items, more than the block holds")
        for key, val in (("block", blk_ids[idx]), ("chrom_id", h[:, 0]), ("start", h[:, 1]), ("end", h[:, 2]),
                         ("step", h[:, 3]), ("span", h[:, 4]), ("type", typ), ("count", cnt),
                         ("item_word", c + HEADER_WORDS)):
            out[key].append(val)
        cursor[idx] = nxt
        # another section follows if at least a header's worth of bytes remains
        active[idx] = (nxt + HEADER_WORDS) * 4 <= block_end_byte[idx]
    else:
        _raise(where, int(xp.flatnonzero(active)[0]), f"more than {MAX_SECTIONS_PER_BLOCK} sections in one block")
    if not out["block"]:
        z = xp.zeros(0, xp.int64)
        return Sections(*([z] * 9))
    cat = {k: xp.concatenate(v) for k, v in out.items()}
    if len(out["block"]) > 1:  # keep sections in block order
        order = xp.lexsort(xp.stack([cat["item_word"], cat["block"]]))
        cat = {k: v[order] for k, v in cat.items()}
    return Sections(**cat)


def expand_records(w: Words, s: Sections, xp=np, sec=None, first=None, count=None) -> Records:
    """Expand section items to (start, end, value); fixedStep/variableStep get end = start + span.

    By default every item of every section; or, for entries k, items first[k] .. first[k]+count[k]-1
    of section sec[k] (the output's `section` field then holds the entry index k)."""
    if sec is None:
        sec, first, count = xp.arange(len(s.count)), xp.zeros(len(s.count), xp.int64), s.count
    n = int(count.sum()) if len(count) else 0
    if n == 0:
        z = xp.zeros(0, xp.int64)
        return Records(z, z, z, xp.zeros(0, xp.float32))
    entry = xp.repeat(xp.arange(len(count)), count)
    i = xp.arange(n) - (xp.cumsum(count) - count)[entry] + first[entry]
    sid = sec[entry]
    typ = s.type[sid]
    pos = s.item_word[sid] + i * xp.asarray(ITEM_WORDS)[typ]
    words = w.words
    nw = len(words)
    fixed = typ == FIXEDSTEP
    start = xp.where(fixed, s.start[sid] + i * s.step[sid], words[pos].astype(xp.int64))
    end_bg = words[xp.minimum(pos + 1, nw - 1)].astype(xp.int64)
    end = xp.where(typ == BEDGRAPH, end_bg, start + s.span[sid])
    value = words[pos + xp.asarray(VALUE_WORD)[typ]].view(xp.float32)
    return Records(entry, start, end, value)


def item_ranges(w: Words, s: Sections, sec, a, b, xp=np):
    """For entries k: the items of section sec[k] that overlap bases [a[k], b[k]) of its chromosome,
    as (first, count). Items of a valid section are sorted and disjoint, so ends and starts are
    monotone: a vectorised bisection over all entries at once (fixedStep: arithmetic)."""
    words = w.words
    typ = s.type[sec]
    cnt = s.count[sec]
    iw = xp.asarray(ITEM_WORDS)[typ]
    base = s.item_word[sec]
    span = s.span[sec]
    # lower bound: first item whose end > a.  bedGraph: end word; variableStep: start + span
    lo_word = xp.where(typ == BEDGRAPH, 1, 0)
    lo_add = xp.where(typ == BEDGRAPH, 0, span)
    lo, hi = xp.zeros_like(cnt), cnt.copy()
    lo2, hi2 = xp.zeros_like(cnt), cnt.copy()
    while True:
        act = lo < hi
        act2 = lo2 < hi2
        if not (bool(act.any()) or bool(act2.any())):
            break
        mid = (lo + hi) // 2
        v = words[xp.minimum(base + mid * iw + lo_word, len(words) - 1)].astype(xp.int64) + lo_add
        right = act & (v <= a)
        lo = xp.where(right, mid + 1, lo)
        hi = xp.where(act & ~right, mid, hi)
        mid2 = (lo2 + hi2) // 2
        v2 = words[xp.minimum(base + mid2 * iw, len(words) - 1)].astype(xp.int64)
        right2 = act2 & (v2 < b)
        lo2 = xp.where(right2, mid2 + 1, lo2)
        hi2 = xp.where(act2 & ~right2, mid2, hi2)
    first, last = lo, lo2
    fixed = typ == FIXEDSTEP
    if bool(fixed.any()):
        st = xp.maximum(s.step[sec], 1)
        s0 = s.start[sec]
        f0 = xp.clip(_floordiv(a - span - s0, st) + 1, 0, cnt)
        f1 = xp.clip(-_floordiv(-(b - s0), st), 0, cnt)
        zero_step = s.step[sec] == 0
        f0 = xp.where(zero_step, 0, f0)
        f1 = xp.where(zero_step, xp.where((s0 < b) & (s0 + span > a), cnt, 0), f1)
        first = xp.where(fixed, f0, first)
        last = xp.where(fixed, f1, last)
    return first, xp.maximum(last - first, 0)


def _floordiv(x, y):
    return x // y


def _raise(where, block, msg):
    path, off = where(block)
    raise BigWigFormatError(path, f"data block at offset {off}: {msg}")

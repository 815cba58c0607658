"""Parse: the section headers of every inflated block -> `Sections` (one row per section).

The fetch stage lays every block, padded to 4 bytes, into one uint32 word buffer (big-endian
blocks swapped word by word). All section fields and items are 4-byte words, so parsing is
gathering words. Three implementations, equal on every valid block:

- `parse_section_headers`: the NumPy reference (vectorised over blocks, one pass per section
  index); it also raises the precise error for a malformed block;
- `parse_sections`: the numba CPU kernel (one walk over the blocks), None for a malformed block;
- `cuda_kernels()`: the numba-cuda kernels (one thread per block counts, a prefix sum places,
  a second pass writes), run by `parse_sections_cuda` with status codes per block.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

from ..errors import BigWigFormatError
from ..format.spec import (BEDGRAPH, FIXEDSTEP, ITEM_WORDS, MAX_SECTIONS_PER_BLOCK,  # noqa: F401
                           SECTION_HEADER_WORDS as HEADER_WORDS, VALUE_WORD, VARSTEP)
from .fetch import Words


@dataclass(frozen=True, eq=False)
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


def parse_section_headers(w: Words, swap, where) -> Sections:
    """Walk the sections of every block (vectorised across blocks; one pass per section index).

    `where(block_index)` returns (path, file_offset) for error messages."""
    xp = np
    swap = np.asarray(swap, bool)
    nblocks = len(w.block_start)
    words = w.words
    cursor = w.block_start.copy()           # word index of the next section header
    block_end_byte = w.block_start * 4 + w.block_nbytes
    active = w.block_nbytes > 0
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
        iw = ITEM_WORDS[typ]
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


def _raise(where, block, msg):
    path, off = where(block)
    raise BigWigFormatError(path, f"data block at offset {off}: {msg}")


# -- numba CPU kernel ---------------------------------------------------------------------------
@njit(nogil=True, cache=True, inline="always")
def section_extent(words, cursor, end_byte, swapped):
    """(type, item count, word after the section) of the section whose header is at word
    `cursor` of a block ending at byte `end_byte` (`swapped`: a big-endian block, swapped word
    by word by the fetch stage); type -1 when the header or its items run past the block's end
    or the type is unknown."""
    if (cursor + HEADER_WORDS) * 4 > end_byte:
        return np.int64(-1), np.int64(0), np.int64(0)
    last = np.int64(words[cursor + 5])
    if swapped:
        typ = (last >> 24) & 0xFF
        cnt = last & 0xFFFF
    else:
        typ = last & 0xFF
        cnt = (last >> 16) & 0xFFFF
    if typ < 1 or typ > 3:
        return np.int64(-1), np.int64(0), np.int64(0)
    nxt = cursor + HEADER_WORDS + cnt * ITEM_WORDS[typ]
    if nxt * 4 > end_byte:
        return np.int64(-1), np.int64(0), np.int64(0)
    return typ, cnt, nxt


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting (see stages.direct)
def _walk(words, block_start, block_nbytes, swap, fill, out):
    """Count (fill=False) or write (fill=True, into the 9 rows of `out`) the sections of every
    block; -1 when a block is malformed."""
    n = 0
    for k in range(block_start.shape[0]):
        m = block_nbytes[k]
        if m <= 0:
            continue
        cursor = block_start[k]
        end_byte = block_start[k] * 4 + m
        n_sec = 0
        while True:
            typ, cnt, nxt = section_extent(words, cursor, end_byte, swap[k])
            if typ < 0:
                return -1
            n_sec += 1
            if n_sec > MAX_SECTIONS_PER_BLOCK:
                return -1
            if fill:
                out[0, n] = k
                for j in range(5):
                    out[1 + j, n] = words[cursor + j]
                out[6, n] = typ
                out[7, n] = cnt
                out[8, n] = cursor + HEADER_WORDS
            n += 1
            cursor = nxt
            if (nxt + HEADER_WORDS) * 4 > end_byte:
                break
    return n


def parse_sections(w: Words, swap) -> Sections | None:
    """`parse_section_headers` compiled: sections of every block in block order, or None when a
    block is malformed (the reference then raises the precise error)."""
    swap = np.asarray(swap, bool)
    empty = np.zeros((9, 0), np.int64)
    n = _walk(w.words, w.block_start, w.block_nbytes, swap, False, empty)
    if n < 0:
        return None
    out = np.empty((9, n), np.int64)
    _walk(w.words, w.block_start, w.block_nbytes, swap, True, out)
    return Sections(*out)


def parse_blocks(w: Words, table, index, files, compiled: bool = True) -> tuple[Sections, np.ndarray]:
    """Sections of the fetched blocks of `table` and the flat chromosome row of each
    (`index.chrom_key_base` row); any malformed block raises `BigWigFormatError` naming the file
    and the block's offset."""
    def where(b):
        return files[int(table.file[b])].path, int(table.offset[b])

    secs = parse_sections(w, table.big_endian) if compiled else None
    if secs is None:              # NumPy walk: also raises the precise error for a malformed block
        secs = parse_section_headers(w, table.big_endian, where)
    return secs, chromosome_rows(secs, table.file, index, where)


def chromosome_rows(secs: Sections, block_file, index, where) -> np.ndarray:
    """Flat chromosome row of each section; a chromosome id the file does not have is an error."""
    sec_file = block_file[secs.block]
    n_chroms = index.file_n_chroms[sec_file]
    bad = secs.chrom_id >= n_chroms
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        path, off = where(int(secs.block[k]))
        raise BigWigFormatError(path, f"data block at offset {off}: chromosome id {int(secs.chrom_id[k])} "
                                      f"is not in the chromosome tree ({int(n_chroms[k])} chromosomes)")
    return index.file_chrom_first[sec_file] + secs.chrom_id


# -- numba-cuda kernels -------------------------------------------------------------------------
PARSE_OK, PARSE_MALFORMED, PARSE_BAD_CHROM = 0, 1, 2
SECTION_ROWS = 10       # Sections' 9 fields, then the flat chromosome row


cuda = None      # numba.cuda, imported by cuda_kernels() on first use (the simulator patches this global)


@cache
def cuda_kernels():
    """The parse kernels for numba-cuda (real or simulated), compiled on first use. One thread per
    block (grid-stride): `count_sections` validates and counts, `write_sections` writes the rows
    (`SECTION_ROWS` x n, int64) at each block's first row (an exclusive prefix sum of the counts)."""
    global cuda
    from numba import cuda

    @cuda.jit(device=True)
    def header(words, cursor, swapped):
        last = np.int64(words[cursor + 5])
        if swapped:
            return (last >> 24) & 0xFF, last & 0xFFFF
        return last & 0xFF, (last >> 16) & 0xFFFF

    @cuda.jit(device=True)
    def item_words(typ):
        if typ == 1:
            return np.int64(3)
        if typ == 2:
            return np.int64(2)
        return np.int64(1)

    @cuda.jit
    def count_sections(words, block_start, block_nbytes, swap, block_n_chroms, n_sec, status):
        for k in range(cuda.grid(1), block_start.shape[0], cuda.gridsize(1)):
            m = np.int64(block_nbytes[k])
            n_sec[k] = 0
            status[k] = PARSE_OK
            if m <= 0:
                continue
            cursor = np.int64(block_start[k])
            end_byte = cursor * 4 + m
            n = np.int64(0)
            while True:
                if (cursor + HEADER_WORDS) * 4 > end_byte:
                    status[k] = PARSE_MALFORMED
                    break
                typ, cnt = header(words, cursor, swap[k])
                if typ < 1 or typ > 3:
                    status[k] = PARSE_MALFORMED
                    break
                nxt = cursor + HEADER_WORDS + cnt * item_words(typ)
                if nxt * 4 > end_byte:
                    status[k] = PARSE_MALFORMED
                    break
                if np.int64(words[cursor]) >= block_n_chroms[k]:
                    status[k] = PARSE_BAD_CHROM
                    break
                n += 1
                if n > MAX_SECTIONS_PER_BLOCK:
                    status[k] = PARSE_MALFORMED
                    break
                cursor = nxt
                if (nxt + HEADER_WORDS) * 4 > end_byte:
                    break
            n_sec[k] = n

    @cuda.jit
    def write_sections(words, block_start, block_nbytes, swap, block_chrom_first, first_row, out):
        for k in range(cuda.grid(1), block_start.shape[0], cuda.gridsize(1)):
            m = np.int64(block_nbytes[k])
            if m <= 0:
                continue
            cursor = np.int64(block_start[k])
            end_byte = cursor * 4 + m
            r = np.int64(first_row[k])
            while True:
                typ, cnt = header(words, cursor, swap[k])
                out[0, r] = k
                for j in range(5):
                    out[1 + j, r] = np.int64(words[cursor + j])
                out[6, r] = typ
                out[7, r] = cnt
                out[8, r] = cursor + HEADER_WORDS
                out[9, r] = np.int64(block_chrom_first[k]) + np.int64(words[cursor])
                r += 1
                cursor = cursor + HEADER_WORDS + cnt * item_words(typ)
                if (cursor + HEADER_WORDS) * 4 > end_byte:
                    break

    return count_sections, write_sections

"""`sections.parse_section_headers` compiled (numba): one walk over the blocks instead of one
vectorised pass per section index. Any block the walk finds malformed makes it return None, and
the caller runs the NumPy version, which raises the precise error. Imported lazily."""
from __future__ import annotations

import numpy as np
from numba import njit

from .sections import HEADER_WORDS, MAX_SECTIONS_PER_BLOCK, Sections

_ITEM_WORDS = (0, 3, 2, 1)


@njit(nogil=True, cache=True)
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
            if (cursor + HEADER_WORDS) * 4 > end_byte:
                return -1
            last = np.int64(words[cursor + 5])
            if swap[k]:
                typ = (last >> 24) & 0xFF
                cnt = last & 0xFFFF
            else:
                typ = last & 0xFF
                cnt = (last >> 16) & 0xFFFF
            if typ < 1 or typ > 3:
                return -1
            nxt = cursor + HEADER_WORDS + cnt * _ITEM_WORDS[typ]
            if nxt * 4 > end_byte:
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


def parse_sections(w, swap) -> Sections | None:
    """Sections of every block in block order, or None when a block is malformed."""
    swap = np.asarray(swap, bool)
    empty = np.zeros((9, 0), np.int64)
    n = _walk(w.words, w.block_start, w.block_nbytes, swap, False, empty)
    if n < 0:
        return None
    out = np.empty((9, n), np.int64)
    _walk(w.words, w.block_start, w.block_nbytes, swap, True, out)
    return Sections(*out)

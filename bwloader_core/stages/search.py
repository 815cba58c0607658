"""Search: for every (pair, section) that may overlap, the range of items the pair needs.

An *entry* is one section of one block linked to one pair (query on a track). Entries come grouped
by pair (the plan's link order), so each pair's entries form one contiguous run: fill walks them
in that order. Three implementations of the item search, equal on every valid section:

- `item_ranges`: the NumPy reference (a vectorised bisection over all entries; fixedStep by
  arithmetic);
- `item_ranges_numba`: the numba CPU kernel (a gallop from an interpolated guess, then bisection;
  the words are cold in cache, so a close guess saves misses);
- `cuda_kernels()`: the numba-cuda kernel, one thread per entry, which also clips each entry to
  its chromosome.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

from ..format.spec import BEDGRAPH, FIXEDSTEP, ITEM_WORDS
from .fetch import Words
from .parse import Sections
from .plan import Plan


@dataclass(frozen=True, eq=False)
class Entries:
    """(pair, section) combinations of a batch and the items each needs."""
    pair: np.ndarray      # pair index (track-major: t * batch + b)
    sec: np.ndarray       # section index
    a: np.ndarray         # query range on the section's chromosome, clipped to it
    b: np.ndarray
    origin: np.ndarray    # chromosome position of output base 0 of the pair
    first: np.ndarray     # first item needed
    count: np.ndarray     # number of items needed


@dataclass(frozen=True, eq=False)
class EntryLinks:
    """Which sections each pair meets, before any search: enough to size and order the entries."""
    pair: np.ndarray        # int64 (n,)
    sec: np.ndarray         # int64 (n,)
    pair_first: np.ndarray  # int64 (n_pairs + 1,): entries of pair p are pair_first[p]:pair_first[p + 1]


def link_entries(plan: Plan, block_first_section: np.ndarray, block_n_sections: np.ndarray) -> EntryLinks:
    """Expand the plan's (pair, block) links to (pair, section) entries, in link order."""
    blk = plan.link_block
    per = block_n_sections[blk]
    pair = np.repeat(plan.link_pair, per)
    sec = np.repeat(block_first_section[blk] - (np.cumsum(per) - per), per) + np.arange(int(per.sum()))
    pair_first = np.zeros(plan.queries.n_pairs + 1, np.int64)
    np.cumsum(np.bincount(pair, minlength=plan.queries.n_pairs), out=pair_first[1:])
    return EntryLinks(pair, sec, pair_first)


def sections_per_block(secs: Sections, n_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(first section, number of sections) of each block; sections come in block order."""
    first = np.searchsorted(secs.block, np.arange(n_blocks))
    return first, np.diff(np.append(first, len(secs.block)))


def clip_entries(links: EntryLinks, plan: Plan, sec_chrom, index):
    """Each entry's query range on its section's chromosome, clipped to it: (a, b, origin)."""
    q = plan.queries
    row = sec_chrom[links.sec]
    cb = index.chrom_key_base[row]
    clen = index.chrom_len_flat[row]
    a = np.clip(q.key_lo[links.pair] - cb, 0, clen)
    b = np.clip(q.key_hi[links.pair] - cb, 0, clen)
    return a, b, q.origin[links.pair] - cb


# -- NumPy reference ----------------------------------------------------------------------------
def item_ranges(w: Words, s: Sections, sec, a, b):
    """For entries k: the items of section sec[k] that overlap bases [a[k], b[k]) of its chromosome,
    as (first, count). Items of a valid section are sorted and disjoint, so ends and starts are
    monotone: a vectorised bisection over all entries at once (fixedStep: arithmetic)."""
    words = w.words
    typ = s.type[sec]
    cnt = s.count[sec]
    iw = ITEM_WORDS[typ]
    base = s.item_word[sec]
    span = s.span[sec]
    # lower bound: first item whose end > a.  bedGraph: end word; variableStep: start + span
    lo_word = np.where(typ == BEDGRAPH, 1, 0)
    lo_add = np.where(typ == BEDGRAPH, 0, span)
    lo, hi = np.zeros_like(cnt), cnt.copy()
    lo2, hi2 = np.zeros_like(cnt), cnt.copy()
    while True:
        act = lo < hi
        act2 = lo2 < hi2
        if not (bool(act.any()) or bool(act2.any())):
            break
        mid = (lo + hi) // 2
        v = words[np.minimum(base + mid * iw + lo_word, len(words) - 1)].astype(np.int64) + lo_add
        right = act & (v <= a)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(act & ~right, mid, hi)
        mid2 = (lo2 + hi2) // 2
        v2 = words[np.minimum(base + mid2 * iw, len(words) - 1)].astype(np.int64)
        right2 = act2 & (v2 < b)
        lo2 = np.where(right2, mid2 + 1, lo2)
        hi2 = np.where(act2 & ~right2, mid2, hi2)
    first, last = lo, lo2
    fixed = typ == FIXEDSTEP
    if bool(fixed.any()):
        st = np.maximum(s.step[sec], 1)
        s0 = s.start[sec]
        f0 = np.clip((a - span - s0) // st + 1, 0, cnt)
        f1 = np.clip(-((s0 - b) // st), 0, cnt)
        zero_step = s.step[sec] == 0
        f0 = np.where(zero_step, 0, f0)
        f1 = np.where(zero_step, np.where((s0 < b) & (s0 + span > a), cnt, 0), f1)
        first = np.where(fixed, f0, first)
        last = np.where(fixed, f1, last)
    return first, np.maximum(last - first, 0)


# -- numba CPU kernel ---------------------------------------------------------------------------
@njit(nogil=True, cache=True, inline="always")
def _key(words, top, base, i, iw, word, add):
    return np.int64(words[min(base + i * iw + word, top)]) + add


@njit(nogil=True, cache=True, inline="always")
def _first_above(words, top, base, cnt, iw, word, add, x, guess):
    """Smallest i in [0, cnt] with key(i) > x (keys ascending): a gallop out from `guess`, then
    bisection. The block is cold in cache and every probe is a miss, so a close guess counts."""
    lo, hi = np.int64(0), cnt
    g = min(max(guess, 0), cnt)
    step = np.int64(1)
    if g < cnt and _key(words, top, base, g, iw, word, add) <= x:
        lo = g + 1
        while lo + step - 1 < hi:
            nx = lo + step - 1
            if _key(words, top, base, nx, iw, word, add) <= x:
                lo = nx + 1
                step *= 2
            else:
                hi = nx
                break
    else:
        hi = g
        while hi - step >= lo:
            nx = hi - step
            if _key(words, top, base, nx, iw, word, add) <= x:
                lo = nx + 1
                break
            hi = nx
            step *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if _key(words, top, base, mid, iw, word, add) <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(nogil=True, cache=True)
def item_ranges_numba(words, e_type, e_count, e_item_word, e_sstart, e_step, e_span, e_a, e_b):
    """`item_ranges` compiled: per entry, the items overlapping [a, b) as (first, count)
    (fixedStep: arithmetic). Items are searched from a guess interpolated between the section's
    first and last item, so a few probes find them in near-uniform data."""
    n = e_type.shape[0]
    first = np.zeros(n, np.int64)
    count = np.zeros(n, np.int64)
    top = words.shape[0] - 1
    for k in range(n):
        first[k], count[k] = item_range(words, top, e_type[k], np.int64(e_count[k]), e_item_word[k],
                                        np.int64(e_sstart[k]), np.int64(e_step[k]), np.int64(e_span[k]),
                                        e_a[k], e_b[k])
    return first, count


@njit(nogil=True, cache=True, inline="always")
def item_range(words, top, typ, cnt, base, s0, step, span, a, b):
    """(first, count): the items of one section (type, item count, first item word, start, step,
    span) overlapping bases [a, b) of its chromosome; `top` is the last word index."""
    if typ == 3:
        if step == 0:
            f0 = 0
            f1 = cnt if (s0 < b and s0 + span > a) else 0
        else:
            f0 = min(max((a - span - s0) // step + 1, 0), cnt)
            f1 = min(max(-((s0 - b) // step), 0), cnt)
    elif cnt == 0:
        f0 = f1 = 0
    else:
        iw = 3 if typ == 1 else 2
        end_word = 1 if typ == 1 else 0
        end_add = 0 if typ == 1 else span
        lo_key = _key(words, top, base, 0, iw, 0, 0)
        hi_key = _key(words, top, base, cnt - 1, iw, end_word, end_add)
        per = max(hi_key - lo_key, 1) / cnt
        # first item whose end > a; then first whose start >= b (start < b  <=>  start <= b - 1)
        f0 = _first_above(words, top, base, cnt, iw, end_word, end_add, a, np.int64((a - lo_key) / per))
        f1 = _first_above(words, top, base, cnt, iw, 0, 0, b - 1, np.int64((b - lo_key) / per))
    return f0, max(f1 - f0, 0)


# -- numba-cuda kernel --------------------------------------------------------------------------
cuda = None      # numba.cuda, imported by cuda_kernels() on first use (the simulator patches this global)


@cache
def cuda_kernels():
    """`search_entries`: one thread per entry (grid-stride). It clips the pair's query to the
    section's chromosome (a, b, origin, as `clip_entries`) and bisects the items (as
    `item_ranges`); a pair with nothing to read (key_hi <= key_lo) needs no item."""
    global cuda
    from numba import cuda

    @cuda.jit(device=True)
    def first_above(words, top, base, cnt, iw, word, add, x):
        lo = np.int64(0)
        hi = cnt
        while lo < hi:
            mid = (lo + hi) // 2
            if np.int64(words[min(base + mid * iw + word, top)]) + add <= x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    @cuda.jit
    def search_entries(words, sections, e_pair, e_sec, key_lo, key_hi, origin, chrom_key_base, chrom_len,
                       e_a, e_b, e_o, e_first, e_count):
        top = np.int64(words.shape[0] - 1)
        for k in range(cuda.grid(1), e_pair.shape[0], cuda.gridsize(1)):
            p = e_pair[k]
            s = e_sec[k]
            row = sections[9, s]
            cb = chrom_key_base[row]
            clen = chrom_len[row]
            a = min(max(key_lo[p] - cb, np.int64(0)), clen)
            b = min(max(key_hi[p] - cb, np.int64(0)), clen)
            e_a[k] = a
            e_b[k] = b
            e_o[k] = origin[p] - cb
            typ = sections[6, s]
            cnt = sections[7, s]
            base = sections[8, s]
            span = sections[5, s]
            f0 = np.int64(0)
            f1 = np.int64(0)
            if b <= a or cnt == 0:
                pass
            elif typ == 3:
                s0 = sections[2, s]
                step = sections[4, s]
                if step == 0:
                    if s0 < b and s0 + span > a:
                        f1 = cnt
                else:
                    f0 = min(max((a - span - s0) // step + 1, np.int64(0)), cnt)
                    f1 = min(max(-((s0 - b) // step), np.int64(0)), cnt)
            elif typ == 1:
                f0 = first_above(words, top, base, cnt, np.int64(3), np.int64(1), np.int64(0), a)
                f1 = first_above(words, top, base, cnt, np.int64(3), np.int64(0), np.int64(0), b - 1)
            else:
                f0 = first_above(words, top, base, cnt, np.int64(2), np.int64(0), span, a)
                f1 = first_above(words, top, base, cnt, np.int64(2), np.int64(0), np.int64(0), b - 1)
            e_first[k] = f0
            e_count[k] = max(f1 - f0, np.int64(0))

    return search_entries

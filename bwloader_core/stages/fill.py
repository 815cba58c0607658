"""Fill: the items each entry needs -> the dense output (batch, length // window, tracks), with
the default value where nothing is recorded, window reduction (mean, sum, max, min), scaling of
covered values and the output dtype.

Three implementations, equal bit for bit:

- the NumPy reference (`fill_reference`): items expanded to runs, painted by a cumulative-sum
  trick (`fill_runs`) or, where runs overlap, by a scatter (`fill_runs_reference`), then reduced
  (`window_reduce_runs` / `window_reduce`);
- the numba CPU kernels (`paint`, `window_accumulate`): they walk each entry's items straight from
  the word buffer, on threads that own disjoint output rows (`fill_compiled`);
- the numba-cuda kernels (`cuda_kernels()`): one thread per pair walks that pair's entries in
  order (the same order as the CPU kernels, so float64 window sums add up identically; products
  use non-fused multiplies), then an elementwise pass finishes the windows into float32.

Output dtypes: every dtype is the float32 value rounded once more (round to nearest even);
`to_bfloat16_bits` does that on integer bit patterns, so NumPy and CuPy give the same bits.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

from ..format.spec import BEDGRAPH, FIXEDSTEP, ITEM_WORDS, VALUE_WORD
from .fetch import Words
from .parse import Sections
from .search import Entries


@dataclass(frozen=True, eq=False)
class Records:
    """Items expanded to runs of bases (start, end) with a value."""
    section: np.ndarray    # section index of each record
    start: np.ndarray      # int64
    end: np.ndarray        # int64
    value: np.ndarray      # float32


def expand_records(w: Words, s: Sections, sec=None, first=None, count=None) -> Records:
    """Expand section items to (start, end, value); fixedStep/variableStep get end = start + span.

    By default every item of every section; or, for entries k, items first[k] .. first[k]+count[k]-1
    of section sec[k] (the output's `section` field then holds the entry index k)."""
    if sec is None:
        sec, first, count = np.arange(len(s.count)), np.zeros(len(s.count), np.int64), s.count
    n = int(count.sum()) if len(count) else 0
    if n == 0:
        z = np.zeros(0, np.int64)
        return Records(z, z, z, np.zeros(0, np.float32))
    entry = np.repeat(np.arange(len(count)), count)
    i = np.arange(n) - (np.cumsum(count) - count)[entry] + first[entry]
    sid = sec[entry]
    typ = s.type[sid]
    pos = s.item_word[sid] + i * ITEM_WORDS[typ]
    words = w.words
    nw = len(words)
    fixed = typ == FIXEDSTEP
    start = np.where(fixed, s.start[sid] + i * s.step[sid], words[pos].astype(np.int64))
    end_bg = words[np.minimum(pos + 1, nw - 1)].astype(np.int64)
    end = np.where(typ == BEDGRAPH, end_bg, start + s.span[sid])
    value = words[pos + VALUE_WORD[typ]].view(np.float32)
    return Records(entry, start, end, value)


def runs_disjoint(pair, ls, le) -> bool:
    """True when, within each pair, runs come sorted and do not overlap (every valid bigWig)."""
    if len(pair) < 2:
        return True
    same = pair[1:] == pair[:-1]
    return not bool((same & (ls[1:] < le[:-1])).any())


def fill_runs(pair, ls, le, value, n_pairs, length, default, dtype, tracks_last=None):
    """Dense (n_pairs, length) values; uncovered bases get `default`. Runs must be disjoint and
    sorted within each pair (`runs_disjoint`). O(n_pairs * length + runs), no per-run loop:
    run j marks +j at its start and -j at its end; a cumulative sum gives each base its run.

    With `tracks_last=(T, B)` (pairs ordered track-major) the result comes as (B, length, T),
    the transpose fused into the final gather."""
    M = len(pair)
    vals = np.empty(M + 1, dtype)
    vals[0] = default
    if M == 0:
        shape = (n_pairs, length) if tracks_last is None else (tracks_last[1], length, tracks_last[0])
        return np.full(shape, vals[0], dtype)
    itype = np.int32 if M < 2**31 - 1 else np.int64
    base = pair * length
    marks = np.zeros(n_pairs * length + 1, itype)
    j = np.arange(1, M + 1, dtype=itype)
    marks[base + ls] = j
    marks[base + le] -= j          # ends are unique, so a fancy in-place subtract is exact
    idx = np.cumsum(marks[:-1], dtype=itype)
    vals[1:] = value
    if tracks_last is not None:
        T, B = tracks_last
        out = np.empty((B, length, T), dtype)
        return np.take(vals, idx.reshape(T, B, length).transpose(1, 2, 0), out=out)
    return vals[idx].reshape(n_pairs, length)


def fill_runs_reference(pair, ls, le, value, n_pairs, length, default, dtype):
    """Any run order, overlaps allowed: where runs overlap the later one wins (as pyBigWig paints).
    Scatter-max over every covered base: slower; used when runs overlap, and as the test reference."""
    cnt = le - ls
    tot = int(cnt.sum())
    pos = np.repeat(pair * length + ls - (np.cumsum(cnt) - cnt), cnt) + np.arange(tot, dtype=np.int64)
    who = np.full(n_pairs * length, -1, np.int64)
    np.maximum.at(who, pos, np.repeat(np.arange(len(pair), dtype=np.int64), cnt))
    vals = np.empty(len(value) + 1, dtype)
    vals[0] = default
    vals[1:] = value
    return vals[who + 1].reshape(n_pairs, length)


def window_reduce(values, window_size: int, reduce: str, skip_nan: bool):
    """Reduce (P, L) over non-overlapping windows -> (P, L // window_size); the partial tail is
    dropped. With skip_nan only covered bases count and an all-NaN window stays NaN."""
    if window_size == 1:
        return values
    P, L = values.shape
    nw = L // window_size
    v = values[:, : nw * window_size].reshape(P, nw, window_size)
    fns = {"mean": (np.mean, np.nanmean), "sum": (np.sum, np.nansum),
           "max": (np.max, np.nanmax), "min": (np.min, np.nanmin)}
    fn = fns[reduce][1 if skip_nan else 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = fn(v, axis=2)
    if skip_nan and reduce == "sum":
        out = np.where(np.isnan(v).all(axis=2), np.nan, out)
    return out


def split_at_windows(ls, le, w):
    """Cut runs [ls, le) at multiples of w: (run index, window index, bases) of every piece."""
    w0 = ls // w
    k = (le - 1) // w - w0 + 1
    run = np.repeat(np.arange(len(ls)), k)
    win = w0[run] + np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
    seg = np.minimum(le[run], (win + 1) * w) - np.maximum(ls[run], win * w)
    return run, win, seg


def window_reduce_runs(pair, ls, le, value, n_pairs, length, window_size, reduce, default):
    """The windowed reduction straight from runs, without a per-base array: each run is cut at
    window edges and the pieces are summed per (pair, window) with bincount. Runs must be
    disjoint within a pair. Equals `window_reduce(fill_runs(...))` up to float64 rounding of the
    sums (mean/sum), exactly for max/min. Returns (n_pairs, length // window_size) float64."""
    w = int(window_size)
    nw = length // w
    skip_nan = bool(np.isnan(default))
    value = value.astype(np.float64)
    le = np.minimum(le, nw * w)
    keep = le > ls
    if skip_nan:
        keep &= ~np.isnan(value)
    pair, ls, le, value = pair[keep], ls[keep], le[keep], value[keep]
    run, win, seg = split_at_windows(ls, le, w)
    flat = pair[run] * nw + win
    size = n_pairs * nw
    covered = np.bincount(flat, weights=seg, minlength=size)
    sums = acc = None
    if reduce in ("mean", "sum"):
        sums = np.bincount(flat, weights=value[run] * seg, minlength=size)
    else:
        acc = np.full(size, -np.inf if reduce == "max" else np.inf, np.float64)
        with np.errstate(invalid="ignore"):
            (np.maximum if reduce == "max" else np.minimum).at(acc, flat, value[run])
    return finalize_windows(sums, covered, acc, w, reduce, default).reshape(n_pairs, nw)


def finalize_windows(sums, covered, acc, w, reduce, default):
    """Window values from per-window sums (value * bases), covered bases and max/min."""
    skip_nan = bool(np.isnan(default))
    if reduce in ("mean", "sum"):
        if skip_nan:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = sums / covered if reduce == "mean" else sums
            return np.where(covered > 0, out, np.nan)
        out = sums + default * (w - covered)
        return out / w if reduce == "mean" else out
    if skip_nan:
        return np.where(covered > 0, acc, np.nan)
    pick = np.maximum if reduce == "max" else np.minimum
    return np.where(covered == w, acc, pick(acc, default))


def finalize_windows_into(sums, covered, acc, w, reduce, default, mask):
    """`finalize_windows` computed in place: the result in `sums` (returned), `covered` and
    `acc` overwritten, `mask` (bool, same length) a scratch buffer. The same ufuncs in the same
    order, so the same bits, without a fresh array per step (each would fault its pages in)."""
    skip_nan = bool(np.isnan(default))
    if reduce in ("mean", "sum"):
        if skip_nan:
            if reduce == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    np.divide(sums, covered, out=sums)
            np.greater(covered, 0, out=mask)
            np.logical_not(mask, out=mask)
            np.copyto(sums, np.nan, where=mask)
            return sums
        np.subtract(w, covered, out=covered)
        np.multiply(default, covered, out=covered)
        np.add(sums, covered, out=sums)
        if reduce == "mean":
            np.divide(sums, w, out=sums)
        return sums
    if skip_nan:
        np.greater(covered, 0, out=mask)
        np.copyto(sums, np.nan)
        np.copyto(sums, acc, where=mask)
        return sums
    (np.maximum if reduce == "max" else np.minimum)(acc, default, out=sums)
    np.equal(covered, w, out=mask)
    np.copyto(sums, acc, where=mask)
    return sums


# -- the reference path over runs ---------------------------------------------------------------
def entry_runs(words: Words, secs: Sections, e: Entries):
    """The items of every entry as runs (pair, local start, local end, value float32, entry), in
    file order."""
    rec = expand_records(words, secs, sec=e.sec, first=e.first, count=e.count)
    k = rec.section
    o = e.origin[k]
    ls = np.maximum(rec.start, e.a[k]) - o
    le = np.minimum(rec.end, e.b[k]) - o
    keep = le > ls
    if not keep.all():
        k, ls, le, value = k[keep], ls[keep], le[keep], rec.value[keep]
    else:
        value = rec.value
    return e.pair[k], ls, le, value, k


def work_dtype(window_size: int, scaled: bool):
    """float32 for plain values; float64 for scaled values and window sums (rounded once at the end)."""
    return np.float64 if (window_size > 1 or scaled) else np.float32


def fill_reference(words: Words, secs: Sections, e: Entries, T, B, L, window_size, reduce, default_value,
                   entry_scale):
    """Dense output (B, L // window_size, T) in `work_dtype`, the NumPy way."""
    work = work_dtype(window_size, entry_scale is not None)
    pair, ls, le, value, entry = entry_runs(words, secs, e)
    if work == np.float64:
        value = value.astype(np.float64)
    if entry_scale is not None:
        value = value * entry_scale[entry]
    fast = runs_disjoint(pair, ls, le)
    if fast and window_size == 1:
        return fill_runs(pair, ls, le, value, T * B, L, default_value, work, tracks_last=(T, B))
    if fast:
        red = window_reduce_runs(pair, ls, le, value, T * B, L, window_size, reduce, default_value)
    else:
        dense = fill_runs_reference(pair, ls, le, value, T * B, L, default_value, work)
        red = window_reduce(dense, window_size, reduce, bool(np.isnan(default_value)))
    return red.reshape(T, B, -1).transpose(1, 2, 0)


# -- numba CPU kernels --------------------------------------------------------------------------
@njit(nogil=True, cache=True, inline="always")
def _item(words, fwords, typ, item_word, i, sstart, step, span):
    if typ == 3:
        s = sstart + i * step
        return s, s + span, fwords[item_word + i]
    if typ == 2:
        pos = item_word + 2 * i
        s = np.int64(words[pos])
        return s, s + span, fwords[pos + 1]
    pos = item_word + 3 * i
    return np.int64(words[pos]), np.int64(words[pos + 1]), fwords[pos + 2]


@njit(nogil=True, cache=True, inline="always")
def clip_run(s, e, a, bb, o, n):
    """Output positions [ls, le) of item [s, e) within the query [a, bb) of its chromosome (output
    position 0 at base `o`), clipped to the n positions of the row (empty when le <= ls)."""
    ls = max(s, a) - o
    le = min(e, bb) - o
    if ls < 0:
        ls = 0
    if le > n:
        le = n
    return ls, le


@njit(nogil=True, cache=True)
def paint_rows(words, fwords, e_type, e_item_word, e_first, e_count, e_sstart, e_step, e_span, e_a, e_b, e_o,
               e_scale, pair_first, n_batch, n_tracks, row_lo, row_hi, default, out):
    """out (B, L, T) rows row_lo..row_hi-1, every base written once: each pair p = t * B + b walks
    its entries (pair_first[p]:pair_first[p + 1], in file order), writing the default up to each
    item and the item's value over it, then the default to the end. Later items overwrite earlier
    ones where they overlap (pyBigWig's order). Rows are disjoint between threads, and a row's
    tracks are written together, so the row stays in cache."""
    L = out.shape[1]
    for b in range(row_lo, row_hi):
        for t in range(n_tracks):
            p = t * n_batch + b
            filled = 0
            for k in range(pair_first[p], pair_first[p + 1]):
                a, bb, o, sc = e_a[k], e_b[k], e_o[k], e_scale[k]
                for i in range(e_first[k], e_first[k] + e_count[k]):
                    s, e, v = _item(words, fwords, e_type[k], e_item_word[k], i, e_sstart[k], e_step[k], e_span[k])
                    ls, le = clip_run(s, e, a, bb, o, L)
                    if le <= ls:
                        continue
                    for x in range(filled, ls):
                        out[b, x, t] = default
                    val = v * sc
                    for x in range(ls, le):
                        out[b, x, t] = val
                    if le > filled:
                        filled = le
            for x in range(filled, L):
                out[b, x, t] = default


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting (see stages.direct)
def window_accumulate(words, fwords, e_pair, e_type, e_item_word, e_first, e_count, e_sstart, e_step,
                      e_span, e_a, e_b, e_o, e_scale, length, w, skip_nan, want_extreme, is_max, entries,
                      sums, covered, acc, last):
    """Per (pair, window) of the entries listed (ascending) in `entries`: sum of value * bases,
    covered bases, and max or min, from disjoint runs, into sums / covered / acc (pair-major,
    length // w windows each; acc starts at -inf for max, +inf for min) with `last` (per pair,
    -1 at first) the end of the pair's last run. Returns False at the first overlap (the caller
    then takes the reference path). Threads given entries of disjoint pairs write disjoint memory."""
    nw = length // w
    for j in range(entries.shape[0]):
        k = entries[j]
        p = e_pair[k]
        end = accumulate_entry(words, fwords, e_type[k], e_item_word[k], e_first[k], e_count[k], e_sstart[k],
                               e_step[k], e_span[k], e_a[k], e_b[k], e_o[k], e_scale[k], p * nw, nw * w, w,
                               skip_nan, want_extreme, is_max, last[p], sums, covered, acc)
        if end == OVERLAP:
            return False
        last[p] = end
    return True


OVERLAP = -(1 << 62)      # accumulate_entry's answer when a run starts before the previous one ended


@njit(nogil=True, cache=True, inline="always")
def accumulate_entry(words, fwords, typ, iw, first, count, s0, st, sp, a, bb, o, sc, f0, lim, w, skip_nan,
                     want_extreme, is_max, last, sums, covered, acc):
    """One entry's items into the windows f0, f0 + 1, ... (one pair's) of sums / covered / acc;
    `last` is the end of the pair's previous run (-1 at first). Returns the end of its last run,
    or OVERLAP.

    The window being filled is held in locals and written back when the walk leaves it: the
    same additions in the same order as adding into the arrays piece by piece, without a memory
    round trip (and a division) per item."""
    f = -1                             # the window in the locals (flat index), none yet
    win_hi = np.int64(0)
    cs = 0.0
    cc = 0.0
    ca = 0.0
    for i in range(first, first + count):
        s, e, v = _item(words, fwords, typ, iw, i, s0, st, sp)
        ls = max(s, a) - o
        le = min(e, bb) - o
        if le <= ls:
            continue
        if ls < last:
            return OVERLAP
        last = le
        if le > lim:
            le = lim
        if le <= ls:
            continue
        val = np.float64(v) * sc
        if skip_nan and np.isnan(val):
            continue
        if not want_extreme and f >= 0 and le <= win_hi and ls >= win_hi - w:
            seg = le - ls                         # the usual item: inside the window at hand
            cs += val * seg
            cc += seg
            continue
        x = ls
        while x < le:
            if x >= win_hi or f < 0:              # into the window of base x
                if f >= 0:
                    sums[f] = cs
                    covered[f] = cc
                    if want_extreme:
                        acc[f] = ca
                if f >= 0 and x < win_hi + w:     # the next window (no division)
                    f += 1
                    win_hi += w
                else:
                    win = x // w
                    win_hi = (win + 1) * w
                    f = f0 + win
                cs = sums[f]
                cc = covered[f]
                if want_extreme:
                    ca = acc[f]
            hi = min(le, win_hi)
            seg = hi - x
            cs += val * seg
            cc += seg
            if want_extreme:
                if is_max:
                    if val > ca or np.isnan(val):
                        ca = val
                elif val < ca or np.isnan(val):
                    ca = val
            x = hi
    if f >= 0:
        sums[f] = cs
        covered[f] = cc
        if want_extreme:
            acc[f] = ca
    return last


@njit(nogil=True, cache=True, inline="always")
def finish_window(s, c, x, w, mode, skip_nan, is_max, default):
    """One window's value from its sum, covered bases and max/min (`mode` 0 mean, 1 sum,
    2 max/min), as `finalize_windows` computes it element by element."""
    if mode == 2:
        if skip_nan:
            return x if c > 0.0 else np.nan
        if c == w or x != x:
            return x
        if is_max:
            return x if x > default else default      # np.maximum(acc, default): the default on a tie
        return x if x < default else default
    if skip_nan:
        if c > 0.0:
            return s / c if mode == 0 else s
        return np.nan
    x = s + default * (w - c)
    return x / w if mode == 0 else x


class WindowBuffers:
    """Sums, covered, acc and last (per pair) for `window_accumulate`, and a mask for finishing
    the windows in place, kept between batches: fresh pages would fault inside the threads,
    which then wait on each other."""

    def __init__(self):
        self._bufs = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        self._mask = np.zeros(0, bool)

    def get(self, n_windows, n_pairs):
        """Zeroed sums and covered, acc (unset) and last (-1), sized for this batch."""
        if len(self._bufs[0]) < n_windows or len(self._bufs[3]) < n_pairs:
            nw, npairs = max(n_windows, len(self._bufs[0])), max(n_pairs, len(self._bufs[3]))
            self._bufs = (np.empty(nw), np.empty(nw), np.empty(nw), np.empty(npairs, np.int64))
        sums, covered, acc, last = (b[:n] for b, n in zip(self._bufs, (n_windows,) * 3 + (n_pairs,)))
        sums.fill(0.0)
        covered.fill(0.0)
        last.fill(-1)
        return sums, covered, acc, last

    def mask(self, n_windows):
        if len(self._mask) < n_windows:
            self._mask = np.empty(len(self._bufs[0]), bool)
        return self._mask[:n_windows]


def fill_compiled(words: Words, secs: Sections, e: Entries, T, B, L, window_size, reduce, default_value,
                  entry_scale, run_parts, n_parts: int, window_buffers: WindowBuffers):
    """The numba kernels over `n_parts` shares of the output rows, run by `run_parts(fn, range)`
    (a thread pool's map). Falls back to `fill_reference` when window runs overlap."""
    work = work_dtype(window_size, entry_scale is not None)
    sc = entry_scale if entry_scale is not None else np.ones(len(e.pair))
    args = (words.words, words.words.view(np.float32), e.pair, secs.type[e.sec], secs.item_word[e.sec],
            e.first, e.count, secs.start[e.sec], secs.step[e.sec], secs.span[e.sec], e.a, e.b, e.origin, sc)
    if window_size == 1:       # each thread a range of rows: disjoint output (entries come sorted by pair)
        out = np.empty((B, L, T), work)
        pair_first = np.searchsorted(e.pair, np.arange(T * B + 1))
        dflt = work(default_value)
        run_parts(lambda i: paint_rows(*args[:2], *args[3:], pair_first, B, T, i * B // n_parts,
                                       (i + 1) * B // n_parts, dflt, out), range(n_parts))
        return out
    # Window sums: each thread takes the rows b with b * parts // B == i (disjoint output), row by
    # row and track by track; entries of one pair keep their file order (lexsort is stable).
    rows = e.pair % max(B, 1)
    order = np.lexsort((e.pair // max(B, 1), rows))
    cuts = np.searchsorted(rows[order] * n_parts // max(B, 1), np.arange(n_parts + 1))

    def entries_of(i):
        return order[cuts[i]:cuts[i + 1]]

    sums, covered, acc, last = window_buffers.get(T * B * (L // window_size), T * B)
    acc.fill(-np.inf if reduce == "max" else np.inf)
    ok = all(run_parts(lambda i: window_accumulate(
        *args, L, window_size, bool(np.isnan(default_value)), reduce in ("max", "min"), reduce == "max",
        entries_of(i), sums, covered, acc, last), range(n_parts)))
    if ok:       # a view of the reusable buffers: the caller copies it out (cast_output, or a group's slice)
        red = finalize_windows_into(sums, covered, acc, window_size, reduce, default_value,
                                    window_buffers.mask(len(sums)))
        return red.reshape(T, B, -1).transpose(1, 2, 0)
    return fill_reference(words, secs, e, T, B, L, window_size, reduce, default_value, entry_scale)


# -- output dtypes ------------------------------------------------------------------------------
def to_bfloat16_bits(values32, xp=np):
    """uint16 bfloat16 bit patterns of float32 `values32` (NumPy or CuPy array), rounded to nearest
    even; a NaN becomes the canonical quiet NaN of its sign (0x7FC0 / 0xFFC0). Integer arithmetic
    only, so both array modules give the same bits as `ml_dtypes`."""
    bits = values32.view(xp.uint32)
    nan = (bits & xp.uint32(0x7FFFFFFF)) > xp.uint32(0x7F800000)
    rounded = (bits + xp.uint32(0x7FFF) + ((bits >> xp.uint32(16)) & xp.uint32(1))) >> xp.uint32(16)
    quiet = ((bits >> xp.uint32(16)) & xp.uint32(0x8000)) | xp.uint32(0x7FC0)
    return xp.where(nan, quiet, rounded).astype(xp.uint16)


# -- numba-cuda kernels -------------------------------------------------------------------------
cuda = None      # numba.cuda, imported by cuda_kernels() on first use (the simulator patches this global)


@cache
def cuda_kernels():
    """The fill kernels for numba-cuda (real or simulated), compiled on first use.

    `sections` is the parse stage's (10, n) int64 table; `pair_first` (n_pairs + 1) bounds each
    pair's entries. One thread per pair (grid-stride) walks its entries in order, as the CPU
    kernels do: `paint` writes float32 values over the default (`fill_value`, elementwise);
    `window_accumulate` writes float64 sums / covered / acc per (pair, window) and sets
    `overlap[0]` when runs overlap (the caller then takes the reference path); `finish_windows`
    turns them into the float32 output (elementwise). No atomics: every result has one writer."""
    global cuda
    from numba import config, cuda

    if config.ENABLE_CUDASIM:          # the simulator has no libdevice; NumPy never fuses anyway
        @cuda.jit(device=True)
        def mul(x, y):
            return x * y

        @cuda.jit(device=True)
        def add(x, y):
            return x + y
    else:                              # x * y + z would compile to one fused multiply-add
        from numba.cuda import libdevice

        @cuda.jit(device=True)
        def mul(x, y):
            return libdevice.dmul_rn(x, y)

        @cuda.jit(device=True)
        def add(x, y):
            return libdevice.dadd_rn(x, y)

    @cuda.jit(device=True)
    def item(words, fwords, sections, s, i):
        typ = sections[6, s]
        base = sections[8, s]
        if typ == 3:
            st = sections[2, s] + i * sections[4, s]
            return st, st + sections[5, s], fwords[base + i]
        if typ == 2:
            pos = base + 2 * i
            st = np.int64(words[pos])
            return st, st + sections[5, s], fwords[pos + 1]
        pos = base + 3 * i
        return np.int64(words[pos]), np.int64(words[pos + 1]), fwords[pos + 2]

    @cuda.jit
    def fill_value(flat, value):
        for i in range(cuda.grid(1), flat.shape[0], cuda.gridsize(1)):
            flat[i] = value

    @cuda.jit
    def paint(words, fwords, sections, e_sec, e_a, e_b, e_o, e_first, e_count, pair_first, scale_of_track,
              n_batch, out):
        L = np.int64(out.shape[1])
        for p in range(cuda.grid(1), pair_first.shape[0] - 1, cuda.gridsize(1)):
            t = p // n_batch
            b = p - t * n_batch
            sc = scale_of_track[t]
            for k in range(pair_first[p], pair_first[p + 1]):
                s = e_sec[k]
                a = e_a[k]
                bb = e_b[k]
                o = e_o[k]
                for i in range(e_first[k], e_first[k] + e_count[k]):
                    st, en, v = item(words, fwords, sections, s, i)
                    ls = max(st, a) - o
                    le = min(en, bb) - o
                    if ls < 0:
                        ls = np.int64(0)
                    if le > L:
                        le = L
                    val = np.float32(mul(np.float64(v), sc))
                    for x in range(ls, le):
                        out[b, x, t] = val

    @cuda.jit
    def window_accumulate(words, fwords, sections, e_sec, e_a, e_b, e_o, e_first, e_count, pair_first,
                          scale_of_track, n_batch, length, w, skip_nan, want_extreme, is_max, sums, covered,
                          acc, overlap):
        nw = length // w
        lim = nw * w
        start_acc = -np.inf if is_max else np.inf
        for p in range(cuda.grid(1), pair_first.shape[0] - 1, cuda.gridsize(1)):
            for f in range(p * nw, (p + 1) * nw):
                sums[f] = 0.0
                covered[f] = 0.0
                acc[f] = start_acc
            sc = scale_of_track[p // n_batch]
            last = np.int64(-1)
            for k in range(pair_first[p], pair_first[p + 1]):
                s = e_sec[k]
                a = e_a[k]
                bb = e_b[k]
                o = e_o[k]
                for i in range(e_first[k], e_first[k] + e_count[k]):
                    st, en, v = item(words, fwords, sections, s, i)
                    ls = max(st, a) - o
                    le = min(en, bb) - o
                    if le <= ls:
                        continue
                    if ls < last:
                        overlap[0] = 1
                        return
                    last = le
                    if le > lim:
                        le = lim
                    if le <= ls:
                        continue
                    val = mul(np.float64(v), sc)
                    if skip_nan and val != val:
                        continue
                    for win in range(ls // w, (le - 1) // w + 1):
                        lo = max(ls, win * w)
                        hi = min(le, (win + 1) * w)
                        seg = np.float64(hi - lo)
                        f = p * nw + win
                        sums[f] = add(sums[f], mul(val, seg))
                        covered[f] = add(covered[f], seg)
                        if want_extreme:
                            if is_max:
                                if val > acc[f] or val != val:
                                    acc[f] = val
                            elif val < acc[f] or val != val:
                                acc[f] = val

    @cuda.jit
    def finish_windows(sums, covered, acc, w, mode, skip_nan, is_max, default, n_batch, out):
        """mode 0: mean, 1: sum, 2: max or min; out (B, nw, T) float32."""
        nw = np.int64(out.shape[1])
        wf = np.float64(w)
        for f in range(cuda.grid(1), sums.shape[0], cuda.gridsize(1)):
            p = f // nw
            win = f - p * nw
            t = p // n_batch
            b = p - t * n_batch
            c = covered[f]
            if mode == 2:
                x = acc[f]
                if skip_nan:
                    if not c > 0.0:
                        x = np.nan
                elif c != wf and x == x:      # as np.maximum / np.minimum: the default when equal (+-0)
                    if is_max:
                        x = x if x > default else default
                    else:
                        x = x if x < default else default
            elif skip_nan:
                if c > 0.0:
                    x = sums[f] / c if mode == 0 else sums[f]
                else:
                    x = np.nan
            else:
                x = add(sums[f], mul(default, wf - c))
                if mode == 0:
                    x = x / wf
            out[b, win, t] = np.float32(x)

    return fill_value, paint, window_accumulate, finish_windows

"""Compiled (numba, GIL-free) versions of search + fill and search + window reduction.

They walk the items each (pair, section) entry needs straight from the word buffer and write the
output, so no per-record temporaries are made. `fill_numpy` holds the plain NumPy reference; a
parity test keeps them equal. Imported lazily: numba is optional.
"""
from __future__ import annotations

import numpy as np
from numba import njit


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


@njit(nogil=True, cache=True)
def paint(words, fwords, e_pair, e_type, e_item_word, e_first, e_count, e_sstart, e_step, e_span,
          e_a, e_b, e_o, e_scale, n_batch, out, entries):
    """out (B, L, T), pre-filled with the default; pair p = t * B + b. Paints the entries listed
    (ascending) in `entries`; later items overwrite earlier ones where they overlap (pyBigWig's
    order). Threads given entries of disjoint sets of rows b write disjoint memory."""
    L = out.shape[1]
    for j in range(entries.shape[0]):
        k = entries[j]
        p = e_pair[k]
        t = p // n_batch
        b = p - t * n_batch
        a, bb, o, sc = e_a[k], e_b[k], e_o[k], e_scale[k]
        for i in range(e_first[k], e_first[k] + e_count[k]):
            s, e, v = _item(words, fwords, e_type[k], e_item_word[k], i, e_sstart[k], e_step[k], e_span[k])
            ls = max(s, a) - o
            le = min(e, bb) - o
            if ls < 0:
                ls = 0
            if le > L:
                le = L
            val = v * sc
            for x in range(ls, le):
                out[b, x, t] = val


@njit(nogil=True, cache=True)
def window_accumulate(words, fwords, e_pair, e_type, e_item_word, e_first, e_count, e_sstart, e_step,
                      e_span, e_a, e_b, e_o, e_scale, length, w, skip_nan, want_extreme, is_max, entries,
                      sums, covered, acc, last):
    """Per (pair, window) of the entries listed (ascending) in `entries`: sum of value * bases,
    covered bases, and max or min, from disjoint runs, into sums / covered / acc (pair-major,
    length // w windows each; acc starts at -inf for max, +inf for min) with `last` (per pair,
    -1 at first) the end of the pair's last run. Returns False at the first overlap (the caller
    then takes the reference path). Threads given entries of disjoint pairs write disjoint memory."""
    nw = length // w
    lim = nw * w
    for j in range(entries.shape[0]):
        k = entries[j]
        p = e_pair[k]
        a, bb, o, sc = e_a[k], e_b[k], e_o[k], e_scale[k]
        for i in range(e_first[k], e_first[k] + e_count[k]):
            s, e, v = _item(words, fwords, e_type[k], e_item_word[k], i, e_sstart[k], e_step[k], e_span[k])
            ls = max(s, a) - o
            le = min(e, bb) - o
            if le <= ls:
                continue
            if ls < last[p]:
                return False
            last[p] = le
            if le > lim:
                le = lim
            if le <= ls:
                continue
            val = np.float64(v) * sc
            if skip_nan and np.isnan(val):
                continue
            for win in range(ls // w, (le - 1) // w + 1):
                lo = max(ls, win * w)
                hi = min(le, (win + 1) * w)
                seg = hi - lo
                f = p * nw + win
                sums[f] += val * seg
                covered[f] += seg
                if want_extreme:
                    if is_max:
                        if val > acc[f] or np.isnan(val):
                            acc[f] = val
                    elif val < acc[f] or np.isnan(val):
                        acc[f] = val
    return True


@njit(nogil=True, cache=True, inline="always")
def _key(words, top, base, i, iw, word, add):
    return np.int64(words[min(base + i * iw + word, top)]) + add


@njit(nogil=True, cache=True)
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
def item_ranges(words, e_type, e_count, e_item_word, e_sstart, e_step, e_span, e_a, e_b):
    """`decode.sections.item_ranges` compiled: per entry, the items overlapping [a, b) as
    (first, count) (fixedStep: arithmetic). Items are searched from a guess interpolated between
    the section's first and last item, so a few probes find them in near-uniform data."""
    n = e_type.shape[0]
    first = np.zeros(n, np.int64)
    count = np.zeros(n, np.int64)
    top = words.shape[0] - 1
    for k in range(n):
        typ, cnt, base, a, b = e_type[k], np.int64(e_count[k]), e_item_word[k], e_a[k], e_b[k]
        span = np.int64(e_span[k])
        if typ == 3:
            s0 = np.int64(e_sstart[k])
            step = np.int64(e_step[k])
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
        first[k] = f0
        count[k] = max(f1 - f0, 0)
    return first, count

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
          e_a, e_b, e_o, e_scale, n_batch, out):
    """out (B, L, T), pre-filled with the default; pair p = t * B + b. Later items overwrite
    earlier ones where they overlap (pyBigWig's order)."""
    L = out.shape[1]
    for k in range(e_pair.shape[0]):
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
                      e_span, e_a, e_b, e_o, e_scale, n_pairs, length, w, skip_nan, want_extreme, is_max):
    """Per (pair, window): sum of value * bases, covered bases, and max or min, from disjoint
    runs. Returns ok=False at the first overlap (the caller then takes the reference path)."""
    nw = length // w
    lim = nw * w
    sums = np.zeros(n_pairs * nw)
    covered = np.zeros(n_pairs * nw)
    acc = np.full(n_pairs * nw, -np.inf if is_max else np.inf)
    last = np.full(n_pairs, -1, np.int64)
    for k in range(e_pair.shape[0]):
        p = e_pair[k]
        a, bb, o, sc = e_a[k], e_b[k], e_o[k], e_scale[k]
        for i in range(e_first[k], e_first[k] + e_count[k]):
            s, e, v = _item(words, fwords, e_type[k], e_item_word[k], i, e_sstart[k], e_step[k], e_span[k])
            ls = max(s, a) - o
            le = min(e, bb) - o
            if le <= ls:
                continue
            if ls < last[p]:
                return False, sums, covered, acc
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
    return True, sums, covered, acc

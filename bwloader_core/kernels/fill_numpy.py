"""Fill a dense (pairs, length) array from sorted records, and reduce it over windows.

Records and queries are in one linear key space (track base + chromosome offset + base), so one
`searchsorted` serves every (query, track) pair of a batch.
"""
from __future__ import annotations

import warnings

import numpy as np


def records_sorted(rec_start, rec_end, xp=np) -> bool:
    """True when records are sorted and non-overlapping (the case of every valid bigWig)."""
    return len(rec_start) < 2 or bool((rec_start[1:] >= rec_end[:-1]).all())


def fill_dense(rec_start, rec_end, rec_value, q_lo, q_hi, q_origin, length, default, dtype, xp=np):
    """Dense values for each pair: base i of pair p is key q_origin[p] + i; only keys in
    [q_lo[p], q_hi[p]) can be covered; uncovered bases get `default`.

    Requires records sorted and non-overlapping (see `records_sorted`); cost is O(P*L + records).
    """
    P = len(q_lo)
    lo = xp.searchsorted(rec_end, q_lo, side="right")
    hi = xp.searchsorted(rec_start, q_hi, side="left")
    n = xp.where(q_hi > q_lo, xp.maximum(hi - lo, 0), 0)
    M = int(n.sum())
    itype = xp.int32 if M < 2**31 - 1 else xp.int64
    vals = xp.empty(M + 1, dtype)
    vals[0] = default
    if M == 0:
        return xp.full((P, length), vals[0], dtype)
    pair = xp.repeat(xp.arange(P, dtype=xp.int64), n)
    r = xp.repeat(lo - (xp.cumsum(n) - n), n) + xp.arange(M, dtype=xp.int64)
    ls = xp.maximum(rec_start[r], q_lo[pair]) - q_origin[pair]
    le = xp.minimum(rec_end[r], q_hi[pair]) - q_origin[pair]
    base = pair * length
    marks = xp.zeros(P * length + 1, itype)
    j = xp.arange(1, M + 1, dtype=itype)
    marks[base + ls] = j
    marks[base + le] -= j          # ends are unique, so a fancy in-place subtract is exact
    idx = xp.cumsum(marks[:-1], dtype=itype)
    vals[1:] = rec_value[r]
    return vals[idx].reshape(P, length)


def fill_dense_reference(rec_start, rec_end, rec_value, q_lo, q_hi, q_origin, length, default, dtype, xp=np):
    """Any record order, overlaps allowed: where records overlap, the later one wins (as pyBigWig).

    Slower (scatter-max over every covered base); used when `records_sorted` is False and in tests."""
    P = len(q_lo)
    order = xp.argsort(rec_start, kind="stable")
    s, e = rec_start[order], rec_end[order]
    cmax = xp.maximum.accumulate(e) if len(e) else e
    lo = xp.searchsorted(cmax, q_lo, side="right")
    hi = xp.searchsorted(s, q_hi, side="left")
    n = xp.where(q_hi > q_lo, xp.maximum(hi - lo, 0), 0)
    pair = xp.repeat(xp.arange(P, dtype=xp.int64), n)
    r = xp.repeat(lo - (xp.cumsum(n) - n), n) + xp.arange(int(n.sum()), dtype=xp.int64)
    ls = xp.maximum(s[r], q_lo[pair]) - q_origin[pair]
    le = xp.minimum(e[r], q_hi[pair]) - q_origin[pair]
    keep = le > ls
    pair, r, ls, le = pair[keep], r[keep], ls[keep], le[keep]
    cnt = le - ls
    tot = int(cnt.sum())
    pos = xp.repeat(pair * length + ls - (xp.cumsum(cnt) - cnt), cnt) + xp.arange(tot, dtype=xp.int64)
    who = xp.full(P * length, -1, xp.int64)
    xp.maximum.at(who, pos, xp.repeat(order[r], cnt))
    vals = xp.empty(len(rec_value) + 1, dtype)
    vals[0] = default
    vals[1:] = rec_value
    return vals[who + 1].reshape(P, length)


def window_reduce(values, window_size: int, reduce: str, skip_nan: bool, xp=np):
    """Reduce (P, L) over non-overlapping windows -> (P, L // window_size); the partial tail is dropped."""
    if window_size == 1:
        return values
    P, L = values.shape
    nw = L // window_size
    v = values[:, : nw * window_size].reshape(P, nw, window_size)
    fns = {"mean": (xp.mean, xp.nanmean), "sum": (xp.sum, xp.nansum),
           "max": (xp.max, xp.nanmax), "min": (xp.min, xp.nanmin)}
    fn = fns[reduce][1 if skip_nan else 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = fn(v, axis=2)
    if skip_nan and reduce == "sum":
        # nansum gives 0 for an all-NaN window; no data must stay NaN
        out = xp.where(xp.isnan(v).all(axis=2), xp.nan, out)
    return out

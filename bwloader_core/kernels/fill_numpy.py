"""Fill a dense (pairs, length) array from runs of constant value, and reduce it over windows.

A run is (pair, local start, local end, value) with 0 <= start < end <= length. Written against
the array module `xp`.
"""
from __future__ import annotations

import warnings

import numpy as np


def runs_disjoint(pair, ls, le, xp=np) -> bool:
    """True when, within each pair, runs come sorted and do not overlap (every valid bigWig)."""
    if len(pair) < 2:
        return True
    same = pair[1:] == pair[:-1]
    return not bool((same & (ls[1:] < le[:-1])).any())


def fill_runs(pair, ls, le, value, n_pairs, length, default, dtype, xp=np, tracks_last=None):
    """Dense (n_pairs, length) values; uncovered bases get `default`. Runs must be disjoint and
    sorted within each pair (`runs_disjoint`). O(n_pairs * length + runs), no per-run loop:
    run j marks +j at its start and -j at its end; a cumulative sum gives each base its run.

    With `tracks_last=(T, B)` (pairs ordered track-major) the result comes as (B, length, T),
    the transpose fused into the final gather."""
    M = len(pair)
    vals = xp.empty(M + 1, dtype)
    vals[0] = default
    if M == 0:
        shape = (n_pairs, length) if tracks_last is None else (tracks_last[1], length, tracks_last[0])
        return xp.full(shape, vals[0], dtype)
    itype = xp.int32 if M < 2**31 - 1 else xp.int64
    base = pair * length
    marks = xp.zeros(n_pairs * length + 1, itype)
    j = xp.arange(1, M + 1, dtype=itype)
    marks[base + ls] = j
    marks[base + le] -= j          # ends are unique, so a fancy in-place subtract is exact
    idx = xp.cumsum(marks[:-1], dtype=itype)
    vals[1:] = value
    if tracks_last is not None:
        T, B = tracks_last
        out = xp.empty((B, length, T), dtype)
        return xp.take(vals, idx.reshape(T, B, length).transpose(1, 2, 0), out=out)
    return vals[idx].reshape(n_pairs, length)


def fill_runs_reference(pair, ls, le, value, n_pairs, length, default, dtype, xp=np):
    """Any run order, overlaps allowed: where runs overlap the later one wins (as pyBigWig paints).
    Scatter-max over every covered base: slower; used when runs overlap, and as the test reference."""
    cnt = le - ls
    tot = int(cnt.sum())
    pos = xp.repeat(pair * length + ls - (xp.cumsum(cnt) - cnt), cnt) + xp.arange(tot, dtype=xp.int64)
    who = xp.full(n_pairs * length, -1, xp.int64)
    xp.maximum.at(who, pos, xp.repeat(xp.arange(len(pair), dtype=xp.int64), cnt))
    vals = xp.empty(len(value) + 1, dtype)
    vals[0] = default
    vals[1:] = value
    return vals[who + 1].reshape(n_pairs, length)


def window_reduce(values, window_size: int, reduce: str, skip_nan: bool, xp=np):
    """Reduce (P, L) over non-overlapping windows -> (P, L // window_size); the partial tail is
    dropped. With skip_nan only covered bases count and an all-NaN window stays NaN."""
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
        out = xp.where(xp.isnan(v).all(axis=2), xp.nan, out)
    return out


def split_at_windows(ls, le, w, xp=np):
    """Cut runs [ls, le) at multiples of w: (run index, window index, bases) of every piece."""
    w0 = ls // w
    k = (le - 1) // w - w0 + 1
    run = xp.repeat(xp.arange(len(ls)), k)
    win = w0[run] + xp.arange(int(k.sum())) - xp.repeat(xp.cumsum(k) - k, k)
    seg = xp.minimum(le[run], (win + 1) * w) - xp.maximum(ls[run], win * w)
    return run, win, seg


def window_reduce_runs(pair, ls, le, value, n_pairs, length, window_size, reduce, default, xp=np):
    """The windowed reduction straight from runs, without a per-base array: each run is cut at
    window edges and the pieces are summed per (pair, window) with bincount. Runs must be
    disjoint within a pair. Equals `window_reduce(fill_runs(...))` up to float64 rounding of the
    sums (mean/sum), exactly for max/min. Returns (n_pairs, length // window_size) float64."""
    w = int(window_size)
    nw = length // w
    skip_nan = bool(np.isnan(default))
    value = value.astype(xp.float64)
    le = xp.minimum(le, nw * w)
    keep = le > ls
    if skip_nan:
        keep &= ~xp.isnan(value)
    pair, ls, le, value = pair[keep], ls[keep], le[keep], value[keep]
    run, win, seg = split_at_windows(ls, le, w, xp)
    flat = pair[run] * nw + win
    size = n_pairs * nw
    covered = xp.bincount(flat, weights=seg, minlength=size)
    sums = acc = None
    if reduce in ("mean", "sum"):
        sums = xp.bincount(flat, weights=value[run] * seg, minlength=size)
    else:
        acc = xp.full(size, -xp.inf if reduce == "max" else xp.inf, xp.float64)
        with np.errstate(invalid="ignore"):
            (xp.maximum if reduce == "max" else xp.minimum).at(acc, flat, value[run])
    return finalize_windows(sums, covered, acc, w, reduce, default, xp).reshape(n_pairs, nw)


def finalize_windows(sums, covered, acc, w, reduce, default, xp=np):
    """Window values from per-window sums (value * bases), covered bases and max/min."""
    skip_nan = bool(np.isnan(default))
    if reduce in ("mean", "sum"):
        if skip_nan:
            with np.errstate(invalid="ignore", divide="ignore"):
                out = sums / covered if reduce == "mean" else sums
            return xp.where(covered > 0, out, xp.nan)
        out = sums + default * (w - covered)
        return out / w if reduce == "mean" else out
    if skip_nan:
        return xp.where(covered > 0, acc, xp.nan)
    pick = xp.maximum if reduce == "max" else xp.minimum
    return xp.where(covered == w, acc, pick(acc, default))

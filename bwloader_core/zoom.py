"""Windowed values from zoom levels: fast approximate answers for wide windows.

A zoom record summarises `reduction_level` bases (validCount, min, max, sum). A window's mean is
the overlap-weighted sum over the records it touches divided by the covered bases, assuming data
are spread evenly inside each record. Exact when zoom bins nest inside the windows (window a
multiple of the reduction level, bins aligned to it); otherwise an approximation whose error the
benchmarks report. min/max return the extreme of every record touched (a bound, not the exact).
"""
from __future__ import annotations

import numpy as np

from .stages.fetch import inflate_one
from .errors import BigWigFormatError
from .format.rtree import read_zoom_rtree_leaves
from .io import read_blocks
from .stages.fill import finalize_windows, split_at_windows

ZOOM_RECORD_WORDS = 8


def pick_zoom_level(bw_file, window_size: int, level=True):
    """Index of the coarsest zoom level whose reduction is <= window_size (None: none fits).
    `level` may be True (auto) or a reduction level the file must have."""
    levels = [z.reduction_level for z in bw_file.zoom_levels]
    if level is True:
        ok = [i for i, r in enumerate(levels) if 0 < r <= window_size]
        return max(ok, key=lambda i: levels[i]) if ok else None
    if int(level) not in levels:
        raise ValueError(f"{bw_file.path}: no zoom level with reduction {level}; it has {levels}")
    return levels.index(int(level))


def zoom_index(bw_file, i: int):
    """Sorted block keys/offsets/sizes of zoom level i (loaded once, cached on the file)."""
    cache = bw_file.__dict__.setdefault("_zoom_index", {})
    if i not in cache:
        z = bw_file.zoom_levels[i]
        leaves = read_zoom_rtree_leaves(bw_file._source, z.index_offset, bw_file.byteorder)
        co = bw_file.chrom_offsets
        n = len(bw_file.chrom_names)
        if len(leaves) and (leaves["start_chrom"].max() >= n or leaves["end_chrom"].max() >= n):
            raise BigWigFormatError(bw_file.path, f"zoom level {i} refers to an unknown chromosome id")
        sk = co[leaves["start_chrom"].astype(np.int64)] + leaves["start_base"].astype(np.int64)
        ek = co[leaves["end_chrom"].astype(np.int64)] + leaves["end_base"].astype(np.int64)
        order = np.argsort(sk, kind="stable")
        cache[i] = (sk[order], np.maximum.accumulate(ek[order]) if len(ek) else ek,
                    leaves["offset"].astype(np.int64)[order], leaves["size"].astype(np.int64)[order])
    return cache[i]


def zoom_records(bw_file, i: int, key_lo, key_hi):
    """Zoom records (key start, key end, valid, min, max, sum) overlapping any [key_lo, key_hi)."""
    sk, ek_cummax, off, size = zoom_index(bw_file, i)
    lo = np.searchsorted(ek_cummax, key_lo, side="right")
    hi = np.searchsorted(sk, key_hi, side="left")
    n = np.maximum(hi - lo, 0)
    ids = np.unique(np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum())))
    raw = read_blocks(bw_file._source, off[ids], size[ids])
    dt = np.dtype([("chrom", "u4"), ("start", "u4"), ("end", "u4"), ("valid", "u4"),
                   ("min", "f4"), ("max", "f4"), ("sum", "f4"), ("sumsq", "f4")]).newbyteorder(bw_file.byteorder)
    parts = []
    for data, o in zip(raw, off[ids].tolist()):
        out = inflate_one(bw_file, data, o)
        if len(out) % 32:
            raise BigWigFormatError(bw_file.path, f"zoom block at offset {o} is not a whole number of records")
        parts.append(np.frombuffer(out, dt))
    rec = np.concatenate(parts) if parts else np.zeros(0, dt)
    if len(rec) and rec["chrom"].max() >= len(bw_file.chrom_names):
        raise BigWigFormatError(bw_file.path, "zoom record refers to an unknown chromosome id")
    base = bw_file.chrom_offsets[rec["chrom"].astype(np.int64)]
    s = base + rec["start"].astype(np.int64)
    e = base + np.minimum(rec["end"].astype(np.int64), bw_file.chrom_lengths[rec["chrom"].astype(np.int64)])
    order = np.argsort(s, kind="stable")
    return (s[order], e[order], rec["valid"].astype(np.float64)[order], rec["min"].astype(np.float64)[order],
            rec["max"].astype(np.float64)[order], rec["sum"].astype(np.float64)[order])


def zoom_windows(bw_file, i, key_lo, key_hi, origin, length, window_size, reduce, default, scale=1.0):
    """(P, length // window_size) window values of one file's pairs from zoom level i."""
    w = int(window_size)
    nw = length // w
    P = len(key_lo)
    s, e, valid, mn, mx, sm = zoom_records(bw_file, i, key_lo, key_hi)
    lo = np.searchsorted(np.maximum.accumulate(e) if len(e) else e, key_lo, side="right")
    hi = np.searchsorted(s, key_hi, side="left")
    n = np.where(key_hi > key_lo, np.maximum(hi - lo, 0), 0)
    pair = np.repeat(np.arange(P), n)
    r = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
    ls = np.maximum(s[r], key_lo[pair]) - origin[pair]
    le = np.minimum(np.minimum(e[r], key_hi[pair]) - origin[pair], nw * w)
    keep = (le > ls) & (valid[r] > 0)
    pair, r, ls, le = pair[keep], r[keep], ls[keep], le[keep]
    piece, win, seg = split_at_windows(ls, le, w)
    rr = r[piece]
    frac = seg / (e[rr] - s[rr])
    flat = pair[piece] * nw + win
    size = P * nw
    covered = np.minimum(np.bincount(flat, weights=valid[rr] * frac, minlength=size), w)
    sums = acc = None
    if reduce in ("mean", "sum"):
        sums = np.bincount(flat, weights=sm[rr] * frac * scale, minlength=size)
    else:
        acc = np.full(size, -np.inf if reduce == "max" else np.inf)
        (np.maximum if reduce == "max" else np.minimum).at(acc, flat, (mx if reduce == "max" else mn)[rr] * scale)
    return finalize_windows(sums, covered, acc, w, reduce, default).reshape(P, nw)

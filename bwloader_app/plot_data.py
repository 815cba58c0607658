"""What the dashboard draws, as plain arrays: decimated curves that keep every peak, column
buckets for heat maps, one sample of a Batch in genome orientation, and its DNA (letters or a
base-composition strip). No Panel or HoloViews here."""
from __future__ import annotations

import numpy as np


def _f32(a) -> np.ndarray:
    return np.asarray(a).astype(np.float32)


def minmax_decimate(x, y, max_points: int = 2000):
    """At most `max_points` points that keep every peak and trough: the min and the max of each of
    `max_points // 2` buckets (NaN only where a whole bucket is NaN)."""
    x, y = np.asarray(x), _f32(y)
    n = len(y)
    if n <= max_points:
        return x, y
    nb = max(1, max_points // 2)
    edges = np.linspace(0, n, nb + 1).astype(np.int64)
    lo = edges[:-1]
    hi = edges[1:] - 1
    ymin = np.fmin.reduceat(y, lo)
    ymax = np.fmax.reduceat(y, lo)
    xs = np.empty(2 * nb, dtype=x.dtype)
    ys = np.empty(2 * nb, np.float32)
    xs[0::2], xs[1::2] = x[lo], x[hi]
    ys[0::2], ys[1::2] = ymin, ymax
    return xs, ys


def bucket_columns(a, max_cols: int = 1000, how: str = "mean"):
    """(rows, cols) -> (rows, <= max_cols) by the mean (or max) of column buckets, NaN-aware."""
    a = _f32(a)
    n = a.shape[1]
    if n <= max_cols:
        return a
    edges = np.linspace(0, n, max_cols + 1).astype(np.int64)[:-1]
    if how == "max":
        return np.fmax.reduceat(a, edges, axis=1)
    ok = ~np.isnan(a)
    s = np.add.reduceat(np.where(ok, a, 0.0), edges, axis=1)
    c = np.add.reduceat(ok, edges, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan).astype(np.float32)


def sample_view(batch, i: int, max_points: int = 2000, tracks=None) -> dict:
    """Sample `i` of a Batch in genome orientation, ready to plot: the target bins' genomic x,
    each track's (decimated) curve, the coordinates, and the DNA of the input window. `tracks`
    (names) limits the curves to those (a batch of thousands of tracks draws a few)."""
    i = int(np.clip(i, 0, batch.batch_size - 1))
    rc = bool(batch.reverse_complement[i])
    vals = _f32(batch.values[i])                        # (bins, tracks)
    if rc:                                              # the batch holds it reversed: undo for plotting
        vals = vals[::-1]
        partners = getattr(batch, "strand_partners", None)
        if partners is not None:                        # and strand pairs swapped back (an involution)
            vals = vals[:, partners]
    ts, te = int(batch.target_starts[i]), int(batch.target_ends[i])
    nbins = vals.shape[0]
    width = (te - ts) / max(nbins, 1)
    x = ts + (np.arange(nbins) + 0.5) * width
    curves = {}
    wanted = None if tracks is None else set(tracks)
    for t, name in enumerate(batch.track_names):
        if wanted is None or name in wanted:
            curves[name] = minmax_decimate(x, vals[:, t], max_points)
    chrom = str(batch.chromosomes[i])
    s, e = int(batch.starts[i]), int(batch.ends[i])
    out = dict(index=i, chrom=chrom, start=s, end=e, target_start=ts, target_end=te,
               strand="-" if rc else "+", window=width, curves=curves, n_points=nbins,
               n_tracks=len(batch.track_names),
               coordinates=f"{chrom}:{s:,}-{e:,} ({'-' if rc else '+'})", dna=None, source=None)
    names, src = getattr(batch, "region_source_names", ()), getattr(batch, "region_source", None)
    if len(names) > 1 and src is not None:              # a weighted mixture: which source
        out["source"] = names[int(src[i])]
    if batch.sequences is not None:
        out["dna"] = dna_view(batch.sequences[i], s, e, rc)
    return out


def dna_view(one_hot, start: int, end: int, rc: bool, max_letters: int = 200, max_cols: int = 2000) -> dict:
    """One-hot (L, 4) -> letters (short windows) or a 4 x columns base-composition strip, in genome
    orientation (a reverse-complemented sample is complemented back)."""
    oh = _f32(one_hot)
    if rc:
        oh = oh[::-1, ::-1]                 # reverse + complement (A<->T, C<->G with ACGT channels)
    L = oh.shape[0]
    if L <= max_letters:
        known = oh.max(axis=1) > 0.5
        letters = np.where(known, np.array(list("ACGT"))[oh.argmax(axis=1)], "N")
        return dict(kind="letters", start=start, end=end, letters="".join(letters.tolist()))
    strip = bucket_columns(oh.T, max_cols)             # (4, cols) fraction of each base
    return dict(kind="strip", start=start, end=end, strip=strip)

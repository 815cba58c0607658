"""A small, realistic demo collection: bigWig tracks and a matching reference FASTA.

``write_demo_collection(directory)`` writes, into ``directory`` only:

- ``<track>.bw`` for each track: bedGraph records (runs of constant value) shaped like real assays:
  ChIP-seq histone marks and transcription factors (peaks of varying height and width over a low
  background), ATAC-seq (many narrow peaks, near-zero elsewhere) and stranded RNA-seq (signal on
  exon blocks of genes only);
- ``genome.fa`` and ``genome.fa.fai``: a reference whose chromosome names and sizes equal the
  bigWigs', with soft-masked (lowercase) repeat stretches and runs of ``N`` (assembly gaps; no track
  has signal there).

Everything is generated with vectorised NumPy from one seed: the same seed gives byte-identical
files. The bigWigs are written with pyBigWig when it is importable, else with bwloader's own writer.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_CHROM_SIZES", "demo_track_names", "write_demo_collection", "demo_signal",
           "user_cache_dir", "default_demo_dir", "ensure_demo_collection"]

#: about 5 Mb over five chromosomes
DEFAULT_CHROM_SIZES = {"chr1": 2_000_000, "chr2": 1_500_000, "chr3": 1_000_000, "chrX": 500_000,
                       "chrM": 16_569}

# (assay, kind) in the order tracks are handed out; replicates are numbered when the list repeats
_TRACK_TEMPLATE = [
    ("H3K27ac", "chip"), ("H3K4me3", "chip"), ("CTCF", "tf"), ("ATAC", "atac"),
    ("RNA_plus", "rna"), ("RNA_minus", "rna"), ("H3K4me1", "chip"), ("POLR2A", "tf"),
]
FASTA_LINE = 60


def demo_track_names(n_tracks: int) -> list[tuple[str, str]]:
    """(track name, kind) for `n_tracks` demo tracks: H3K27ac_rep1, H3K4me3_rep1, ..."""
    if n_tracks < 1:
        raise ValueError(f"n_tracks must be at least 1, got {n_tracks}")
    out = []
    for i in range(n_tracks):
        assay, kind = _TRACK_TEMPLATE[i % len(_TRACK_TEMPLATE)]
        out.append((f"{assay}_rep{i // len(_TRACK_TEMPLATE) + 1}", kind))
    return out


# ------------------------------------------------------------------------------------------------
# genome layout shared by every track and the FASTA: assembly gaps (N runs) and repeats
# ------------------------------------------------------------------------------------------------
def _intervals(rng, size, fraction, mean_len, min_len=1):
    """Sorted, disjoint [start, end) intervals covering about `fraction` of [0, size)."""
    n = max(1, int(size * fraction / mean_len))
    lens = np.maximum(min_len, rng.exponential(mean_len, n)).astype(np.int64)
    starts = np.sort(rng.integers(0, size, n))
    ends = np.minimum(starts + lens, size)
    # make disjoint: each start at least the running max of previous ends
    prev_end = np.concatenate([[0], np.maximum.accumulate(ends)[:-1]])
    starts = np.maximum(starts, prev_end)
    keep = ends > starts
    return starts[keep], ends[keep]


def _genome_layout(chrom_sizes, seed):
    """Per chromosome: N gaps (telomere ends + a few internal gaps) and soft-masked repeats."""
    layout = {}
    for ci, (name, size) in enumerate(chrom_sizes.items()):
        rng = np.random.default_rng([seed, 1_000_003, ci])
        tel = min(10_000, size // 50)
        gs, ge = _intervals(rng, size, 0.01, 20_000, min_len=500) if size > 200_000 else \
            (np.zeros(0, np.int64), np.zeros(0, np.int64))
        gs = np.concatenate([[0], gs, [size - tel]]) if tel else gs
        ge = np.concatenate([[tel], ge, [size]]) if tel else ge
        keep = ge > gs
        gs, ge = gs[keep], ge[keep]
        gs, ge = _merge_intervals(gs, ge)
        rs, re_ = _intervals(rng, size, 0.35, 300, min_len=20)
        layout[name] = dict(gap_starts=gs.astype(np.int64), gap_ends=ge.astype(np.int64),
                            repeat_starts=rs, repeat_ends=re_)
    return layout


def _merge_intervals(starts, ends):
    """Union of [start, end) intervals as sorted disjoint intervals."""
    if len(starts) == 0:
        return starts.astype(np.int64), ends.astype(np.int64)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    new = np.concatenate([[True], s[1:] > e[:-1]])
    last = np.append(np.flatnonzero(new)[1:] - 1, len(s) - 1)
    return s[new].astype(np.int64), e[last].astype(np.int64)


def _mask(size, starts, ends):
    """Boolean (size,) array, True inside the intervals (vectorised difference array)."""
    d = np.zeros(size + 1, np.int32)
    np.add.at(d, starts, 1)
    np.add.at(d, ends, -1)
    return np.cumsum(d[:-1]) > 0


# ------------------------------------------------------------------------------------------------
# signal
# ------------------------------------------------------------------------------------------------
def _runs(rng, size, mean_len):
    """Contiguous runs tiling [0, size) with lengths around `mean_len`."""
    n = int(size / mean_len * 1.3) + 16
    lens = rng.geometric(1.0 / mean_len, n).astype(np.int64)
    ends = np.cumsum(lens)
    ends = ends[ends < size]
    ends = np.append(ends, size)
    starts = np.concatenate([[0], ends[:-1]])
    return starts, ends


def _peak_signal(rng, x, size, n_peaks, width_range, height_sigma, height_median):
    """Sum of the two nearest Gaussian peaks at positions `x` (vectorised over x)."""
    centers = np.sort(rng.integers(0, size, max(1, n_peaks)))
    widths = rng.uniform(*width_range, len(centers))
    heights = height_median * rng.lognormal(0.0, height_sigma, len(centers))
    j = np.clip(np.searchsorted(centers, x), 1, len(centers) - 1) if len(centers) > 1 else np.zeros(len(x), int)
    out = np.zeros(len(x))
    for k in (j - 1, j) if len(centers) > 1 else (j,):
        z = (x - centers[k]) / (widths[k] / 2.5)
        out += heights[k] * np.exp(-0.5 * z * z)
    return out


def demo_signal(kind: str, size: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, values float32) of one chromosome of one track, before gaps are applied."""
    if kind in ("chip", "tf"):
        starts, ends = _runs(rng, size, 30.0)
        mid = (starts + ends) / 2
        if kind == "chip":
            sig = _peak_signal(rng, mid, size, size // 15_000, (500, 4000), 0.8, 6.0)
        else:
            sig = _peak_signal(rng, mid, size, size // 25_000, (150, 400), 1.0, 15.0)
        background = rng.gamma(2.0, 0.15, len(starts))
        values = sig + background
        # ~10% of the chromosome uncovered (no reads): drop runs in random stretches
        gs, ge = _intervals(rng, size, 0.10, 3_000, min_len=100)
    elif kind == "atac":
        starts, ends = _runs(rng, size, 20.0)
        mid = (starts + ends) / 2
        values = _peak_signal(rng, mid, size, size // 4_000, (80, 300), 1.0, 10.0)
        values += rng.gamma(1.0, 0.05, len(starts))
        # sparse: tiny values are not reported
        keep = values > 0.08
        starts, ends, values = starts[keep], ends[keep], values[keep]
        gs, ge = _intervals(rng, size, 0.10, 2_000, min_len=100)
    elif kind == "rna":
        # genes with exon blocks; signal only on exons
        n_genes = max(1, size // 40_000)
        g_start = np.sort(rng.integers(0, max(1, size - 60_000), n_genes))
        n_ex = rng.integers(2, 12, n_genes)
        g_expr = rng.lognormal(1.0, 1.2, n_genes)
        gene = np.repeat(np.arange(n_genes), n_ex)
        ex_len = rng.integers(80, 400, len(gene))
        intron = rng.integers(300, 6000, len(gene))
        first = np.concatenate([[0], np.cumsum(n_ex)[:-1]])
        step = ex_len + intron
        offs = np.cumsum(step) - step
        offs = offs - np.repeat(offs[first], n_ex)
        ex_s = g_start[gene] + offs
        ex_e = np.minimum(ex_s + ex_len, size)
        ok = ex_e > ex_s
        ex_s, ex_e, gene = ex_s[ok], ex_e[ok], gene[ok]
        covered = _mask(size, ex_s, ex_e)
        starts, ends = _runs(rng, size, 25.0)
        keep = covered[starts]
        starts, ends = starts[keep], ends[keep]
        gi = gene[np.clip(np.searchsorted(ex_s, starts, side="right") - 1, 0, len(ex_s) - 1)]
        values = g_expr[gi] * rng.gamma(8.0, 1 / 8.0, len(starts))
        gs, ge = np.zeros(0, np.int64), np.zeros(0, np.int64)
    else:
        raise ValueError(f"unknown demo track kind {kind!r}")
    if len(gs):
        holes = _mask(size, gs, ge)
        keep = ~holes[starts]
        starts, ends, values = starts[keep], ends[keep], values[keep]
    # values as a coverage track would store them: 2 decimals
    values = np.round(values, 2).astype(np.float32)
    return _merge_equal(starts, ends, values)


def _merge_equal(starts, ends, values):
    """Merge adjacent touching runs of equal value (as bedGraph writers do)."""
    if len(starts) < 2:
        return starts.astype(np.int64), ends.astype(np.int64), values
    new = np.ones(len(starts), bool)
    new[1:] = (starts[1:] != ends[:-1]) | (values[1:] != values[:-1])
    idx = np.flatnonzero(new)
    last = np.append(idx[1:] - 1, len(starts) - 1)
    return starts[idx].astype(np.int64), ends[last].astype(np.int64), values[idx]


def _cut_gaps(starts, ends, values, gap_starts, gap_ends, size):
    """Drop records inside assembly gaps, trimming records that straddle a gap edge."""
    if len(gap_starts) == 0 or len(starts) == 0:
        return starts, ends, values
    # the covered (non-gap) stretches
    ok_s = np.concatenate([[0], gap_ends])
    ok_e = np.concatenate([gap_starts, [size]])
    good = ok_e > ok_s
    ok_s, ok_e = ok_s[good], ok_e[good]
    # each record intersects the stretch holding its start and maybe more; split by stretch
    k = np.maximum(np.searchsorted(ok_s, starts, side="right") - 1, 0)
    k_end = np.searchsorted(ok_s, ends - 1, side="right") - 1
    n = np.maximum(k_end - k + 1, 0)
    rep = np.repeat(np.arange(len(starts)), n)
    kk = np.repeat(k - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
    s = np.maximum(starts[rep], ok_s[kk])
    e = np.minimum(ends[rep], ok_e[kk])
    keep = e > s
    return s[keep], e[keep], values[rep][keep]


# ------------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------------
def _pick_writer(writer):
    if writer not in ("auto", "pybigwig", "bwloader"):
        raise ValueError(f"writer must be 'auto', 'pybigwig' or 'bwloader', got {writer!r}")
    if writer in ("auto", "pybigwig"):
        try:
            import pyBigWig  # noqa: F401
            return "pybigwig"
        except ImportError:
            if writer == "pybigwig":
                raise ImportError("writer='pybigwig' needs pyBigWig (pip install pyBigWig)") from None
    return "bwloader"


def _write_bigwig(path, chrom_sizes, records, writer):
    tmp = str(path) + ".tmp"
    if writer == "pybigwig":
        import pyBigWig
        bw = pyBigWig.open(tmp, "w")
        try:
            bw.addHeader([(n, int(s)) for n, s in chrom_sizes.items()], maxZooms=10)
            for name in chrom_sizes:
                s, e, v = records[name]
                if len(s) == 0:
                    continue
                bw.addEntries([name] * len(s), s.astype(np.int64), ends=e.astype(np.int64),
                              values=v.astype(np.float64))
        finally:
            bw.close()
    else:
        from .format.writer import write_bigwig
        write_bigwig(tmp, chrom_sizes, {n: r for n, r in records.items() if len(r[0])},
                     zoom_levels=4)
    os.replace(tmp, path)


def _write_fasta(path, chrom_sizes, layout, seed):
    """FASTA with 60-base lines and its .fai (written after the FASTA so it is never stale)."""
    lut_upper = np.frombuffer(b"ACGT", np.uint8)
    fai = []
    offset = 0
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as fh:
        for ci, (name, size) in enumerate(chrom_sizes.items()):
            rng = np.random.default_rng([seed, 2_000_003, ci])
            # GC content varying in 5-kb stretches between 35% and 60%
            gc = np.repeat(rng.uniform(0.35, 0.60, size // 5000 + 1), 5000)[:size]
            u = rng.random(size)
            base = np.where(u < gc, np.where(u < gc / 2, 1, 2), np.where(u < gc + (1 - gc) / 2, 0, 3))
            seq = lut_upper[base]
            lay = layout[name]
            rep = _mask(size, lay["repeat_starts"], lay["repeat_ends"])
            seq = np.where(rep, seq + 32, seq).astype(np.uint8)      # soft-mask: lowercase
            seq[_mask(size, lay["gap_starts"], lay["gap_ends"])] = ord("N")
            header = f">{name}\n".encode()
            fh.write(header)
            offset += len(header)
            n_full = size // FASTA_LINE
            body = np.empty(n_full * (FASTA_LINE + 1), np.uint8).reshape(n_full, FASTA_LINE + 1)
            body[:, :FASTA_LINE] = seq[: n_full * FASTA_LINE].reshape(n_full, FASTA_LINE)
            body[:, FASTA_LINE] = ord("\n")
            fh.write(body.tobytes())
            tail = seq[n_full * FASTA_LINE:]
            if len(tail):
                fh.write(tail.tobytes() + b"\n")
            fai.append(f"{name}\t{size}\t{offset}\t{FASTA_LINE}\t{FASTA_LINE + 1}\n")
            offset += body.size + (len(tail) + 1 if len(tail) else 0)
    os.replace(tmp, path)
    with open(str(path) + ".fai", "w") as fh:
        fh.writelines(fai)


def write_demo_collection(directory, n_tracks: int = 8, chrom_sizes=None, seed: int = 0,
                          writer: str = "auto") -> dict:
    """Write the demo bigWigs and `genome.fa` (+ `.fai`) into `directory` (created if missing).

    Returns ``dict(paths=[...bigWig paths in track order], fasta=path, track_names=[...],
    chrom_sizes={...}, writer="pybigwig"|"bwloader")``. The same arguments give byte-identical
    files. `writer` picks the bigWig writer: "auto" (pyBigWig if importable, else bwloader's own),
    "pybigwig" or "bwloader".
    """
    if isinstance(n_tracks, bool) or not isinstance(n_tracks, (int, np.integer)) or n_tracks < 1:
        raise ValueError(f"n_tracks must be a positive integer, got {n_tracks!r}")
    chrom_sizes = dict(DEFAULT_CHROM_SIZES if chrom_sizes is None else chrom_sizes)
    if not chrom_sizes:
        raise ValueError("chrom_sizes must name at least one chromosome")
    for n, s in chrom_sizes.items():
        if not isinstance(n, str) or not n or any(c.isspace() for c in n):
            raise ValueError(f"chromosome names must be non-empty strings without spaces, got {n!r}")
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"size of {n!r} must be a positive integer, got {s!r}")
    chrom_sizes = {n: int(s) for n, s in chrom_sizes.items()}
    which = _pick_writer(writer)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    layout = _genome_layout(chrom_sizes, seed)
    paths, names = [], []
    for t, (name, kind) in enumerate(demo_track_names(int(n_tracks))):
        records = {}
        for ci, (chrom, size) in enumerate(chrom_sizes.items()):
            rng = np.random.default_rng([seed, t, ci])
            s, e, v = demo_signal(kind, size, rng)
            lay = layout[chrom]
            records[chrom] = _cut_gaps(s, e, v, lay["gap_starts"], lay["gap_ends"], size)
        p = out / f"{name}.bw"
        _write_bigwig(p, chrom_sizes, records, which)
        paths.append(str(p))
        names.append(name)
    fasta = out / "genome.fa"
    _write_fasta(fasta, chrom_sizes, layout, seed)
    info = dict(paths=paths, fasta=str(fasta), track_names=names, chrom_sizes=chrom_sizes, writer=which)
    with open(out / "demo_collection.json", "w") as fh:   # relative names: the folder can move
        json.dump(dict(tracks=[Path(p).name for p in paths], fasta=fasta.name, chrom_sizes=chrom_sizes,
                       writer=which, seed=seed, n_tracks=int(n_tracks)), fh, indent=1)
    return info


def user_cache_dir() -> Path:
    """bwloader's per-user cache folder: ``$XDG_CACHE_HOME/bwloader`` (default ``~/.cache/bwloader``)
    on Linux, ``~/Library/Caches/bwloader`` on macOS, ``%LOCALAPPDATA%\\bwloader\\Cache`` on
    Windows (the folders platformdirs would pick). Never next to the installed package."""
    import sys
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "bwloader" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "bwloader"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"   # XDG: relative paths are ignored
    return base / "bwloader"


def default_demo_dir() -> Path:
    """Where `bwloader serve` (without --data) keeps the demo collection: ``user_cache_dir()/demo_data``."""
    return user_cache_dir() / "demo_data"


def ensure_demo_collection(directory=None, **kwargs) -> Path:
    """The demo collection in `directory` (default `default_demo_dir()`), written when it is not
    there yet. Written into a temporary sibling folder and renamed into place, so that two
    processes starting at once never see a half-written collection. Returns the folder."""
    import shutil
    import tempfile

    out = Path(directory) if directory is not None else default_demo_dir()
    if (out / "demo_collection.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_demo_collection(tmp, **kwargs)
        try:
            os.rename(tmp, out)            # atomic; fails when `out` exists (another process won)
        except OSError:
            if not (out / "demo_collection.json").is_file():
                if out.is_dir() and not any(out.iterdir()):
                    out.rmdir()
                    os.rename(tmp, out)
                else:
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out

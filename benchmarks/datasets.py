"""Benchmark collections, generated once and cached under ``benchmarks/out/data/``.

The default collection: about 200 Mb of genome over three chromosomes, 16 bigWig tracks of
bedGraph records (runs of about 25 bp with about 10% of the genome uncovered, in gaps of varied
length), written by pyBigWig so that every reader under test (bwloader, pyBigWig, pybigtools) reads
files from a writer that is not ours. Track ``i`` depends only on (seed, i, genome, run length,
gap fraction), so smaller collections are prefixes of larger ones: the 3-track benchmark shape
uses the first 3 files of the 16.

Use from another benchmark script::

    sys.path.insert(0, str(Path(__file__).parent)); import datasets
    paths = datasets.benchmark_collection(n_tracks=16)

or ``load_datasets_module()`` from ``bench_get_batch.py`` (imports this file by path, so the name
never clashes with the Hugging Face ``datasets`` package).

Also here: ``BlockDisjointSampler`` draws random fixed-length queries of which no two touch the
same data block of any file (no reader can reuse a decoded block between queries).
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_ROOT = HERE / "out" / "data"
FORMAT_VERSION = 1          # bump when the generator changes: the cache key changes with it

# fractions of the genome per chromosome
_CHROM_FRACTIONS = (("chr1", 0.45), ("chr2", 0.35), ("chr3", 0.20))


def chrom_sizes_for(genome_mb: float) -> dict[str, int]:
    total = int(round(genome_mb * 1_000_000))
    return {name: max(1_000, int(total * f)) for name, f in _CHROM_FRACTIONS}


def dataset_dir(genome_mb=200, run_bp=25, gap_fraction=0.10, seed=0, root=None) -> Path:
    key = f"g{genome_mb:g}mb_run{run_bp}_gap{gap_fraction:g}_seed{seed}_v{FORMAT_VERSION}"
    return Path(root or DATA_ROOT) / key


def track_records(chrom_size: int, rng, run_bp: int = 25, gap_fraction: float = 0.10):
    """(starts, ends, values float32) of one chromosome: runs of run_bp +- 40% with a smooth,
    peaky level (as coverage tracks have) and about `gap_fraction` of the bases in gaps."""
    n = int(chrom_size / run_bp * 1.05) + 16
    lo, hi = max(1, int(run_bp * 0.6)), max(2, int(run_bp * 1.4) + 1)
    lens = rng.integers(lo, hi, n)
    ends = np.cumsum(lens)
    ends = ends[ends < chrom_size]
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    ends = ends.astype(np.int64)
    # level: lognormal per 2 kb, so neighbouring runs have similar values; noise per run
    bins = chrom_size // 2000 + 1
    level = rng.lognormal(0.0, 1.0, bins) * (rng.random(bins) < 0.3) + 0.2
    values = level[starts // 2000] * rng.gamma(4.0, 0.25, len(starts))
    values = np.round(values, 2).astype(np.float32)
    # gaps: exponential lengths (mean 2 kb) covering about gap_fraction
    n_gaps = max(1, int(chrom_size * gap_fraction / 2000))
    g_start = rng.integers(0, chrom_size, n_gaps)
    g_len = rng.exponential(2000, n_gaps).astype(np.int64) + 50
    d = np.zeros(chrom_size + 1, np.int32)
    np.add.at(d, g_start, 1)
    np.add.at(d, np.minimum(g_start + g_len, chrom_size), -1)
    in_gap = np.cumsum(d[:-1]) > 0
    keep = ~in_gap[starts]
    return starts[keep], ends[keep], values[keep]


def _write_track(path: str, chrom_sizes: dict, seed: int, index: int, run_bp: int, gap_fraction: float):
    import pyBigWig

    tmp = path + f".tmp{os.getpid()}"
    bw = pyBigWig.open(tmp, "w")
    try:
        bw.addHeader(list(chrom_sizes.items()), maxZooms=10)
        for ci, (chrom, size) in enumerate(chrom_sizes.items()):
            rng = np.random.default_rng([seed, index, ci])
            s, e, v = track_records(size, rng, run_bp, gap_fraction)
            step = 1_000_000
            for i in range(0, len(s), step):
                k = slice(i, i + step)
                bw.addEntries([chrom] * len(s[k]), s[k], ends=e[k], values=v[k].astype(np.float64))
    finally:
        bw.close()
    os.replace(tmp, path)
    return path


def benchmark_collection(n_tracks: int = 16, genome_mb: float = 200, run_bp: int = 25,
                         gap_fraction: float = 0.10, seed: int = 0, root=None, workers=None,
                         verbose: bool = True) -> list[str]:
    """Paths of `n_tracks` benchmark bigWigs, generating the missing ones (in parallel processes)."""
    d = dataset_dir(genome_mb, run_bp, gap_fraction, seed, root)
    d.mkdir(parents=True, exist_ok=True)
    sizes = chrom_sizes_for(genome_mb)
    paths = [str(d / f"track{i:02d}.bw") for i in range(n_tracks)]
    missing = [i for i, p in enumerate(paths) if not os.path.exists(p)]
    if missing:
        if verbose:
            print(f"generating {len(missing)} benchmark tracks in {d} "
                  f"({sum(sizes.values()) / 1e6:.0f} Mb, runs ~{run_bp} bp, ~{gap_fraction:.0%} gaps; once)",
                  flush=True)
        t0 = time.perf_counter()
        workers = workers or max(1, min(len(missing), os.cpu_count() or 1, 8))
        if workers == 1:
            for i in missing:
                _write_track(paths[i], sizes, seed, i, run_bp, gap_fraction)
        else:
            with ProcessPoolExecutor(workers) as ex:
                list(ex.map(_write_track, [paths[i] for i in missing], [sizes] * len(missing),
                            [seed] * len(missing), missing, [run_bp] * len(missing),
                            [gap_fraction] * len(missing)))
        if verbose:
            print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
        with open(d / "dataset.json", "w") as fh:
            json.dump(dict(chrom_sizes=sizes, run_bp=run_bp, gap_fraction=gap_fraction, seed=seed,
                           writer="pyBigWig", version=FORMAT_VERSION), fh, indent=1)
    return paths


class BlockDisjointSampler:
    """Random fixed-length queries, no two of which touch the same data block of any file.

    Block extents come from each file's R-tree leaves (``BigWigFile.block_start_key`` /
    ``block_end_key`` in the file's linear key space ``chrom_offsets[chrom] + base``). Queries
    are drawn uniformly over the genome (chromosome by size) and accepted greedily.
    """

    def __init__(self, paths, length: int, chrom_sizes=None):
        from bwloader_core import BigWigFile

        self.length = int(length)
        self.files = []
        sizes: dict[str, int] = {}
        for p in paths:
            with BigWigFile(p) as f:
                self.files.append(dict(
                    offsets={n: int(f.chrom_offsets[i]) for i, n in enumerate(f.chrom_names)},
                    start=f.block_start_key.copy(),
                    end_cummax=np.maximum.accumulate(f.block_end_key) if f.n_blocks else f.block_end_key.copy(),
                    end=f.block_end_key.copy()))
                for n, s in f.chrom_sizes.items():
                    sizes[n] = max(s, sizes.get(n, 0))
        self.chrom_sizes = dict(chrom_sizes or sizes)
        self.names = [n for n, s in self.chrom_sizes.items() if s >= self.length]
        if not self.names:
            raise ValueError(f"no chromosome is as long as the query length {self.length}")
        w = np.array([self.chrom_sizes[n] - self.length + 1 for n in self.names], np.float64)
        self._p = w / w.sum()

    def _touched(self, chrom_idx, starts):
        """Per file, the [lo, hi) range of block indices each candidate overlaps."""
        ranges = []
        for f in self.files:
            off = np.array([f["offsets"].get(n, -1) for n in self.names], np.int64)[chrom_idx]
            has = off >= 0
            ks = np.where(has, off + starts, 0)
            ke = np.where(has, ks + self.length, 0)
            lo = np.searchsorted(f["end_cummax"], ks, side="right")
            hi = np.searchsorted(f["start"], ke, side="left")
            hi = np.where(has, np.maximum(hi, lo), lo)
            ranges.append((lo.tolist(), hi.tolist()))
        return ranges

    def sample(self, n: int, rng, max_candidates: int | None = None):
        """Up to `n` block-disjoint queries (chroms list, starts int64, ends int64) in random order.

        Returns fewer when the genome runs out of free blocks (check ``len(starts)``). Queries that
        touch no block at all (between blocks, e.g. in long gaps) are kept in the proportion in
        which they occur among random queries, never more: a saturated pool would otherwise fill up
        with them."""
        used = [set() for _ in self.files]
        hit, empty = [], []                     # accepted (chrom index, start)
        n_hit_cand = n_empty_cand = 0
        max_candidates = max_candidates or max(20 * n, 2000)
        sizes = np.array([self.chrom_sizes[x] for x in self.names], np.int64)
        tried = 0

        def n_empty_allowed():
            return len(empty) if n_hit_cand == 0 else \
                min(len(empty), int(round(len(hit) * n_empty_cand / n_hit_cand)))

        while len(hit) + n_empty_allowed() < n and tried < max_candidates:
            m = min(4096, max_candidates - tried)
            ci = rng.choice(len(self.names), size=m, p=self._p)
            st = (rng.random(m) * (sizes[ci] - self.length + 1)).astype(np.int64)
            ranges = self._touched(ci, st)
            accepted_hits = 0
            for j in range(m):
                touches = any(hi[j] > lo[j] for lo, hi in ranges)
                if not touches:
                    n_empty_cand += 1
                    empty.append((ci[j], st[j]))
                    continue
                n_hit_cand += 1
                if any(b in u for (lo, hi), u in zip(ranges, used) for b in range(lo[j], hi[j])):
                    continue
                for (lo, hi), u in zip(ranges, used):
                    u.update(range(lo[j], hi[j]))
                hit.append((ci[j], st[j]))
                accepted_hits += 1
                if len(hit) + n_empty_allowed() >= n:
                    break
            tried += m
            if accepted_hits == 0:
                break           # saturated: a whole chunk of candidates found no free block
        picked = hit + empty[:n_empty_allowed()]
        picked = [picked[i] for i in rng.permutation(len(picked))][:n]
        chroms = [self.names[c] for c, _ in picked]
        starts = np.array([s for _, s in picked], np.int64)
        return chroms, starts, starts + self.length

    def verify(self, chroms, starts, ends) -> bool:
        """True when no two of the queries touch the same block of any file."""
        names = {n: i for i, n in enumerate(self.names)}
        ci = np.array([names[c] for c in chroms], np.int64)
        for lo, hi in self._touched(ci, np.asarray(starts, np.int64)):
            seen = set()
            for a, b in zip(lo, hi):
                r = set(range(a, b))
                if seen & r:
                    return False
                seen |= r
        return True

"""A small test collection for the streaming tests: a few bigWig tracks (written by pyBigWig) and a
matching FASTA, deterministic from a seed.

    data = write_stream_data(tmp_dir, seed=0)
    data.bigwig_paths, data.fasta, data.chrom_sizes, data.track_names

Track 0 holds bedGraph records (runs with gaps), track 1 variableStep records, track 2 fixedStep
records on chr1 and bedGraph elsewhere, and it lacks chr3 (so a query there reads the default).
The FASTA mixes upper- and lowercase (soft-masked) bases with runs of N and uses 60-base lines.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

CHROM_SIZES = {"chr1": 200_000, "chr2": 120_000, "chr3": 60_000}


@dataclasses.dataclass(frozen=True)
class StreamData:
    directory: str
    bigwig_paths: list
    fasta: str
    chrom_sizes: dict
    track_names: list


def _bedgraph(rng, size, run=25, gap_fraction=0.1):
    n = size // 8
    lengths = rng.integers(1, 2 * run, n)
    gaps = np.where(rng.random(n) < gap_fraction, rng.integers(1, 400, n), 0)
    starts = np.cumsum(lengths + gaps) - lengths
    ends = starts + lengths
    keep = ends <= size
    starts, ends = starts[keep], ends[keep]
    values = np.round(rng.normal(2.0, 3.0, len(starts)), 3)
    return starts.astype(np.int64), ends.astype(np.int64), values.astype(np.float64)


def _write_bigwig(path, chrom_sizes, rng, index):
    import pyBigWig

    bw = pyBigWig.open(str(path), "w")
    try:
        chroms = [(c, s) for c, s in chrom_sizes.items() if not (index == 2 and c == "chr3")]
        bw.addHeader(chroms, maxZooms=4)
        for chrom, size in chroms:
            if index == 1:  # variableStep: starts with gaps, fixed span
                span = 20
                starts = np.cumsum(rng.integers(span, span + 60, size // span))
                starts = starts[starts + span <= size].astype(np.int64)
                values = np.round(rng.gamma(2.0, 1.5, len(starts)), 3)
                bw.addEntries(chrom, starts.tolist(), values=values.tolist(), span=span)
            elif index == 2 and chrom == "chr1":  # fixedStep over the middle of the chromosome
                start, step, span = 1_000, 50, 50
                n = (size - 2 * start) // step
                values = np.round(rng.normal(0.0, 1.0, n), 3)
                bw.addEntries(chrom, start, values=values.tolist(), span=span, step=step)
            else:
                s, e, v = _bedgraph(rng, size)
                bw.addEntries([chrom] * len(s), s.tolist(), ends=e.tolist(), values=v.tolist())
    finally:
        bw.close()


def _write_fasta(path, chrom_sizes, rng, width=60):
    letters = np.frombuffer(b"ACGTacgt", dtype=np.uint8)
    with open(path, "wb") as fh:
        for chrom, size in chrom_sizes.items():
            upper = letters[rng.integers(0, 4, size)]
            lower = rng.random(size) < 0.15  # soft-masked stretches (per base is enough here)
            seq = np.where(lower, upper + 32, upper).astype(np.uint8)
            for _ in range(5):  # runs of N (some lowercase n)
                a = int(rng.integers(0, size - 500))
                seq[a:a + int(rng.integers(20, 400))] = ord("N") if rng.random() < 0.7 else ord("n")
            seq[:100] = ord("N")  # the chromosome starts with N
            fh.write(f">{chrom} test contig\n".encode())
            raw = seq.tobytes()
            for i in range(0, size, width):
                fh.write(raw[i:i + width] + b"\n")


def write_stream_data(directory, seed: int = 0, n_tracks: int = 3, chrom_sizes=None) -> StreamData:
    """Write `n_tracks` bigWigs (track{i}.bw) and genome.fa into `directory`; same seed, same bytes."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sizes = dict(chrom_sizes or CHROM_SIZES)
    paths = []
    for i in range(n_tracks):
        p = d / f"track{i}.bw"
        _write_bigwig(p, sizes, np.random.default_rng([seed, i]), i % 3 if i < 3 else 0)
        paths.append(str(p))
    fasta = d / "genome.fa"
    _write_fasta(fasta, sizes, np.random.default_rng([seed, 1000]))
    return StreamData(str(d), paths, str(fasta), sizes, [Path(p).stem for p in paths])

#!/usr/bin/env python
"""Samples/s of the full stream (LoaderConfig.build() with a reference genome) against bare
BigWigCollection.get_batch calls on exactly the same queries.

    python benchmarks/bench_stream.py                    # 50 Mb x 3 tracks, batch 256, 1000 bp
    python benchmarks/bench_stream.py --batches 20 --repeats 2

The collection comes from benchmarks/datasets.py (bedGraph runs of ~25 bp, ~10% gaps, written by
pyBigWig, cached under benchmarks/out/data/); a random FASTA of the same chromosomes is written next
to it once. For each measured epoch:

- stream: ``cfg.build()`` (num_workers worker threads, feeder thread, one-hot sequences from the
  FASTA, values), timed from ``iter()`` to the last batch, thread start-up included;
- bare: the same epoch's query batches, drawn beforehand from the dataset's own
  QueryBatchGenerator, passed one after another to ``coll.get_batch(chroms, target_starts,
  target_ends, tracks=...)`` on one thread (its BatchProcessor uses all CPUs for inflate).

Epochs alternate between the two (each measurement sees new queries; both see the same ones), after
one warm-up epoch of each. The bar: the stream delivers at least 80% of bare get_batch's samples/s
(it also reads and one-hot encodes the sequences, so the workers must hide that cost).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import load_module  # noqa: E402

BAR = 0.80


def load_datasets_module():
    return load_module("datasets", "datasets.py")


def write_random_fasta(path: Path, chrom_sizes: dict, seed: int = 0, width: int = 60) -> Path:
    """Random ACGT (15% lowercase, a few runs of N), cached: written once per collection."""
    if path.exists():
        return path
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    rng = np.random.default_rng([seed, 7919])
    letters = np.frombuffer(b"ACGTacgt", np.uint8)
    with open(tmp, "wb") as fh:
        for chrom, size in chrom_sizes.items():
            fh.write(f">{chrom}\n".encode())
            for lo in range(0, size, 10_000_020):  # chunks of whole lines
                n = min(10_000_020, size - lo)
                seq = letters[rng.integers(0, 4, n) + 4 * (rng.random(n) < 0.15)]
                for _ in range(max(1, n // 2_000_000)):
                    a = int(rng.integers(0, max(1, n - 5000)))
                    seq[a:a + int(rng.integers(100, 5000))] = ord("N")
                pad = (-n) % width
                lines = np.concatenate([seq, np.zeros(pad, np.uint8)]).reshape(-1, width)
                lines = np.concatenate([lines, np.full((len(lines), 1), ord("\n"), np.uint8)], axis=1)
                raw = lines.tobytes()
                if pad:
                    raw = raw[:-(pad + 1)] + b"\n"
                fh.write(raw)
    os.replace(tmp, path)
    return path


def collection(genome_mb: float, n_tracks: int, seed: int):
    ds_mod = load_datasets_module()
    paths = ds_mod.benchmark_collection(n_tracks=n_tracks, genome_mb=genome_mb, run_bp=25, gap_fraction=0.10,
                                        seed=seed)
    sizes = ds_mod.chrom_sizes_for(genome_mb)
    fasta = write_random_fasta(Path(paths[0]).parent / "genome.fa", sizes, seed)
    return paths, str(fasta), sizes


def run_stream(ds, epoch: int):
    ds.set_epoch(epoch)
    n = 0
    t0 = time.perf_counter()
    first = None
    for b in ds:
        n += b.batch_size
        if first is None:
            first = b
    return n, time.perf_counter() - t0, first


def run_bare(coll, qbs):
    n = 0
    t0 = time.perf_counter()
    for qb in qbs:
        coll.get_batch(qb.chromosomes, qb.target_starts, qb.target_ends, tracks=qb.track_indices)
        n += qb.batch_size
    return n, time.perf_counter() - t0


def queries(gen, epoch: int):
    gen.set_epoch(epoch)
    return list(gen)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genome-mb", type=float, default=50)
    ap.add_argument("--tracks", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--sequence-length", type=int, default=1000)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--threads-per-worker", type=int, default=None)
    ap.add_argument("--batches", type=int, default=40, help="batches per measured epoch")
    ap.add_argument("--repeats", type=int, default=3, help="measured epochs of each kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from bwloader_core import BigWigCollection
    from bwloader_core.config import LoaderConfig

    paths, fasta, sizes = collection(args.genome_mb, args.tracks, args.seed)
    cfg = LoaderConfig(bigwig_paths=paths, reference_genome=fasta, sequence_length=args.sequence_length,
                       batch_size=args.batch_size, batches_per_epoch=args.batches, num_workers=args.num_workers,
                       threads_per_worker=args.threads_per_worker, seed=args.seed)
    print(f"# bench_stream: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# collection: {len(paths)} tracks, {sum(sizes.values()) / 1e6:.0f} Mb ({Path(paths[0]).parent})")
    print(f"# batch {args.batch_size} x {args.sequence_length} bp, window 1, float32; stream: "
          f"num_workers={args.num_workers}, threads_per_worker={cfg.threads_per_worker or 'auto'}, "
          f"queue_size={cfg.queue_size}, with one-hot sequences; {args.batches} batches per epoch")

    stream_rates, bare_rates = [], []
    with cfg.build() as ds, BigWigCollection(paths) as coll:
        gen = ds.generator
        # warm-up (page cache, thread pools) and a check that both paths give the same values
        qbs = queries(gen, 0)
        run_bare(coll, qbs)
        _, _, first = run_stream(ds, 0)
        want = coll.get_batch(qbs[0].chromosomes, qbs[0].target_starts, qbs[0].target_ends,
                              tracks=qbs[0].track_indices)
        np.testing.assert_array_equal(first.values, want)
        assert first.sequences.shape == (args.batch_size, args.sequence_length, 4)
        print(f"{'epoch':>5} {'kind':>6} {'samples':>8} {'seconds':>8} {'samples/s':>10}")
        for r in range(args.repeats):
            epoch = 1 + r
            qbs = queries(gen, epoch)  # drawn before timing: bare pays nothing for sampling
            n, dt = run_bare(coll, qbs)
            bare_rates.append(n / dt)
            print(f"{epoch:>5} {'bare':>6} {n:>8} {dt:>8.3f} {n / dt:>10.0f}", flush=True)
            n, dt, _ = run_stream(ds, epoch)
            stream_rates.append(n / dt)
            print(f"{epoch:>5} {'stream':>6} {n:>8} {dt:>8.3f} {n / dt:>10.0f}", flush=True)
    bare, stream = statistics.median(bare_rates), statistics.median(stream_rates)
    ratio = stream / bare
    print(f"median samples/s: bare get_batch {bare:.0f}, stream {stream:.0f}; "
          f"ratio stream/bare = {ratio:.2f} (bar {BAR:.2f}: {'PASS' if ratio >= BAR else 'FAIL'})")
    return 0 if ratio >= BAR else 1


if __name__ == "__main__":
    sys.exit(main())

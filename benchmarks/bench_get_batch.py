#!/usr/bin/env python
"""Samples/s of BigWigCollection.get_batch against per-query loops over pyBigWig and pybigtools.

    python benchmarks/bench_get_batch.py                  # generated 200 Mb x 16-track collection
    python benchmarks/bench_get_batch.py --data demo_data --quick
    python benchmarks/bench_get_batch.py --out benchmarks/out/results.md

What is measured, per shape (batch size x tracks, 1000-bp queries, window 1, float32):
- bwloader: ``coll.get_batch(chroms, starts, ends, tracks=...)`` -> (batch, 1000, tracks);
- pyBigWig / pybigtools: one ``values(chrom, start, end)`` call per (query, track) written into a
  (batch, 1000, tracks) float32 array, then NaN -> 0 (what get_batch returns for missing data).

Queries are fresh random intervals: within one *round* (one freshly opened reader of each kind and
a pool of queries drawn for it), no two queries touch the same data block of any file, so neither
batching nor any cache can reuse a decoded block; every measurement draws its own queries. A
measurement runs rounds until its time budget is spent; only the query calls are timed (opening
files and drawing queries are not). The files sit in the OS page cache for every reader alike.
Before timing, bwloader's batches are checked equal to pyBigWig's (and pybigtools') values.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import cpu_model, load_module  # noqa: E402

QUERY_LENGTH = 1000


def load_datasets_module():
    """benchmarks/datasets.py, imported by path (the name `datasets` clashes with Hugging Face's)."""
    return load_module("datasets", "datasets.py")


# --------------------------------------------------------------------------------------------------
# readers: open() -> handle; run(handle, chroms, starts, ends) -> (B, L, T) float32; close(handle)
# --------------------------------------------------------------------------------------------------
class BwloaderReader:
    def __init__(self, paths, n_threads=None, label="bwloader"):
        self.paths, self.n_threads, self.label = paths, n_threads, label
        self.timings = {}

    def open(self):
        from bwloader_core import BigWigCollection
        return BigWigCollection(self.paths, n_threads=self.n_threads)

    def run(self, coll, chroms, starts, ends):
        return coll.get_batch(chroms, starts, ends)

    def close(self, coll):
        for k, v in coll.timings.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        coll.close()


class PyBigWigReader:
    label = "pyBigWig"

    def __init__(self, paths):
        self.paths = paths

    def open(self):
        import pyBigWig
        return [pyBigWig.open(p) for p in self.paths]

    def run(self, handles, chroms, starts, ends):
        B, L, T = len(starts), int(ends[0] - starts[0]), len(handles)
        out = np.empty((B, L, T), np.float32)
        for i, (c, s, e) in enumerate(zip(chroms, starts.tolist(), ends.tolist())):
            for t, bw in enumerate(handles):
                out[i, :, t] = bw.values(c, s, e, numpy=True)
        np.nan_to_num(out, copy=False)
        return out

    def close(self, handles):
        for h in handles:
            h.close()


class PybigtoolsReader:
    label = "pybigtools"

    def __init__(self, paths):
        self.paths = paths

    def open(self):
        import pybigtools
        return [pybigtools.open(p) for p in self.paths]

    def run(self, handles, chroms, starts, ends):
        B, L, T = len(starts), int(ends[0] - starts[0]), len(handles)
        out = np.empty((B, L, T), np.float32)
        for i, (c, s, e) in enumerate(zip(chroms, starts.tolist(), ends.tolist())):
            for t, bw in enumerate(handles):
                out[i, :, t] = bw.values(c, s, e, fillna=None)     # float64, NaN where uncovered
        np.nan_to_num(out, copy=False)
        return out

    def close(self, handles):
        for h in handles:
            close = getattr(h, "close", None)
            if close is not None:
                close()


# --------------------------------------------------------------------------------------------------
def measure(reader, sampler, batch, duration, rng, strict=True, max_rounds=1000):
    """Run rounds of block-disjoint queries until `duration` seconds of timed calls; samples/s."""
    samples, elapsed, rounds, relaxed = 0, 0.0, 0, False
    while elapsed < duration and rounds < max_rounds:
        chroms, starts, ends = sampler.sample(max(batch, 4096), rng)
        if len(starts) < batch:
            if strict:
                raise RuntimeError(f"only {len(starts)} block-disjoint queries fit in the collection, "
                                   f"fewer than one batch of {batch}")
            chroms, starts, ends = random_queries(sampler, batch * 8, rng)
            relaxed = True
        h = reader.open()
        try:
            for b in range(len(starts) // batch):
                k = slice(b * batch, (b + 1) * batch)
                t0 = time.perf_counter()
                reader.run(h, chroms[k], starts[k], ends[k])
                elapsed += time.perf_counter() - t0
                samples += batch
                if elapsed >= duration:
                    break
        finally:
            reader.close(h)
        rounds += 1
    return dict(samples_per_s=samples / elapsed if elapsed else float("nan"), samples=samples,
                seconds=elapsed, rounds=rounds, relaxed=relaxed)


def random_queries(sampler, n, rng):
    """Fresh random queries with no block-disjointness (for collections too small for it)."""
    names = sampler.names
    ci = rng.choice(len(names), size=n, p=sampler._p)
    sizes = np.array([sampler.chrom_sizes[x] for x in names], np.int64)[ci]
    starts = (rng.random(n) * (sizes - sampler.length + 1)).astype(np.int64)
    return [names[i] for i in ci], starts, starts + sampler.length


def check_correctness(paths, sampler, batch, rng, n_batches=3):
    """Assert bwloader == pyBigWig (exactly) and == pybigtools on fresh queries; returns #values."""
    bwl, pbw = BwloaderReader(paths), PyBigWigReader(paths)
    have_bt = _importable("pybigtools")
    pbt = PybigtoolsReader(paths) if have_bt else None
    n = 0
    h1, h2 = bwl.open(), pbw.open()
    h3 = pbt.open() if pbt else None
    try:
        chroms, starts, ends = random_queries(sampler, batch * n_batches, rng)
        for b in range(n_batches):
            k = slice(b * batch, (b + 1) * batch)
            got = bwl.run(h1, chroms[k], starts[k], ends[k])
            ref = pbw.run(h2, chroms[k], starts[k], ends[k])
            if not np.array_equal(got, ref):
                bad = np.argwhere(got != ref)[0]
                raise AssertionError(f"bwloader differs from pyBigWig at (query, base, track) {tuple(bad)}: "
                                     f"{got[tuple(bad)]} vs {ref[tuple(bad)]}")
            if h3 is not None:
                ref3 = pbt.run(h3, chroms[k], starts[k], ends[k])
                assert np.array_equal(got, ref3), "bwloader differs from pybigtools"
            n += got.size
        # windowed mean over 8 bases, against pyBigWig's per-base values averaged
        k = slice(0, min(batch, 32))
        got = h1.get_batch(chroms[k], starts[k], ends[k], window_size=8)
        ref = pbw.run(h2, chroms[k], starts[k], ends[k]).astype(np.float64)
        ref = ref.reshape(ref.shape[0], -1, 8, ref.shape[2]).mean(axis=2)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    finally:
        bwl.close(h1)
        pbw.close(h2)
        if pbt:
            pbt.close(h3)
    return n


def _importable(name):
    return importlib.util.find_spec(name) is not None


def machine_description():
    model = cpu_model()
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}), {model}"


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("bwloader_core", "pyBigWig", "pybigtools"):
        try:
            from importlib.metadata import version
            out[mod] = version({"bwloader_core": "bwloader"}.get(mod, mod))
        except Exception:
            out[mod] = "-"
    return out


def describe_collection(paths):
    from bwloader_core import BigWigFile
    sizes, spans, genome = [], [], 0
    for p in paths:
        with BigWigFile(p) as f:
            sizes.append(np.median(f.block_size))
            spans.append(np.median(f.block_end_key - f.block_start_key))
            genome = max(genome, sum(f.chrom_sizes.values()))
            n_chroms = len(f.chrom_names)
    return (f"{len(paths)} tracks, {genome / 1e6:.1f} Mb over {n_chroms} chromosomes; median data block "
            f"{np.median(sizes) / 1024:.1f} KiB compressed spanning {np.median(spans) / 1000:.1f} kb")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="benchmark an existing folder of bigWig files instead of "
                                   "the generated collection")
    ap.add_argument("--quick", action="store_true", help="short runs (about 1 s per measurement)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 4)")
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--tracks", type=int, default=16, help="tracks in the generated collection (default 16)")
    ap.add_argument("--genome-mb", type=float, default=200, help="generated genome size (default 200)")
    ap.add_argument("--threads", type=int, default=None, help="bwloader inflate threads (default: all CPUs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-peers", action="store_true", help="only bwloader")
    args = ap.parse_args(argv)
    duration = args.duration or (1.0 if args.quick else 4.0)
    rng = np.random.default_rng(args.seed)
    ds = load_datasets_module()

    from bwloader_core import BigWigCollection
    if args.data:
        coll = BigWigCollection(args.data)
        paths = coll.paths
        coll.close()
        source = f"`{args.data}`"
    else:
        paths = ds.benchmark_collection(n_tracks=args.tracks, genome_mb=args.genome_mb, seed=args.seed)
        source = "generated by benchmarks/datasets.py (pyBigWig writer)"
    T = len(paths)
    shapes = [(256, min(3, T)), (128, min(16, T))]
    shapes = list(dict.fromkeys(shapes))
    have_pbw, have_pbt = _importable("pyBigWig"), _importable("pybigtools")
    peers = not args.no_peers

    print(f"collection: {describe_collection(paths)}; {source}", flush=True)
    print(f"machine: {machine_description()}", flush=True)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    rows, stage_rows = [], []
    for batch, n_tr in shapes:
        sub = paths[:n_tr]
        sampler = ds.BlockDisjointSampler(sub, QUERY_LENGTH)
        pool = len(sampler.sample(batch, np.random.default_rng(args.seed + 1))[1])
        strict = pool >= batch
        if not strict:
            print(f"note: the collection is too small for {batch} block-disjoint queries on {n_tr} tracks "
                  f"({pool} fit); using random queries that may share blocks", flush=True)
        if have_pbw:
            n = check_correctness(sub, sampler, min(batch, 64), rng)
            print(f"[{batch}x{n_tr}] correctness: bwloader == pyBigWig{' == pybigtools' if have_pbt else ''} "
                  f"on {n:,} values", flush=True)
        res = {}
        bwl = BwloaderReader(sub, args.threads)
        res["bwloader"] = measure(bwl, sampler, batch, duration, rng, strict)
        timings = bwl.timings
        bw1 = BwloaderReader(sub, 1)
        res["bwloader_1t"] = measure(bw1, sampler, batch, duration, rng, strict)
        if peers and have_pbw:
            res["pyBigWig"] = measure(PyBigWigReader(sub), sampler, batch, duration, rng, strict)
        if peers and have_pbt:
            res["pybigtools"] = measure(PybigtoolsReader(sub), sampler, batch, duration, rng, strict)
        for k, r in res.items():
            print(f"[{batch}x{n_tr}] {k:12s} {r['samples_per_s']:10.1f} samples/s "
                  f"({r['samples']} samples in {r['seconds']:.2f} s, {r['rounds']} rounds)", flush=True)
        peer = max([res[k]["samples_per_s"] for k in ("pyBigWig", "pybigtools") if k in res], default=float("nan"))
        relaxed = any(r["relaxed"] for r in res.values())
        rows.append((batch, n_tr, res, peer, relaxed))
        n_batches = res["bwloader"]["samples"] / batch
        total = sum(timings.values())
        stage_rows.append((batch, n_tr, {k: v / n_batches * 1e3 for k, v in timings.items()},
                           total / n_batches * 1e3))

    def fmt(res, k):
        return f"{res[k]['samples_per_s']:,.0f}" if k in res else "-"

    lines = [
        f"Machine: {machine_description()}.",
        f"Collection: {describe_collection(paths)}; {source}.",
        f"Queries: {QUERY_LENGTH}-bp intervals, float32, window 1; no two queries in a round touch the "
        f"same data block of any file; {duration:g} s of timed calls per measurement; warm page cache.",
        *(["Shapes marked (blocks shared): the collection holds too few data blocks for one batch of "
           "block-disjoint queries, so random queries share blocks there and a reader that caches decoded "
           "blocks (pybigtools does) gains from it; benchmark a larger collection to compare readers."]
          if any(r[4] for r in rows) else []),
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        "",
        "| shape (batch x tracks) | bwloader samples/s | bwloader, 1 thread | pyBigWig samples/s "
        "| pybigtools samples/s | bwloader / faster peer |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for batch, n_tr, res, peer, relaxed in rows:
        ratio = f"{res['bwloader']['samples_per_s'] / peer:.1f}x" if peer == peer else "-"
        lines.append(f"| {batch} x {n_tr}{' (blocks shared)' if relaxed else ''} | {fmt(res, 'bwloader')} | "
                     f"{fmt(res, 'bwloader_1t')} | {fmt(res, 'pyBigWig')} | {fmt(res, 'pybigtools')} | "
                     f"{ratio} |")
    stages = list(dict.fromkeys(k for _, _, per, _ in stage_rows for k in per))
    lines += ["", "bwloader time per batch by stage (ms, default threads, from `coll.timings`):", "",
              "| shape | " + " | ".join(stages) + " | total |", "|---|" + "---:|" * (len(stages) + 1)]
    for batch, n_tr, per, total in stage_rows:
        cells = " | ".join(f"{per.get(k, 0.0):.1f}" for k in stages)
        lines.append(f"| {batch} x {n_tr} | {cells} | {total:.1f} |")
    if hasattr(os, "getloadavg"):
        lines += ["", f"Load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f} "
                      "(anything well above 0 means other work shared the CPUs)."]
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

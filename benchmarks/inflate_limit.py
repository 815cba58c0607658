#!/usr/bin/env python
"""The inflate limit of a query batch: the time to merely inflate exactly the data blocks the batch
needs, on the same number of threads as bwloader, with nothing else (no reads, no parsing, no fill).

For one batch it reproduces what ``BatchProcessor.process`` asks of its ``BlockFetcher``: the blocks
from ``BatchProcessor.plan`` and, per block, the largest key any (query, track) pair needs from it
(``need``, computed as in ``process``). The compressed bytes are read beforehand (untimed); then

- ``full``: every block inflated whole with libdeflate (``deflate.zlib_decompress``);
- ``partial``: what bwloader's fetcher does: ``inflate_partial`` (zlib-ng, stops at the last item a
  query needs) for blocks not needed to their end, libdeflate for the others.

Both are split into the same contiguous chunks over the same thread count as ``BlockFetcher.fetch``.
The same batches are also read by ``get_batch`` (timed too), alternating in chunks of 8 batches
with the inflate-only runs, so the loader and its limit are compared under the same conditions. Used by ``benchmarks/scoreboard.py``; also runs alone:

    python benchmarks/inflate_limit.py --tracks 3 --length 1000 --batch 256 --batches 20
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def batch_blocks(coll, proc, chroms, starts, ends, window_size=1):
    """(tasks, n_blocks, compressed bytes) of one batch; a task is (file, raw bytes, offset,
    need key in the file's key space, block start key, block end key)."""
    q = coll._prepare_queries(chroms, np.asarray(starts), np.asarray(ends), None, window_size, "mean", "float32")
    key_lo, key_hi = q["key_lo"], q["key_hi"]
    leaf_ids, pair_of, leaf_of = proc.plan(key_lo, key_hi)
    need = np.zeros(len(leaf_ids), np.int64)                   # as in BatchProcessor.process
    np.maximum.at(need, np.searchsorted(leaf_ids, leaf_of), key_hi[pair_of])
    files = coll._leaf_file[leaf_ids]
    local = coll._leaf_local[leaf_ids]
    need = need - coll._track_base[files]                       # as in BatchProcessor.fetch
    offsets = coll._leaf_offset[leaf_ids]
    fidx = files.tolist()
    tasks, nbytes = [], 0
    i, n = 0, len(fidx)
    while i < n:                                                # runs of blocks of one file, in order
        j = i
        while j < n and fidx[j] == fidx[i]:
            j += 1
        f = coll.files[fidx[i]]
        raw = f.read_blocks(local[i:j])
        for k, data in zip(range(i, j), raw):
            jl = int(local[k])
            tasks.append((f, bytes(data), int(offsets[k]), int(need[k]), int(f.block_start_key[jl]),
                          int(f.block_end_key[jl])))
            nbytes += len(data)
        i = j
    return tasks, n, nbytes


def _full_chunk(tasks):
    import deflate
    n = 0
    for f, data, _off, _need, _s, _e in tasks:
        n += len(deflate.zlib_decompress(data, f.uncompress_buf_size)) if f.compressed else len(data)
    return n


def _partial_chunk(tasks):
    from bwloader_core.decode.cpu import _zlib_ng, inflate_one, inflate_partial
    zng = _zlib_ng()
    n = 0
    for f, data, off, need, s, e in tasks:
        if zng is not None and f.compressed and need < e:
            out = inflate_partial(zng, f, data, off, need, s, e)
        else:
            out = inflate_one(f, data, off)
        n += len(out)
    return n


class InflateTimer:
    """Times full and partial inflate of a batch's blocks, chunked over `n_threads` as BlockFetcher."""

    def __init__(self, n_threads: int):
        self.n_threads = max(1, int(n_threads))
        self._pool = ThreadPoolExecutor(self.n_threads) if self.n_threads > 1 else None

    def _run(self, fn, tasks):
        n = len(tasks)
        n_chunks = self.n_threads if (self._pool is not None and n >= 2 * self.n_threads) else 1
        bounds = [n * i // n_chunks for i in range(n_chunks + 1)]
        chunks = [tasks[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        t0 = time.perf_counter()
        if n_chunks == 1:
            out = fn(chunks[0])
        else:
            out = sum(f.result() for f in [self._pool.submit(fn, c) for c in chunks])
        return time.perf_counter() - t0, out

    def time_batch(self, tasks):
        """(seconds full, seconds partial, bytes out full, bytes out partial)."""
        tf, bf = self._run(_full_chunk, tasks)
        tp, bp = self._run(_partial_chunk, tasks)
        return tf, tp, bf, bp

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()


def inflate_limit(paths, batches, window_size=1, n_threads=None, repeats=1, loader=True, warmup=None, chunk=8):
    """Sum over `batches` ((chroms, starts, ends) each) of the inflate times (best of `repeats`).

    With `loader`, the batches are also read by ``BigWigCollection.get_batch`` (``cache_bytes=0``,
    `n_threads` inflate threads) and timed: `chunk` batches through get_batch, then the same
    batches' inflate limits, and so on, so that both see the same machine conditions while each
    runs in its own steady state. `warmup`: a batch run through both first, untimed."""
    from bwloader_core import BigWigCollection
    from bwloader_core.batch_processor import BatchProcessor

    n_threads = n_threads or os.cpu_count() or 1
    coll = BigWigCollection(paths, cache_bytes=0, n_threads=n_threads)
    proc = BatchProcessor(coll, n_threads=1)     # only its plan() is used
    timer = InflateTimer(n_threads)
    res = dict(full_s=0.0, partial_s=0.0, blocks=0, compressed_bytes=0, inflated_bytes_full=0,
               inflated_bytes_partial=0, batches=0, n_threads=n_threads, loader_s=[], full_per_batch_s=[],
               partial_per_batch_s=[], stages={})
    try:
        if warmup is not None:
            if loader:
                coll.get_batch(*warmup, window_size=window_size)
            timer.time_batch(batch_blocks(coll, proc, *warmup, window_size)[0])
            base = dict(coll.timings)
        else:
            base = {}
        for c0 in range(0, len(batches), chunk):
            part = batches[c0:c0 + chunk]
            if loader:
                for chroms, starts, ends in part:
                    t0 = time.perf_counter()
                    coll.get_batch(chroms, starts, ends, window_size=window_size)
                    res["loader_s"].append(time.perf_counter() - t0)
            for chroms, starts, ends in part:
                tasks, nblk, nbytes = batch_blocks(coll, proc, chroms, starts, ends, window_size)
                best_f = best_p = float("inf")
                for _ in range(repeats):
                    tf, tp, bf, bp = timer.time_batch(tasks)
                    best_f, best_p = min(best_f, tf), min(best_p, tp)
                res["full_s"] += best_f
                res["partial_s"] += best_p
                res["full_per_batch_s"].append(best_f)
                res["partial_per_batch_s"].append(best_p)
                res["blocks"] += nblk
                res["compressed_bytes"] += nbytes
                res["inflated_bytes_full"] += bf
                res["inflated_bytes_partial"] += bp
                res["batches"] += 1
        res["stages"] = {k: v - base.get(k, 0.0) for k, v in coll.timings.items()}
    finally:
        timer.close()
        proc.close()
        coll.close()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=3)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=10, help="batches (one more is drawn for the warm-up)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from bench_get_batch import load_datasets_module
    ds = load_datasets_module()
    paths = ds.benchmark_collection(n_tracks=16)[:args.tracks]
    sampler = ds.BlockDisjointSampler(paths, args.length)
    chroms, starts, ends = sampler.sample(args.batch * (args.batches + 1), np.random.default_rng(args.seed))
    nb = len(starts) // args.batch
    if nb < 2:
        raise SystemExit(f"only {len(starts)} block-disjoint queries: fewer than two batches")
    batches = [(chroms[i * args.batch:(i + 1) * args.batch], starts[i * args.batch:(i + 1) * args.batch],
                ends[i * args.batch:(i + 1) * args.batch]) for i in range(nb)]
    r = inflate_limit(paths, batches[1:], args.window, args.threads, warmup=batches[0])
    n = r["batches"]
    print(f"{n} batches of {args.batch} x {args.tracks} tracks x {args.length} bp, {r['n_threads']} threads: "
          f"{r['blocks'] / n:.0f} blocks/batch; get_batch {sum(r['loader_s']) / n * 1e3:.1f} ms/batch; "
          f"inflate only: full {r['full_s'] / n * 1e3:.1f} ms/batch, partial {r['partial_s'] / n * 1e3:.1f} ms/batch")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The inflate limit of a query batch: the time to merely inflate exactly the data blocks the batch
needs, on the same number of threads as bwloader, with nothing else (no reads, no parsing, no fill).

For one batch it asks the processor's own stages what the fetch stage is given: the ``Plan``
(``BatchProcessor.plan``) and its ``BlockTable`` (``BatchProcessor.block_table``: the blocks and,
per block, the largest key any (query, track) pair needs from it). The compressed bytes are read
into memory beforehand (untimed); then, with the fetcher's own inflater (the compiled
``stages.fetch_native.fetch_range`` on the fetcher's chunks and threads, fed from memory instead of
``pread``):

- ``full``: every block inflated whole (libdeflate);
- ``partial``: what bwloader's fetcher does: zlib-ng stopping at the last item a query needs for
  blocks needed up to less than ``PARTIAL_MAX_FRACTION`` of their span, libdeflate for the others.

Where the compiled path is not available the same two are timed with the Python inflaters.
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
EVICT_BYTES = 128 << 20     # written before each timed inflate: larger than any L3 cache here


def batch_blocks(coll, proc, chroms, starts, ends, window_size=1):
    """(blocks, n_blocks, compressed bytes) of one batch: ``blocks`` holds the compressed bytes of
    every block the batch needs and its ``BlockTable`` whole ("full") and as the fetcher would
    inflate it ("partial"), read from memory (``fd`` -1, ``offset`` the address of its bytes)."""
    from dataclasses import replace
    q = coll.prepare_queries(chroms, np.asarray(starts), np.asarray(ends), None, window_size, "mean", "float32")
    plan = proc.plan(q)
    table = proc.block_table(plan, partial=True)
    raw = []
    for i in range(len(table)):
        raw.extend(coll.files[int(table.file[i])].read_blocks(table.local[i:i + 1]))
    data = np.frombuffer(b"".join(bytes(r) for r in raw), np.uint8).copy()
    in_memory = dict(fd=np.full(len(table), -1, np.int32),
                     offset=data.ctypes.data + np.concatenate([[0], np.cumsum(table.size)[:-1]]).astype(np.int64))
    blocks = dict(files=coll.files, table=table, raw=[bytes(r) for r in raw], data=data,
                  partial=replace(table, **in_memory), full=replace(table.whole(), **in_memory))
    return blocks, len(table), len(data)


def _python_chunk(blocks, ks, partial):
    from bwloader_core.stages.fetch import _zlib_ng, inflate_one, inflate_partial
    zng = _zlib_ng() if partial else None
    t = blocks["table"]
    n = 0
    for k in ks:
        f = blocks["files"][int(t.file[k])]
        jl, data = int(t.local[k]), blocks["raw"][k]
        off = int(f.block_offset[jl])
        if zng is not None and t.partial[k]:
            out = inflate_partial(zng, f, data, off, int(t.need_key[k]), int(f.block_start_key[jl]),
                                  int(f.block_end_key[jl]))
        else:
            out = inflate_one(f, data, off)
        n += len(out)
    return n


class InflateTimer:
    """Times full and partial inflate of a batch's blocks with the fetcher's inflater, chunks and threads."""

    def __init__(self, n_threads: int):
        from bwloader_core.device import Device
        from bwloader_core.stages.fetch import native_available
        self.n_threads = max(1, int(n_threads))
        self._pool = ThreadPoolExecutor(self.n_threads) if self.n_threads > 1 else None
        self.native = native_available() and Device.cpu().native_fetch
        self._buf = np.zeros(0, np.uint32)
        self._scratch = None

    def _run(self, blocks, mode):
        from bwloader_core.stages.fetch import run_native
        table = blocks[mode]
        n = len(table)
        self._evict()
        if self.native:
            if len(self._buf) < table.total_words:
                self._buf = np.empty(table.total_words, np.uint32)
            nbytes = np.zeros(n, np.int64)
            status = np.zeros(n, np.uint8)
            t0 = time.perf_counter()
            run_native(self._pool, self.n_threads, table, self._buf, nbytes, status)
            dt = time.perf_counter() - t0
            if status.any():
                raise RuntimeError(f"{int((status != 0).sum())} blocks did not inflate on the compiled path")
            return dt, int(nbytes.sum())
        n_chunks = self.n_threads if (self._pool is not None and n >= 2 * self.n_threads) else 1
        bounds = [n * i // n_chunks for i in range(n_chunks + 1)]
        chunks = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        t0 = time.perf_counter()
        if n_chunks == 1:
            out = _python_chunk(blocks, chunks[0], mode == "partial")
        else:
            out = sum(f.result() for f in [self._pool.submit(_python_chunk, blocks, c, mode == "partial")
                                           for c in chunks])
        return time.perf_counter() - t0, out

    def _evict(self):
        """Push the batch's compressed bytes out of the CPU caches, as they are when the loader reads
        them from the page cache: a batch's blocks (~10-30 MB) would otherwise sit in L3 from the copy
        that gathered them or the run before, a floor no real batch has."""
        if self._scratch is None:
            self._scratch = np.ones(EVICT_BYTES // 8, np.int64)
        self._scratch += 1

    def time_batch(self, blocks):
        """(seconds full, seconds partial, bytes out full, bytes out partial)."""
        tf, bf = self._run(blocks, "full")
        tp, bp = self._run(blocks, "partial")
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
                blocks, nblk, nbytes = batch_blocks(coll, proc, chroms, starts, ends, window_size)
                best_f = best_p = float("inf")
                for _ in range(repeats):
                    tf, tp, bf, bp = timer.time_batch(blocks)
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

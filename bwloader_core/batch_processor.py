"""BatchProcessor: one query batch -> dense values (plan, read, decode, search, fill)."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .decode.cpu import inflate_blocks
from .decode.sections import concat_blocks, expand_records, parse_section_headers
from .errors import BigWigFormatError
from .kernels.fill_numpy import fill_dense, fill_dense_reference, records_sorted, window_reduce
from .dtypes import cast_output

STAGES = ("plan", "read", "decode", "search", "fill")


class BatchProcessor:
    """Turns batches of queries over a `BigWigCollection` into dense arrays.

    Owns its inflate thread pool and per-stage timers (seconds, cumulative in `timings`,
    per call in `last_timings`). One processor serves one thread at a time.
    """

    def __init__(self, collection, n_threads: int | None = None):
        self.collection = collection
        self.n_threads = n_threads if n_threads is not None else (os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="bwloader-inflate") \
            if self.n_threads > 1 else None
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.last_timings = dict.fromkeys(STAGES, 0.0)
        self.blocks_decoded = 0
        self.bytes_read = 0

    # -- stages ---------------------------------------------------------------------------------
    def plan(self, key_lo, key_hi):
        """Unique global leaf (block) ids overlapping any pair's key range, sorted."""
        c = self.collection
        lo = np.searchsorted(c._leaf_end_cummax, key_lo, side="right")
        hi = np.searchsorted(c._leaf_start, key_hi, side="left")
        n = np.where(key_hi > key_lo, np.maximum(hi - lo, 0), 0)
        m = int(n.sum())
        pair = np.repeat(np.arange(len(key_lo)), n)
        ids = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(m)
        ids = ids[c._leaf_end[ids] > key_lo[pair]]
        return np.unique(ids)

    def read(self, leaf_ids):
        """Compressed bytes of each block (coalesced reads per file), in leaf order."""
        c = self.collection
        files = c._leaf_file[leaf_ids]
        bounds = np.flatnonzero(np.diff(files)) + 1
        raw = []
        for chunk in np.split(np.arange(len(leaf_ids)), bounds):
            if len(chunk) == 0:
                continue
            f = c.files[int(files[chunk[0]])]
            raw.extend(f.read_blocks(c._leaf_local[leaf_ids[chunk]]))
        self.bytes_read += sum(len(r) for r in raw)
        return raw

    def decode(self, leaf_ids, raw):
        """Inflate and parse blocks -> records (global start key, end key, value float32) in block order."""
        c = self.collection
        files_idx = c._leaf_file[leaf_ids]
        files = [c.files[i] for i in files_idx.tolist()]
        offsets = c._leaf_offset[leaf_ids]
        n_chunks = self.n_threads if self._pool is not None else 1
        blocks = inflate_blocks(raw, files, offsets.tolist(), self._pool, n_chunks)
        self.blocks_decoded += len(blocks)
        swap = c._file_bigendian[files_idx]
        words = concat_blocks(blocks, swap)

        def where(b):
            return files[b].path, int(offsets[b])

        secs = parse_section_headers(words, swap, where)
        rec = expand_records(words, secs)
        sec_file = files_idx[secs.block]
        n_chroms = c._file_n_chroms[sec_file]
        bad = secs.chrom_id >= n_chroms
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            path, off = where(int(secs.block[k]))
            raise BigWigFormatError(path, f"data block at offset {off}: chromosome id {int(secs.chrom_id[k])} "
                                          f"is not in the chromosome tree ({int(n_chroms[k])} chromosomes)")
        flat = c._file_chrom_first[sec_file] + secs.chrom_id
        rflat = flat[rec.section]
        base = c._chrom_key_base[rflat]
        clen = c._chrom_len_flat[rflat]
        end = np.minimum(rec.end, clen)
        keep = end > rec.start
        start_key = base + rec.start
        end_key = base + end
        value = rec.value
        track = c._file_track[sec_file[rec.section]]
        if not keep.all():
            start_key, end_key, value, track = start_key[keep], end_key[keep], value[keep], track[keep]
        return start_key, end_key, value, track

    # -- whole batch ----------------------------------------------------------------------------
    def process(self, chromosomes, starts, ends, tracks=None, window_size=1, reduce="mean",
                default_value=0.0, dtype="float32"):
        c = self.collection
        t0 = time.perf_counter()
        q = c._prepare_queries(chromosomes, starts, ends, tracks, window_size, reduce, dtype)
        track_idx, B, L = q["tracks"], q["batch"], q["length"]
        T = len(track_idx)
        key_lo, key_hi, origin = q["key_lo"], q["key_hi"], q["origin"]
        leaf_ids = self.plan(key_lo, key_hi)
        t1 = time.perf_counter()
        raw = self.read(leaf_ids)
        t2 = time.perf_counter()
        s_key, e_key, value, rec_track = self.decode(leaf_ids, raw)
        t3 = time.perf_counter()
        scale = c._scaling
        exact64 = window_size > 1 or scale is not None
        work = np.float64 if exact64 else np.float32
        value = value.astype(work) if exact64 else value
        if scale is not None:
            value = value * scale[rec_track]
        sorted_ok = records_sorted(s_key, e_key)
        t4 = time.perf_counter()
        fill = fill_dense if sorted_ok else fill_dense_reference
        dense = fill(s_key, e_key, value, key_lo, key_hi, origin, L, default_value, work)
        skip_nan = np.isnan(default_value)
        red = window_reduce(dense, window_size, reduce, bool(skip_nan))
        out = red.reshape(T, B, -1).transpose(1, 2, 0)
        out = cast_output(out, dtype)
        t5 = time.perf_counter()
        last = dict(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))
        for k, v in last.items():
            self.timings[k] += v
        self.last_timings = last
        return out

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

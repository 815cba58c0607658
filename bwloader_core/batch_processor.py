"""BatchProcessor: one query batch -> dense values (plan, read, decode, search, fill)."""
from __future__ import annotations

import os
import time

import numpy as np

from .decode.cpu import BlockFetcher
from .decode.sections import expand_records, item_ranges, parse_section_headers
from .errors import BigWigFormatError
from .kernels.fill_numpy import fill_runs, fill_runs_reference, runs_disjoint, window_reduce, window_reduce_runs
from .dtypes import cast_output

STAGES = ("plan", "read+inflate", "decode", "search", "fill")


class BatchProcessor:
    """Turns batches of queries over a `BigWigCollection` into dense arrays.

    Owns its inflate thread pool and per-stage timers (seconds, cumulative in `timings`,
    per call in `last_timings`). One processor serves one thread at a time.
    """

    def __init__(self, collection, n_threads: int | None = None):
        self.collection = collection
        self.n_threads = n_threads if n_threads is not None else (os.cpu_count() or 1)
        self._fetcher = BlockFetcher(self.n_threads)
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.last_timings = dict.fromkeys(STAGES, 0.0)
        self.blocks_decoded = 0

    # -- stages ---------------------------------------------------------------------------------
    def plan(self, key_lo, key_hi):
        """Blocks each pair needs: (unique leaf ids sorted, pair of each (pair, leaf), its leaf)."""
        c = self.collection
        lo = np.searchsorted(c._leaf_end_cummax, key_lo, side="right")
        hi = np.searchsorted(c._leaf_start, key_hi, side="left")
        n = np.where(key_hi > key_lo, np.maximum(hi - lo, 0), 0)
        m = int(n.sum())
        pair = np.repeat(np.arange(len(key_lo)), n)
        ids = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(m)
        keep = c._leaf_end[ids] > key_lo[pair]
        pair, ids = pair[keep], ids[keep]
        return np.unique(ids), pair, ids

    def fetch(self, leaf_ids):
        """Read (coalesced) and inflate every block into one word buffer."""
        c = self.collection
        return self._fetcher.fetch(c.files, c._leaf_file[leaf_ids], c._leaf_local[leaf_ids],
                                   c._leaf_offset[leaf_ids])

    def decode(self, leaf_ids, words):
        """Parse the section headers of fetched blocks -> (sections, section chrom index)."""
        c = self.collection
        files_idx = c._leaf_file[leaf_ids]
        files = [c.files[i] for i in files_idx.tolist()]
        offsets = c._leaf_offset[leaf_ids]
        self.blocks_decoded += len(leaf_ids)
        swap = c._file_bigendian[files_idx]  # words are native; header word layout differs

        def where(b):
            return files[b].path, int(offsets[b])

        secs = parse_section_headers(words, swap, where)
        sec_file = files_idx[secs.block]
        n_chroms = c._file_n_chroms[sec_file]
        bad = secs.chrom_id >= n_chroms
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            path, off = where(int(secs.block[k]))
            raise BigWigFormatError(path, f"data block at offset {off}: chromosome id {int(secs.chrom_id[k])} "
                                          f"is not in the chromosome tree ({int(n_chroms[k])} chromosomes)")
        return secs, c._file_chrom_first[sec_file] + secs.chrom_id

    def search(self, leaf_ids, pair_of, leaf_of, words, secs, sec_chrom, key_lo, key_hi, origin):
        """Records overlapping each pair, as runs (pair, local start, local end, value) in file order."""
        c = self.collection
        blk = np.searchsorted(leaf_ids, leaf_of)
        first_sec = np.searchsorted(secs.block, np.arange(len(leaf_ids)))
        n_sec = np.diff(np.append(first_sec, len(secs.block)))
        per = n_sec[blk]
        e_pair = np.repeat(pair_of, per)
        e_sec = np.repeat(first_sec[blk] - (np.cumsum(per) - per), per) + np.arange(int(per.sum()))
        cb = c._chrom_key_base[sec_chrom[e_sec]]
        clen = c._chrom_len_flat[sec_chrom[e_sec]]
        a = np.clip(key_lo[e_pair] - cb, 0, clen)
        b = np.clip(key_hi[e_pair] - cb, 0, clen)
        first, count = item_ranges(words, secs, e_sec, a, b)
        count = np.where(b > a, count, 0)
        rec = expand_records(words, secs, sec=e_sec, first=first, count=count)
        k = rec.section
        o = origin[e_pair[k]] - cb[k]
        ls = np.maximum(rec.start, a[k]) - o
        le = np.minimum(np.minimum(rec.end, b[k]), clen[k]) - o
        keep = le > ls
        if not keep.all():
            k, ls, le, value = k[keep], ls[keep], le[keep], rec.value[keep]
        else:
            value = rec.value
        return e_pair[k], ls, le, value

    # -- whole batch ----------------------------------------------------------------------------
    def process(self, chromosomes, starts, ends, tracks=None, window_size=1, reduce="mean",
                default_value=0.0, dtype="float32"):
        c = self.collection
        t0 = time.perf_counter()
        q = c._prepare_queries(chromosomes, starts, ends, tracks, window_size, reduce, dtype)
        track_idx, B, L = q["tracks"], q["batch"], q["length"]
        T = len(track_idx)
        key_lo, key_hi, origin = q["key_lo"], q["key_hi"], q["origin"]
        leaf_ids, pair_of, leaf_of = self.plan(key_lo, key_hi)
        t1 = time.perf_counter()
        words = self.fetch(leaf_ids)
        t2 = time.perf_counter()
        secs, sec_chrom = self.decode(leaf_ids, words)
        t3 = time.perf_counter()
        pair, ls, le, value = self.search(leaf_ids, pair_of, leaf_of, words, secs, sec_chrom,
                                          key_lo, key_hi, origin)
        t4 = time.perf_counter()
        scale = c._scaling
        exact64 = window_size > 1 or scale is not None
        work = np.float64 if exact64 else np.float32
        if exact64:
            value = value.astype(np.float64)
        if scale is not None:
            value = value * scale[track_idx[pair // max(B, 1)]]
        fast = runs_disjoint(pair, ls, le)
        if fast and window_size == 1:
            out = fill_runs(pair, ls, le, value, T * B, L, default_value, work, tracks_last=(T, B))
        elif fast:
            red = window_reduce_runs(pair, ls, le, value, T * B, L, window_size, reduce, default_value)
            out = red.reshape(T, B, -1).transpose(1, 2, 0)
        else:
            fill = fill_runs if fast else fill_runs_reference
            dense = fill(pair, ls, le, value, T * B, L, default_value, work)
            red = window_reduce(dense, window_size, reduce, bool(np.isnan(default_value)))
            out = red.reshape(T, B, -1).transpose(1, 2, 0)
        out = cast_output(out, dtype)
        t5 = time.perf_counter()
        last = dict(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))
        for k, v in last.items():
            self.timings[k] += v
        self.last_timings = last
        return out

    @property
    def bytes_read(self) -> int:
        return self._fetcher.bytes_read

    def close(self):
        self._fetcher.close()

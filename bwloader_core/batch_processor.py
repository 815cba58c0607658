"""BatchProcessor: one query batch -> dense values (plan, read, decode, search, fill)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .decode.cpu import BlockFetcher, partial_plan
from .decode.sections import expand_records, item_ranges, parse_section_headers
from .errors import BigWigFormatError
from .kernels.fill_numpy import (fill_runs, fill_runs_reference, finalize_windows, runs_disjoint, window_reduce,
                                 window_reduce_runs)
from .dtypes import cast_output

STAGES = ("plan", "read+inflate", "decode", "search", "fill")
PARALLEL_MIN_ENTRIES = 256     # below this, one thread searches and paints (hand-off costs more)


@dataclass
class Entries:
    """(pair, section) combinations of a batch and the items each needs."""
    pair: np.ndarray      # pair index (track-major: t * batch + b)
    sec: np.ndarray       # section index
    a: np.ndarray         # query range on the section's chromosome, clipped to it
    b: np.ndarray
    origin: np.ndarray    # chromosome position of output base 0 of the pair
    first: np.ndarray     # first item needed
    count: np.ndarray     # number of items needed


def default_kernel() -> str:
    """'numba' when numba is importable (compiled, GIL-free), else 'numpy'. BWLOADER_KERNEL overrides."""
    env = os.environ.get("BWLOADER_KERNEL")
    if env in ("numpy", "numba"):
        return env
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numpy"
    return "numba"


def _numba_kernels():
    from .kernels import fill_numba
    return fill_numba


class BatchProcessor:
    """Turns batches of queries over a `BigWigCollection` into dense arrays.

    Owns its inflate thread pool and per-stage timers (seconds, cumulative in `timings`,
    per call in `last_timings`). One processor serves one thread at a time.
    """

    def __init__(self, collection, n_threads: int | None = None, kernel: str | None = None):
        self.collection = collection
        self.kernel = kernel or default_kernel()
        if self.kernel not in ("numpy", "numba"):
            raise ValueError(f"kernel must be 'numpy' or 'numba', got {self.kernel!r}")
        self.n_threads = n_threads if n_threads is not None else (os.cpu_count() or 1)
        self._fetcher = BlockFetcher(self.n_threads, cache=getattr(collection, 'cache', None))
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.last_timings = dict.fromkeys(STAGES, 0.0)
        self.blocks_decoded = 0
        self._win_bufs = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))

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
        leaves = np.sort(ids)                  # np.unique: same result, ~10x slower here (hashing)
        return leaves[np.r_[True, leaves[1:] != leaves[:-1]]] if len(leaves) else leaves, pair, ids

    def fetch(self, leaf_ids, need_key=None):
        """Read (coalesced) and inflate every block into one word buffer; with `need_key` (the
        largest global key any pair needs from each block) only the needed prefix is inflated."""
        c = self.collection
        files = c._leaf_file[leaf_ids]
        described = self.describe(leaf_ids, need_key) if c._all_local else None
        if need_key is not None:
            need_key = need_key - c._track_base[files]
        return self._fetcher.fetch(c.files, files, c._leaf_local[leaf_ids], c._leaf_offset[leaf_ids], need_key,
                                   described)

    def describe(self, leaf_ids, need_key=None) -> dict:
        """`decode.cpu.describe_blocks` for these blocks, from the collection's flat per-block and
        per-file arrays in a few vector operations (no loop over files)."""
        c = self.collection
        fe = self._fetcher
        files = c._leaf_file[leaf_ids]
        n = len(leaf_ids)
        compressed = c._file_compressed[files]
        ubs = c._file_ubs[files]
        p = {"fd": c._file_fd[files], "offset": c._leaf_offset[leaf_ids], "csize": c._leaf_size[leaf_ids],
             "compressed": compressed, "ubs": ubs, "big": c._file_bigendian[files], "partial": np.zeros(n, bool),
             "chrom": np.zeros(n, np.int64), "need_pos": np.zeros(n, np.int64), "want0": np.zeros(n, np.int64),
             "local": c._all_local}
        if need_key is None or not fe.partial or not n:
            return p
        sk, ek = c._leaf_start[leaf_ids], c._leaf_end[leaf_ids]
        first = c._file_chrom_first[files]
        g = np.searchsorted(c._chrom_key_base, sk, side="right") - 1          # chromosome of the block start
        g = np.clip(g, first, first + np.maximum(c._file_n_chroms[files] - 1, 0))
        p["chrom"] = g - first
        p["need_pos"] = need_key - c._chrom_key_base[g]
        partial, p["want0"] = partial_plan(need_key, sk, ek, ubs)
        p["partial"] = compressed & partial
        return p

    def decode(self, leaf_ids, words):
        """Parse the section headers of fetched blocks -> (sections, section chrom index)."""
        c = self.collection
        files_idx = c._leaf_file[leaf_ids]
        offsets = c._leaf_offset[leaf_ids]
        self.blocks_decoded += len(leaf_ids)
        swap = c._file_bigendian[files_idx]  # words are native; header word layout differs

        def where(b):
            return c.files[int(files_idx[b])].path, int(offsets[b])

        secs = None
        if self.kernel == "numba":
            from .decode.sections_numba import parse_sections
            secs = parse_sections(words, swap)
        if secs is None:              # NumPy walk: also raises the precise error for a malformed block
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

    def search(self, leaf_ids, pair_of, leaf_of, words, secs, sec_chrom, key_lo, key_hi, origin) -> Entries:
        """For every (pair, section) that may overlap: the range of items it needs (bisection)."""
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
        if self.kernel == "numba":
            args = (secs.type[e_sec], secs.count[e_sec], secs.item_word[e_sec], secs.start[e_sec], secs.step[e_sec],
                    secs.span[e_sec], a, b)
            # the search waits on memory (the words are cold): every thread takes a share of the entries
            parts = self._shares(len(e_sec))
            cut = np.linspace(0, len(e_sec), parts + 1).astype(np.int64)
            shares = self._fetcher.map(lambda i: _numba_kernels().item_ranges(
                words.words, *(x[cut[i]:cut[i + 1]] for x in args)), range(parts))
            first = np.concatenate([r[0] for r in shares])
            count = np.concatenate([r[1] for r in shares])
        else:
            first, count = item_ranges(words, secs, e_sec, a, b)
        count = np.where(b > a, count, 0)
        return Entries(e_pair, e_sec, a, b, origin[e_pair] - cb, first, count)

    def _shares(self, n_entries) -> int:
        """Threads to split `n_entries` search / fill entries over (one below PARALLEL_MIN_ENTRIES)."""
        return self._fetcher.n_threads if n_entries >= PARALLEL_MIN_ENTRIES else 1

    def _window_buffers(self, n_windows, n_pairs):
        """Zeroed sums and covered, acc and last (per pair, -1) for `window_accumulate`. Kept between
        batches: fresh pages would fault inside the threads, which then wait on each other."""
        if len(self._win_bufs[0]) < n_windows or len(self._win_bufs[3]) < n_pairs:
            nw, npairs = max(n_windows, len(self._win_bufs[0])), max(n_pairs, len(self._win_bufs[3]))
            self._win_bufs = (np.empty(nw), np.empty(nw), np.empty(nw), np.empty(npairs, np.int64))
        sums, covered, acc, last = (b[:n] for b, n in zip(self._win_bufs, (n_windows,) * 3 + (n_pairs,)))
        sums.fill(0.0)
        covered.fill(0.0)
        last.fill(-1)
        return sums, covered, acc, last

    @staticmethod
    def runs(words, secs, e: Entries):
        """The items of every entry as runs (pair, local start, local end, value float32, entry), in
        file order."""
        rec = expand_records(words, secs, sec=e.sec, first=e.first, count=e.count)
        k = rec.section
        o = e.origin[k]
        ls = np.maximum(rec.start, e.a[k]) - o
        le = np.minimum(rec.end, e.b[k]) - o
        keep = le > ls
        if not keep.all():
            k, ls, le, value = k[keep], ls[keep], le[keep], rec.value[keep]
        else:
            value = rec.value
        return e.pair[k], ls, le, value, k

    def fill(self, words, secs, e: Entries, T, B, L, window_size, reduce, default_value, entry_scale):
        """Dense output (B, L // window_size, T) in float32 (float64 when scaled or windowed)."""
        work = np.float64 if (window_size > 1 or entry_scale is not None) else np.float32
        if self.kernel == "numba":
            nb = _numba_kernels()
            sc = entry_scale if entry_scale is not None else np.ones(len(e.pair))
            args = (words.words, words.words.view(np.float32), e.pair, secs.type[e.sec], secs.item_word[e.sec],
                    e.first, e.count, secs.start[e.sec], secs.step[e.sec], secs.span[e.sec], e.a, e.b,
                    e.origin, sc)
            parts = self._shares(len(e.pair))
            rows = e.pair % max(B, 1)

            def entries_of(i):         # rows b with b * parts // B == i: disjoint output per thread
                return np.flatnonzero(rows * parts // B == i)

            if window_size == 1:
                out = np.empty((B, L, T), work)

                def paint_rows(i):     # the default, then the items
                    out[-(-i * B // parts):-(-(i + 1) * B // parts)] = default_value
                    nb.paint(*args, B, out, entries_of(i))

                self._fetcher.map(paint_rows, range(parts))
                return out
            sums, covered, acc, last = self._window_buffers(T * B * (L // window_size), T * B)
            acc.fill(-np.inf if reduce == "max" else np.inf)
            ok = all(self._fetcher.map(lambda i: nb.window_accumulate(
                *args, L, window_size, bool(np.isnan(default_value)), reduce in ("max", "min"), reduce == "max",
                entries_of(i), sums, covered, acc, last), range(parts)))
            if ok:
                red = finalize_windows(sums, covered, acc, window_size, reduce, default_value)
                return red.reshape(T, B, -1).transpose(1, 2, 0)
        pair, ls, le, value, entry = self.runs(words, secs, e)
        if work == np.float64:
            value = value.astype(np.float64)
        if entry_scale is not None:
            value = value * entry_scale[entry]
        fast = runs_disjoint(pair, ls, le)
        if fast and window_size == 1:
            return fill_runs(pair, ls, le, value, T * B, L, default_value, work, tracks_last=(T, B))
        if fast:
            red = window_reduce_runs(pair, ls, le, value, T * B, L, window_size, reduce, default_value)
        else:
            dense = fill_runs_reference(pair, ls, le, value, T * B, L, default_value, work)
            red = window_reduce(dense, window_size, reduce, bool(np.isnan(default_value)))
        return red.reshape(T, B, -1).transpose(1, 2, 0)

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
        need = np.zeros(len(leaf_ids), np.int64)
        np.maximum.at(need, np.searchsorted(leaf_ids, leaf_of), key_hi[pair_of])
        t1 = time.perf_counter()
        words = self.fetch(leaf_ids, need)
        t2 = time.perf_counter()
        secs, sec_chrom = self.decode(leaf_ids, words)
        t3 = time.perf_counter()
        entries = self.search(leaf_ids, pair_of, leaf_of, words, secs, sec_chrom, key_lo, key_hi, origin)
        t4 = time.perf_counter()
        scale = None if c._scaling is None else c._scaling[track_idx[entries.pair // max(B, 1)]]
        out = self.fill(words, secs, entries, T, B, L, window_size, reduce, default_value, scale)
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

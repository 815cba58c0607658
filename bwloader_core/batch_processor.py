"""BatchProcessor: one query batch -> dense values, through the stages on one Device.

    Queries --plan--> Plan --BlockTable--> fetch --> Words --parse--> Sections
            --search--> Entries --fill--> (batch, length // window, tracks)

Every stage lives in `bwloader_core.stages` with its NumPy reference, its numba CPU kernel and
its CUDA kernel side by side; the Device chosen at construction decides which run.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np

from .device import Device
from .dtypes import cast_output
from .stages.fetch import BlockFetcher, BlockTable, Words, fetch_batch
from .stages.fill import WindowBuffers, fill_compiled, fill_reference
from .stages.parse import Sections, parse_blocks
from .stages.plan import Plan, Queries, plan_batch
from .stages.search import (Entries, clip_entries, item_ranges, item_ranges_numba, link_entries,
                            sections_per_block)

STAGES = ("plan", "read+inflate", "decode", "search", "fill")
PARALLEL_MIN_ENTRIES = 256     # below this, one thread searches and paints (hand-off costs more)


@dataclass(frozen=True)
class OutputSpec:
    """How the items become the output: windows, reduction, default and dtype."""
    window_size: int = 1
    reduce: str = "mean"
    default_value: float = 0.0
    dtype: str = "float32"


class BatchProcessor:
    """Turns batches of queries over a `BigWigCollection` into dense arrays on one Device.

    Owns its inflate thread pool, its buffers (and on CUDA its stream) and per-stage timers
    (seconds, cumulative in `timings`, per call in `last_timings`). One processor serves one
    thread at a time. `kernel` ('numba' / 'numpy') overrides the device's CPU kernels (tests)."""

    def __init__(self, collection, n_threads: int | None = None, kernel: str | None = None,
                 device: Device | str | None = None):
        self.collection = collection
        dev = Device.resolve(device if device is not None else getattr(collection, "device", "cpu"))
        if kernel is not None:
            dev = replace(dev, kernels=kernel)
        self.device = dev
        self.kernel = dev.kernels
        self.n_threads = n_threads if n_threads is not None else (os.cpu_count() or 1)
        self._fetcher = BlockFetcher(self.n_threads, native=dev.native_fetch)
        self._pins = None
        self._windows = WindowBuffers()
        self._cuda = dev.context() if dev.kind == "cuda" else None
        self.timings = dict.fromkeys(STAGES, 0.0)
        self.last_timings = dict.fromkeys(STAGES, 0.0)
        self.blocks_decoded = 0

    # -- stages ---------------------------------------------------------------------------------
    def plan(self, queries: Queries) -> Plan:
        return plan_batch(self.collection.index, queries)

    def block_table(self, plan: Plan, partial: bool | None = None) -> BlockTable:
        partial = self.device.partial_inflate if partial is None else partial
        return BlockTable.from_index(self.collection.index, plan.blocks, plan.need_key, partial)

    def fetch(self, table: BlockTable) -> Words:
        """Every block of `table` (`stages.fetch.fetch_batch`): blocks of uncompressed files
        (4-byte aligned) where they lie in a memory map, block-cache hits where they lie in the
        cache, the rest read and inflated on CPU threads. Cache blocks stay pinned until
        `release()` (process() calls it once the batch is filled)."""
        c = self.collection
        in_place = None
        if self.device.read_in_place:
            in_place = c.index.file_in_place[table.file] & (table.offset % 4 == 0)
        cache = getattr(c, "cache", None)
        if (in_place is None or not in_place.any()) and not cache:
            return self._fetcher.fetch(c.files, table)
        self.release()
        words, self._pins = fetch_batch(self._fetcher, c.files, table, maps=c.memory_maps, in_place=in_place,
                                        cache=cache)
        return words

    def release(self):
        """Let the cache evict the blocks the last batch used."""
        if self._pins is not None:
            self._pins.release()
            self._pins = None

    def parse(self, table: BlockTable, words: Words) -> tuple[Sections, np.ndarray]:
        self.blocks_decoded += len(table)
        return parse_blocks(words, table, self.collection.index, self.collection.files,
                            compiled=self.kernel == "numba")

    def search(self, plan: Plan, words: Words, secs: Sections, sec_chrom: np.ndarray) -> Entries:
        """For every (pair, section) that may overlap: the range of items it needs."""
        first_sec, n_sec = sections_per_block(secs, plan.n_blocks)
        links = link_entries(plan, first_sec, n_sec)
        a, b, origin = clip_entries(links, plan, sec_chrom, self.collection.index)
        e_sec = links.sec
        if self.kernel == "numba":
            args = (secs.type[e_sec], secs.count[e_sec], secs.item_word[e_sec], secs.start[e_sec], secs.step[e_sec],
                    secs.span[e_sec], a, b)
            # the search waits on memory (the words are cold): every thread takes a share of the entries
            parts = self._shares(len(e_sec))
            cut = np.linspace(0, len(e_sec), parts + 1).astype(np.int64)
            shares = self._fetcher.map(lambda i: item_ranges_numba(
                words.words, *(x[cut[i]:cut[i + 1]] for x in args)), range(parts))
            first = np.concatenate([r[0] for r in shares])
            count = np.concatenate([r[1] for r in shares])
        else:
            first, count = item_ranges(words, secs, e_sec, a, b)
        count = np.where(b > a, count, 0)
        return Entries(links.pair, e_sec, a, b, origin, first, count)

    def _shares(self, n_entries) -> int:
        """Threads to split `n_entries` search / fill entries over (one below PARALLEL_MIN_ENTRIES)."""
        return self._fetcher.n_threads if n_entries >= PARALLEL_MIN_ENTRIES else 1

    def fill(self, words: Words, secs: Sections, e: Entries, q: Queries, spec: OutputSpec):
        """Dense output (B, L // window_size, T) in float32 (float64 when scaled or windowed)."""
        T, B, L = q.n_tracks, q.batch, q.length
        scaling = self.collection.scaling_factors
        scale = None if scaling is None else scaling[q.tracks[e.pair // max(B, 1)]]
        if self.kernel == "numba":
            return fill_compiled(words, secs, e, T, B, L, spec.window_size, spec.reduce, spec.default_value, scale,
                                 self._fetcher.map, self._shares(len(e.pair)), self._windows)
        return fill_reference(words, secs, e, T, B, L, spec.window_size, spec.reduce, spec.default_value, scale)

    # -- whole batch ----------------------------------------------------------------------------
    def process(self, chromosomes, starts, ends, tracks=None, window_size=1, reduce="mean",
                default_value=0.0, dtype="float32"):
        """Values of the batch, (B, L // window_size, T) in `dtype`: a NumPy array on CPU, a CuPy
        array on a GPU (bfloat16 there: uint16 bit patterns, as CuPy has no bfloat16)."""
        t0 = time.perf_counter()
        q = self.collection.prepare_queries(chromosomes, starts, ends, tracks, window_size, reduce, dtype)
        spec = OutputSpec(int(window_size), reduce, float(default_value), dtype)
        try:
            if self._cuda is not None:
                out, last = self._cuda.process(self, q, spec, t0)
            else:
                out, last = self._process_cpu(q, spec, t0)
        finally:
            self.release()
        for k, v in last.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.last_timings = last
        return out

    def _process_cpu(self, q: Queries, spec: OutputSpec, t0: float):
        plan = self.plan(q)
        table = self.block_table(plan)
        t1 = time.perf_counter()
        words = self.fetch(table)
        t2 = time.perf_counter()
        secs, sec_chrom = self.parse(table, words)
        t3 = time.perf_counter()
        entries = self.search(plan, words, secs, sec_chrom)
        t4 = time.perf_counter()
        out = cast_output(self.fill(words, secs, entries, q, spec), spec.dtype)
        t5 = time.perf_counter()
        return out, dict(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))

    @property
    def bytes_read(self) -> int:
        return self._fetcher.bytes_read + (self._cuda.bytes_read if self._cuda is not None else 0)

    def close(self):
        self.release()
        self._fetcher.close()
        if self._cuda is not None:
            self._cuda.close()
            self._cuda = None

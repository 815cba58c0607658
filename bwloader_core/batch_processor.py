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
from .output_pool import OutputPool
from .stages.fetch import SLOT_RATIO, BlockFetcher, BlockTable, Words, fetch_batch
from .stages.fill import WindowBuffers, fill_compiled, fill_reference
from .stages.parse import Sections, parse_blocks
from .stages.plan import Plan, Queries, plan_batch
from .stages.search import (Entries, clip_entries, item_ranges, item_ranges_numba, link_entries,
                            sections_per_block)

STAGES = ("plan", "read+inflate", "decode", "search", "fill")
PARALLEL_MIN_ENTRIES = 256     # below this, one thread searches and paints (hand-off costs more)
GROUP_BYTES = 192 << 20        # working memory of one group of tracks (BWLOADER_GROUP_BYTES overrides)


LAYOUTS = ("BLT", "BTL")


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'BLT' (batch, length, tracks) or 'BTL' (batch, tracks, length), "
                         f"got {layout!r}")


def in_layout(out, layout, xp=np):
    """A (B, L, T) batch in `layout`: itself for "BLT", a C-contiguous transposed copy for "BTL"."""
    return out if layout == "BLT" else xp.ascontiguousarray(out.transpose(0, 2, 1))


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
        self.group_bytes = int(os.environ.get("BWLOADER_GROUP_BYTES", GROUP_BYTES))
        self.groups_run = 0          # track groups of wide batches (see `track_groups`)
        self.batches_fused = 0       # windowed batches done by the fused path (see `fused`)
        self.batches_direct = 0      # batches done by the direct path (see `direct`)
        self.outputs = OutputPool()  # the memory of outputs the caller has let go, for the next ones

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
                default_value=0.0, dtype="float32", layout="BLT"):
        """Values of the batch, (B, L // window_size, T) in `dtype` (layout "BLT"), or
        (B, T, L // window_size) (layout "BTL": channels first, as torch's Conv1d takes them): a
        NumPy array on CPU, a CuPy array on a GPU (bfloat16 there: uint16 bit patterns, as CuPy
        has no bfloat16)."""
        t0 = time.perf_counter()
        check_layout(layout)
        q = self.collection.prepare_queries(chromosomes, starts, ends, tracks, window_size, reduce, dtype)
        spec = OutputSpec(int(window_size), reduce, float(default_value), dtype)
        try:
            if self._cuda is not None:
                out, last = self._cuda.process(self, q, spec, t0)
                out = in_layout(out, layout, self.device.xp)
            else:
                out, last = self._process_cpu(q, spec, t0, layout)
        finally:
            self.release()
        for k, v in last.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.last_timings = last
        return out

    def track_groups(self, plan: Plan, spec: OutputSpec) -> list[tuple[int, int]]:
        """Output columns (tracks) in groups whose working memory (inflated blocks in their slots,
        window sums, the group's share of the output) stays within `group_bytes`; one group
        for every batch that fits. A wide batch (thousands of tracks, long windows) then runs
        group after group through the same reusable buffers."""
        q = plan.queries
        T, B = q.n_tracks, q.batch
        if T <= 1 or not len(plan.blocks):
            return [(0, T)]
        idx = self.collection.index
        files = idx.block_file(plan.blocks)
        size = idx.block_size[plan.blocks].astype(np.int64)
        slot = np.where(idx.file_compressed[files],
                        np.minimum(idx.file_uncompress_buf_size[files], size * SLOT_RATIO + 4096), size)
        cost = np.bincount(plan.link_pair // B, weights=slot[plan.link_block], minlength=T)
        w = spec.window_size
        per_value = 44 if w > 1 else 12      # window sums, covered, max/min + finishing; or painted + cast
        cost += B * (q.length // w) * per_value
        total = float(cost.sum())
        if total <= self.group_bytes:
            return [(0, T)]
        cum = np.cumsum(cost)
        n_groups = int(-(-total // self.group_bytes))
        cuts = np.searchsorted(cum, total * np.arange(1, n_groups) / n_groups, side="right")
        bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, T - 1), [T]])).tolist()
        return list(zip(bounds[:-1], bounds[1:]))

    def _process_cpu(self, q: Queries, spec: OutputSpec, t0: float, layout: str = "BLT"):
        """The batch on CPU in the layout asked for: the direct path makes either; the staged
        paths make (B, L, T), turned by one transposing copy."""
        done = self._process_direct(q, spec, t0, channels_first=layout == "BTL")
        if done is not None:
            return done
        out, last = self._process_staged(q, spec, t0)
        return in_layout(out, layout), last

    def _process_staged(self, q: Queries, spec: OutputSpec, t0: float):
        plan = self.plan(q)
        idx = self.collection.index
        if spec.window_size > 1 and self.fused and not (self.device.read_in_place
                                                        and idx.file_in_place[q.tracks].all()):
            done = self._process_fused(q, spec, plan, t0)
            if done is not None:
                return done
        groups = self.track_groups(plan, spec)
        if len(groups) > 1:
            return self._process_groups(q, spec, plan, groups, t0)
        return self._run_cpu(q, spec, plan, t0)

    @property
    def fused(self) -> bool:
        """True when windowed batches take the fused path (`stages.fused`): CPU, compiled kernels
        and fetch, local files, no block cache (BWLOADER_FUSED=0 turns it off). A batch whose
        tracks are all read in place (uncompressed files in memory maps) stays on the staged path:
        those blocks are cheaper where they lie."""
        from .stages.fetch import native_available
        c = self.collection
        idx = c.index
        return (self._cuda is None and self.kernel == "numba" and self._fetcher.native
                and not getattr(c, "cache", None) and idx.all_local
                and os.environ.get("BWLOADER_FUSED", "1") != "0" and native_available())

    @property
    def direct(self) -> bool:
        """True when batches whose blocks lie in memory take the direct path (`stages.direct`):
        CPU and compiled kernels (BWLOADER_DIRECT=0 turns it off)."""
        return self._cuda is None and self.kernel == "numba" and os.environ.get("BWLOADER_DIRECT", "1") != "0"

    def _process_direct(self, q: Queries, spec: OutputSpec, t0: float, channels_first: bool = False):
        """The batch through the direct path when its blocks can be read where they lie: every
        track read in place (uncompressed files in memory maps, blocks on 4-byte boundaries: no
        plan, no fetch), every block a ready cache hit (pinned pair by pair: no plan either), or
        with a block cache or only uncompressed tracks (planned and fetched as usual). Then one
        compiled pass per share of rows searches and fills, into a pooled output. None when the
        batch takes the staged paths. Its time counts as fill."""
        from .stages.direct import BlockPlace, direct_batch
        c = self.collection
        idx = c.index
        nw = q.length // spec.window_size
        if not self.direct:
            return None
        cache = getattr(c, "cache", None)
        in_place = idx.file_in_place[q.tracks] if self.device.read_in_place else np.zeros(q.n_tracks, bool)
        plan = None
        place = None
        if not cache and in_place.all() and idx.file_aligned[q.tracks].all():
            place = BlockPlace.of_maps(c.memory_maps, q.tracks)
            t1 = t2 = time.perf_counter()
        elif cache and not in_place.any():
            place = self._cache_hits(q)          # every block a cache hit: no plan, no table
            t1 = t2 = time.perf_counter()
        if place is None:
            # the blocks fetched as usual (cache hits and in-place blocks where they lie, the rest
            # inflated, into the cache when there is one), then searched and filled directly; a
            # batch with compressed tracks and no cache, or too wide for one group of working
            # memory, takes the staged paths (fused, grouped)
            if not (cache or in_place.all()):
                return None
            plan = self.plan(q)
            if len(self.track_groups(plan, spec)) > 1:
                return None
            table = self.block_table(plan)
            t1 = time.perf_counter()
            place = BlockPlace.of_words(self.fetch(table), plan.blocks, idx.n_files)
            self.blocks_decoded += len(table)
            t2 = time.perf_counter()
        scaling = c.scaling_factors
        col_scale = np.ones(q.n_tracks) if scaling is None else scaling[q.tracks].astype(np.float64)
        shape = (q.batch, q.n_tracks, nw) if channels_first else (q.batch, nw, q.n_tracks)
        out = self.outputs.empty(shape, np.float32)
        reads = direct_batch(q, idx, place, col_scale, spec, out, self._fetcher.map_here, self._shares(q.n_pairs),
                             channels_first)
        if reads < 0:
            self.release()
            return None
        if plan is None:
            self._fetcher.blocks_in_place += reads
        out = cast_output(out, spec.dtype)
        self.batches_direct += 1
        t3 = time.perf_counter()
        return out, dict(zip(STAGES, (t1 - t0, t2 - t1, 0.0, 0.0, t3 - t2)))

    def _cache_hits(self, q: Queries):
        """A BlockPlace of pinned cache hits when every block of the batch is one, else None."""
        from .cache import Pins
        from .stages.direct import BlockPlace
        from .stages.plan import block_ranges
        cache = self.collection.cache
        idx = self.collection.index
        lo, hi = block_ranges(idx, q)
        n = np.where(q.key_hi > q.key_lo, np.maximum(hi - lo, 0), 0)
        self.release()
        pins = Pins(cache)
        links = cache.pin_links(lo, n, q.key_lo, q.key_hi, idx.block_end, pins)
        if links is None:
            return None
        self._pins = pins
        self._fetcher.blocks_cached += len(pins.slots[-1])
        return BlockPlace.of_cache_links(cache.arena, lo, links, idx.n_files)

    def _process_fused(self, q: Queries, spec: OutputSpec, plan: Plan, t0: float):
        """Windowed values through the fused per-chunk kernel; None when the batch needs the
        staged path (which then also reports any error). Its time counts as read+inflate."""
        from .stages.fused import fused_batch
        table = self.block_table(plan)
        t1 = time.perf_counter()
        scaling = self.collection.scaling_factors
        col_scale = np.ones(q.n_tracks) if scaling is None else scaling[q.tracks].astype(np.float64)
        out, read = fused_batch(self.collection.files, self.collection.index, plan, table, col_scale, spec,
                                self._fetcher.map, self.n_threads)
        if out is None:
            return None
        self._fetcher.bytes_read += read
        self.blocks_decoded += len(table)
        self.batches_fused += 1
        out = cast_output(out, spec.dtype)
        t2 = time.perf_counter()
        return out, dict(zip(STAGES, (t1 - t0, t2 - t1, 0.0, 0.0, 0.0)))

    def _process_groups(self, q: Queries, spec: OutputSpec, plan: Plan, groups, t0: float):
        """A wide batch group by group into one output: each group planned, fetched, parsed,
        searched and filled on its own (every pair's values are computed exactly as in one go)."""
        from .dtypes import resolve_dtype
        B, T = q.batch, q.n_tracks
        dt = resolve_dtype(spec.dtype)
        out = np.empty((B, q.length // spec.window_size, T), dt)
        last = dict.fromkeys(STAGES, 0.0)
        last["plan"] = time.perf_counter() - t0
        for c0, c1 in groups:
            t1 = time.perf_counter()
            sub = q.columns(c0, c1)
            part, times = self._run_cpu(sub, spec, self.plan(sub), t1, cast=dt != np.float32)
            out[:, :, c0:c1] = part               # float64 sums -> float32: the rounding cast_output does
            for k, v in times.items():
                last[k] += v
        self.groups_run += len(groups)
        return out, last

    def _run_cpu(self, q: Queries, spec: OutputSpec, plan: Plan, t0: float, cast: bool = True):
        table = self.block_table(plan)
        t1 = time.perf_counter()
        words = self.fetch(table)
        t2 = time.perf_counter()
        secs, sec_chrom = self.parse(table, words)
        t3 = time.perf_counter()
        entries = self.search(plan, words, secs, sec_chrom)
        t4 = time.perf_counter()
        out = self.fill(words, secs, entries, q, spec)
        if cast:
            out = cast_output(out, spec.dtype)
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

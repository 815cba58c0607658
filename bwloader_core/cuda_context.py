"""CudaContext: one worker's GPU resources and the GPU path of a batch.

Each `BatchProcessor` on a CUDA `Device` owns one: a CUDA stream (CuPy's, handed to numba through
`cuda.external_stream`), a pinned host staging buffer and device buffers that grow as needed and
are reused across batches (every allocation goes through CuPy's pool). Outputs are fresh arrays
from the pool, so a batch handed to the user is never overwritten.

    plan (CPU) -> stage blocks in pinned memory (CPU threads, pread) -> one host-to-device copy
    -> nvCOMP raw Deflate into the word slots -> Adler-32 check, byte swap -> parse -> search
    -> fill / window reduce -> output dtype        (all on the worker's stream)

Without nvCOMP ("hybrid"), CPU threads inflate (the compiled path, partial inflate included) and
the word buffer is copied to the device instead. Under numba's CUDA simulator NumPy arrays stand
in for CuPy ones and the kernels run on the CPU (`Device.simulated`): all the logic, no GPU. This
module is the only place that knows CuPy, streams and launch sizes; the kernels live with their
stages.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .errors import BigWigFormatError
from .stages import fetch_cuda, fill, parse, search
from .stages.fetch import BlockTable, Words, compact
from .stages.plan import Queries

THREADS_PER_BLOCK = 128
MAX_BLOCKS = 4096
SIM_THREADS = 4              # the simulator runs one OS thread per CUDA thread: keep grids tiny
_SIM_LOCK = threading.Lock()  # nor can it run two launches at once (it swaps module globals per launch)


class CudaContext:
    """A worker's stream, staging buffer and reusable device buffers (see the module docstring)."""

    def __init__(self, device):
        self.device = device
        self.simulated = device.simulated
        self.bytes_read = 0
        self.blocks_on_cpu = 0       # blocks a GPU check handed to the CPU fetcher
        self._dev_bufs: dict = {}
        self._stage = np.zeros(0, np.uint8)
        self._host_words = np.zeros(0, np.uint32)
        self._inflater = None
        if self.simulated:
            self.xp = np
            self.stream = None
            self._nb_stream = 0
        else:
            import cupy
            from numba import cuda
            self.xp = cupy
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self._nb_stream = cuda.external_stream(self.stream.ptr)
            if device.inflater == "nvcomp":
                self._inflater = fetch_cuda.NvcompInflater(self.stream.ptr)

    # -- memory and launches ------------------------------------------------------------------
    def launch(self, kernel, n_items: int, *args, threads: int | None = None):
        """Run `kernel` (grid-stride over `n_items`) on this worker's stream."""
        if n_items <= 0:
            return
        if self.simulated:
            with _SIM_LOCK:
                kernel[1, min(SIM_THREADS, n_items)](*args)
            return
        tpb = threads or THREADS_PER_BLOCK
        blocks = min(MAX_BLOCKS, -(-n_items // tpb))
        kernel[blocks, tpb, self._nb_stream](*args)

    def buffer(self, name: str, n: int, dtype):
        """A reusable device buffer of at least `n` items (grown by 25% when short); its first `n`."""
        buf = self._dev_bufs.get(name)
        if buf is None or buf.size < n or buf.dtype != np.dtype(dtype):
            size = max(int(n * 1.25) + 64, 64)
            with self._on_stream():
                buf = self.xp.empty(size, dtype)
            self._dev_bufs[name] = buf
        return buf[:n]

    def empty(self, shape, dtype):
        """A fresh device array (from CuPy's pool): for outputs the user keeps."""
        with self._on_stream():
            return self.xp.empty(shape, dtype)

    def upload(self, host: np.ndarray, name: str | None = None):
        """A device copy of `host` (into the named reusable buffer, or a fresh one), async on the stream."""
        host = np.ascontiguousarray(host)
        if self.simulated:
            if name is None:
                return host.copy()
            dev = self.buffer(name, host.size, host.dtype)
            dev[...] = host.reshape(-1)
            return dev.reshape(host.shape)
        dev = self.buffer(name, host.size, host.dtype).reshape(host.shape) if name else \
            self.empty(host.shape, host.dtype)
        dev.set(host, stream=self.stream)
        return dev

    def download(self, dev) -> np.ndarray:
        """A host copy of a device array (waits for the stream)."""
        if self.simulated:
            return np.array(dev)
        host = dev.get(stream=self.stream)       # asynchronous on a stream: wait for it
        self.stream.synchronize()
        return host

    def synchronize(self):
        if self.stream is not None:
            self.stream.synchronize()

    def _on_stream(self):
        if self.stream is None:
            import contextlib
            return contextlib.nullcontext()
        return self.stream

    def pinned(self, n_bytes: int) -> np.ndarray:
        """The reusable host staging buffer (pinned on a GPU), at least `n_bytes`."""
        if self._stage.size < n_bytes:
            size = int(n_bytes * 1.25) + 4096
            if self.simulated:
                self._stage = np.empty(size, np.uint8)
            else:
                import cupyx
                self._stage = cupyx.empty_pinned(size, np.uint8)
        return self._stage[:n_bytes]

    # -- the batch ------------------------------------------------------------------------------
    def process(self, bp, q: Queries, spec, t0: float):
        """The GPU path of `BatchProcessor.process`: (output on the device, stage timings)."""
        from .batch_processor import STAGES
        coll = bp.collection
        plan = bp.plan(q)
        hybrid = self.device.inflater == "cpu"
        table = bp.block_table(plan, partial=None if hybrid else False)
        t1 = time.perf_counter()
        if hybrid:
            words, block_nbytes = self._fetch_hybrid(bp, table)
        else:
            words, block_nbytes = self._fetch_staged(bp, table)
        t2 = time.perf_counter()
        sections, first_sec, n_sec = self._parse(bp, table, words, block_nbytes)
        t3 = time.perf_counter()
        links = search.link_entries(plan, first_sec, n_sec)
        entries = self._search(q, links, words, sections, coll.index)
        t4 = time.perf_counter()
        out = self._fill(bp, q, spec, words, sections, links, entries, table, block_nbytes)
        out = self._to_dtype(out, spec.dtype)
        self.synchronize()
        t5 = time.perf_counter()
        return out, dict(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)))

    def _fetch_hybrid(self, bp, table: BlockTable):
        """CPU threads read and inflate (partial inflate included), then one upload of the words."""
        host = self._host_words_buffer(table.total_words)
        w = compact(bp._fetcher.fetch(bp.collection.files, table, buf=host))
        dev = self.upload(w.words[:table.total_words] if w.words is host else w.words, "words")
        self._slots = w.block_start            # a block that overflowed its slot was placed after the others
        return dev, w.block_nbytes

    def _host_words_buffer(self, n_words: int) -> np.ndarray:
        if self._host_words.size < n_words:
            size = int(n_words * 1.25) + 1024
            if self.simulated:
                self._host_words = np.empty(size, np.uint32)
            else:
                import cupyx
                self._host_words = cupyx.empty_pinned(size, np.uint32)
        return self._host_words

    def _fetch_staged(self, bp, table: BlockTable):
        """Stage (CPU preads), copy once, inflate on the device, check; bad blocks via the CPU."""
        layout = fetch_cuda.StagingLayout.of(table)
        stage = self.pinned(layout.total_bytes)
        read, status = fetch_cuda.stage_blocks(bp.collection.files, table, layout, stage, bp._fetcher.map,
                                               bp._fetcher.n_threads)
        self.bytes_read += read
        status |= ~fetch_cuda.zlib_header_ok(stage, table, layout) & (status == 0)
        expected = fetch_cuda.adler_expected(stage, table, layout)
        dev = self.upload(stage, "stage")
        if self._inflater is None:             # the simulator: libdeflate stands in for nvCOMP
            nbytes, inflate_status = fetch_cuda.inflate_payloads_cpu(dev, table, layout)
        else:
            nbytes, inflate_status = self._inflater.inflate(dev, table, layout)
        status |= inflate_status
        adler, swap = fetch_cuda.cuda_kernels()
        n = len(table)
        slot_byte = self.upload(table.slot * 4, "slot_byte")
        d_nbytes = self.upload(nbytes, "nbytes")
        d_status = self.upload(status.astype(np.uint8), "status")
        self.launch(adler, n, dev, slot_byte, d_nbytes, self.upload(table.compressed, "compressed"),
                    self.upload(expected, "adler"), d_status)
        status = self.download(d_status)
        words = dev[:layout.words_bytes].view(np.uint32)
        needs_swap = table.big_endian.copy()
        bad = np.flatnonzero(status)
        if len(bad):
            nbytes = self._refetch_on_cpu(bp, table, bad, words, nbytes)
            needs_swap[bad] = False            # the CPU fetcher's words are already in native order
        self.launch(swap, n, words, self.upload(table.slot, "slot"), self.upload(nbytes, "nbytes"),
                    self.upload(needs_swap, "big"), threads=32)
        self._slots = table.slot
        return words, nbytes

    def _refetch_on_cpu(self, bp, table: BlockTable, bad: np.ndarray, words, nbytes):
        """Blocks a GPU check refused, read by the CPU fetcher: it raises the precise error, or
        (a block the GPU could not take but the CPU can) its words, already in native order, are
        copied into their slots."""
        self.blocks_on_cpu += len(bad)
        sub = table.take(bad).whole()
        slots = np.concatenate([[0], np.cumsum((sub.capacity + 3) // 4)[:-1]]).astype(np.int64)
        sub = _with_slots(sub, slots)
        host = np.zeros(int(((sub.capacity + 3) // 4).sum()) + 16, np.uint32)
        w = compact(bp._fetcher.fetch(bp.collection.files, sub, buf=host))
        nbytes = nbytes.copy()
        for j, k in enumerate(bad.tolist()):
            m = int(w.block_nbytes[j])
            nw = (m + 3) // 4
            if nw > (int(table.capacity[k]) + 3) // 4:
                f = bp.collection.files[int(table.file[k])]
                raise BigWigFormatError(f.path, f"data block at offset {int(table.offset[k])} inflates to more "
                                                f"bytes ({m}) than the GPU slot holds ({int(table.capacity[k])})")
            s0 = int(w.block_start[j])
            dst = int(table.slot[k])
            with self._on_stream():
                words[dst:dst + nw] = w.words[s0:s0 + nw] if self.simulated else self.xp.asarray(w.words[s0:s0 + nw])
            nbytes[k] = m
        return nbytes

    def _parse(self, bp, table: BlockTable, words, block_nbytes):
        """Sections on the device (SECTION_ROWS x n int64), and each block's first section and
        section count (host)."""
        count, write = parse.cuda_kernels()
        idx = bp.collection.index
        n = len(table)
        d_start = self.upload(self._slots, "block_start")
        d_nbytes = self.upload(block_nbytes, "block_nbytes")
        d_swap = self.upload(table.big_endian, "swap")          # how word 5 of a header reads
        d_nchroms = self.upload(idx.file_n_chroms[table.file], "n_chroms")
        d_nsec = self.buffer("n_sec", n, np.int64)
        d_status = self.buffer("parse_status", n, np.int64)
        self.launch(count, n, words, d_start, d_nbytes, d_swap, d_nchroms, d_nsec, d_status)
        status = self.download(d_status)
        if status.any():          # the CPU walk names the file, the block and what is wrong
            host = Words(self.download(words), np.asarray(self._slots, np.int64), np.asarray(block_nbytes, np.int64))
            parse.parse_blocks(host, table, idx, bp.collection.files, compiled=False)
            raise BigWigFormatError(bp.collection.files[int(table.file[int(np.flatnonzero(status)[0])])].path,
                                    "a data block failed the GPU's section checks")   # not reached: CPU raised
        n_sec = self.download(d_nsec)
        first = np.concatenate([[0], np.cumsum(n_sec)[:-1]]).astype(np.int64)
        total = int(n_sec.sum())
        sections = self.buffer("sections", parse.SECTION_ROWS * max(total, 1), np.int64).reshape(
            parse.SECTION_ROWS, max(total, 1))
        self.launch(write, n, words, d_start, d_nbytes, d_swap, self.upload(idx.file_chrom_first[table.file],
                                                                             "chrom_first"),
                    self.upload(first, "first_row"), sections)
        return sections, first, n_sec

    def _search(self, q: Queries, links, words, sections, index):
        """Entries (a, b, origin, first, count) on the device, one thread per entry."""
        kernel = search.cuda_kernels()
        m = len(links.pair)
        e = {k: self.buffer("e_" + k, max(m, 1), np.int64) for k in ("a", "b", "o", "first", "count")}
        d_pair = self.upload(links.pair, "e_pair")
        d_sec = self.upload(links.sec, "e_sec")
        self.launch(kernel, m, words, sections, d_pair, d_sec, self.upload(q.key_lo, "key_lo"),
                    self.upload(q.key_hi, "key_hi"), self.upload(q.origin, "origin"),
                    self._index_array(index, "chrom_key_base"), self._index_array(index, "chrom_len_flat"),
                    e["a"], e["b"], e["o"], e["first"], e["count"])
        return dict(e, pair=d_pair, sec=d_sec)

    def _index_array(self, index, name):
        """A FlatIndex array on the device, copied once per context."""
        key = "index_" + name
        cached = self._dev_bufs.get(key)
        if cached is None or cached[0] is not index:
            arr = getattr(index, name)
            dev = self.upload(arr)           # (the simulator writes every argument back: a copy)
            self._dev_bufs[key] = (index, dev)
            cached = self._dev_bufs[key]
        return cached[1]

    def _fill(self, bp, q: Queries, spec, words, sections, links, e, table, block_nbytes):
        """The float32 output (B, L // w, T) on the device."""
        fill_value, paint, window_accumulate, finish = fill.cuda_kernels()
        T, B, L = q.n_tracks, q.batch, q.length
        w = spec.window_size
        scaling = bp.collection.scaling_factors
        scale = np.ones(T) if scaling is None else scaling[q.tracks].astype(np.float64)
        d_scale = self.upload(scale, "scale")
        pair_first = self.upload(links.pair_first, "pair_first")
        fwords = words.view(np.float32)
        n_pairs = T * B
        args = (words, fwords, sections, e["sec"], e["a"], e["b"], e["o"], e["first"], e["count"], pair_first, d_scale,
                np.int64(B))
        if w == 1:
            out = self.empty((B, L, T), np.float32)
            self.launch(fill_value, out.size, out.reshape(-1), np.float32(spec.default_value))
            self.launch(paint, n_pairs, *args, out)
            return out
        nw = L // w
        sums = self.buffer("sums", n_pairs * nw, np.float64)
        covered = self.buffer("covered", n_pairs * nw, np.float64)
        acc = self.buffer("acc", n_pairs * nw, np.float64)
        overlap = self.buffer("overlap", 1, np.int32)
        with self._on_stream():
            overlap[...] = 0
        skip_nan = bool(np.isnan(spec.default_value))
        self.launch(window_accumulate, n_pairs, *args, np.int64(L), np.int64(w), skip_nan,
                    spec.reduce in ("max", "min"), spec.reduce == "max", sums, covered, acc, overlap)
        if int(self.download(overlap)[0]):
            return self._fill_on_cpu(bp, q, spec, words, sections, links, e, table, block_nbytes)
        out = self.empty((B, nw, T), np.float32)
        mode = {"mean": 0, "sum": 1}.get(spec.reduce, 2)
        self.launch(finish, n_pairs * nw, sums, covered, acc, np.int64(w), np.int64(mode), skip_nan,
                    spec.reduce == "max", np.float64(spec.default_value), np.int64(B), out)
        return out

    def _fill_on_cpu(self, bp, q, spec, words, sections, links, e, table, block_nbytes):
        """Overlapping records (no valid bigWig has them): the CPU reference paints them in file
        order, as pyBigWig does; the result goes back to the device."""
        host_secs = self.download(sections)
        n_total = int(len(links.sec) and host_secs.shape[1])
        secs = parse.Sections(*(host_secs[i, :n_total] if n_total else host_secs[i, :0] for i in range(9)))
        host_words = Words(self.download(words), np.asarray(self._slots, np.int64), np.asarray(block_nbytes, np.int64))
        ent = search.Entries(links.pair, links.sec, *(self.download(e[k])[:len(links.pair)]
                                                      for k in ("a", "b", "o", "first", "count")))
        scaling = bp.collection.scaling_factors
        scale = None if scaling is None else scaling[q.tracks[ent.pair // max(q.batch, 1)]]
        out = fill.fill_reference(host_words, secs, ent, q.n_tracks, q.batch, q.length, spec.window_size, spec.reduce,
                                  spec.default_value, scale)
        return self.upload(np.ascontiguousarray(out, np.float32))

    def _to_dtype(self, out32, dtype: str):
        """float32 -> the output dtype, rounded once (bfloat16 as uint16 bits on a GPU: CuPy has no
        bfloat16; under the simulator an ml_dtypes.bfloat16 array, as on the CPU)."""
        from .dtypes import resolve_dtype
        dt = resolve_dtype(dtype)
        if dt == np.float32:
            return out32
        if dt.name == "bfloat16":
            with self._on_stream():
                bits = fill.to_bfloat16_bits(out32, self.xp)
            return bits.view(dt) if self.simulated else bits
        with self._on_stream():
            return out32.astype(dt)

    def close(self):
        self.synchronize()
        self._dev_bufs.clear()
        self._stage = np.zeros(0, np.uint8)
        self._host_words = np.zeros(0, np.uint32)
        self._inflater = None


def _with_slots(table: BlockTable, slots) -> BlockTable:
    from dataclasses import replace
    return replace(table, slot=np.asarray(slots, np.int64))

"""Streaming: a feeder thread, worker threads (WorkerContext) and an in-order consumer.

    query source --feeder--> input queue --WorkerContext x N--> output queue --> consumer (in order)

Queues are bounded; an exception in any thread reaches the consumer as that exception (with its
traceback) as soon as it happens; `close()` stops and joins every thread.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .batch import Batch
from .batch_processor import BatchProcessor, OutputSpec
from .dtypes import cast_output
from .sequence import reverse_complement_codes, unknown_fraction
from .transforms import apply_transforms, apply_transforms_inplace, parse_value_transforms

log = logging.getLogger(__name__)
_POLL = 0.05           # seconds between checks of the stop flag while blocked on a queue
_END, _ERROR, _ITEM = "end", "error", "item"


@dataclass(frozen=True)
class BatchSpec(OutputSpec):
    """How a query batch becomes a Batch (the knobs that do not choose the queries): the values'
    `OutputSpec` (window, reduction, default, dtype), and the sequences' dtype and transforms."""
    sequence_dtype: str | None = None   # None: the same as dtype
    value_transforms: tuple = ()        # ValueTransform steps, applied in order after scaling


def make_batch(qb, processor: BatchProcessor, genome, spec: BatchSpec) -> Batch:
    """Read values (and sequences) for one QueryBatch; apply the value transforms; reverse (and
    swap strand pairs of) reverse-complemented samples."""
    t0 = time.perf_counter()
    # transforms run on the float32 values; a narrower output dtype is rounded once, after them
    read_dtype = "float32" if spec.value_transforms else spec.dtype
    values = processor.process(qb.chromosomes, qb.target_starts, qb.target_ends, tracks=qb.track_indices,
                               window_size=spec.window_size, reduce=spec.reduce,
                               default_value=spec.default_value, dtype=read_dtype)
    timings = dict(processor.last_timings)
    xp = processor.device.xp          # NumPy, or CuPy on a GPU: values and sequences stay there
    if spec.value_transforms:
        t1 = time.perf_counter()
        values = _transform_values(values, spec, xp)
        timings["transform"] = time.perf_counter() - t1
    rc = np.asarray(qb.reverse_complement, bool)
    partners = getattr(qb, "strand_partners", None)
    if rc.any():
        mask = xp.asarray(rc)
        flipped = values[mask, ::-1, :]
        values[mask] = flipped if partners is None else flipped[:, :, xp.asarray(partners)]
    sequences = None
    stats = {}
    if genome is not None:
        t1 = time.perf_counter()
        codes = getattr(qb, "sequence_codes", None)   # already read by the N filter
        codes = genome.fetch_batch(qb.chromosomes, qb.starts, qb.ends) if codes is None else codes.copy()
        if rc.any():
            codes[rc] = reverse_complement_codes(codes[rc])
        sequences = genome.one_hot(codes, dtype=spec.sequence_dtype or spec.dtype, xp=xp)
        stats = _sequence_stats(codes)
        timings["sequence"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    return Batch(values=values, chromosomes=np.asarray(qb.chromosomes), starts=np.asarray(qb.starts),
                 ends=np.asarray(qb.ends), target_starts=np.asarray(qb.target_starts),
                 target_ends=np.asarray(qb.target_ends), track_indices=np.asarray(qb.track_indices),
                 track_names=tuple(qb.track_names), reverse_complement=rc, sequences=sequences,
                 epoch=int(getattr(qb, "epoch", 0)), index=int(getattr(qb, "index", 0)), timings=timings,
                 dtype=str(spec.dtype), sequence_dtype=str(spec.sequence_dtype or spec.dtype),
                 device=processor.device.name,
                 strand_partners=None if partners is None else np.asarray(partners),
                 region_source=getattr(qb, "region_source", None),
                 region_source_names=tuple(getattr(qb, "region_source_names", ())),
                 stats=stats)


def _sequence_stats(codes) -> dict:
    """How much of the served sequence is unknown (N, IUPAC codes): a model fed mostly N learns
    nothing, and nothing else would say so."""
    per_sample = unknown_fraction(codes) if codes.size else np.zeros(len(codes))
    return {"unknown_fraction": float(np.mean(per_sample)) if len(per_sample) else 0.0,
            "all_unknown_samples": int(np.count_nonzero(per_sample >= 1.0))}


def _transform_values(values32, spec: BatchSpec, xp):
    """The value transforms on a batch's float32 values, then one rounding to the output dtype.
    NumPy: in place (bit for bit the reference). A device (CuPy) array: each step's xp reference
    on the device, and bfloat16 as uint16 bit patterns, as the GPU path outputs it."""
    if isinstance(values32, np.ndarray):
        return cast_output(apply_transforms_inplace(values32, spec.value_transforms), spec.dtype)
    from .dtypes import resolve_dtype
    from .stages.fill import to_bfloat16_bits
    out = apply_transforms(values32, spec.value_transforms, xp)
    dt = resolve_dtype(spec.dtype)
    if dt == np.float32:
        return out
    return to_bfloat16_bits(out, xp) if dt.name == "bfloat16" else out.astype(dt)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


class WorkerContext:
    """One worker thread that owns a BatchProcessor (its buffers and inflate threads) and, when
    given, its own ReferenceGenome handle; it turns (seq, QueryBatch) items into Batches."""

    def __init__(self, worker_id, collection, spec: BatchSpec, in_q, out_q, stop: threading.Event,
                 n_threads: int = 1, genome_factory=None):
        self.worker_id = worker_id
        self.processor = BatchProcessor(collection, n_threads=n_threads)
        self.genome = genome_factory() if genome_factory is not None else None
        self.spec = spec
        self.batches_done = 0
        self.thread = threading.Thread(target=self._run, args=(in_q, out_q, stop),
                                       name=f"bwloader-worker-{worker_id}", daemon=True)

    def start(self):
        self.thread.start()

    def _run(self, in_q, out_q, stop):
        try:
            while not stop.is_set():
                try:
                    seq, qb = in_q.get(timeout=_POLL)
                except queue.Empty:
                    continue
                try:
                    batch = make_batch(qb, self.processor, self.genome, self.spec)
                except BaseException as exc:  # noqa: BLE001 - every error must reach the consumer
                    _put(out_q, (_ERROR, seq, exc), stop)
                    return
                self.batches_done += 1
                if not _put(out_q, (_ITEM, seq, batch), stop):
                    return
        finally:
            self.processor.close()
            if self.genome is not None:
                self.genome.close()

    def join(self, timeout=None):
        self.thread.join(timeout)


def _feed(source, in_q, out_q, stop):
    n = 0
    try:
        for qb in source:
            if not _put(in_q, (n, qb), stop):
                return
            n += 1
    except BaseException as exc:  # noqa: BLE001 - a failing sampler must reach the consumer
        _put(out_q, (_ERROR, n, exc), stop)
        return
    _put(out_q, (_END, n, None), stop)


class StreamedDataloader:
    """Streams Batches for the QueryBatches of `query_source`, in query order.

    `num_workers` WorkerContext threads each own a BatchProcessor with `threads_per_worker`
    inflate threads (default: the CPU count shared out among workers). At most `queue_size`
    query batches wait for a worker and at most `queue_size` finished batches wait for the
    consumer. Iterate once; use `with` (or `close()`) to stop early and join every thread.
    `value_transforms` (see `bwloader_core.transforms`) are applied to every batch's values.
    """

    def __init__(self, query_source, collection, num_workers: int = 2, queue_size: int = 4,
                 window_size: int = 1, reduce: str = "mean", default_value: float = 0.0,
                 dtype: str = "float32", genome=None, threads_per_worker: int | None = None,
                 sequence_dtype: str | None = None, value_transforms=None):
        if int(num_workers) < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.collection = collection
        self.num_workers = int(num_workers)
        self.spec = BatchSpec(int(window_size), reduce, float(default_value), dtype, sequence_dtype,
                              parse_value_transforms(value_transforms))
        # validate the knobs up front, in the caller's thread
        from .collection import REDUCTIONS
        from .dtypes import resolve_dtype
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        resolve_dtype(dtype)
        if threads_per_worker is None:
            threads_per_worker = max(1, (os.cpu_count() or 1) // self.num_workers)
        self._stop = threading.Event()
        self._in_q: queue.Queue = queue.Queue(int(queue_size))
        self._out_q: queue.Queue = queue.Queue(int(queue_size))
        genome_factory = _genome_factory(genome)
        self._workers = []
        try:
            for i in range(self.num_workers):
                self._workers.append(WorkerContext(i, collection, self.spec, self._in_q, self._out_q,
                                                   self._stop, threads_per_worker, genome_factory))
        except BaseException:
            for w in self._workers:
                w.processor.close()
            raise
        self._feeder = threading.Thread(target=_feed, args=(query_source, self._in_q, self._out_q, self._stop),
                                        name="bwloader-feeder", daemon=True)
        self._started = False
        self._closed = False
        self.batches_yielded = 0
        self.samples_yielded = 0
        self.wait_seconds = 0.0
        self._unknown_sum = 0.0          # sum over yielded batches of (unknown fraction x samples)
        self._warned_unknown = False

    def _start(self):
        self._started = True
        for w in self._workers:
            w.start()
        self._feeder.start()

    def __iter__(self):
        if self._started:
            raise RuntimeError("a StreamedDataloader can be iterated once; make a new one per epoch")
        self._start()
        pending: dict[int, Batch] = {}
        nxt, total = 0, None
        try:
            while total is None or nxt < total:
                if nxt in pending:
                    batch = pending.pop(nxt)
                    nxt += 1
                    self.batches_yielded += 1
                    self.samples_yielded += batch.batch_size
                    self._note_unknown(batch)
                    yield batch
                    continue
                t0 = time.perf_counter()
                kind, seq, payload = self._get()
                wait = time.perf_counter() - t0
                self.wait_seconds += wait
                if kind == _ERROR:
                    raise payload
                if kind == _END:
                    total = seq
                    continue
                payload.timings["queue_wait"] = wait
                pending[seq] = payload
        finally:
            self.close()

    @property
    def unknown_fraction(self) -> float | None:
        """Share of unknown (N / non-ACGT) bases in the sequences yielded so far (None without
        sequences)."""
        if not self.samples_yielded or not self._has_sequences:
            return None
        return self._unknown_sum / self.samples_yielded

    _has_sequences = False

    def _note_unknown(self, batch):
        frac = batch.stats.get("unknown_fraction")
        if frac is None:
            return
        self._has_sequences = True
        self._unknown_sum += frac * batch.batch_size
        if not self._warned_unknown and batch.stats.get("all_unknown_samples", 0) == batch.batch_size:
            self._warned_unknown = True
            warnings.warn(f"bwloader: every sequence of batch {batch.index} (epoch {batch.epoch}) is unknown bases "
                          "(N) only: the FASTA may not cover these regions (another assembly?). Set "
                          "max_unknown_fraction to redraw such windows", RuntimeWarning, stacklevel=3)

    def _get(self):
        while True:
            try:
                return self._out_q.get(timeout=_POLL)
            except queue.Empty:
                if self._closed:
                    raise RuntimeError("the loader was closed")
                if not any(w.thread.is_alive() for w in self._workers):
                    try:  # a last item may have arrived just before the workers ended
                        return self._out_q.get_nowait()
                    except queue.Empty:
                        raise RuntimeError("all loader workers have stopped without reporting an error") from None

    def close(self, timeout: float = 10.0):
        """Stop every thread and wait for them; free the workers' buffers. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        deadline = time.monotonic() + timeout
        threads = [w.thread for w in self._workers] + [self._feeder]
        for t in threads:
            if t.is_alive() or t.ident is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        if not self._started:
            for w in self._workers:
                w.processor.close()
                if w.genome is not None:
                    w.genome.close()
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            log.warning("bwloader: threads still running after close(): %s", alive)
        for q in (self._in_q, self._out_q):
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        _release_free_memory()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close(timeout=1.0)
        except Exception:
            pass


def _release_free_memory():
    """Give the workers' freed buffers back to the OS (glibc keeps them in per-thread arenas, which
    shows as RSS creeping up over many epochs). A no-op where malloc_trim does not exist."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def _genome_factory(genome):
    """Each worker opens its own handle of the reference genome (file handles are not shared)."""
    if genome is None:
        return None
    if isinstance(genome, (str, os.PathLike)):
        path, kw = os.fspath(genome), {}
    else:
        path, kw = genome.path, {"one_hot_unknown": getattr(genome, "one_hot_unknown", "zeros"),
                                 "aliases": getattr(genome, "aliases", None)}

    def open_genome():
        from .sequence import ReferenceGenome
        return ReferenceGenome(path, **kw)
    return open_genome

"""The sweep: samples/s of the loader over batch sizes x worker counts, on the dashboard's config,
against a plain pyBigWig `values()` loop as the baseline; measured in a background thread."""
from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import param

from bwloader_core.config import LoaderConfig

from .util import config_copy, error_text


def pybigwig_loop(paths, chromosomes, starts, ends, window_size=1, reduce="mean", default_value=0.0):
    """The baseline: pyBigWig `values()` per query and track, then the same window reduction.
    Returns (values (batch, bins, tracks) float32, seconds)."""
    import pyBigWig
    handles = [pyBigWig.open(p) for p in paths]
    try:
        t0 = time.perf_counter()
        B, T = len(starts), len(handles)
        L = int(ends[0] - starts[0])
        out = np.empty((B, L // window_size, T), np.float32)
        # like the loader: bases without data take default_value, then the window reduction
        fill = not np.isnan(default_value)
        red = ({"mean": np.mean, "max": np.max, "min": np.min, "sum": np.sum} if fill else
               {"mean": np.nanmean, "max": np.nanmax, "min": np.nanmin, "sum": np.nansum})[reduce]
        for t, bw in enumerate(handles):
            sizes = bw.chroms()
            for b, (c, s, e) in enumerate(zip(chromosomes, starts, ends)):
                v = np.full(L, np.nan)
                size = sizes.get(str(c), 0)
                lo, hi = max(int(s), 0), min(int(e), size)
                if hi > lo:
                    v[lo - int(s):hi - int(s)] = bw.values(str(c), lo, hi, numpy=True)
                if fill:
                    v[np.isnan(v)] = default_value
                if window_size > 1:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        v = red(v[: L // window_size * window_size].reshape(-1, window_size), axis=1)
                out[b, :, t] = np.where(np.isnan(v), default_value, v)
        return out, time.perf_counter() - t0
    finally:
        for h in handles:
            h.close()



class SweepRunner(param.Parameterized):
    """samples/s of the loader over batch sizes x worker counts (and the pyBigWig loop baseline),
    measured on the dashboard's config, in a background thread."""

    batch_sizes = param.List(default=[16, 64], item_type=int, doc="batch sizes to try")
    worker_counts = param.List(default=[1, 2, 4], item_type=int, doc="worker counts to try")
    batches_per_point = param.Integer(default=10, bounds=(1, 1000), doc="timed batches per point (after one warm-up)")
    baseline_queries = param.Integer(default=32, bounds=(1, 10_000), doc="queries timed for the pyBigWig loop")
    running = param.Boolean(default=False)
    progress = param.Integer(default=0, bounds=(0, 100))
    results = param.List(default=[], doc="dicts: kind, batch_size, workers, samples_per_s, mb_per_s")
    message = param.String(default="")

    def __init__(self, **params):
        super().__init__(**params)
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._out = None

    def run(self, config: LoaderConfig):
        if self._thread is not None and self._thread.is_alive():
            return
        bad = [v for v in self.batch_sizes + self.worker_counts if v < 1]
        if bad or not self.batch_sizes or not self.worker_counts:
            self.message = "batch sizes and worker counts must be positive integers"
            return
        cfg = config_copy(config)
        self._stop.clear()
        self._out = dict(results=[], progress=0, message="", done=False)
        self.param.update(running=True, progress=0, results=[], message="sweep running ...")
        self._thread = threading.Thread(target=self._worker, args=(cfg, list(self.batch_sizes),
                                        list(self.worker_counts)), name="bwloader-dashboard-sweep", daemon=True)
        self._thread.start()

    def _worker(self, cfg, sizes, workers):
        points = [(b, w) for b in sizes for w in workers]
        total = len(points) + 1
        out = self._out
        try:
            for k, (bs, nw) in enumerate(points):
                if self._stop.is_set():
                    break
                res = self.measure(config_copy(cfg, batch_size=bs, num_workers=nw), self.batches_per_point)
                with self._lock:
                    out["results"].append(res)
                    out["progress"] = int(100 * (k + 1) / total)
            if not self._stop.is_set():
                base = self.baseline(cfg, self.baseline_queries)
                with self._lock:
                    if base is not None:
                        out["results"].append(base)
                    else:
                        out["message"] = "pyBigWig is not installed: no baseline"
        except BaseException as exc:  # noqa: BLE001
            with self._lock:
                out["message"] = f"sweep failed: {error_text(exc)}"
        finally:
            with self._lock:
                out["progress"] = 100
                out["done"] = True

    @staticmethod
    def measure(cfg: LoaderConfig, n_batches: int) -> dict:
        """samples/s and MB/s of `n_batches` batches after one warm-up batch."""
        ds = cfg.build()
        try:
            n = min(n_batches, max(len(ds) - 1, 1))
            it = iter(ds)
            t0 = time.perf_counter()
            if len(ds) > 1:
                next(it)                                  # warm-up: threads started, files touched
                t0 = time.perf_counter()
            samples = nbytes = got = 0
            for batch in it:
                samples += batch.batch_size
                nbytes += batch.nbytes
                got += 1
                if got >= n:
                    break
            dt = time.perf_counter() - t0
            it.close()
        finally:
            ds.close()
        return dict(kind="bwloader", batch_size=cfg.batch_size, workers=cfg.num_workers,
                    samples_per_s=samples / dt if dt > 0 else float("nan"),
                    mb_per_s=nbytes / dt / 1e6 if dt > 0 else float("nan"))

    @staticmethod
    def baseline(cfg: LoaderConfig, n_queries: int) -> dict | None:
        try:
            import pyBigWig  # noqa: F401
        except ImportError:
            return None
        one = config_copy(cfg, batch_size=n_queries, num_workers=1, reference_genome=None,
                          max_unknown_fraction=None)
        ds = one.build()
        try:
            qb = ds.generator.batch(0, 0)
            paths = [ds.collection.paths[i] for i in qb.track_indices.tolist()]
        finally:
            ds.close()
        _, dt = pybigwig_loop(paths, qb.chromosomes, qb.target_starts, qb.target_ends, cfg.window_size,
                              cfg.reduce, cfg.default_value)
        return dict(kind="pyBigWig loop", batch_size=n_queries, workers=1,
                    samples_per_s=n_queries / dt if dt > 0 else float("nan"),
                    mb_per_s=n_queries * (len(paths) * (qb.target_length // cfg.window_size)) * 4 / dt / 1e6)

    def poll(self):
        out = self._out
        if out is None:
            return
        with self._lock:
            results, progress, message, done = list(out["results"]), out["progress"], out["message"], out["done"]
        updates = dict(results=results, progress=progress)
        if done:
            updates.update(running=False, message=message or f"sweep done: {len(results)} points")
            self._out = None
        elif message:
            updates["message"] = message
        self.param.update(**updates)

    def wait(self, timeout=60.0) -> bool:
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

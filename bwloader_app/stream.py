"""The stream runner: `StreamController` streams batches of a LoaderConfig in a background thread
(Start until paused, Step one batch, Pause), resumable at any batch of any epoch, and keeps the
live throughput figures. Param changes happen only in `poll()`, in the caller's (UI) thread."""
from __future__ import annotations

import collections
import threading
import time

import numpy as np
import param

from bwloader_core.config import LoaderConfig

from .util import error_text

STAGES = ("plan", "read+inflate", "decode", "search", "fill", "sequence", "queue_wait")
RATE_WINDOW_S = 3.0          # samples/s and MB/s: over the batches of the last seconds of the current run


class StreamController(param.Parameterized):
    """Streams batches of `config` in a background thread: Start (until paused), Step (one batch),
    Pause. Each run is one `StreamedDataloader` over the query batches from where the previous run
    stopped (same seed: the same batches as `config.build()`); pausing closes it."""

    status = param.Selector(default="idle", objects=["idle", "running", "stepping", "pausing", "paused", "error"])
    batch = param.Parameter(default=None, doc="the latest Batch")
    epoch = param.Integer(default=0, doc="epoch of the next batch")
    index = param.Integer(default=0, doc="index (in its epoch) of the next batch")
    batches_per_epoch = param.Integer(default=0)
    error = param.String(default="")
    # throughput of the current run
    batches = param.Integer(default=0, doc="batches received since the loader was (re)built")
    samples_per_s = param.Number(default=0.0, doc=(
        "samples/s of the current run over its last RATE_WINDOW_S seconds; kept (and marked paused) "
        "when the stream stops"))
    mb_per_s = param.Number(default=0.0, doc="MB/s of values and sequences, over the same window")
    stage_ms = param.Dict(default={}, doc="mean milliseconds per batch of each stage (recent batches)")
    unknown_fraction = param.Number(default=None, allow_None=True, doc=(
        "share of unknown bases (N) in the sequences of the recent batches (None without a FASTA)"))
    history = param.List(default=[], doc="(seconds since Start, samples/s): the figure, each time it is published")
    redraw_interval = param.Number(default=1.0, bounds=(0.0, None),
                                   doc="while running, publish a new `batch` at most this often (seconds)")

    def __init__(self, config: LoaderConfig, **params):
        super().__init__(**params)
        self.config = config
        self._dataset = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._run_id = 0
        self._recent = collections.deque(maxlen=10)  # (timings, stats) of the latest batches
        self._marks = collections.deque()            # (time, samples, bytes so far) in the current run's window
        self._marks_run = None
        self._cum = (0, 0)
        self._latest = None
        self._new = False
        self._failed = None
        self._pos = (0, 0)
        self._count = 0
        self._published = 0.0
        self._run_started = 0.0
        self._want_restart = False
        self._closed = False

    # -- commands (UI thread) ---------------------------------------------------------------------
    def start(self):
        self._launch(None)

    def step(self):
        self._launch(1)

    def pause(self):
        self._want_restart = False
        if self._thread is not None and self._thread.is_alive():
            self._stop.set()
            self.status = "pausing"

    def _launch(self, limit):
        if self._closed:
            return
        if self._thread is not None and self._thread.is_alive():
            return                                   # already running: Start/Step are ignored
        self.error = ""
        self._stop.clear()
        self._run_id += 1
        self._run_started = time.perf_counter()
        self.status = "running" if limit is None else "stepping"
        if limit is None:
            self.history = []
        self._thread = threading.Thread(target=self._worker, args=(limit, self._run_id),
                                        name="bwloader-dashboard-stream", daemon=True)
        self._thread.start()

    def invalidate(self):
        """The config changed: drop the loader (rebuilt at the next Start/Step, from batch 0);
        a running stream restarts on the new config."""
        running = self._thread is not None and self._thread.is_alive() and self.status == "running"
        self._halt()
        with self._lock:
            ds, self._dataset = self._dataset, None
            self._pos = (0, 0)
            self._count = 0
            self._recent.clear()
        if ds is not None:
            ds.close()
        self._failed = None
        self.param.update(epoch=0, index=0, batches=0, error="", batches_per_epoch=0, status="idle")
        if running:
            self.start()

    def _halt(self, timeout=30.0):
        t = self._thread
        if t is not None and t.is_alive():
            self._stop.set()
            t.join(timeout)
        self._thread = None

    def close(self):
        """Stop the thread, close the loader and the files. Safe to call twice."""
        self._closed = True
        self._halt()
        with self._lock:
            ds, self._dataset = self._dataset, None
        if ds is not None:
            ds.close()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until the current run ends (for scripts and tests); True if it did."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- background thread ------------------------------------------------------------------------
    def _dataset_or_build(self):
        with self._lock:
            if self._dataset is None:
                self._dataset = self.config.build()
            return self._dataset

    def _worker(self, limit, run_id):
        done = 0
        try:
            ds = self._dataset_or_build()
            per_epoch = len(ds)
            while not self._stop.is_set():
                epoch, index = self._pos
                n = per_epoch - index
                if limit is not None:
                    n = min(n, limit - done)
                got = 0
                with ds.loader(epoch, start=index, stop=index + n) as loader:
                    for batch in loader:
                        got += 1
                        index += 1
                        self._deliver(batch, run_id, (epoch + 1, 0) if index >= per_epoch else (epoch, index))
                        done += 1
                        if self._stop.is_set() or (limit is not None and done >= limit):
                            break
                if (limit is not None and done >= limit) or got == 0:    # never spin on an empty pass
                    break
        except BaseException as exc:  # noqa: BLE001 - shown in the page, never a traceback
            self._failed = error_text(exc)

    def _deliver(self, batch, run_id, pos):
        now = time.perf_counter()
        with self._lock:
            self._pos = pos
            self._latest = batch
            self._new = True
            self._count += 1
            self._recent.append((dict(batch.timings), dict(batch.stats)))
            if self._marks_run != run_id:               # a new run: its own window
                self._marks.clear()
                self._marks_run, self._cum = run_id, (0, 0)
            self._cum = (self._cum[0] + batch.batch_size, self._cum[1] + batch.nbytes)
            self._marks.append((now, *self._cum))
            while len(self._marks) > 2 and self._marks[1][0] < now - RATE_WINDOW_S:
                self._marks.popleft()

    # -- UI thread: results -> params -------------------------------------------------------------
    def poll(self) -> bool:
        """Move what the thread produced into params; True when a new batch arrived."""
        with self._lock:
            new, batch, self._new = self._new, self._latest, False
            recent = list(self._recent)
            marks = [self._marks[0], self._marks[-1]] if self._marks else []
            n_marks = len(self._marks)
            pos, count = self._pos, self._count
            n_epoch = len(self._dataset) if self._dataset is not None else 0
        failed, self._failed = self._failed, None
        alive = self.busy
        running = alive and self.status == "running"
        updates = {}
        if new:
            now = time.perf_counter()
            if running and now - self._published < self.redraw_interval:
                with self._lock:
                    self._new = True                 # keep it for the next poll: plots are costly
            else:
                self._published = now
                updates["batch"] = batch
                updates["batches"] = count
                updates.update(self._stage_stats(recent))
                rates = self._rates(marks) if running and n_marks >= 2 else {}
                if rates:
                    updates.update(rates)
                    updates["history"] = (self.history + [(now - self._run_started, rates["samples_per_s"])])[-300:]
                elif self.samples_per_s == 0 and recent:
                    updates.update(self._estimate(batch))     # a lone Step: its own speed, until a run says more
        updates.update(epoch=pos[0], index=pos[1], batches_per_epoch=n_epoch)
        if failed:
            updates.update(error=failed, status="error")
        elif not alive and self.status in ("running", "stepping", "pausing"):
            updates["status"] = "paused"             # the figures keep the last running values
        self.param.update(**updates)
        return "batch" in updates

    @staticmethod
    def _rates(marks) -> dict:
        """samples/s and MB/s between the first and the last batch of the window (the first batch's
        own samples are not counted: they arrived at the window's start)."""
        (t0, s0, b0), (t1, s1, b1) = marks
        if t1 <= t0:
            return {}
        return dict(samples_per_s=(s1 - s0) / (t1 - t0), mb_per_s=(b1 - b0) / (t1 - t0) / 1e6)

    @staticmethod
    def _estimate(batch) -> dict:
        total = batch.timings.get("total") or 0.0
        if total <= 0:
            return {}
        return dict(samples_per_s=batch.batch_size / total, mb_per_s=batch.nbytes / total / 1e6)

    @staticmethod
    def _stage_stats(recent) -> dict:
        out = {}
        if recent:
            out["stage_ms"] = {k: 1000 * float(np.mean([r[0].get(k, 0.0) for r in recent])) for k in STAGES
                               if any(k in r[0] for r in recent)}
            fr = [r[1]["unknown_fraction"] for r in recent if "unknown_fraction" in r[1]]
            out["unknown_fraction"] = float(np.mean(fr)) if fr else None
        return out

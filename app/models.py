"""Models of the dashboard: plain `param.Parameterized` classes, no Panel import.

- `DataRootBrowser`: folders of bigWig files and FASTAs under one data root (nothing outside it),
  the track selection and each file's summary.
- `StreamController`: a background thread that streams `Batch`es from the `LoaderConfig` (one
  `StreamedDataloader` per run, resumable at any batch of any epoch), with Start / Pause / Step, and
  the live throughput statistics.
- `SweepRunner`: samples/s over batch sizes x worker counts, with a pyBigWig loop as baseline.
- `DashboardState`: wires them to one `LoaderConfig`, owns the query widgets that are not plain
  config knobs (chromosome picks, an uploaded BED, tracks per batch), YAML export and import.

Every param change of these models happens in the caller's thread: the background threads only
leave results behind, and `DashboardState.poll()` (called by the view's periodic callback, in the
UI thread) moves them into params.
"""
from __future__ import annotations

import collections
import math
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import param

from bwloader_core.config import LoaderConfig, LoaderConfigError
from bwloader_core.format import BigWigFile
from bwloader_core.streamed import StreamedDataloader

REPO_ROOT = Path(__file__).resolve().parent.parent
BIGWIG_SUFFIXES = (".bw", ".bigwig")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz", ".fa.bgz")
STAGES = ("plan", "read+inflate", "decode", "search", "fill", "sequence", "queue_wait")
MAX_SCAN_DEPTH = 4
MAX_SCAN_ENTRIES = 20_000
SNIPPET = '''from bwloader_core import LoaderConfig

cfg = LoaderConfig.from_yaml("loader.yaml")
dataset = cfg.build()                 # BigWigDataset: one epoch per iteration
for epoch in range(10):
    dataset.set_epoch(epoch)
    for batch in dataset:
        x = batch.sequences           # (batch, sequence_length, 4) one-hot, or None
        y = batch.values              # (batch, length // window_size, tracks)
        ...                           # train step
dataset.close()
'''


# ------------------------------------------------------------------------------------------------
# data root
# ------------------------------------------------------------------------------------------------
class PathOutsideRootError(ValueError):
    """A path that resolves (through '..' or symlinks) outside the data root."""



MAX_YAML_BYTES = 1 << 20    # uploads are parsed in the server: keep them small
MAX_BED_BYTES = 64 << 20

def default_data_root() -> Path:
    """`BWLOADER_DATA`, else the demo collection folder of the checkout (`demo_data/`)."""
    env = os.environ.get("BWLOADER_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "demo_data"


_demo_lock = threading.Lock()


def ensure_demo_data(root: Path) -> bool:
    """Write the demo collection into `root` when it holds no bigWig file (returns True if written)."""
    root = Path(root)
    with _demo_lock:
        if root.is_dir() and any(p.suffix.lower() in BIGWIG_SUFFIXES for p in root.iterdir()):
            return False
        from bwloader_core.demo import write_demo_collection
        write_demo_collection(root)
        return True


def confine(root, path) -> Path:
    """`path` (relative to `root`, or absolute) resolved, symlinks included; refused with
    PathOutsideRootError unless it lies inside `root`."""
    root = Path(root).resolve()
    text = os.fspath(path).strip() if path is not None else ""
    p = Path(text).expanduser() if text else Path(".")
    full = (p if p.is_absolute() else root / p).resolve()
    if full != root and root not in full.parents:
        raise PathOutsideRootError(f"refused: {text or '.'!s} is outside the data root {root}")
    return full


def _is_bigwig(p: Path) -> bool:
    return p.suffix.lower() in BIGWIG_SUFFIXES


def _is_fasta(p: Path) -> bool:
    return p.name.lower().endswith(FASTA_SUFFIXES)


def scan_root(root) -> tuple[list[str], list[str]]:
    """(folders holding bigWig files, FASTA files), as paths relative to `root`; symlinks are not
    followed, the walk is bounded in depth and entries."""
    root = Path(root).resolve()
    folders, fastas, seen = [], [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        depth = len(d.relative_to(root).parts)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")) if depth < MAX_SCAN_DEPTH else []
        seen += len(filenames) + len(dirnames)
        rel = d.relative_to(root).as_posix() or "."
        names = sorted(filenames)
        if any(_is_bigwig(Path(n)) for n in names):
            folders.append(rel)
        for n in names:
            if _is_fasta(Path(n)) and (d / n).resolve().is_relative_to(root):   # not links pointing out
                fastas.append((Path(rel) / n).as_posix())
        if seen > MAX_SCAN_ENTRIES:
            break
    return folders, fastas


def list_bigwigs(root, folder: Path) -> tuple[list[Path], list[str]]:
    """bigWig files of `folder` (resolved inside `root`) and the names of those refused (symlinks
    that point outside the data root)."""
    ok, refused = [], []
    for p in sorted(folder.iterdir()):
        if not _is_bigwig(p):
            continue
        try:
            confine(root, p)
        except PathOutsideRootError:
            refused.append(p.name)
            continue
        if p.is_file():
            ok.append(p)
    return ok, refused


def file_summary(path) -> dict:
    """What the dashboard shows of one bigWig (read with bwloader's BigWigFile)."""
    with BigWigFile(path) as f:
        sizes = f.chrom_sizes
        return dict(track=Path(path).stem, file=Path(path).name, size_bytes=int(f.file_size),
                    chromosomes=len(sizes), bases=int(sum(sizes.values())),
                    zoom_levels=len(f.zoom_levels), blocks=int(f.n_blocks), version=int(f.version),
                    chrom_sizes=dict(sizes))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ------------------------------------------------------------------------------------------------
# misc helpers
# ------------------------------------------------------------------------------------------------
_backends = None


def available_backends() -> list[str]:
    """'cpu' and 'auto', plus 'cuda' when a CUDA GPU is usable (checked once)."""
    global _backends
    if _backends is None:
        from bwloader_core.backend import _cuda_unavailable_reason
        _backends = ["cpu", "auto"] + (["cuda"] if _cuda_unavailable_reason() is None else [])
    return list(_backends)


def error_text(exc: BaseException) -> str:
    """One readable line for any exception (KeyError's repr quotes dropped)."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, (LoaderConfigError, PathOutsideRootError)):
        return str(msg)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def knob_names() -> list[str]:
    return [n for n in LoaderConfig.param if n != "name"]


def config_copy(cfg: LoaderConfig, **changes) -> LoaderConfig:
    spec = {n: getattr(cfg, n) for n in knob_names()}
    spec.update(changes)
    out = LoaderConfig()
    out.param.update(**spec)
    return out


def _f32(a) -> np.ndarray:
    return np.asarray(a).astype(np.float32)


def minmax_decimate(x, y, max_points: int = 2000):
    """At most `max_points` points that keep every peak and trough: the min and the max of each of
    `max_points // 2` buckets (NaN only where a whole bucket is NaN)."""
    x, y = np.asarray(x), _f32(y)
    n = len(y)
    if n <= max_points:
        return x, y
    nb = max(1, max_points // 2)
    edges = np.linspace(0, n, nb + 1).astype(np.int64)
    lo = edges[:-1]
    hi = edges[1:] - 1
    ymin = np.fmin.reduceat(y, lo)
    ymax = np.fmax.reduceat(y, lo)
    xs = np.empty(2 * nb, dtype=x.dtype)
    ys = np.empty(2 * nb, np.float32)
    xs[0::2], xs[1::2] = x[lo], x[hi]
    ys[0::2], ys[1::2] = ymin, ymax
    return xs, ys


def bucket_columns(a, max_cols: int = 1000, how: str = "mean"):
    """(rows, cols) -> (rows, <= max_cols) by the mean (or max) of column buckets, NaN-aware."""
    a = _f32(a)
    n = a.shape[1]
    if n <= max_cols:
        return a
    edges = np.linspace(0, n, max_cols + 1).astype(np.int64)[:-1]
    if how == "max":
        return np.fmax.reduceat(a, edges, axis=1)
    ok = ~np.isnan(a)
    s = np.add.reduceat(np.where(ok, a, 0.0), edges, axis=1)
    c = np.add.reduceat(ok, edges, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan).astype(np.float32)


def mixture_summary(spec) -> str:
    """'mixture: peaks 50% (BED peaks.bed), background 50% (all chromosomes)'."""
    from bwloader_core.sampling.mixture import parse_region_mixture
    try:
        sources = parse_region_mixture(spec)
    except ValueError as exc:
        return f"invalid mixture ({exc})"
    total = sum(s.weight for s in sources)

    def where(r):
        if r is None or r == "all":
            return "all chromosomes"
        return f"BED {Path(r).name}" if isinstance(r, str) else f"{len(r):,} intervals"
    parts = [f"{s.name} {s.weight / total:.0%} ({where(s.regions)}" + (" minus exclude)" if s.exclude else ")")
             for s in sources]
    return "mixture: " + ", ".join(parts)


def confine_mixture(root, spec) -> dict:
    """A mixture's BED paths (regions and exclude of each source) confined to the data root."""
    out = {}
    for name, src in spec.items():
        if isinstance(src, dict):
            src = {k: str(confine(root, v)) if k in ("regions", "exclude") and isinstance(v, str) and v != "all"
                   else v for k, v in src.items()}
        elif isinstance(src, str) and src != "all":
            src = str(confine(root, src))
        out[name] = src
    return out


def sample_view(batch, i: int, max_points: int = 2000) -> dict:
    """Sample `i` of a Batch in genome orientation, ready to plot: the target bins' genomic x,
    each track's (decimated) curve, the coordinates, and the DNA of the input window."""
    i = int(np.clip(i, 0, batch.batch_size - 1))
    rc = bool(batch.reverse_complement[i])
    vals = _f32(batch.values[i])                        # (bins, tracks)
    if rc:                                              # the batch holds it reversed: undo for plotting
        vals = vals[::-1]
        partners = getattr(batch, "strand_partners", None)
        if partners is not None:                        # and strand pairs swapped back (an involution)
            vals = vals[:, partners]
    ts, te = int(batch.target_starts[i]), int(batch.target_ends[i])
    nbins = vals.shape[0]
    width = (te - ts) / max(nbins, 1)
    x = ts + (np.arange(nbins) + 0.5) * width
    curves = {}
    for t, name in enumerate(batch.track_names):
        curves[name] = minmax_decimate(x, vals[:, t], max_points)
    chrom = str(batch.chromosomes[i])
    s, e = int(batch.starts[i]), int(batch.ends[i])
    out = dict(index=i, chrom=chrom, start=s, end=e, target_start=ts, target_end=te,
               strand="-" if rc else "+", window=width, curves=curves, n_points=nbins,
               coordinates=f"{chrom}:{s:,}-{e:,} ({'-' if rc else '+'})", dna=None, source=None)
    names, src = getattr(batch, "region_source_names", ()), getattr(batch, "region_source", None)
    if len(names) > 1 and src is not None:              # a weighted mixture: which source
        out["source"] = names[int(src[i])]
    if batch.sequences is not None:
        out["dna"] = dna_view(batch.sequences[i], s, e, rc)
    return out


def dna_view(one_hot, start: int, end: int, rc: bool, max_letters: int = 200, max_cols: int = 2000) -> dict:
    """One-hot (L, 4) -> letters (short windows) or a 4 x columns base-composition strip, in genome
    orientation (a reverse-complemented sample is complemented back)."""
    oh = _f32(one_hot)
    if rc:
        oh = oh[::-1, ::-1]                 # reverse + complement (A<->T, C<->G with ACGT channels)
    L = oh.shape[0]
    if L <= max_letters:
        known = oh.max(axis=1) > 0.5
        letters = np.where(known, np.array(list("ACGT"))[oh.argmax(axis=1)], "N")
        return dict(kind="letters", start=start, end=end, letters="".join(letters.tolist()))
    strip = bucket_columns(oh.T, max_cols)             # (4, cols) fraction of each base
    return dict(kind="strip", start=start, end=end, strip=strip)


# ------------------------------------------------------------------------------------------------
# collection
# ------------------------------------------------------------------------------------------------
class DataRootBrowser(param.Parameterized):
    """Folders of bigWig files and FASTAs under `root`; paths outside it are refused."""

    root = param.String(constant=True, doc="the data root: nothing outside it is read")
    folder = param.String(default="", doc="folder of bigWig files (relative to the data root)")
    folders = param.List(default=[], item_type=str, doc="folders with bigWig files under the root")
    fastas = param.List(default=[], item_type=str, doc="FASTA files under the root")
    tracks = param.ListSelector(default=[], objects=[], doc="selected tracks (file stems)")
    fasta = param.String(default="", doc="reference FASTA (relative to the data root; empty: none)")
    summaries = param.List(default=[], doc="BigWigFile summary of each selected track")
    message = param.String(default="", doc="why a path was refused, or what was skipped")
    chrom_sizes = param.Dict(default={}, doc="chromosome sizes over the selected tracks")

    def __init__(self, root, **params):
        root = Path(root).expanduser().resolve()
        super().__init__(root=str(root), **params)
        self._paths: dict[str, Path] = {}            # track name -> resolved file
        self._folder_ok = None
        self._fasta_ok = ""
        self.refresh()

    def refresh(self):
        """Rescan the data root; keep the folder when it still holds bigWigs."""
        folders, fastas = scan_root(self.root) if Path(self.root).is_dir() else ([], [])
        self.param.update(folders=folders, fastas=fastas)
        if not folders:
            self.message = f"no bigWig files (*.bw, *.bigWig) under the data root {self.root}"
            return
        target = self._folder_ok or folders[0]
        self._folder_ok = None
        if self.folder == target:
            self._on_folder()
        else:
            self.folder = target

    @param.depends("folder", watch=True)
    def _on_folder(self):
        if self.folder == self._folder_ok:
            return
        try:
            full = confine(self.root, self.folder)
            if not full.is_dir():
                raise FileNotFoundError(f"{self.folder}: no such folder under the data root")
            paths, refused = list_bigwigs(self.root, full)
            if not paths:
                raise FileNotFoundError(f"{self.folder}: no bigWig files (*.bw, *.bigWig) in this folder")
        except (OSError, ValueError) as exc:
            msg = error_text(exc) if not isinstance(exc, FileNotFoundError) else str(exc)
            if self._folder_ok is not None:                # back to the last good folder
                self.folder = self._folder_ok
            self.message = msg
            return
        rel = full.relative_to(Path(self.root)).as_posix() or "."
        self._folder_ok = rel
        self._paths = {p.stem: p.resolve() for p in paths}
        names = list(self._paths)
        self.param.tracks.objects = names
        note = f"skipped (link pointing outside the data root): {', '.join(refused)}" if refused else ""
        self.message = note
        if self.folder != rel:
            self.folder = rel
        if not self.fasta:
            in_folder = [f for f in self.fastas if Path(f).parent.as_posix() == rel]
            if in_folder:
                self.fasta = in_folder[0]
        if self.tracks == names:
            self.param.trigger("tracks")          # same names in another folder: refresh all the same
        else:
            self.tracks = names

    @param.depends("tracks", watch=True)
    def _on_tracks(self):
        summaries, sizes, errors = [], {}, []
        for name in self.tracks:
            try:
                s = file_summary(self._paths[name])
            except (OSError, ValueError, KeyError) as exc:
                errors.append(f"{name}: {error_text(exc)}")
                continue
            for c, n in s.pop("chrom_sizes").items():
                sizes[c] = max(n, sizes.get(c, 0))
            summaries.append(s)
        self.param.update(summaries=summaries, chrom_sizes=sizes)
        if errors:
            self.message = "; ".join(errors)

    @param.depends("fasta", watch=True)
    def _on_fasta(self):
        if not self.fasta:
            self._fasta_ok = ""
            return
        try:
            full = confine(self.root, self.fasta)
            if not full.is_file():
                raise FileNotFoundError(f"{self.fasta}: no such FASTA file under the data root")
        except (OSError, ValueError) as exc:
            self.message = str(exc)
            self.fasta = self._fasta_ok
            return
        self._fasta_ok = self.fasta

    # -- what the config needs --------------------------------------------------------------------
    def track_paths(self) -> list[str]:
        return [str(self._paths[n]) for n in self.tracks if n in self._paths]

    def fasta_path(self) -> str | None:
        return str(confine(self.root, self.fasta)) if self.fasta else None

    def select_paths(self, paths: list[str], base=None):
        """Point the browser at files named by a config: all in one folder under the root."""
        if not paths:
            return
        base = Path(base or self.root)
        full = []
        for p in paths:
            q = Path(p)
            full.append(confine(self.root, q if q.is_absolute() else base / q))
        if len(full) == 1 and full[0].is_dir():
            folder, names = full[0], None
        else:
            parents = {f.parent for f in full}
            if len(parents) != 1:
                raise ValueError("the dashboard shows the tracks of one folder at a time; the config names "
                                 f"files in {len(parents)} folders")
            missing = [str(f) for f in full if not f.is_file()]
            if missing:
                raise FileNotFoundError(f"bigWig file not found: {missing[0]}")
            folder, names = parents.pop(), [f.stem for f in full]
        self.folder = folder.relative_to(Path(self.root)).as_posix() or "."
        if self._folder_ok != self.folder:
            raise ValueError(self.message or f"cannot open folder {self.folder}")
        if names is not None:
            unknown = [n for n in names if n not in self.param.tracks.objects]
            if unknown:
                raise ValueError(f"not a bigWig of folder {self.folder}: {unknown[0]}")
            self.tracks = names


# ------------------------------------------------------------------------------------------------
# streaming
# ------------------------------------------------------------------------------------------------
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
    samples_per_s = param.Number(default=0.0)
    mb_per_s = param.Number(default=0.0)
    stage_ms = param.Dict(default={}, doc="mean milliseconds per batch of each stage (recent batches)")
    history = param.List(default=[], doc="(seconds since the run started, samples/s)")
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
        self._recent = collections.deque(maxlen=30)  # (time, samples, bytes, timings, run_id)
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
            gen = ds.generator
            while not self._stop.is_set():
                epoch, index = self._pos
                n = len(gen) - index
                if limit is not None:
                    n = min(n, limit - done)
                source = (gen.batch(i, epoch) for i in range(index, index + n))
                got = 0
                with StreamedDataloader(source, ds.collection, **ds.loader_kwargs) as loader:
                    for batch in loader:
                        got += 1
                        index += 1
                        self._deliver(batch, run_id, (epoch + 1, 0) if index >= len(gen) else (epoch, index))
                        done += 1
                        if self._stop.is_set() or (limit is not None and done >= limit):
                            break
                if (limit is not None and done >= limit) or got == 0:    # never spin on an empty pass
                    break
        except BaseException as exc:  # noqa: BLE001 - shown in the page, never a traceback
            self._failed = error_text(exc)

    def _deliver(self, batch, run_id, pos):
        with self._lock:
            self._pos = pos
            self._latest = batch
            self._new = True
            self._count += 1
            self._recent.append((time.perf_counter(), batch.batch_size, batch.nbytes, dict(batch.timings), run_id))

    # -- UI thread: results -> params -------------------------------------------------------------
    def poll(self) -> bool:
        """Move what the thread produced into params; True when a new batch arrived."""
        with self._lock:
            new, batch, self._new = self._new, self._latest, False
            recent = list(self._recent)
            pos, count = self._pos, self._count
            n_epoch = len(self._dataset.generator) if self._dataset is not None else 0
        failed, self._failed = self._failed, None
        alive = self.busy
        updates = {}
        if new:
            now = time.perf_counter()
            if alive and self.status == "running" and now - self._published < self.redraw_interval:
                with self._lock:
                    self._new = True                 # keep it for the next poll: plots are costly
            else:
                self._published = now
                updates["batch"] = batch
                updates["batches"] = count
                updates.update(self._rates(recent))
        updates.update(epoch=pos[0], index=pos[1], batches_per_epoch=n_epoch)
        if failed:
            updates.update(error=failed, status="error")
        elif not alive and self.status in ("running", "stepping", "pausing"):
            updates["status"] = "paused"
        self.param.update(**updates)
        return "batch" in updates

    def _rates(self, recent) -> dict:
        run = [r for r in recent if r[4] == self._run_id]
        out = {}
        if len(run) >= 2:
            span = run[-1][0] - run[0][0]
            if span > 0:
                out["samples_per_s"] = sum(r[1] for r in run[1:]) / span
                out["mb_per_s"] = sum(r[2] for r in run[1:]) / span / 1e6
        elif run:
            total = run[-1][3].get("total") or 0.0
            if total > 0:
                out["samples_per_s"] = run[-1][1] / total
                out["mb_per_s"] = run[-1][2] / total / 1e6
        last = recent[-10:]
        if last:
            out["stage_ms"] = {k: 1000 * float(np.mean([r[3].get(k, 0.0) for r in last])) for k in STAGES
                               if any(k in r[3] for r in last)}
        if "samples_per_s" in out and run and self.status == "running":
            out["history"] = (self.history + [(run[-1][0] - self._run_started, out["samples_per_s"])])[-300:]
        return out


# ------------------------------------------------------------------------------------------------
# sweep
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# the whole dashboard
# ------------------------------------------------------------------------------------------------
class DashboardState(param.Parameterized):
    """One browser session (or notebook) of the dashboard: a LoaderConfig and everything around it."""

    config = param.ClassSelector(class_=LoaderConfig, constant=True)
    browser = param.ClassSelector(class_=DataRootBrowser, constant=True)
    stream = param.ClassSelector(class_=StreamController, constant=True)
    sweep = param.ClassSelector(class_=SweepRunner, constant=True)

    chromosomes = param.ListSelector(default=[], objects=[], doc="chromosomes to sample from (none picked: all)")
    bed_name = param.String(default="", doc="name of the uploaded BED whose intervals are the regions")
    tracks_per_batch = param.Integer(default=0, bounds=(0, None), doc="tracks sampled per batch (0: all selected)")
    sample = param.Integer(default=0, bounds=(0, 1), doc="the sample of the batch to show")
    heatmap_track = param.Selector(default=None, objects=[], allow_None=True, doc="track of the heat map")
    max_points = param.Integer(default=2000, bounds=(100, 20_000), doc="points per curve (min/max decimation)")
    upload_error = param.String(default="", doc="why the uploaded YAML was refused")
    bed_error = param.String(default="", doc="why the uploaded BED was refused")
    notice = param.String(default="", doc="what the last upload did")
    yaml_text = param.String(default="", doc="the config as YAML (what Download gives)")

    def __init__(self, data_root=None, **params):
        root = Path(data_root) if data_root is not None else default_data_root()
        if data_root is None and not os.environ.get("BWLOADER_DATA"):
            ensure_demo_data(root)
        config = LoaderConfig()
        config.param.backend.objects = available_backends()   # this instance only: no cuda without a GPU
        browser = DataRootBrowser(root)
        super().__init__(config=config, browser=browser, stream=StreamController(config), sweep=SweepRunner(),
                         **params)
        self._syncing = False
        self._bed_regions = None
        self.browser.param.watch(self._on_files, ["tracks", "fasta", "chrom_sizes"])
        self.config.param.watch(self._on_config, knob_names())
        self._on_files()
        self.yaml_text = self.config.to_yaml()

    # -- collection -> config ---------------------------------------------------------------------
    def _on_files(self, *events):
        sizes = self.browser.chrom_sizes
        self.param.chromosomes.objects = list(sizes)
        keep = [c for c in self.chromosomes if c in sizes]
        if keep != self.chromosomes:
            self.chromosomes = keep
        if self._syncing:
            return
        fasta = self.browser.fasta_path() if self.browser.fasta else None
        paths = self.browser.track_paths()
        changes = dict(bigwig_paths=paths, reference_genome=fasta)
        if paths != self.config.bigwig_paths:
            changes["track_names"] = None          # names of other files do not carry over
            if isinstance(self.config.scaling, list) and len(self.config.scaling) != len(paths):
                changes["scaling"] = None
        self.config.param.update(**changes)
        self._update_regions()

    # -- query widgets -> config ------------------------------------------------------------------
    @param.depends("chromosomes", "tracks_per_batch", watch=True)
    def _on_query_widgets(self):
        if self._syncing:
            return
        if self.chromosomes and self._bed_regions is not None:   # picking chromosomes drops the BED
            self._bed_regions = None
            self.bed_name = ""
        self._update_regions()
        self.config.tracks = self.tracks_per_batch or None

    def _update_regions(self):
        if self._syncing:
            return
        sizes = self.browser.chrom_sizes
        if self._bed_regions is not None:
            regions = self._bed_regions
        elif self.chromosomes and set(self.chromosomes) != set(sizes):
            regions = [[c, 0, int(sizes[c])] for c in self.chromosomes]
        elif isinstance(self.config.regions, dict):
            return                                 # a weighted mixture stays until chromosomes or a BED are picked
        else:
            regions = None
        if regions != self.config.regions:
            self.config.regions = regions

    def load_bed(self, data: bytes, name: str = "regions.bed") -> bool:
        """Regions from an uploaded BED (merged and clipped to the tracks' chromosomes)."""
        from bwloader_core.sampling import load_regions
        self.bed_error = ""
        tmp = None
        if len(data or b"") > MAX_BED_BYTES:
            self.bed_error = f"{name}: {len(data):,} bytes is larger than the {MAX_BED_BYTES:,} bytes a BED upload may be"
            return False
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else str(data)
            with tempfile.NamedTemporaryFile("w", suffix=".bed", delete=False) as fh:
                tmp = fh.name
                fh.write(text)
            regs = load_regions(tmp, self.browser.chrom_sizes, unknown_chroms="drop")
            if len(regs) == 0:
                raise ValueError("no interval of the BED lies on the tracks' chromosomes")
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            msg = error_text(exc)
            self.bed_error = f"{name}: " + (msg.replace(tmp + ":", "line ").replace(tmp, name) if tmp else msg)
            return False
        finally:
            if tmp:
                os.unlink(tmp)
        self._bed_regions = [[c, int(s), int(e)] for c, s, e in regs.to_list()]
        self._syncing = True
        try:
            self.chromosomes = []
        finally:
            self._syncing = False
        self.bed_name = name
        self.notice = f"regions: {len(regs):,} intervals, {regs.total_length:,} bp from {name}"
        self._update_regions()
        return True

    def clear_bed(self):
        self.bed_error = ""
        self._bed_regions = None
        self.bed_name = ""
        self._update_regions()

    @property
    def regions_summary(self) -> str:
        r = self.config.regions
        if r is None:
            return "all chromosomes"
        if isinstance(r, str):
            return f"BED {r}"
        if isinstance(r, dict):
            return mixture_summary(r)
        return f"{len(r):,} intervals, {sum(int(e) - int(s) for _, s, e in r):,} bp" + \
            (f" from {self.bed_name}" if self.bed_name else "")

    # -- config changed ---------------------------------------------------------------------------
    def _on_config(self, *events):
        self.yaml_text = self.config.to_yaml()
        self.stream.invalidate()

    # -- export / import --------------------------------------------------------------------------
    def to_yaml(self) -> str:
        return self.config.to_yaml()

    def load_yaml(self, text, name: str = "config") -> bool:
        """Restore the dashboard from a YAML config; on any problem set `upload_error` (readable)
        and change nothing."""
        self.upload_error = ""
        if len(text or "") > MAX_YAML_BYTES:
            self.upload_error = f"{name}: {len(text):,} bytes is larger than the {MAX_YAML_BYTES:,} bytes a config may be"
            return False
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            text = str(text or "")
            if "\n" not in text:
                text += "\n"                       # from_yaml would read a one-liner ending in .yaml as a path
            cfg = LoaderConfig.from_yaml(text)
            if cfg.backend not in self.config.param.backend.objects:
                raise ValueError(f"backend {cfg.backend!r} is not usable on this machine "
                                 f"(choose from {self.config.param.backend.objects})")
            self._apply(cfg)
        except (ValueError, OSError, TypeError, UnicodeDecodeError) as exc:
            self.upload_error = f"{name}: {error_text(exc)}" if not error_text(exc).startswith("config") \
                else f"{name}{error_text(exc)[len('config'):]}"
            return False
        self.notice = f"restored the dashboard from {name}"
        return True

    def _apply(self, cfg: LoaderConfig):
        browser = self.browser
        old = (browser.folder, list(browser.tracks), browser.fasta)
        # files first (confined to the data root); nothing of the config is applied if they fail
        if cfg.reference_genome:
            fa = confine(browser.root, cfg.reference_genome)
            if not fa.is_file():
                raise FileNotFoundError(f"reference genome not found: {cfg.reference_genome}")
        regions = cfg.regions
        if isinstance(regions, str):
            regions = str(confine(browser.root, regions))
        elif isinstance(regions, dict):
            regions = confine_mixture(browser.root, regions)
        exclude = str(confine(browser.root, cfg.exclude)) if isinstance(cfg.exclude, str) else cfg.exclude
        if cfg.bigwig_paths:
            try:
                browser.select_paths(cfg.bigwig_paths)
            except BaseException:
                browser.folder, browser.tracks, browser.fasta = old[0], old[1], old[2]
                raise
        if cfg.reference_genome:
            browser.fasta = confine(browser.root, cfg.reference_genome).relative_to(Path(browser.root)).as_posix()
        self._syncing = True
        try:
            spec = {n: getattr(cfg, n) for n in knob_names() if n not in ("bigwig_paths", "reference_genome")}
            spec["bigwig_paths"] = browser.track_paths() if cfg.bigwig_paths else self.config.bigwig_paths
            spec["reference_genome"] = browser.fasta_path() if cfg.reference_genome else None
            spec["regions"], spec["exclude"] = regions, exclude
            if not cfg.reference_genome:
                browser.fasta = ""
            self._bed_regions = None
            self.bed_name = ""
            sizes = browser.chrom_sizes
            if regions is None:
                self.chromosomes = []
            elif isinstance(regions, list) and all(len(r) >= 3 and r[0] in sizes and int(r[1]) == 0
                                                   and int(r[2]) >= sizes[r[0]] for r in regions):
                self.chromosomes = [r[0] for r in regions]
            else:
                self.chromosomes = []
                if isinstance(regions, list):
                    self._bed_regions = [list(r) for r in regions]
                    self.bed_name = "the uploaded config"
            self.tracks_per_batch = cfg.tracks if isinstance(cfg.tracks, int) else 0
            self.config.param.update(**spec)
        finally:
            self._syncing = False

    # -- live batches -----------------------------------------------------------------------------
    def start(self):
        if self.sweep.running:
            return
        self.stream.start()

    def step(self):
        if self.sweep.running:
            return
        self.stream.step()

    def pause(self):
        self.stream.pause()

    def run_sweep(self):
        self.stream.pause()
        self.stream.wait(30)
        self.sweep.run(self.config)

    def poll(self):
        """Called periodically in the UI thread: results of the background threads -> params."""
        if self.stream.poll() and self.stream.batch is not None:
            b = self.stream.batch
            self.param.sample.bounds = (0, max(b.batch_size - 1, 1))   # a slider needs start < end
            names = list(b.track_names)
            self.param.heatmap_track.objects = names
            updates = {}
            if self.sample > b.batch_size - 1:
                updates["sample"] = b.batch_size - 1
            if self.heatmap_track not in names:
                updates["heatmap_track"] = names[0] if names else None
            if updates:
                self.param.update(**updates)
        self.sweep.poll()

    def sample_view(self) -> dict | None:
        b = self.stream.batch
        return None if b is None else sample_view(b, self.sample, self.max_points)

    def close(self):
        self.sweep.close()
        self.stream.close()

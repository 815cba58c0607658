"""BigWigCollection: many bigWig files as tracks over one chromosome namespace."""
from __future__ import annotations

import difflib
import os
import threading
from pathlib import Path

import numpy as np

from .cache import BlockCache
from .device import Device
from .dtypes import resolve_dtype
from .format import BigWigFile
from .index import FlatIndex
from .io import available_memory
from .stages.plan import Queries

REDUCTIONS = ("mean", "max", "min", "sum")
BIGWIG_SUFFIXES = (".bw", ".bigwig", ".bigWig", ".BigWig", ".BW")


def _stem(path: str) -> str:
    """File name without suffix; for URLs, of the URL's path (no query string)."""
    from urllib.parse import urlsplit
    from .io import is_url
    return Path(urlsplit(path).path).stem if is_url(path) else Path(path).stem


def _openable(paths_or_directory, paths):
    """(the paths that open as bigWigs, [(path, reason)] of the others) for a folder; a list of
    named files is refused: every named file must open."""
    if not (isinstance(paths_or_directory, (str, os.PathLike)) and Path(paths_or_directory).is_dir()):
        raise ValueError("on_error='skip' is for a folder; a file that is named must open (it raises)")
    ok, skipped = [], []
    for p in paths:
        try:
            BigWigFile(p).close()
        except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            skipped.append((p, f"{type(exc).__name__}: {exc}"))   # the file itself is bad or not there
        else:   # any other OSError (too many open files, an I/O error, a network failure) is raised
            ok.append(p)
    if not ok:
        raise ValueError(f"no readable bigWig file in directory {paths_or_directory}: " +
                         "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:5]))
    return ok, skipped


def _expand_paths(paths_or_directory):
    if isinstance(paths_or_directory, (str, os.PathLike)):
        p = Path(paths_or_directory)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in (".bw", ".bigwig"))
            if not found:
                raise ValueError(f"no bigWig files (*.bw, *.bigWig) in directory {p}")
            return [str(q) for q in found]
        return [str(p)]
    paths = [str(x) for x in paths_or_directory]
    if not paths:
        raise ValueError("no bigWig paths given")
    return paths


class BigWigCollection:
    """Many bigWig files, one track each, queried together.

    Chromosomes are matched by name; a query on a chromosome that a file lacks, and bases before 0
    or past a chromosome's end, get `default_value` for that track. `scaling` (one factor per track,
    a list or a dict by track name) multiplies covered values, never the default.
    `n_threads` inflate threads serve `get_batch` (default: the CPU count). `cache_bytes` > 0 keeps
    that many bytes of inflated blocks (oldest first out) for later batches and epochs, searched
    where they lie (`bwloader_core.cache`). Local uncompressed files (`bwloader transcode`) are read
    in place, from a memory map, with no inflate and no copy.
    `backend` ('cpu', 'cuda' or 'auto', or a `Device`) decides where batches are made: on 'cuda'
    `get_batch` returns CuPy arrays.
    `on_error="skip"` (for a folder only) leaves out the files of the folder that are not valid
    bigWigs, missing, unreadable for permissions, or directories; `skipped` lists them with the
    reason. Other read failures (too many open files, an I/O error) still raise: an outage is not a
    bad file. Named files always raise.
    """

    def __init__(self, paths_or_directory, track_names=None, scaling=None, n_threads: int | None = None,
                 cache_bytes: int = 0, backend="cpu", on_error: str = "raise"):
        self.paths = _expand_paths(paths_or_directory)
        self.skipped: list[tuple[str, str]] = []     # (path, reason) of files left out (on_error="skip")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if on_error == "skip":
            self.paths, self.skipped = _openable(paths_or_directory, self.paths)
        names = list(track_names) if track_names is not None else [_stem(p) for p in self.paths]
        if len(names) != len(self.paths):
            raise ValueError(f"{len(names)} track names for {len(self.paths)} files")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate track names {dup[:5]}; pass track_names= to name them uniquely")
        self.track_names = names
        self._n_threads = n_threads
        self.device = Device.resolve(backend)
        self._init_args = (list(self.paths), track_names, scaling, n_threads, int(cache_bytes),
                           backend if isinstance(backend, str) else self.device)
        self.cache = BlockCache(int(cache_bytes))
        from .io import is_url, reserve_handles
        reserve_handles(sum(not is_url(p) for p in self.paths))
        self.files: list[BigWigFile] = []
        try:
            if sum(map(is_url, self.paths)) > 1:   # remote: open in parallel (round trips dominate)
                from concurrent.futures import ThreadPoolExecutor
                with ThreadPoolExecutor(min(16, len(self.paths))) as ex:
                    futs = [ex.submit(BigWigFile, p) for p in self.paths]
                self.files = [f.result() for f in futs if f.exception() is None]
                err = next((f.exception() for f in futs if f.exception() is not None), None)
                if err is not None:
                    raise err
            else:
                for p in self.paths:
                    self.files.append(BigWigFile(p))
            self._scaling = self._parse_scaling(scaling)
            self.index = FlatIndex.build(self.files, adopt=True)
            _release_freed_memory()
            from .stages.fetch import MemoryMaps
            self.memory_maps = MemoryMaps(self.files)
            self.chrom_sizes = self.index.chrom_sizes
            self._chrom_index = {n: i for i, n in enumerate(self.index.chrom_names)}
        except BaseException:
            self.close()
            raise
        self.scaling = None if self._scaling is None else self._scaling.tolist()
        self._processor = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    def _parse_scaling(self, scaling):
        if scaling is None:
            return None
        if isinstance(scaling, dict):
            unknown = [k for k in scaling if k not in self.track_names]
            if unknown:
                raise KeyError(f"scaling names unknown tracks {unknown[:5]}{self._suggest(unknown[0])}")
            arr = np.array([float(scaling.get(n, 1.0)) for n in self.track_names], np.float64)
        else:
            arr = np.asarray(scaling, np.float64).reshape(-1)
            if arr.size == 1:
                arr = np.full(len(self.files), float(arr[0]))
            if arr.size != len(self.files):
                raise ValueError(f"scaling has {arr.size} factors for {len(self.files)} tracks")
        if not np.isfinite(arr).all():
            raise ValueError(f"scaling factors must be finite numbers, got {arr.tolist()}")
        return arr

    def _suggest(self, name):
        close = difflib.get_close_matches(str(name), self.track_names, n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    # -- queries ----------------------------------------------------------------------------------
    @property
    def n_tracks(self) -> int:
        return len(self.files)

    def track_indices(self, tracks) -> np.ndarray:
        """Track selection (None = all; names or integer indices) -> int64 indices."""
        if tracks is None:
            return np.arange(self.n_tracks, dtype=np.int64)
        if isinstance(tracks, (str, int, np.integer)):
            tracks = [tracks]
        out = []
        for t in tracks:
            if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
                if not 0 <= int(t) < self.n_tracks:
                    raise IndexError(f"track index {int(t)} out of range: the collection has {self.n_tracks} tracks")
                out.append(int(t))
            elif isinstance(t, str):
                try:
                    out.append(self.track_names.index(t))
                except ValueError:
                    raise KeyError(f"unknown track {t!r}{self._suggest(t)}; tracks: "
                                   f"{self.track_names[:10]}{' ...' if self.n_tracks > 10 else ''}") from None
            else:
                raise TypeError(f"tracks must be names or integer indices, got {t!r}")
        if not out:
            raise ValueError("empty track selection")
        return np.array(out, np.int64)

    def _chrom_indices(self, chromosomes) -> np.ndarray:
        index = self._chrom_index
        try:           # the usual batch: names that are all known, looked up one by one (no sort)
            return np.fromiter(map(index.__getitem__, chromosomes), np.int64, len(chromosomes))
        except (KeyError, TypeError):
            pass       # the general path below converts other types and names the unknown chromosome
        chroms = np.asarray(chromosomes)
        uniq, inv = np.unique(chroms.astype(str), return_inverse=True)
        g = np.empty(len(uniq), np.int64)
        for i, name in enumerate(uniq.tolist()):
            gi = self._chrom_index.get(name)
            if gi is None:
                close = difflib.get_close_matches(name, list(self.chrom_sizes), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise KeyError(f"chromosome {name!r} is in none of the {self.n_tracks} bigWig files{hint}; "
                               f"known: {list(self.chrom_sizes)[:8]}")
            g[i] = gi
        return g[inv.reshape(-1)]

    @property
    def scaling_factors(self) -> np.ndarray | None:
        """float64 factor per track, or None without scaling."""
        return self._scaling

    def prepare_queries(self, chromosomes, starts, ends, tracks=None, window_size=1, reduce="mean",
                        dtype="float32") -> Queries:
        """Check a batch of queries and place it in the index's key space (see `stages.plan`)."""
        if self._closed:
            raise ValueError("the collection is closed")
        starts = _as_int_array(starts, "starts")
        ends = _as_int_array(ends, "ends")
        if starts.ndim != 1 or starts.shape != ends.shape:
            raise ValueError(f"starts and ends must be 1-D of equal length, got shapes {starts.shape} and {ends.shape}")
        B = len(starts)
        chroms = [chromosomes] * B if isinstance(chromosomes, str) else list(chromosomes)
        if len(chroms) != B:
            raise ValueError(f"{len(chroms)} chromosomes for {B} starts")
        if not isinstance(window_size, (int, np.integer)) or isinstance(window_size, bool) or window_size < 1:
            raise ValueError(f"window_size must be a positive integer, got {window_size!r}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        resolve_dtype(dtype)
        lengths = ends - starts
        if B and (lengths != lengths[0]).any():
            raise ValueError("all queries in one batch must have the same length (end - start); got lengths "
                             f"{np.unique(lengths)[:5].tolist()}")
        L = int(lengths[0]) if B else 0
        if B and L <= 0:
            raise ValueError(f"queries must have end > start, got length {L}")
        if B and L < window_size:
            raise ValueError(f"query length {L} is shorter than window_size {window_size}")
        track_idx = self.track_indices(tracks)
        _check_memory(B, L, len(track_idx), window_size, resolve_dtype(dtype).itemsize)
        g = self._chrom_indices(chroms) if B else np.zeros(0, np.int64)
        return Queries.in_key_space(self.index, track_idx, g, starts, ends)

    def get_batch(self, chromosomes, starts, ends, window_size=1, reduce="mean", default_value=0.0,
                  dtype="float32", tracks=None, zoom=False, layout="BLT"):
        """Values of shape (batch, (end - start) // window_size, n_tracks): a NumPy array (a CuPy
        array on backend='cuda'). `layout="BTL"` gives (batch, n_tracks, length // window_size)
        instead, channels first as torch's Conv1d takes them (made so directly when the batch's
        blocks lie in memory; otherwise one transposing copy).

        `chromosomes` is a name per query (or one name for all); `starts`/`ends` 0-based half-open,
        all of the same length. See the class docstring for the treatment of missing data.
        `zoom=True` (or a reduction level) answers windows from the files' zoom levels: much faster
        for wide windows, approximate (see `bwloader_core.zoom`); tracks without a fitting zoom
        level are read exactly.
        """
        default_value = float(default_value)
        from .batch_processor import check_layout, in_layout
        check_layout(layout)
        if zoom and window_size > 1:
            out = self._get_batch_zoom(chromosomes, starts, ends, window_size, reduce, default_value,
                                       dtype, tracks, zoom)
            return in_layout(out, layout, self.device.xp)
        if self._pid != os.getpid():
            # a forked child (a DataLoader worker): the parent's inflate threads and lock state did not
            # come along; start afresh (the parent's processor is the parent's to close)
            self._lock = threading.Lock()
            self._processor = None
            self._pid = os.getpid()
            self.cache.after_fork()
        with self._lock:
            if self._processor is None:
                from .batch_processor import BatchProcessor
                self._processor = BatchProcessor(self, n_threads=self._n_threads, device=self.device)
            return self._processor.process(chromosomes, starts, ends, tracks, window_size, reduce,
                                           default_value, dtype, layout)

    def _get_batch_zoom(self, chromosomes, starts, ends, window_size, reduce, default_value, dtype, tracks, zoom):
        from .dtypes import cast_output
        from .zoom import pick_zoom_level, zoom_windows
        q = self.prepare_queries(chromosomes, starts, ends, tracks, window_size, reduce, dtype)
        T, B, L = q.n_tracks, q.batch, q.length
        levels = [pick_zoom_level(self.files[t], window_size, zoom) for t in q.tracks.tolist()]
        if all(level is None for level in levels):       # no track has a fitting level: the exact batch as is
            return self.get_batch(chromosomes, starts, ends, window_size, reduce, default_value, dtype, tracks=tracks)
        out = np.empty((T, B, L // window_size))
        exact = []
        for ti, t in enumerate(q.tracks.tolist()):
            f = self.files[t]
            level = levels[ti]
            if level is None:
                exact.append(ti)
                continue
            sl = slice(ti * B, (ti + 1) * B)
            scale = 1.0 if self._scaling is None else float(self._scaling[t])
            out[ti] = zoom_windows(f, level, q.key_lo[sl], q.key_hi[sl], q.origin[sl], L, window_size, reduce,
                                   default_value, scale)
        if exact:
            sub = self.get_batch(chromosomes, starts, ends, window_size, reduce, default_value, "float32",
                                 tracks=q.tracks[exact])
            out[exact] = self.device_to_host(sub).transpose(2, 0, 1)
        out = cast_output(out.transpose(1, 2, 0), dtype)
        return self.host_to_device(out)

    def device_to_host(self, values):
        """A NumPy copy of values made on this collection's device (NumPy arrays pass through)."""
        return values.get() if hasattr(values, "get") and not isinstance(values, np.ndarray) else values

    def host_to_device(self, values):
        """NumPy values moved to this collection's device (as `get_batch` would return them)."""
        if self.device.xp is np:
            return values
        if values.dtype.name == "bfloat16":
            values = values.view(np.uint16)
        return self.device.xp.asarray(values)

    @property
    def timings(self) -> dict:
        """Cumulative seconds per stage of `get_batch` calls."""
        return dict(self._processor.timings) if self._processor else {}

    def close(self):
        """Close every file and stop the inflate threads. Safe to call twice."""
        self._closed = True
        proc = getattr(self, "_processor", None)
        if proc is not None and getattr(self, "_pid", None) == os.getpid():
            proc.close()
            self._processor = None
        for f in self.files:
            f.close()
        cache = getattr(self, "cache", None)
        if cache is not None:
            cache.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        """Pickles as its arguments: the copy (say, in a DataLoader worker process) reopens the files."""
        return (_reopen, self._init_args)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return (f"BigWigCollection({self.n_tracks} tracks, {len(self.chrom_sizes)} chromosomes, "
                f"device={self.device.name!r})")


def _check_memory(batch, length, tracks, window_size, itemsize):
    """Refuse up front a batch whose arrays cannot fit in memory, with the estimate."""
    out = batch * (length // window_size) * tracks
    work = batch * length * tracks * 4 if window_size == 1 else out * 8 * 3
    work = min(work, 1 << 30)          # wide batches run in track groups (or fused) of bounded working memory
    need = out * itemsize + work
    if need < 64 << 20:               # not worth a read of /proc/meminfo per batch
        return
    avail = available_memory()
    if avail is not None and need > 0.8 * avail:
        raise ValueError(
            f"a batch of {batch} queries x {length} bases x {tracks} tracks (window {window_size}) needs about "
            f"{need / 2**30:.1f} GiB, more than the {avail / 2**30:.1f} GiB of memory available; use a smaller "
            "batch_size, a shorter sequence, fewer tracks or a larger window")


def _reopen(paths, track_names, scaling, n_threads, cache_bytes, backend="cpu"):
    return BigWigCollection(paths, track_names=track_names, scaling=scaling, n_threads=n_threads,
                            cache_bytes=cache_bytes, backend=backend)


def _release_freed_memory():
    """Hand the heap pages freed while opening (each file's own index arrays, now views of the
    collection's) back to the OS: glibc keeps small freed blocks otherwise, and RSS stays high."""
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _as_int_array(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(f"{name} must be integers, got non-integer values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        if arr.size == 0:
            return arr.astype(np.int64)
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (np.abs(arr) > (1 << 40)).any():
        raise ValueError(f"{name} has coordinates beyond 2^40, larger than any genome")
    return arr

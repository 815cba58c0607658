"""Reading byte ranges from bigWig files: positional reads with coalescing of neighbouring blocks.

Local paths are read with ``os.pread`` (:class:`LocalSource`) through descriptors kept in one
process-wide pool (:class:`HandlePool`, ``HANDLES``): any number of files opens under a low
``ulimit -n`` (the soft limit is raised toward the hard one when needed; past it, descriptors
are closed and reopened on demand). A file that cannot be opened or read is a
:class:`~bwloader_core.errors.BigWigReadError` (an ``OSError``), never a format error. URLs (``http://``, ``https://``,
``s3://``, ``gs://``, any fsspec protocol) are read with fsspec range requests
(:class:`RemoteSource`; ``pip install 'bwloader[remote]'``). Every other module reads bytes only
through ``source.pread(offset, size, what)``, ``source.size``, ``source.path`` and ``source.close()``.

Remote reads, and the round trips they cost:

- Opening a file fetches its first ``head_bytes`` (64 KiB) once (header, zoom headers, total
  summary and usually the chromosome tree lie there), then asks for the size (HEAD / ``info()``)
  only when the file is longer than that. Index reads outside the head (the R-tree, a large
  chromosome tree, a zoom level's index) read ahead a window that doubles on each miss (256 KiB up
  to 8 MiB), so walking an index costs a few requests, not one per node. Windows live in one
  process-wide LRU bounded in bytes (``REMOTE_OPTIONS['window_cache_bytes']``), so opening
  thousands of remote files does not pin a window per file.
- Data blocks are coalesced across gaps up to ``coalesce_gap`` (64 KiB for remote sources, 4 KiB
  locally) and the runs of one call are fetched concurrently (``pread_many``).
- Transient failures (connection reset or dropped mid-response, timeouts, HTTP 5xx/429/408) are
  retried ``retries`` times in all, with ``backoff`` seconds between tries; 404/403 fail at once.
  Every failed request is a :class:`~bwloader_core.errors.BigWigReadError` (an ``OSError``: a 404
  is a ``FileNotFoundError``, a 403 a ``PermissionError``, a timeout a ``TimeoutError``, a dropped
  connection a ``ConnectionError``) naming the URL, with the cause chained; bytes that arrive but
  are not a valid bigWig are a ``BigWigFormatError``.
- Reads are thread-safe: fsspec runs requests on its own event loop thread.

Tune with ``bwloader_core.io.REMOTE_OPTIONS`` (process-wide defaults, also used by
``BigWigFile``/``BigWigCollection``), e.g. ``REMOTE_OPTIONS["read_timeout"] = 120`` or
``REMOTE_OPTIONS["storage_options"] = {"s3": {"anon": True}}``.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import stat
import threading
import time
import warnings
import weakref
from collections import OrderedDict

import numpy as np

from .errors import BigWigFormatError, BigWigReadError, read_error

LOCAL_COALESCE_GAP = 4096
log = logging.getLogger("bwloader")

LOCAL_OPTIONS = {
    # descriptors of local bigWigs kept open at once; None: from the soft RLIMIT_NOFILE (less a
    # reserve for the rest of the process). Also BWLOADER_MAX_OPEN_FILES.
    "max_open_files": None,
}


def _nofile_limits():
    try:
        import resource
        return resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return None


def _set_soft_limit(soft: int, hard) -> bool:
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return True
    except (ImportError, OSError, ValueError):
        return False


class HandlePool:
    """Process-wide bound on the open descriptors of local bigWig files.

    Every `LocalSource` opens through the pool (`HANDLES`). While the files fit (the usual case:
    `reserve_handles` raises the soft RLIMIT_NOFILE toward the hard limit for a large collection)
    every descriptor stays open. Past the capacity (`capacity()`), the least recently used
    descriptors that no read holds are closed, and reopened on demand; a reopened file must still
    be the one first opened (same device, inode and size), else the read fails with
    `BigWigReadError` (ESTALE).

    A read pins the descriptors it uses (`acquire` / `acquire_many` ... `release`): a Python
    `pread` pins one, the compiled fetch pins the files of one chunk of blocks for the chunk's
    duration (`Lease`), so no descriptor is closed, and its number reused, under a read.
    `acquire_many` takes all of its descriptors at once or waits (it never holds some while
    waiting for others), so readers cannot deadlock."""

    def __init__(self):
        self._new_lock()
        self._open: OrderedDict = OrderedDict()   # id(source) -> source, least recently used first
        self.n_sources = 0                        # sources not closed (open or evicted)
        self.reopens = 0
        self.evictions = 0

    # -- sizing
    def capacity(self) -> int:
        """Descriptors the pool keeps open at most (the soft limit is read again after
        `reserve_handles` or an EMFILE, not on every call)."""
        opt = LOCAL_OPTIONS.get("max_open_files") or os.environ.get("BWLOADER_MAX_OPEN_FILES")
        if opt:
            return max(1, int(opt))
        if self._cap is None:
            self._cap = self._capacity_from_limit()
        return self._cap

    _cap = None

    def refresh(self):
        """Read the open-file limit again (after it changed)."""
        self._cap = None

    @staticmethod
    def _capacity_from_limit() -> int:
        lim = _nofile_limits()
        if lim is None:
            return 1 << 20
        soft = lim[0]
        try:
            import resource
            if soft == resource.RLIM_INFINITY:
                return 1 << 20
        except ImportError:
            pass
        return max(8, soft - _reserve(soft))

    @property
    def n_open(self) -> int:
        return len(self._open)

    @property
    def constrained(self) -> bool:
        """True when the sources outnumber the capacity (descriptors get closed and reopened)."""
        return self.n_sources > self.capacity()

    def max_lease(self, n_threads: int) -> int:
        """The most descriptors one `acquire_many` of a multi-threaded reader should ask for."""
        if not self.constrained:
            return 1 << 62
        return max(1, self.capacity() // (2 * max(1, int(n_threads))))

    # -- the lock: reentrant, because a finalizer (a collection's __del__ closing its files) can
    # run in the middle of any method here, on the thread that holds the lock. Such a close is
    # deferred to the end of the outer call, so no loop over the open descriptors sees it.
    def _new_lock(self):
        self._cond = threading.Condition(threading.RLock())
        self._owner = None
        self._pending: list = []

    def _enter(self):
        self._cond.acquire()
        if self._owner is not None:        # re-entered by a finalizer on this thread
            return False
        self._owner = threading.get_ident()
        return True

    def _exit(self, outer: bool):
        try:
            if outer:
                while self._pending:
                    self._close_now(self._pending.pop())
                self._owner = None
        finally:
            self._cond.release()

    # -- open, pin, release, close
    def open(self, src):
        """First open of `src` (sets `_fd`, `size`, `_ident`); BigWigReadError when it fails."""
        outer = self._enter()
        try:
            self._make_room(1, ())
            fd = self._os_open(src, first=True)
            try:
                st = os.fstat(fd)
            except OSError as exc:
                os.close(fd)
                raise read_error(src.path, f"cannot open: {exc.strerror}", exc.errno) from exc
            if stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise read_error(src.path, "cannot open: is a directory, not a bigWig file", errno.EISDIR)
            src._fd = fd
            src.size = st.st_size
            src._ident = (st.st_dev, st.st_ino, st.st_size)
            self._open[id(src)] = src
            self.n_sources += 1
        finally:
            self._exit(outer)

    def acquire(self, src) -> int:
        """The open descriptor of `src`, pinned until `release(src)`."""
        outer = self._enter()
        try:
            if src._fd < 0:
                self._reopen_all([src])
            src._pins += 1
            self._open.move_to_end(id(src))
            return src._fd
        finally:
            self._exit(outer)

    def release(self, src):
        outer = self._enter()
        try:
            src._pins -= 1
            if src._pins == 0 and self._waiting:
                self._cond.notify_all()
        finally:
            self._exit(outer)

    def acquire_many(self, srcs) -> list:
        """The descriptors of `srcs` (distinct), all pinned until `release_many(srcs)`."""
        outer = self._enter()
        try:
            if len(srcs) > self.capacity():
                raise ValueError(f"cannot hold {len(srcs)} files open at once: the pool holds at most "
                                 f"{self.capacity()} (split the read)")
            self._reopen_all([s for s in srcs if s._fd < 0], keep=srcs)
            for s in srcs:
                s._pins += 1
                self._open.move_to_end(id(s))
            return [s._fd for s in srcs]
        finally:
            self._exit(outer)

    def release_many(self, srcs):
        outer = self._enter()
        try:
            for s in srcs:
                s._pins -= 1
            if self._waiting:
                self._cond.notify_all()
        finally:
            self._exit(outer)

    def close(self, src):
        outer = self._enter()
        try:
            if outer:
                self._close_now(src)
            else:
                self._pending.append(src)
        finally:
            self._exit(outer)

    def _close_now(self, src):
        if src._fd >= 0:
            self._open.pop(id(src), None)
            try:
                os.close(src._fd)
            finally:
                src._fd = -1
        if not src._closed:
            src._closed = True
            self.n_sources -= 1

    # -- internals (called with the lock held)
    _waiting = 0

    def _reopen_all(self, closed, keep=()):
        for s in closed:
            if s._closed:
                raise ValueError(f"{s.path}: file is closed")
        if not closed:
            return
        while not self._make_room(len(closed), keep):
            self._waiting += 1          # every descriptor is pinned by other reads: wait for one
            owner, self._owner = self._owner, None
            try:
                self._cond.wait(0.05)
            finally:
                self._owner = owner
                self._waiting -= 1
        for s in closed:
            if s._fd >= 0:
                continue
            fd = self._os_open(s, first=False)
            try:
                st = os.fstat(fd)
            except OSError as exc:
                os.close(fd)
                raise read_error(s.path, f"cannot reopen: {exc.strerror}", exc.errno) from exc
            if (st.st_dev, st.st_ino, st.st_size) != s._ident:
                os.close(fd)
                what = "was replaced" if (st.st_dev, st.st_ino) != s._ident[:2] else \
                    f"changed size ({s._ident[2]} -> {st.st_size} bytes)"
                raise read_error(s.path, f"{what} since it was opened; bwloader had closed its descriptor to stay "
                                         f"within {self.capacity()} open files and cannot read the original any more",
                                 errno.ESTALE)
            s._fd = fd
            self._open[id(s)] = s
            self.reopens += 1

    def _make_room(self, need: int, keep) -> bool:
        """Close least recently used unpinned descriptors (not of `keep`) until `need` more fit."""
        excess = len(self._open) + need - self.capacity()
        if excess <= 0:
            return True
        keep_ids = {id(s) for s in keep}
        victims = []
        for key, s in self._open.items():
            if s._pins == 0 and key not in keep_ids:
                victims.append(s)
                if len(victims) >= excess:
                    break
        if len(victims) < excess:
            return False
        for s in victims:
            self._evict(s)
        return True

    def _evict(self, s):
        del self._open[id(s)]
        try:
            os.close(s._fd)
        finally:
            s._fd = -1
        self.evictions += 1

    def _os_open(self, src, first: bool) -> int:
        verb = "cannot open" if first else "cannot reopen"
        for attempt in range(2):
            try:
                return os.open(src.path, os.O_RDONLY)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and attempt == 0:
                    self._cap = None
                    # the rest of the process holds more descriptors than the reserve: make room
                    victims = [s for s in self._open.values() if s._pins == 0][:max(8, len(self._open) // 8)]
                    if victims:
                        for s in victims:
                            self._evict(s)
                        continue
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    lim = _nofile_limits()
                    raise read_error(src.path, f"{verb}: {exc.strerror} (open-file limit {lim[0] if lim else '?'}, "
                                               f"{len(self._open)} held by bwloader's pool of at most "
                                               f"{self.capacity()}): raise `ulimit -n`, or lower "
                                               "BWLOADER_MAX_OPEN_FILES", exc.errno) from exc
                raise read_error(src.path, f"{verb}: {exc.strerror}", exc.errno) from exc
        raise AssertionError("unreachable")

    def _after_fork_in_child(self):
        self._new_lock()
        self._waiting = 0
        for s in self._open.values():
            s._pins = 0               # the threads that held them are not in the child


def _reserve(soft: int) -> int:
    """Descriptors left to the rest of the process (sockets, pipes, DataLoader workers' shared memory)."""
    return max(64, soft // 4)


HANDLES = HandlePool()
_LOGGED: set = set()


def reserve_handles(n_files: int):
    """Make room for `n_files` more local bigWigs: raise the soft RLIMIT_NOFILE toward the hard limit
    when the pool would not hold them all (logged once); past the hard limit the pool keeps at most
    `HANDLES.capacity()` open and reopens the others on demand (logged once)."""
    need = HANDLES.n_sources + int(n_files)
    if need <= HANDLES.capacity():
        return
    if LOCAL_OPTIONS.get("max_open_files") or os.environ.get("BWLOADER_MAX_OPEN_FILES"):
        return
    lim = _nofile_limits()
    if lim is None:
        return
    import resource
    soft, hard = lim
    target = need + max(64, need // 3) + 1
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    raised = target > soft and _set_soft_limit(target, hard)
    HANDLES.refresh()
    if raised and "raised" not in _LOGGED:
        _LOGGED.add("raised")
        log.info("bwloader: raised the soft open-file limit (RLIMIT_NOFILE) from %d to %d for %d bigWig files",
                 soft, target, need)
    if need > HANDLES.capacity() and "pool" not in _LOGGED:
        _LOGGED.add("pool")
        log.warning("bwloader: %d bigWig files exceed the open-file limit (hard limit %s): at most %d stay open, "
                    "the others are reopened when read (raise `ulimit -Hn` to keep them all open)",
                    need, "unlimited" if hard == resource.RLIM_INFINITY else hard, HANDLES.capacity())


class Lease:
    """The descriptors of the local files `ids` (indices into `files`, BigWigFiles or sources),
    pinned from construction to `close()` / the end of a `with` block: `fds` is aligned with `ids`."""

    def __init__(self, files, ids):
        ids = np.asarray(ids, np.int64)
        if len(ids) < 2 or bool((ids[1:] >= ids[:-1]).all()):
            uniq = ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids
        else:
            uniq = np.unique(ids)
        self._srcs = [getattr(files[i], "source", files[i]) for i in uniq.tolist()]
        fds = np.asarray(HANDLES.acquire_many(self._srcs), np.int32)
        self.fds = fds[np.searchsorted(uniq, ids)] if len(ids) else np.zeros(0, np.int32)

    def close(self):
        if self._srcs is not None:
            HANDLES.release_many(self._srcs)
            self._srcs = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def lease_bounds(file_ids: np.ndarray, bounds: list, max_files: int) -> list:
    """Chunk `bounds` (block ranges) split further so that no chunk spans more than `max_files`
    runs of one file (files come grouped: a run per file)."""
    if max_files >= len(file_ids):
        return bounds
    out = [bounds[0]]
    new = np.flatnonzero(np.r_[True, file_ids[1:] != file_ids[:-1]]) if len(file_ids) else np.zeros(0, np.int64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        starts = new[(new > a) & (new < b)]
        for cut in starts[max_files - 1::max_files].tolist() if max_files > 0 else []:
            if cut > out[-1]:
                out.append(cut)
        out.append(b)
    return out


class LocalSource:
    """A local file read with os.pread (thread-safe, no shared file position; no mmap so a file
    truncated while open gives an error, not SIGBUS). Its descriptor lives in the `HANDLES` pool:
    it may be closed while unused and reopened on the next read."""

    coalesce_gap = LOCAL_COALESCE_GAP

    def __init__(self, path):
        self.path = str(path)
        self._fd = -1
        self._pins = 0
        self._closed = False
        self._ident = None
        self.size = 0
        HANDLES.open(self)

    def pread(self, offset: int, size: int, what: str = "data") -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BigWigFormatError(
                self.path, f"{what} at offset {offset} (+{size} bytes) lies past the end of the file "
                f"({self.size} bytes): truncated or corrupt")
        if self._closed:
            raise ValueError(f"{self.path}: file is closed")
        fd = HANDLES.acquire(self)
        try:
            data = os.pread(fd, size, offset)
            if len(data) != size:
                self._short_read(fd, offset, size, len(data), what)
        except OSError as exc:
            if isinstance(exc, BigWigReadError):
                raise
            raise read_error(self.path, f"read of {what} at offset {offset} (+{size} bytes) failed: {exc.strerror}",
                             exc.errno) from exc
        finally:
            HANDLES.release(self)
        return data

    def _short_read(self, fd, offset, size, got, what):
        try:
            now = f"; it is now {os.fstat(fd).st_size} bytes, {self.size} when opened"
        except OSError:
            now = ""
        raise read_error(self.path, f"short read of {what}: wanted {size} bytes at offset {offset}, got {got}: "
                                    f"the file was truncated while open{now}", errno.EIO)

    def current_size(self) -> int:
        """The file's size now (it may have changed since it was opened)."""
        fd = HANDLES.acquire(self)
        try:
            return os.fstat(fd).st_size
        finally:
            HANDLES.release(self)

    def pinned(self):
        """Keep the descriptor open across several reads (`with source.pinned(): ...`)."""
        return Lease([self], [0])

    @property
    def is_open(self) -> bool:
        """True while the descriptor is open (it may be closed by the pool and reopened on demand)."""
        return self._fd >= 0

    def close(self):
        HANDLES.close(self)


# ------------------------------------------------------------------------------------------ remote
REMOTE_OPTIONS = {
    "retries": 3,                   # tries in all for a transient failure
    "backoff": (0.1, 0.3),          # seconds to wait before the 2nd, 3rd, ... try (the last repeats)
    "connect_timeout": 10.0,        # seconds (HTTP): establishing a connection
    "read_timeout": 30.0,           # seconds (HTTP): between two chunks of a response
    "head_bytes": 64 << 10,         # read once at open: header, zoom headers, summary, chrom tree
    "readahead": 256 << 10,         # first read-ahead window for index structures outside the head
    "max_readahead": 8 << 20,       # the window doubles on each miss up to this
    "coalesce_gap": 64 << 10,       # data blocks this close are read in one request
    "window_cache_bytes": 64 << 20,  # process-wide bound on cached head/index windows (global only)
    "storage_options": {},          # per protocol: {"s3": {"anon": True}, "https": {"headers": {...}}}
}

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_EXTRA_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                   "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}


def is_url(path) -> bool:
    """True for 'proto://...' strings (and fsspec chains 'a::b://...'), False for local paths."""
    return isinstance(path, str) and (bool(_URL_RE.match(path)) or ("::" in path and "://" in path))


def _import_fsspec():
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError("reading bigWig files from URLs needs fsspec: pip install 'bwloader[remote]'") from exc
    return fsspec


class _WindowCache:
    """Process-wide LRU of byte windows (head and index read-ahead) of remote sources, bounded in bytes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lru: OrderedDict = OrderedDict()      # (source key, start) -> bytes
        self._starts: dict = {}                    # source key -> set of window starts
        self.nbytes = 0

    def get(self, key, offset: int, end: int):
        with self._lock:
            for start in self._starts.get(key, ()):
                data = self._lru[(key, start)]
                if start <= offset and end <= start + len(data):
                    self._lru.move_to_end((key, start))
                    return data[offset - start:end - start]
        return None

    def put(self, key, start: int, data: bytes):
        with self._lock:
            old = self._lru.pop((key, start), None)
            if old is not None:
                self.nbytes -= len(old)
            self._lru[(key, start)] = data
            self._starts.setdefault(key, set()).add(start)
            self.nbytes += len(data)
            capacity = int(REMOTE_OPTIONS["window_cache_bytes"])
            while self.nbytes > capacity and len(self._lru) > 1:
                (k, s), d = self._lru.popitem(last=False)
                self.nbytes -= len(d)
                starts = self._starts[k]
                starts.discard(s)
                if not starts:
                    del self._starts[k]

    def drop(self, key):
        with self._lock:
            for s in self._starts.pop(key, ()):
                self.nbytes -= len(self._lru.pop((key, s)))


_WINDOWS = _WindowCache()
_KEYS = itertools.count()
_LIVE = weakref.WeakSet()  # open RemoteSources, to renew their locks in a forked child


def _after_fork_in_child():
    HANDLES._after_fork_in_child()
    _WINDOWS._lock = threading.Lock()
    for src in list(_LIVE):
        src._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _status_of(exc):
    for attr in ("status", "status_code", "code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int) and 100 <= v <= 599:
            return v
    resp = getattr(exc, "response", None)
    v = getattr(resp, "status_code", None) or getattr(resp, "status", None)
    if isinstance(v, int):
        return v
    if isinstance(resp, dict):  # botocore ClientError
        v = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(v, int):
            return v
    return None


_TRANSIENT_NAMES = {"ClientConnectionError", "ClientPayloadError", "ServerTimeoutError", "ServerDisconnectedError",
                    "IncompleteRead", "ChunkedEncodingError", "ConnectionClosedError", "ReadTimeoutError",
                    "ConnectTimeoutError", "EndpointConnectionError", "ResponseStreamingError",
                    "ProtocolError", "RemoteProtocolError", "TransportError", "ServiceUnavailable",
                    "TooManyRequests", "InternalServerError", "BadGateway", "GatewayTimeout", "RetryError"}


def _classify(exc) -> tuple[str, str]:
    """(kind, description) of a failed request; kind is missing, denied, transient or fatal."""
    desc = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, TimeoutError) and not str(exc):
        desc = f"timed out ({type(exc).__name__})"
    if isinstance(exc, FileNotFoundError):
        return "missing", desc
    if isinstance(exc, PermissionError):
        return "denied", desc
    status = _status_of(exc)
    if status is not None:
        desc = f"HTTP {status} ({desc})"
        if status in (404, 410):
            return "missing", desc
        if status in (401, 403):
            return "denied", desc
        if status >= 500 or status in (408, 425, 429):
            return "transient", desc
        return "fatal", desc
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, (TimeoutError, ConnectionError)) or names & _TRANSIENT_NAMES:
        return "transient", desc
    if isinstance(exc, OSError):  # s3fs/gcsfs give other I/O failures as OSError(EIO)
        return "transient", desc
    return "fatal", desc


_TIMEOUT_STATUS = (408, 504)


def _failure_kind(exc) -> str | None:
    """'timeout' or 'connection' for a failed request of that nature (for the OSError subclass)."""
    names = " ".join(c.__name__ for c in type(exc).__mro__)
    if isinstance(exc, TimeoutError) or "Timeout" in names or _status_of(exc) in _TIMEOUT_STATUS:
        return "timeout"
    if isinstance(exc, ConnectionError) or any(k in names for k in ("Connection", "Disconnected", "Payload",
                                                                      "IncompleteRead", "ProtocolError")):
        return "connection"
    return None


class RemoteSource:
    """A remote file read with fsspec range requests (see the module docstring).

    Options (keyword arguments) default to ``REMOTE_OPTIONS``. ``n_requests`` counts the requests
    made (reads and size queries, retries included) and ``bytes_fetched`` the bytes they returned.
    """

    def __init__(self, url: str, **options):
        unknown = set(options) - set(REMOTE_OPTIONS)
        if unknown:
            raise TypeError(f"unknown remote options {sorted(unknown)}; known: {sorted(REMOTE_OPTIONS)}")
        opt = {**REMOTE_OPTIONS, **options}
        self.path = str(url)
        self.retries = max(1, int(opt["retries"]))
        backoff = opt["backoff"]
        self.backoff = tuple(float(b) for b in (backoff if isinstance(backoff, (list, tuple)) else [backoff])) or (0.0,)
        self.connect_timeout = opt["connect_timeout"]
        self.read_timeout = opt["read_timeout"]
        self.head_bytes = max(1024, int(opt["head_bytes"]))
        self.max_readahead = max(4096, int(opt["max_readahead"]))
        self._readahead = min(max(4096, int(opt["readahead"])), self.max_readahead)
        self.coalesce_gap = int(opt["coalesce_gap"])
        self._storage_options = opt["storage_options"] or {}
        self.protocol = self.path.split("::")[-1].split("://", 1)[0].lower() if "::" in self.path \
            else self.path.split("://", 1)[0].lower()
        self._key = next(_KEYS)
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._closed = False
        self._whole = None  # the whole file, when the server ignores Range requests
        self.n_requests = 0
        self.bytes_fetched = 0
        self._pid = None
        self._fs = self._fspath = None
        self._connect()
        self.size = 0
        self._open()

    # -- the fsspec filesystem (re-made in a forked child: the parent's event loop is not there)
    def _connect(self):
        fsspec = _import_fsspec()
        so = dict(self._storage_options.get(self.protocol, {}))
        if self.protocol in ("http", "https"):
            try:
                import aiohttp
            except ImportError as exc:
                raise ImportError(f"{self.path}: reading over {self.protocol} needs aiohttp: "
                                  "pip install 'bwloader[remote]'") from exc
            ck = dict(so.get("client_kwargs", {}))
            ck.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                                           sock_read=self.read_timeout))
            so["client_kwargs"] = ck
            # byte ranges of the stored bytes, never of a compressed transfer encoding
            so["headers"] = {"Accept-Encoding": "identity", **so.get("headers", {})}
        try:
            self._fs, self._fspath = fsspec.core.url_to_fs(self.path, **so)
        except ImportError as exc:
            pkg = _EXTRA_PACKAGES.get(self.protocol, "the fsspec implementation")
            raise ImportError(f"{self.path}: the {self.protocol}:// protocol needs {pkg} ({exc}); "
                              f"pip install 'bwloader[remote]' {pkg}") from exc
        except ValueError as exc:
            raise read_error(self.path, f"cannot open URL: {exc}", errno.EINVAL) from exc
        self._pid = os.getpid()

    def _filesystem(self):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._connect()
        return self._fs

    # -- open: the head, then the size
    def _open(self):
        n = self.head_bytes
        try:
            head = self._request(0, n, "header")
        except BigWigReadError as exc:
            if _status_of(exc.__cause__) != 416:  # 416: nothing at offset 0, an empty file
                raise
            head = b""
        if len(head) > n:  # the server ignored Range and sent the whole file
            self._keep_whole(head)
            return
        if len(head) < n:  # a range past the end comes back short: the file is this long
            self.size = len(head)
        else:
            self.size = self._remote_size()
            if self.size < n:
                raise read_error(self.path, f"the server reports {self.size} bytes but sent {n} "
                                            "from offset 0 (file changed while opening?)", errno.EIO)
        if head:
            _WINDOWS.put(self._key, 0, bytes(head))

    def _remote_size(self) -> int:
        last = None
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff[min(attempt - 1, len(self.backoff) - 1)])
            self._count(1, 0)
            try:
                info = self._filesystem().info(self._fspath)
            except Exception as exc:  # the head read worked: a failure now is not a missing file
                last = exc
                continue
            size = info.get("size")
            if size is None:
                raise read_error(self.path, "the server does not report the file size (no Content-Length)",
                                 errno.EIO)
            return int(size)
        raise read_error(self.path, f"cannot get the file size after {self.retries} tries: {_classify(last)[1]}",
                         errno.EIO, _failure_kind(last)) from last

    def _keep_whole(self, data):
        warnings.warn(f"{self.path}: the server ignores HTTP Range requests; the whole file "
                      f"({len(data)} bytes) is kept in memory", RuntimeWarning, stacklevel=4)
        self._whole = bytes(data)
        self.size = len(self._whole)

    def _count(self, n, nbytes):
        with self._lock:
            self.n_requests += n
            self.bytes_fetched += nbytes

    # -- requests with retries
    def _request(self, start: int, end: int, what: str, first=None) -> bytes:
        """Bytes [start, end) (fewer at the end of the file) with retries. `first`: the outcome
        (bytes or exception) of a first try already made elsewhere (pread_many)."""
        last = None
        for attempt in range(self.retries):
            if attempt == 0 and first is not None:
                result = first
            else:
                if attempt:
                    time.sleep(self.backoff[min(attempt - 1, len(self.backoff) - 1)])
                try:
                    result = self._filesystem().cat_file(self._fspath, start=start, end=end)
                    self._count(1, len(result))
                except Exception as exc:
                    self._count(1, 0)
                    result = exc
            if not isinstance(result, BaseException):
                return result
            kind, desc = _classify(result)
            if kind == "missing":
                if self.protocol in ("http", "https") and _status_of(result) is None:
                    desc = "HTTP 404 Not Found"       # fsspec's HTTP filesystem raises a bare FileNotFoundError
                raise read_error(self.path, f"not found ({desc})", kind="missing") from result
            if kind == "denied":
                raise read_error(self.path, f"permission denied ({desc})", kind="denied") from result
            if kind == "fatal":
                hint = ": requested range lies past the end of the remote file (truncated while open?)" \
                    if _status_of(result) == 416 else ""
                raise read_error(self.path, f"reading {what} at offset {start} (+{end - start} bytes) "
                                            f"failed: {desc}{hint}", errno.EIO, _failure_kind(result)) from result
            last = result
        raise read_error(self.path, f"reading {what} at offset {start} (+{end - start} bytes) failed "
                                    f"after {self.retries} tries: {_classify(last)[1]}", errno.EIO,
                         _failure_kind(last)) from last

    def _checked(self, data, offset: int, size: int, what: str) -> bytes:
        if len(data) == size:
            return data
        if len(data) > size and self._whole is None and len(data) == self.size:
            self._keep_whole(data)
            return self._whole[offset:offset + size]
        raise read_error(
            self.path, f"short read of {what}: wanted {size} bytes at offset {offset}, got {len(data)} "
            f"(the remote file is shorter than the {self.size} bytes its server reported: truncated while open?)",
            errno.EIO)

    def _check_range(self, offset: int, size: int, what: str):
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BigWigFormatError(
                self.path, f"{what} at offset {offset} (+{size} bytes) lies past the end of the file "
                f"({self.size} bytes): truncated or corrupt")
        if self._closed:
            raise ValueError(f"{self.path}: file is closed")

    def _cached(self, offset: int, end: int):
        if self._whole is not None:
            return self._whole[offset:end]
        return _WINDOWS.get(self._key, offset, end)

    # -- the source interface
    def pread(self, offset: int, size: int, what: str = "data") -> bytes:
        offset, size = int(offset), int(size)
        self._check_range(offset, size, what)
        if size == 0:
            return b""
        end = offset + size
        hit = self._cached(offset, end)
        if hit is not None:
            return hit
        if not what.startswith("data") and size < self._readahead:
            # an index structure: read ahead a window (doubling on each miss) and keep it
            with self._lock:
                wend = min(self.size, offset + self._readahead)
                self._readahead = min(2 * self._readahead, self.max_readahead)
            data = self._checked(self._request(offset, wend, what), offset, wend - offset, what)
            if self._whole is not None:
                return self._whole[offset:end]
            _WINDOWS.put(self._key, offset, data)
            return data[:size]
        return self._checked(self._request(offset, end, what), offset, size, what)

    def pread_many(self, ranges, what: str = "data block") -> list:
        """pread of several (start, end) ranges, fetched concurrently; in order."""
        ranges = [(int(a), int(b)) for a, b in ranges]
        out = [None] * len(ranges)
        todo = []
        for i, (a, b) in enumerate(ranges):
            self._check_range(a, b - a, what)
            hit = self._cached(a, b) if b > a else b""
            if hit is not None:
                out[i] = hit
            else:
                todo.append(i)
        if len(todo) == 1:
            a, b = ranges[todo[0]]
            out[todo[0]] = self.pread(a, b - a, what)
        elif todo:
            try:
                firsts = self._filesystem().cat_ranges([self._fspath] * len(todo), [ranges[i][0] for i in todo],
                                                       [ranges[i][1] for i in todo], on_error="return")
                self._count(len(todo), sum(len(r) for r in firsts if isinstance(r, (bytes, bytearray))))
            except Exception:  # no concurrent range reads here (an old fsspec?): one by one below
                firsts = [None] * len(todo)
            for i, first in zip(todo, firsts):
                a, b = ranges[i]
                if self._whole is not None:
                    out[i] = self._whole[a:b]
                    continue
                out[i] = self._checked(self._request(a, b, what, first=first), a, b - a, what)
        return out

    def close(self):
        self._closed = True
        self._whole = None
        _WINDOWS.drop(self._key)

    def __del__(self):
        try:
            _WINDOWS.drop(self._key)
        except Exception:
            pass

    def __repr__(self):
        return f"RemoteSource({self.path!r}, size={self.size})"


def open_source(path, **remote_options):
    """Open a byte source: a local path -> LocalSource; a URL (http(s)://, s3://, gs://, any fsspec
    protocol) -> RemoteSource (options default to REMOTE_OPTIONS); file:// URLs are read locally."""
    if isinstance(path, str) and is_url(path):
        if path.lower().startswith("file://"):
            from urllib.parse import unquote, urlsplit
            return LocalSource(unquote(urlsplit(path).path))
        return RemoteSource(path, **remote_options)
    return LocalSource(path)


def coalesce(offsets: np.ndarray, sizes: np.ndarray, max_gap: int = 4096, max_read: int = 8 << 20):
    """Group blocks (sorted by offset) into runs to read in one call.

    Returns (run_starts, run_ends, run_id_per_block) where blocks of one run lie within
    [run_start, run_end). A gap up to `max_gap` bytes is read through rather than split.
    """
    n = len(offsets)
    if n == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    ends = offsets + sizes
    gap = offsets[1:] - np.maximum.accumulate(ends)[:-1]
    new_run = np.empty(n, bool)
    new_run[0] = True
    new_run[1:] = gap > max_gap
    # split runs that grow too long (rare: only very large coalesced regions)
    run_id = np.cumsum(new_run) - 1
    run_first = np.flatnonzero(new_run)
    span = ends - offsets[run_first[run_id]]
    if span.max() > max_read:
        new_run[1:] |= (ends[1:] - offsets[run_first[run_id]][1:]) > max_read
        run_id = np.cumsum(new_run) - 1
        run_first = np.flatnonzero(new_run)
    run_starts = offsets[run_first]
    run_ends = np.maximum.reduceat(ends, run_first)
    return run_starts, run_ends, run_id


def read_blocks(source, offsets: np.ndarray, sizes: np.ndarray, max_gap: int | None = None) -> list:
    """Read blocks given by (offset, size), in the given order, with coalesced reads.

    `max_gap` defaults to the source's `coalesce_gap` (4 KiB locally, 64 KiB remotely). A source
    with `pread_many` (remote) gets all runs in one call, to fetch them concurrently.
    Returns a list of memoryviews, one per block, in input order."""
    if max_gap is None:
        max_gap = getattr(source, "coalesce_gap", LOCAL_COALESCE_GAP)
    offsets = np.asarray(offsets, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    order = np.argsort(offsets, kind="stable")
    so, ss = offsets[order], sizes[order]
    run_starts, run_ends, run_id = coalesce(so, ss, max_gap=max_gap)
    bounds = list(zip(run_starts.tolist(), run_ends.tolist()))
    many = getattr(source, "pread_many", None)
    if many is not None and len(bounds) > 1:
        runs = [memoryview(r) for r in many(bounds, "data block")]
    else:
        runs = [memoryview(source.pread(a, b - a, "data block")) for a, b in bounds]
    rel = (so - run_starts[run_id]).tolist()
    out = [None] * len(offsets)
    for i, r, a, s in zip(order.tolist(), run_id.tolist(), rel, ss.tolist()):
        out[i] = runs[r][a:a + s]
    return out


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable); None where it cannot be told."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None

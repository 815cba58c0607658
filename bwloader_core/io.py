"""Reading byte ranges from bigWig files: positional reads with coalescing of neighbouring blocks.

Local paths are read with ``os.pread`` (:class:`LocalSource`). URLs (``http://``, ``https://``,
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
  Every failure is a :class:`BigWigFormatError` naming the URL, with the cause chained.
- Reads are thread-safe: fsspec runs requests on its own event loop thread.

Tune with ``bwloader_core.io.REMOTE_OPTIONS`` (process-wide defaults, also used by
``BigWigFile``/``BigWigCollection``), e.g. ``REMOTE_OPTIONS["read_timeout"] = 120`` or
``REMOTE_OPTIONS["storage_options"] = {"s3": {"anon": True}}``.
"""
from __future__ import annotations

import itertools
import os
import re
import threading
import time
import warnings
import weakref
from collections import OrderedDict

import numpy as np

from .errors import BigWigFormatError

LOCAL_COALESCE_GAP = 4096


class LocalSource:
    """A local file read with os.pread (thread-safe, no shared file position; no mmap so a file
    truncated while open gives an error, not SIGBUS)."""

    coalesce_gap = LOCAL_COALESCE_GAP

    def __init__(self, path):
        self.path = str(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise BigWigFormatError(self.path, f"cannot open: {exc.strerror}") from exc
        self.size = os.fstat(self._fd).st_size

    def pread(self, offset: int, size: int, what: str = "data") -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BigWigFormatError(
                self.path, f"{what} at offset {offset} (+{size} bytes) lies past the end of the file "
                f"({self.size} bytes): truncated or corrupt")
        if self._fd is None:
            raise ValueError(f"{self.path}: file is closed")
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as exc:
            raise BigWigFormatError(self.path, f"read of {what} failed: {exc.strerror}") from exc
        if len(data) != size:
            raise BigWigFormatError(
                self.path, f"short read of {what}: wanted {size} bytes at offset {offset}, got {len(data)} "
                "(file truncated while open?)")
        return data

    @property
    def fd(self):
        return self._fd

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
            raise BigWigFormatError(self.path, f"cannot open URL: {exc}") from exc
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
        except BigWigFormatError as exc:
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
                raise BigWigFormatError(self.path, f"the server reports {self.size} bytes but sent {n} "
                                                   "from offset 0 (file changed while opening?)")
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
                raise BigWigFormatError(self.path, "the server does not report the file size (no Content-Length)")
            return int(size)
        raise BigWigFormatError(self.path, f"cannot get the file size after {self.retries} tries: "
                                           f"{_classify(last)[1]}") from last

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
                raise BigWigFormatError(self.path, f"not found ({desc})") from result
            if kind == "denied":
                raise BigWigFormatError(self.path, f"permission denied ({desc})") from result
            if kind == "fatal":
                hint = ": requested range lies past the end of the remote file (truncated?)" \
                    if _status_of(result) == 416 else ""
                raise BigWigFormatError(self.path, f"reading {what} at offset {start} (+{end - start} bytes) "
                                                   f"failed: {desc}{hint}") from result
            last = result
        raise BigWigFormatError(self.path, f"reading {what} at offset {start} (+{end - start} bytes) failed "
                                           f"after {self.retries} tries: {_classify(last)[1]}") from last

    def _checked(self, data, offset: int, size: int, what: str) -> bytes:
        if len(data) == size:
            return data
        if len(data) > size and self._whole is None and len(data) == self.size:
            self._keep_whole(data)
            return self._whole[offset:offset + size]
        raise BigWigFormatError(
            self.path, f"short read of {what}: wanted {size} bytes at offset {offset}, got {len(data)} "
            f"(the remote file is shorter than the {self.size} bytes its server reports: truncated?)")

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

"""A small threaded HTTP/1.1 server for the remote-reading tests: serves a directory on 127.0.0.1
with single byte-range support (206 Partial Content, Content-Range, 416, HEAD with Content-Length),
and switches a test can flip to misbehave.

    with RangeServer(directory) as srv:
        url = srv.url("file.bw")
        srv.fail_next(2, status=500)   # the next 2 requests get HTTP 500
        srv.drop_next(1)               # the next request: headers + half the body, then the socket closes
        srv.missing.add("file.bw")     # 404 for that path;  srv.forbidden: 403
        srv.claimed_size["file.bw"] = n  # report n bytes (HEAD, Content-Range) whatever the file holds;
        srv.claimed_mode = "short"     # ... and past the real end send fewer bytes (honest Content-Length)
                                       # or "cut": promise the full range, send what there is, close
        srv.ignore_range = True        # answer every GET with 200 and the whole file
        srv.stall_next(1, seconds=2)   # the next request waits before answering
        # fail_next / drop_next / stall_next take path= and method= ("GET", "HEAD") to aim at requests
        srv.count("file.bw"), srv.requests   # what was asked: (method, path, Range header)

Only loopback; every connection times out after `idle_timeout` seconds; `stop()` shuts it down.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bwloader-test/1"
    disable_nagle_algorithm = True  # headers and body go in separate sends: avoid 40 ms delayed-ACK stalls

    def setup(self):
        self.timeout = self.server.ctl.idle_timeout
        super().setup()

    def log_message(self, format, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    # -- helpers
    def _simple(self, status: int, text: str = "", extra=()):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drop(self, status: int, headers, partial: bytes):
        """Send the headers and `partial` (nothing for HEAD), then close the connection."""
        if self.command != "HEAD":
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(partial)
            self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self, body: bool):
        ctl = self.server.ctl
        name = unquote(urlsplit(self.path).path).lstrip("/")
        action, stall = ctl._record(self.command, name, self.headers.get("Range"))
        if stall:
            time.sleep(stall)
        if action == "fail":
            return self._simple(ctl._fail_status, "injected failure\n")
        norm = os.path.normpath(name)
        if not name or norm.startswith("..") or os.path.isabs(norm):
            return self._simple(404, "not found\n")
        if name in ctl.missing:
            return self._simple(404, "not found\n")
        if name in ctl.forbidden:
            return self._simple(403, "forbidden\n")
        path = os.path.join(ctl.root, norm)
        if not os.path.isfile(path):
            return self._simple(404, "not found\n")
        real = os.path.getsize(path)
        size = ctl.claimed_size.get(name, real)
        headers = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes")]
        rng = self.headers.get("Range")
        if rng is None or ctl.ignore_range:
            status, start, end = 200, 0, size
        else:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if not m or (m.group(1) == "" and m.group(2) == ""):
                return self._simple(416, "bad range\n", [("Content-Range", f"bytes */{size}")])
            if m.group(1) == "":
                start, end = max(0, size - int(m.group(2))), size
            else:
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            if start >= size or end <= start:
                return self._simple(416, "range not satisfiable\n", [("Content-Range", f"bytes */{size}")])
            status = 206
        data = b""
        if body:
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(max(0, end - start))  # fewer bytes past the real end
        promised = end - start
        if status == 206 and end > real and ctl.claimed_mode == "short":
            promised = max(0, min(end, real) - start)
            end = start + promised
        if status == 206:
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        headers.append(("Content-Length", str(promised)))
        if action == "drop":
            return self._drop(status, headers, data[:len(data) // 2])
        if body and len(data) < promised:  # "cut": send what there is, then close
            return self._drop(status, headers, data)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # the default listen backlog (5) drops bursts of concurrent connections

    def handle_error(self, request, client_address):
        """A client that hangs up (timeouts, dropped reads) is part of the tests, not an error."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class RangeServer:
    """See the module docstring."""

    def __init__(self, root, idle_timeout: float = 10.0):
        self.root = str(root)
        self.idle_timeout = float(idle_timeout)
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None
        self.reset()

    # -- switches
    def reset(self):
        with self._lock:
            self.requests: list[tuple[str, str, str | None]] = []
            self.missing: set[str] = set()
            self.forbidden: set[str] = set()
            self.claimed_size: dict[str, int] = {}
            self.claimed_mode = "short"
            self.ignore_range = False
            self._fail_left = 0
            self._fail_status = 500
            self._drop_left = 0
            self._stall_left = 0
            self._stall_s = 0.0
            self._only = (None, None)

    def fail_next(self, n: int, status: int = 500, path: str | None = None, method: str | None = None):
        """The next n requests (for `path` / `method` only, if given) get `status`."""
        with self._lock:
            self._fail_left, self._fail_status, self._only = int(n), int(status), (path, method)

    def drop_next(self, n: int, path: str | None = None, method: str | None = None):
        """The next n requests get their headers and half their body, then the connection closes."""
        with self._lock:
            self._drop_left, self._only = int(n), (path, method)

    def stall_next(self, n: int, seconds: float, path: str | None = None, method: str | None = None):
        """The next n requests wait `seconds` before being answered."""
        with self._lock:
            self._stall_left, self._stall_s, self._only = int(n), float(seconds), (path, method)

    def _record(self, method, name, rng):
        with self._lock:
            self.requests.append((method, name, rng))
            path, meth = self._only
            if (path is not None and name != path) or (meth is not None and method != meth):
                return None, 0.0
            stall = 0.0
            if self._stall_left > 0:
                self._stall_left -= 1
                stall = self._stall_s
            if self._fail_left > 0:
                self._fail_left -= 1
                return "fail", stall
            if self._drop_left > 0:
                self._drop_left -= 1
                return "drop", stall
            return None, stall

    def count(self, name: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, n, _ in self.requests
                       if (name is None or n == name) and (method is None or m == method))

    def clear_counts(self):
        with self._lock:
            self.requests = []

    # -- life cycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self):
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.ctl = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-http-server", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

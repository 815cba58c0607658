"""Errors raised by bwloader.

Two kinds, on purpose apart, so that a training script can skip bad files without skipping an
outage:

- `BigWigFormatError` (a `ValueError`): the bytes are not a valid bigWig (wrong magic, a
  truncated or corrupt structure, a block that does not inflate). Retrying will not help.
- `BigWigReadError` (an `OSError`): the file could not be opened or read: missing, no
  permission, too many open files, an I/O error, a file truncated or replaced while open, a
  remote 404 / 403 / timeout / dropped connection. The storage, not the file format, failed;
  retrying or fixing the storage may help. Each is also the matching built-in subclass:
  `FileNotFoundError`, `PermissionError`, `IsADirectoryError`, `TimeoutError`, `ConnectionError`
  (`except FileNotFoundError` catches a missing bigWig), with `errno` set where there is one.
"""
from __future__ import annotations

import errno as _errno


class BigWigFormatError(ValueError):
    """A file is not a valid bigWig (or is truncated/corrupt). The message names the file."""

    def __init__(self, path, message=None):
        if message is None:               # one argument (how torch re-raises a worker's exception)
            path, message = None, path
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(message if path is None else f"{self.path}: {message}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class BigWigReadError(OSError):
    """A file could not be opened or read (an `OSError`, never a format error). The message names
    the file; `path`, `reason` and `errno` (None where the cause has none, e.g. an HTTP status)
    say what happened. Made by `read_error`, which picks the subclass matching the cause."""

    def __init__(self, path, message=None, errno=None):
        if message is None:               # one argument (how torch re-raises a worker's exception)
            path, message = None, path
        super().__init__(errno, message)
        self.path = None if path is None else str(path)
        self.filename = self.path
        self.reason = message

    def __str__(self):
        return self.reason if self.path is None else f"{self.path}: {self.reason}"

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.errno))


class BigWigNotFoundError(BigWigReadError, FileNotFoundError):
    """The file (or URL) does not exist."""


class BigWigPermissionError(BigWigReadError, PermissionError):
    """No permission to read the file (or HTTP 401 / 403)."""


class BigWigIsADirectoryError(BigWigReadError, IsADirectoryError):
    """A directory where a bigWig file was expected."""


class BigWigTimeoutError(BigWigReadError, TimeoutError):
    """A remote read timed out (after the retries)."""


class BigWigConnectionError(BigWigReadError, ConnectionError):
    """A remote connection failed or dropped (after the retries)."""


_BY_ERRNO = {
    _errno.ENOENT: BigWigNotFoundError,
    _errno.EACCES: BigWigPermissionError,
    _errno.EPERM: BigWigPermissionError,
    _errno.EISDIR: BigWigIsADirectoryError,
    _errno.ETIMEDOUT: BigWigTimeoutError,
    _errno.ECONNRESET: BigWigConnectionError,
    _errno.ECONNREFUSED: BigWigConnectionError,
    _errno.ECONNABORTED: BigWigConnectionError,
    _errno.EPIPE: BigWigConnectionError,
}
_BY_KIND = {"missing": BigWigNotFoundError, "denied": BigWigPermissionError, "timeout": BigWigTimeoutError,
            "connection": BigWigConnectionError}


def read_error(path, message, errno=None, kind=None) -> BigWigReadError:
    """The `BigWigReadError` subclass for `errno` (an `errno` code) or `kind` ('missing', 'denied',
    'timeout', 'connection'); a plain `BigWigReadError` for any other cause."""
    cls = _BY_KIND.get(kind) or _BY_ERRNO.get(errno, BigWigReadError)
    if errno is None and cls is BigWigNotFoundError:
        errno = _errno.ENOENT
    elif errno is None and cls is BigWigPermissionError:
        errno = _errno.EACCES
    elif errno is None and cls is BigWigTimeoutError:
        errno = _errno.ETIMEDOUT
    return cls(path, message, errno)

"""Errors raised by bwloader."""


class BigWigFormatError(ValueError):
    """A file is not a valid bigWig (or is truncated/corrupt). The message names the file."""

    def __init__(self, path, message):
        self.path = str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}")

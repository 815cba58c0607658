"""One bigWig file: header and indexes loaded once at open into NumPy arrays."""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np

from ..errors import BigWigFormatError
from ..io import open_source
from .chrom_tree import read_chrom_tree
from .header import (HEADER_SIZE, SUMMARY_SIZE, ZOOM_HEADER_SIZE, parse_header, parse_summary,
                     parse_zoom_headers)
from .rtree import read_rtree_leaves
from .spec import SECTION_TYPES



class BigWigFile:
    """A bigWig opened for block access.

    Chromosome positions map to one linear *key* per file: ``chrom_offsets[chrom_id] + base``.
    Data blocks are described by ``block_start_key``/``block_end_key`` (sorted by start),
    ``block_offset`` and ``block_size``.
    """

    def __init__(self, path):
        self.path = str(path)
        from urllib.parse import urlsplit
        from ..io import is_url
        self.name = Path(urlsplit(self.path).path if is_url(self.path) else self.path).name
        self._source = open_source(self.path)
        try:
            self._load()
        except BaseException:
            self._source.close()
            raise

    def _load(self):
        src, path = self._source, self.path
        if src.size == 0:
            raise BigWigFormatError(path, "empty file (0 bytes)")
        head = src.pread(0, min(src.size, HEADER_SIZE), "header")
        h = self.header = parse_header(path, head, src.size)
        self.byteorder = h.byteorder
        self.version = h.version
        self.compressed = h.compressed
        self.uncompress_buf_size = h.uncompress_buf_size
        self.zoom_levels = parse_zoom_headers(
            path, h, src.pread(HEADER_SIZE, h.zoom_levels * ZOOM_HEADER_SIZE, "zoom headers"), src.size)
        self.summary = None
        if h.total_summary_offset:
            self.summary = parse_summary(h, src.pread(h.total_summary_offset, SUMMARY_SIZE, "total summary"))

        names, ids, sizes = read_chrom_tree(src, h.chrom_tree_offset, h.byteorder)
        self.chrom_names = names
        self.chrom_lengths = sizes
        self.chrom_sizes = dict(zip(names, sizes.tolist()))
        self.chrom_ids = {n: i for i, n in enumerate(names)}
        self.chrom_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.total_length = int(self.chrom_offsets[-1])

        leaves = read_rtree_leaves(src, h.full_index_offset, h.byteorder)
        n_chroms = len(names)
        if len(leaves) and (leaves["start_chrom"].max() >= n_chroms or leaves["end_chrom"].max() >= n_chroms):
            raise BigWigFormatError(path, "R-tree refers to a chromosome id missing from the chromosome tree")
        if len(leaves) and ((leaves["offset"] > src.size).any() or (leaves["size"] > src.size).any()):
            raise BigWigFormatError(path, "a data block lies past the end of the file: truncated or corrupt")
        off = leaves["offset"].astype(np.int64)
        size = leaves["size"].astype(np.int64)
        if len(leaves) and int((off + size).max()) > src.size:
            raise BigWigFormatError(path, "a data block lies past the end of the file: truncated or corrupt")
        co = self.chrom_offsets
        skey = co[leaves["start_chrom"].astype(np.int64)] + leaves["start_base"].astype(np.int64)
        ekey = co[leaves["end_chrom"].astype(np.int64)] + leaves["end_base"].astype(np.int64)
        skey = np.minimum(skey, self.total_length)
        ekey = np.clip(ekey, skey, self.total_length)
        order = np.argsort(skey, kind="stable")
        self.block_start_key = skey[order]
        self.block_end_key = ekey[order]
        self.block_offset = off[order]
        self.block_size = size[order]
        if not self.compressed and len(size) and size.max() > (1 << 30):
            raise BigWigFormatError(path, "implausibly large uncompressed data block")

    @property
    def n_blocks(self) -> int:
        return len(self.block_offset)

    @property
    def local_fd(self):
        """The open descriptor of a local file (for compiled preads), None for a URL or once closed."""
        return getattr(self._source, "fd", None)

    @property
    def file_size(self) -> int:
        return self._source.size

    def read_blocks(self, block_indices):
        """Compressed bytes of the given blocks (indices into the block arrays), coalesced reads."""
        from ..io import read_blocks
        idx = np.asarray(block_indices, dtype=np.int64)
        return read_blocks(self._source, self.block_offset[idx], self.block_size[idx])

    def section_type_counts(self, max_blocks: int | None = None) -> dict[str, int]:
        """Decode (up to `max_blocks` evenly spread) blocks and count sections by type."""
        from ..index import FlatIndex
        from ..stages.fetch import BlockFetcher, BlockTable
        from ..stages.parse import parse_section_headers
        n = self.n_blocks
        idx = np.arange(n) if max_blocks is None or n <= max_blocks else \
            np.unique(np.linspace(0, n - 1, max_blocks).astype(np.int64))
        counts = {v: 0 for v in SECTION_TYPES.values()}
        index = FlatIndex.build([self])
        fetcher = BlockFetcher(1)
        try:
            for chunk in np.array_split(idx, max(1, len(idx) // 4096)):
                table = BlockTable.from_index(index, chunk)
                words = fetcher.fetch([self], table)
                secs = parse_section_headers(words, table.big_endian, lambda b, t=table: (self.path, int(t.offset[b])))
                for t, c in zip(*np.unique(secs.type, return_counts=True)):
                    counts[SECTION_TYPES[int(t)]] += int(c)
        finally:
            fetcher.close()
        return {k: v for k, v in counts.items() if v}

    @property
    def readable_in_place(self) -> bool:
        """True for a local, uncompressed, little-endian file on a little-endian machine: its data
        blocks can be searched where they lie, in a memory map (`memory_map`), without a copy."""
        return (not self.compressed and self.byteorder == "<" and sys.byteorder == "little"
                and self.local_fd is not None)

    def memory_map(self) -> np.ndarray:
        """The whole file as a read-only uint8 array, mapped on first use and unmapped at `close`.
        Callers check `still_whole()` before reading it: a mapped file truncated while open would
        fault the process (SIGBUS) instead of raising."""
        m = self.__dict__.get("_map")
        if m is None:
            with self.__dict__.setdefault("_map_lock", threading.Lock()):
                m = self.__dict__.get("_map")
                if m is None:
                    import mmap
                    fd = self.local_fd
                    if fd is None:
                        raise ValueError(f"{self.path}: only local files can be memory-mapped")
                    mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                    m = self._map = np.frombuffer(mm, np.uint8)
                    self._mm = mm
        return m

    def still_whole(self) -> bool:
        """False when the file is now shorter than when it was opened (truncated while open)."""
        fd = self.local_fd
        if fd is None:
            return True
        try:
            return os.fstat(fd).st_size >= self.file_size
        except OSError:
            return False

    def close(self):
        mm = self.__dict__.pop("_mm", None)
        self.__dict__.pop("_map", None)
        if mm is not None:
            try:
                mm.close()
            except BufferError:      # a batch still holds a view: the mapping goes with it
                pass
        self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"BigWigFile({self.path!r}, version={self.version}, chroms={len(self.chrom_names)}, "
                f"blocks={self.n_blocks}, zoom_levels={len(self.zoom_levels)})")

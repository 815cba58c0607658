"""One bigWig file: header and indexes loaded once at open into NumPy arrays."""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from ..errors import BigWigFormatError
from ..io import open_source
from .chrom_tree import ChromTable, read_chrom_tree
from .header import (HEADER_SIZE, SUMMARY_SIZE, ZOOM_HEADER_SIZE, parse_header, parse_summary,
                     parse_zoom_headers)
from .rtree import read_rtree_leaves, rtree_bytes_estimate
from .spec import SECTION_TYPES



MADV_HUGEPAGE = 14               # Linux madvise advice
HUGE_PAGE = 2 << 20


def _map_file(fd: int, size: int, path: str, huge_pages: bool = False) -> np.ndarray:
    """A read-only shared map of `size` bytes of `fd` as a uint8 array, unmapped when the array and
    every view of it are gone. libc's mmap, not Python's: that one keeps a duplicate descriptor per
    map, which thousands of mapped files would add to the process's open files.

    With `huge_pages` (Linux), the map asks for transparent huge pages: the parts of the file not
    yet in the page cache are then read in 2 MiB pages, which the map maps whole, so random reads
    across many files miss the TLB far less (3-8% faster reads of transcoded files here). Parts
    already cached in small pages stay as they are. Only worth it for files that stay in memory:
    each first touch reads 2 MiB."""
    import ctypes
    import errno as _errno
    import weakref
    from ..errors import read_error
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    prot_read, map_shared = 1, 1
    addr = libc.mmap(None, max(int(size), 1), prot_read, map_shared, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno() or _errno.EIO
        raise read_error(path, f"cannot memory-map the file: {os.strerror(err)}", err)
    if huge_pages and size >= HUGE_PAGE and sys.platform.startswith("linux"):
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise(addr, int(size), MADV_HUGEPAGE)       # advice: a kernel without THP says no
    buf = (ctypes.c_uint8 * max(int(size), 1)).from_address(addr)
    weakref.finalize(buf, libc.munmap, addr, max(int(size), 1))
    arr = np.frombuffer(buf, np.uint8, count=int(size))
    arr.setflags(write=False)
    return arr


class _Windows:
    """A source whose reads at open (header, zoom headers, summary, chromosome tree, R-tree nodes:
    dozens of small reads) come from a few windows read in one go each."""

    HEAD_BYTES = 64 << 10
    MAX_WINDOW = 16 << 20

    def __init__(self, source):
        self.source = source
        self.path = source.path
        self.size = source.size
        self._windows = []
        self.add(0, self.HEAD_BYTES, "header")

    def add(self, offset: int, size: int, what: str):
        size = min(int(size), self.size - int(offset), self.MAX_WINDOW)
        if offset >= 0 and size > 0:
            self._windows.append((int(offset), self.source.pread(int(offset), size, what)))

    def prefetch_rtree(self, offset: int, bo: str):
        """The window an R-tree at `offset` most likely lies in (from its header's item count)."""
        import struct
        from .spec import RTREE_HEADER_SIZE, RTREE_MAGIC
        if not 0 <= offset <= self.size - RTREE_HEADER_SIZE:
            return                               # the walk reports it
        magic, block_size, item_count = struct.unpack_from(bo + "IIQ", self.pread(offset, 16, "R-tree index header"))
        if magic == RTREE_MAGIC and 0 < block_size and item_count < self.size:
            self.add(offset, rtree_bytes_estimate(item_count, block_size), "R-tree index")

    def pread(self, offset: int, size: int, what: str = "data"):
        for start, data in self._windows:
            if start <= offset and offset + size <= start + len(data):
                return data[offset - start:offset - start + size]
        return self.source.pread(offset, size, what)


class BigWigFile:
    """A bigWig opened for block access.

    Chromosome positions map to one linear *key* per file: ``chrom_offsets[chrom_id] + base``.
    Data blocks are described by ``block_start_key``/``block_end_key`` (sorted by start),
    ``block_offset`` and ``block_size``, in the narrowest dtypes that hold them (uint32 for keys
    under 4 Gb and offsets under 4 GiB, else int64: cast before subtracting). In a collection
    they are views of the collection's `FlatIndex` arrays. The chromosome attributes
    (``chrom_names``, ``chrom_sizes``, ``chrom_ids``, ``chrom_lengths``, ``chrom_offsets``) come
    from a `ChromTable` shared by every file with the same chromosomes: read them, never change them.
    """

    def __init__(self, path):
        self.path = str(path)
        from urllib.parse import urlsplit
        from ..io import is_url
        self.name = os.path.basename(urlsplit(self.path).path if is_url(self.path) else self.path)
        self._source = open_source(self.path)
        try:
            pin = getattr(self._source, "pinned", None)
            if pin is None:
                self._load()
            else:
                with pin():                  # one descriptor for every read of the open
                    self._load()
        except BaseException:
            self._source.close()
            raise

    def _load(self):
        path = self._source.path
        src = _Windows(self._source)
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
        self.chrom_table = ChromTable.of(names, sizes)

        src.prefetch_rtree(h.full_index_offset, h.byteorder)
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
        co = self.chrom_offsets.astype(np.int64)
        skey = co[leaves["start_chrom"].astype(np.int64)] + leaves["start_base"].astype(np.int64)
        ekey = co[leaves["end_chrom"].astype(np.int64)] + leaves["end_base"].astype(np.int64)
        skey = np.minimum(skey, self.total_length)
        ekey = np.clip(ekey, skey, self.total_length)
        if not self.compressed and len(size) and size.max() > (1 << 30):
            raise BigWigFormatError(path, "implausibly large uncompressed data block")
        order = np.argsort(skey, kind="stable")
        key_dt = np.uint32 if self.total_length < (1 << 32) else np.int64
        off_dt = np.uint32 if src.size < (1 << 32) else np.int64
        self.block_start_key = skey[order].astype(key_dt)
        self.block_end_key = ekey[order].astype(key_dt)
        self.block_offset = off[order].astype(off_dt)
        self.block_size = size[order].astype(off_dt)
        self.block_ends_rise = bool((self.block_end_key[1:] >= self.block_end_key[:-1]).all())

    # -- chromosomes (a shared ChromTable)
    @property
    def chrom_names(self) -> list:
        return self.chrom_table.names

    @property
    def chrom_sizes(self) -> dict:
        return self.chrom_table.sizes

    @property
    def chrom_ids(self) -> dict:
        return self.chrom_table.ids

    @property
    def chrom_lengths(self) -> np.ndarray:
        return self.chrom_table.lengths

    @property
    def chrom_offsets(self) -> np.ndarray:
        return self.chrom_table.offsets

    @property
    def total_length(self) -> int:
        return self.chrom_table.total_length

    def adopt_blocks(self, index, t: int):
        """Keep views of `index`'s block arrays (rows of track `t`) instead of this file's own."""
        a, b = int(index.file_block_first[t]), int(index.file_block_first[t + 1])
        self.block_start_key = index.block_start[a:b]
        self.block_end_key = index.block_end[a:b]
        self.block_offset = index.block_offset[a:b]
        self.block_size = index.block_size[a:b]

    @property
    def n_blocks(self) -> int:
        return len(self.block_offset)

    @property
    def source(self):
        """The byte source (`io.LocalSource` or `io.RemoteSource`)."""
        return self._source

    @property
    def is_local(self) -> bool:
        """True for a local file (read by compiled preads through the descriptor pool)."""
        from ..io import LocalSource
        return isinstance(self._source, LocalSource)

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
                and self.is_local)

    def memory_map(self, huge_pages: bool = False) -> np.ndarray:
        """The whole file as a read-only uint8 array, mapped on first use (asking for huge pages
        with `huge_pages`: see `_map_file`); unmapped once `close`
        has dropped it and no batch holds a view of it any more. The map holds no descriptor
        (mapped through the pool's, which may close afterwards: thousands of mapped files fit in
        a low `ulimit -n`). Callers check `still_whole()` before reading it: a mapped file
        truncated while open would fault the process (SIGBUS) instead of raising."""
        m = self.__dict__.get("_map")
        if m is None:
            with self.__dict__.setdefault("_map_lock", threading.Lock()):
                m = self.__dict__.get("_map")
                if m is None:
                    if not self.is_local:
                        raise ValueError(f"{self.path}: only local files can be memory-mapped")
                    with self._source.pinned() as lease:     # the pool's descriptor, open while mapping
                        m = self._map = _map_file(int(lease.fds[0]), self.file_size, self.path, huge_pages)
        return m

    def still_whole(self) -> bool:
        """False when the file is now shorter than when it was opened (truncated while open)."""
        if not self.is_local:
            return True
        try:
            return self._source.current_size() >= self.file_size
        except OSError:
            return False

    def close(self):
        self.__dict__.pop("_map", None)       # unmapped when the last view of it goes
        self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"BigWigFile({self.path!r}, version={self.version}, chroms={len(self.chrom_names)}, "
                f"blocks={self.n_blocks}, zoom_levels={len(self.zoom_levels)})")

"""Fetch: read the batch's data blocks and inflate them, each into its slot of one word buffer.

In: a `BlockTable` (which file, where, how big, which slot). Out: `Words`, the inflated blocks as
native-order uint32 words (every field of a section is a 4-byte word; big-endian blocks are
swapped word by word).

- CPU (`BlockFetcher`): threads fill contiguous chunks of slots, so no single-threaded
  concatenation is needed afterwards. Local files take the compiled path (`fetch_native`: pread
  and inflate in one numba call per chunk, no GIL held); URLs and blocks that path hands back take
  the Python path here (coalesced preads, libdeflate / zlib-ng from Python), which also raises the
  precise error for a corrupt block.
- CUDA (`fetch_cuda`): payloads packed into a pinned staging buffer, one host-to-device copy,
  nvCOMP batched raw Deflate into the same slots on the device.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import struct

import deflate
import numpy as np

from ..errors import BigWigFormatError
from ..io import available_memory
from ..format.spec import ITEM_BYTES, SECTION_HEADER_FORMAT, SECTION_HEADER_SIZE


@dataclass(frozen=True, eq=False)
class Words:
    """Inflated blocks, each padded to whole words, in one uint32 array (native order).

    `words` is usually the fetcher's slot buffer. When blocks are read in place (`fetch_in_place`)
    it is a view spanning every memory region the batch's blocks lie in (the slot buffer and the
    files' memory maps); `keep` holds those regions alive for as long as the Words are used, and
    the kernels only ever read inside the blocks."""
    words: np.ndarray          # uint32
    block_start: np.ndarray    # int64: first word of each block
    block_nbytes: np.ndarray   # int64: true byte length of each block
    keep: tuple = ()
    covered: np.ndarray | None = None   # int64: per block, the largest key its kept items reach
                                        # (cache.WHOLE: all); None: not recorded


@dataclass(frozen=True, eq=False)
class BlockTable:
    """The blocks of a batch, one row each: where they lie, how they inflate, and their slot.

    A slot holds a block's inflated bytes. uncompressBufSize bounds them, but a forged header can
    make it huge: slots are also capped by a generous ratio of the compressed size, and the rare
    block that inflates past its slot is placed after the others. Partial inflate (compressed
    blocks needed only up to `need_pos`) stops once the items before it are out."""
    block: np.ndarray          # int64: FlatIndex block id
    file: np.ndarray           # int64: file (track) index
    local: np.ndarray          # int64: block index within its file
    fd: np.ndarray             # int32: NOT_LEASED (the fetcher leases descriptors per chunk from the
                               # pool, `io.Lease`), or IN_MEMORY (`offset` is the address of the bytes)
    offset: np.ndarray         # int64: byte offset in the file
    size: np.ndarray           # int64: bytes on disk
    start_key: np.ndarray      # int64: the block's first key (file key space)
    end_key: np.ndarray        # int64: key past its last base
    compressed: np.ndarray     # bool
    uncompress_buf_size: np.ndarray  # int64: the file's bound on an inflated block (0: stored raw)
    big_endian: np.ndarray     # bool
    need_key: np.ndarray | None  # int64: largest key needed, in the file's key space (None: whole)
    partial: np.ndarray        # bool: inflate only a prefix
    chrom: np.ndarray          # int64: file chromosome id of the block's first base
    need_pos: np.ndarray       # int64: need_key as a position on that chromosome
    want0: np.ndarray          # int64: bytes the first partial inflate call asks for
    capacity: np.ndarray       # int64: slot bytes
    slot: np.ndarray           # int64: first word of each slot
    total_words: int
    all_local: bool

    def __len__(self):
        return len(self.file)

    @classmethod
    def from_index(cls, index, blocks, need_key=None, partial: bool = True) -> "BlockTable":
        """Rows for FlatIndex block ids `blocks`, from the index's flat arrays in a few vector
        operations (no loop over files). `need_key` (per block, in its file's key space) enables
        partial inflate."""
        blocks = np.asarray(blocks, np.int64)
        files = index.block_file(blocks)
        n = len(blocks)
        compressed = index.file_compressed[files]
        ubs = index.file_uncompress_buf_size[files]
        size = index.block_size[blocks].astype(np.int64)
        sk = index.block_start[blocks].astype(np.int64)
        ek = index.block_end[blocks].astype(np.int64)
        want = dict(partial=np.zeros(n, bool), chrom=np.zeros(n, np.int64), need_pos=np.zeros(n, np.int64),
                    want0=np.zeros(n, np.int64))
        if need_key is not None and partial and n:
            g = index.chrom_row_of_keys(files, sk)              # chromosome of the block start
            want["chrom"] = g - index.file_chrom_first[files]
            want["need_pos"] = need_key - index.chrom_key_base[g]
            part, want["want0"] = partial_plan(need_key, sk, ek, ubs)
            want["partial"] = compressed & part
        capacity = np.where(compressed, np.minimum(ubs, size * SLOT_RATIO + 4096), size)
        slot_words = (capacity + 3) // 4
        slot = np.zeros(n, np.int64)
        if n:
            slot[1:] = np.cumsum(slot_words)[:-1]
        return cls(block=blocks, file=files, local=blocks - index.file_block_first[files], fd=np.full(n, NOT_LEASED, np.int32),
                   offset=index.block_offset[blocks].astype(np.int64), size=size, start_key=sk, end_key=ek,
                   compressed=compressed, uncompress_buf_size=ubs, big_endian=index.file_big_endian[files],
                   need_key=need_key, capacity=capacity, slot=slot,
                   total_words=int(slot_words.sum()), all_local=index.all_local, **want)

    def take(self, rows) -> "BlockTable":
        """The given rows, keeping their slots (and the whole buffer's size)."""
        pick = {k: getattr(self, k)[rows] for k in ("block", "file", "local", "fd", "offset", "size", "start_key",
                                                      "end_key", "compressed",
                                                      "uncompress_buf_size", "big_endian", "partial", "chrom",
                                                      "need_pos", "want0", "capacity", "slot")}
        return replace(self, need_key=None if self.need_key is None else self.need_key[rows], **pick)

    def whole(self) -> "BlockTable":
        """The same rows inflated whole (no partial inflate)."""
        return replace(self, partial=np.zeros(len(self), bool))


def inflate_one(f, data, offset):
    """Decompressed bytes of one block of file `f` (raw bytes when the file is uncompressed)."""
    if not f.compressed:
        return data
    try:
        return deflate.zlib_decompress(data, f.uncompress_buf_size)
    except deflate.DeflateError:
        raise BigWigFormatError(
            f.path, f"data block at offset {offset} ({len(data)} bytes) does not inflate: corrupt zlib "
            f"stream or larger than uncompressBufSize ({f.uncompress_buf_size})") from None


IN_MEMORY, NOT_LEASED = -1, -2     # BlockTable.fd values that are not descriptors
SLOT_RATIO = 64     # slot bytes per compressed byte before a block counts as oversized
# Past this fraction of a block, libdeflate's whole-block inflate (~2.0 ns per output byte here) beats
# zlib-ng's streaming one (~2.5 ns) on the compiled path.
PARTIAL_MAX_FRACTION = 0.8
PARTIAL_FIRST_GUESS = 0.92     # of frac x uncompressBufSize: the first inflate call's output


def _zlib_ng():
    try:
        from zlib_ng import zlib_ng
        return zlib_ng
    except ImportError:
        return None


def inflate_partial(zng, f, data, offset, need_key, block_start_key, block_end_key):
    """Inflate only the part of a one-section block whose items start before `need_key` (file key
    space): the rest of the block is never inflated. The section's item count in the returned
    bytes is patched to the items kept, so the parser sees a consistent (shorter) section.
    Falls back to the whole block when the block holds more than one section."""
    ubs = f.uncompress_buf_size
    span = max(int(block_end_key - block_start_key), 1)
    frac = min(max((need_key - block_start_key) / span, 0.0), 1.0)
    d = zng.decompressobj()
    try:
        out = d.decompress(data, max(512, int(frac * ubs * 1.1) + 256))
        if len(out) < SECTION_HEADER_SIZE:
            return _check_size(f, offset, _finish(d, out, ubs))
        bo = f.byteorder
        chrom, sstart, send, step, span_, typ, _res, count = struct.unpack_from(bo + SECTION_HEADER_FORMAT, out, 0)
        isz = ITEM_BYTES[typ] if 1 <= typ < len(ITEM_BYTES) else None
        if isz is None or chrom >= len(f.chrom_names):
            return _check_size(f, offset, _finish(d, out, ubs))             # let the parser report the problem
        total = SECTION_HEADER_SIZE + count * isz
        need_pos = need_key - int(f.chrom_offsets[chrom])
        if typ == 3:
            n_need = min(count, max(0, -(-(need_pos - sstart) // max(step, 1)))) if step else count
        else:
            n_need = None
        while True:
            have = (min(len(out), total) - SECTION_HEADER_SIZE) // isz
            if have >= count:
                return _check_size(f, offset, _finish(d, out, ubs))
            if n_need is not None:
                if have >= n_need:
                    break
                want = SECTION_HEADER_SIZE + n_need * isz
            else:
                if have > 0:
                    last = struct.unpack_from(bo + "I", out, SECTION_HEADER_SIZE + (have - 1) * isz)[0]
                    if last >= need_pos:
                        break
                fpos = min(max((need_pos - sstart) / max(send - sstart, 1), 0.0), 1.0)
                want = max(SECTION_HEADER_SIZE + int(fpos * count * 1.15 + 32) * isz, len(out) * 2)
            more = d.decompress(d.unconsumed_tail, max(want - len(out), 64))
            if not more:
                return _check_size(f, offset, _finish(d, out, ubs))
            out += more
        _check_size(f, offset, out)
        keep = (len(out) - SECTION_HEADER_SIZE) // isz
        cut = bytearray(out[:SECTION_HEADER_SIZE + keep * isz])
        struct.pack_into(bo + "H", cut, 22, keep)
        return cut
    except zng.error:
        raise BigWigFormatError(f.path, f"data block at offset {offset} ({len(data)} bytes) does not inflate: "
                                        "corrupt zlib stream") from None


def _check_size(f, offset, out):
    if len(out) > f.uncompress_buf_size:
        raise BigWigFormatError(f.path, f"data block at offset {offset} inflates to more than uncompressBufSize "
                                        f"({f.uncompress_buf_size} bytes)")
    return out


def _finish(d, out, limit):
    """The rest of the stream, at most `limit` bytes in all (one more shows the block is too big)."""
    rest = d.decompress(d.unconsumed_tail, max(limit + 1 - len(out), 1))
    return out + rest if rest else out


class BlockFetcher:
    """Reads and inflates blocks into slots of a buffer (its own reusable one by default) on CPU
    threads.

    Local files go through the compiled path (`fetch_native`: pread + inflate per thread, GIL
    released) when `native` is set and the path is available; URLs and the blocks the compiled
    path hands back go through Python (`_fetch_blocks`), which also raises the precise error of a
    corrupt block. The block cache, memory maps and the GPU build on this (`fetch_batch`)."""

    def __init__(self, n_threads: int, native: bool = True):
        self.n_threads = max(1, int(n_threads))
        self.native = bool(native)
        self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="bwloader-inflate") \
            if self.n_threads > 1 else None
        self._buf = np.zeros(0, np.uint32)
        self.bytes_read = 0
        self.blocks_in_place = 0    # blocks read where they lie (memory-mapped uncompressed files)
        self.blocks_cached = 0      # blocks served from the block cache
        self.blocks_native = 0      # blocks finished by the compiled path
        self.blocks_python = 0      # blocks read and inflated in Python

    def fetch(self, files, table: BlockTable, buf: np.ndarray | None = None) -> Words:
        """Every block of `table` into its slot of `buf` (default: the fetcher's own reusable
        buffer, grown to `table.total_words`). `files`: the collection's BigWigFiles, indexed by
        `table.file`. A block that inflates past its slot goes to a buffer of its own (the Words
        then span both)."""
        n = len(table)
        buf = self.buffer(table.total_words) if buf is None else buf
        nbytes = np.zeros(n, np.int64)
        overflow: dict = {}
        todo = np.arange(n)
        if n and self.native and table.all_local and native_available():
            todo = self._fetch_native(files, table, buf, nbytes)
        self.blocks_native += n - len(todo)
        self.blocks_python += len(todo)
        if len(todo):
            zng = _zlib_ng() if table.partial.any() else None
            ks = todo.tolist()
            n_chunks = self.n_threads if (self._pool is not None and len(ks) >= 2 * self.n_threads) else 1
            bounds = [len(ks) * i // n_chunks for i in range(n_chunks + 1)]
            args = [(ks[a:b], files, table, buf, nbytes, zng, overflow) for a, b in zip(bounds[:-1], bounds[1:])]
            if n_chunks == 1:
                read = [_fetch_blocks(*args[0])]
            else:
                read = [f.result() for f in [self._pool.submit(_fetch_blocks, *x) for x in args]]
            self.bytes_read += sum(read)
        words = buf[:max(table.total_words, 1)] if buf is self._buf else buf
        if not overflow:
            return Words(words, table.slot, nbytes)
        extra = np.zeros(sum((len(out) + 3) // 4 for out, _ in overflow.values()), np.uint32)
        view, base = span_view([words, extra])
        start = table.slot + (words.ctypes.data - base) // 4
        pos = 0
        for k, (out, byteorder) in sorted(overflow.items()):
            _place(out, byteorder, pos, extra, nbytes, k)
            start[k] = (extra.ctypes.data - base) // 4 + pos
            pos += (len(out) + 3) // 4
        return Words(view, start, nbytes, keep=(words, extra))

    def _fetch_native(self, files, table: BlockTable, buf, nbytes):
        """Compiled pread + inflate over chunks of blocks on the pool; the blocks it hands back."""
        from . import fetch_native
        status = np.empty(len(table), np.uint8)
        self.bytes_read += run_native(self._pool, self.n_threads, table, buf, nbytes, status, files=files)
        return np.flatnonzero(status != fetch_native.OK)

    def buffer(self, n_words: int) -> np.ndarray:
        """The reusable word buffer, grown to at least `n_words` (kept: no page faults per batch)."""
        if len(self._buf) < n_words:
            self._buf = np.empty(int(n_words * 1.25) + 1024, np.uint32)
        return self._buf

    def map(self, fn, items) -> list:
        """[fn(x) for x in items] on the pool (inline for one item or without a pool)."""
        items = list(items)
        if self._pool is None or len(items) < 2:
            return [fn(x) for x in items]
        return [f.result() for f in [self._pool.submit(fn, x) for x in items]]

    def map_here(self, fn, items) -> list:
        """`map`, with the calling thread taking the first item itself instead of waiting idle:
        for work that holds no pooled descriptors (the pool's budget counts its threads only)."""
        items = list(items)
        if self._pool is None or len(items) < 2:
            return [fn(x) for x in items]
        futures = [self._pool.submit(fn, x) for x in items[1:]]
        try:
            first = fn(items[0])
        except BaseException:
            from concurrent.futures import wait
            wait(futures)                              # never leave a share running past the call
            raise
        return [first, *(f.result() for f in futures)]

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._buf = np.zeros(0, np.uint32)


def run_native(pool, n_threads, table: BlockTable, buf, nbytes, status, files=None) -> int:
    """`fetch_native.fetch_range` over chunks of the table's blocks, on `pool` when there is one.
    More chunks than threads: partial inflate makes block costs uneven.

    With `files` (the collection's BigWigFiles, indexed by `table.file`) each chunk leases the
    descriptors of its files from the pool (`io.Lease`) for as long as the compiled code reads
    them; without, `table.fd` is used as it is (blocks IN_MEMORY, for timing inflate alone)."""
    from . import fetch_native
    from ..io import HANDLES, Lease, lease_bounds
    n = len(table)
    slot_byte = table.slot * 4
    n_chunks = min(4 * n_threads, max(1, n // 4)) if pool is not None else 1
    bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64).tolist()
    t = table
    fd = t.fd
    if files is not None:
        bounds = lease_bounds(t.file, bounds, HANDLES.max_lease(n_threads))
        fd = np.empty(n, np.int32)

    def run(a, b):
        stage = np.empty(int(t.size[a:b].max()), np.uint8)
        strm = np.zeros(fetch_native.ZNG_STREAM_BYTES, np.uint8)
        args = (t.offset, t.size, t.compressed, t.capacity, slot_byte, t.partial, t.chrom, t.need_pos, t.want0,
                t.big_endian, buf, stage, strm, nbytes, status)
        if files is None:
            return fetch_native.fetch_range(a, b, fd, *args)
        with Lease(files, t.file[a:b]) as lease:      # the descriptors stay open while compiled code reads
            fd[a:b] = lease.fds
            return fetch_native.fetch_range(a, b, fd, *args)

    pairs = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if len(pairs) == 1:
        return run(*pairs[0])
    return sum(f.result() for f in [pool.submit(run, a, b) for a, b in pairs])


def native_available() -> bool:
    """True when the compiled fetch path can run here (see `fetch_native.available`)."""
    try:
        from . import fetch_native
    except ImportError:           # numba missing
        return False
    return fetch_native.available()


def partial_plan(need, block_start, block_end, ubs):
    """Per block (keys in one key space): whether to inflate it partially, and how many bytes the
    first inflate call asks for."""
    frac = np.clip((need - block_start) / np.maximum(block_end - block_start, 1), 0.0, 1.0)
    partial = (need < block_end) & (frac < PARTIAL_MAX_FRACTION)
    # first guess a little short: the items it yields then estimate the rest closely (fetch_native._enough)
    return partial, np.maximum(512, (frac * ubs * PARTIAL_FIRST_GUESS).astype(np.int64))


def _fetch_blocks(ks, files, table: BlockTable, buf, nbytes, zng, overflow):
    """Python path for the blocks `ks` (in order): coalesced preads, inflate, place."""
    read = 0
    i = 0
    fidx, local = table.file, table.local
    slot_words = (table.capacity + 3) // 4
    while i < len(ks):  # one run of blocks of the same file
        j = i
        while j < len(ks) and fidx[ks[j]] == fidx[ks[i]]:
            j += 1
        run = ks[i:j]
        f = files[int(fidx[run[0]])]
        raw = f.read_blocks(local[run])
        for k, data in zip(run, raw):
            read += len(data)
            if zng is not None and table.partial[k]:
                out = inflate_partial(zng, f, data, int(table.offset[k]), int(table.need_key[k]),
                                      int(table.start_key[k]), int(table.end_key[k]))
            else:
                out = inflate_one(f, data, int(table.offset[k]))
            if (len(out) + 3) // 4 > slot_words[k]:
                overflow[k] = (out, f.byteorder)      # dict item assignment is atomic under the GIL
            else:
                _place(out, f.byteorder, int(table.slot[k]), buf, nbytes, k)
        i = j
    return read


def _place(out, byteorder, w0, buf, nbytes, k):
    """Copy one inflated block into its slot as native uint32 words."""
    m = len(out)
    nbytes[k] = m
    nw = m // 4
    dt = ">u4" if byteorder == ">" else "<u4"
    buf[w0:w0 + nw] = np.frombuffer(out, dt, nw)
    if m % 4:  # a malformed tail; keep its bytes so bounds checks see them
        tail = bytes(out[nw * 4:]) + b"\0" * (4 - m % 4)
        buf[w0 + nw] = np.frombuffer(tail, dt)[0]


# -- reading in place ---------------------------------------------------------------------------
class MemoryMaps:
    """Read-only memory maps of a collection's files that can be read in place (local,
    uncompressed, little-endian: `BigWigFile.readable_in_place`), mapped on first use, with the
    address of each. Shared by every processor of the collection; thread-safe."""

    HUGE_PAGES_MEMORY_SHARE = 0.5     # in-place files up to this share of available memory: huge pages

    def __init__(self, files):
        self.files = files
        self._huge_pages = None       # decided when the first file is mapped
        self.address = np.full(len(files), -1, np.int64)
        self._arrays: dict = {}
        self._place = None            # `words_of`'s answer for the maps made so far
        import threading
        self._lock = threading.Lock()

    def addresses(self, file_ids: np.ndarray) -> np.ndarray:
        """Base address of each given file's map (mapping the ones not mapped yet). A file now
        shorter than when it was opened raises `BigWigReadError` (reading its map would fault)."""
        ids = np.unique(file_ids)
        for f in ids[self.address[ids] < 0].tolist():
            with self._lock:
                if self.address[f] < 0:
                    arr = self.files[f].memory_map(huge_pages=self.huge_pages)
                    self._arrays[f] = arr
                    self.address[f] = arr.ctypes.data
                    self._place = None
        for f in ids.tolist():
            if not self.files[f].still_whole():
                import errno
                from ..errors import read_error
                raise read_error(self.files[f].path, f"the file was truncated while open (it is now shorter than "
                                                     f"the {self.files[f].file_size} bytes it had)", errno.EIO)
        return self.address[file_ids]

    @property
    def huge_pages(self) -> bool:
        """Map with huge pages when every file that can be read in place fits, together, in half
        the memory now available: such files stay cached, and 2 MiB pages spare the TLB. A
        collection bigger than memory keeps small pages, whose first touches read less."""
        if self._huge_pages is None:
            total = sum(f.file_size for f in self.files if f.readable_in_place)
            avail = available_memory()
            self._huge_pages = avail is not None and total <= self.HUGE_PAGES_MEMORY_SHARE * avail
        return self._huge_pages

    def regions(self, file_ids) -> list:
        return [self._arrays[f] for f in np.unique(file_ids).tolist()]

    def words_of(self, file_ids) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(one uint32 view spanning every map so far, the word of the view where each file's
        byte 0 lies (-1 for files not mapped), the maps to hold while reading), with the given
        files mapped first. The view is made again only when a file is newly mapped."""
        self.addresses(file_ids)
        place = self._place
        if place is None:
            with self._lock:
                items = list(self._arrays.items())
                arrays = tuple(a for _, a in items)
                view, base = span_view(arrays)
                word = np.full(len(self.files), -1, np.int64)
                for f, a in items:
                    word[f] = (a.ctypes.data - base) // 4
                place = self._place = (view, word, arrays)
        return place


def compact(w: Words) -> Words:
    """The same blocks in one contiguous array of their own (for a copy to the GPU): a copy only
    when `w` spans several regions (an overflowed block, say); otherwise `w` itself."""
    if not w.keep:
        return w
    sizes = (w.block_nbytes + 3) // 4
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = np.zeros(max(int(sizes.sum()), 1), np.uint32)
    for k in range(len(sizes)):
        out[start[k]:start[k] + sizes[k]] = w.words[w.block_start[k]:w.block_start[k] + sizes[k]]
    return Words(out, start, w.block_nbytes)


def span_view(arrays) -> tuple[np.ndarray, int]:
    """One uint32 view from the lowest to the highest address of `arrays` (all 4-byte aligned) and
    its base address. Nothing is copied or touched: the addresses between the arrays may not be
    mapped, so only words inside the arrays may be read through it."""
    import ctypes
    lo = min(a.ctypes.data for a in arrays)
    hi = max(a.ctypes.data + a.nbytes for a in arrays)
    n = max((hi - lo + 3) // 4, 1)
    return np.frombuffer((ctypes.c_uint32 * n).from_address(lo), np.uint32), lo


def fetch_batch(fetcher: BlockFetcher, files, table: BlockTable, *, maps: MemoryMaps | None = None,
                in_place: np.ndarray | None = None, cache=None) -> tuple[Words, object]:
    """Words of every block of `table`, each from the cheapest place, and the cache pins to release
    once the batch is filled (None without a cache):

    1. blocks marked `in_place` (uncompressed, 4-byte aligned) where they lie in their file's map;
    2. with a `cache` (`BlockCache`), hits where they lie in the cache's arena; misses are
       inflated straight into newly reserved arena regions (partially, as without a cache) and
       kept there;
    3. the rest into the fetcher's slot buffer.

    One uint32 view spans every region used (`span_view`); nothing is copied."""
    from ..cache import WHOLE
    n = len(table)
    start = np.zeros(n, np.int64)
    nbytes = np.zeros(n, np.int64)
    addr = np.zeros(n, np.int64)             # byte address, for maps and the arena
    covered = np.full(n, WHOLE)
    if table.need_key is not None:           # what a partial inflate keeps: the items up to the need key
        covered[table.partial] = table.need_key[table.partial]
    regions = []
    pins = None
    todo = np.arange(n)
    if in_place is not None and in_place.any():
        rows = np.flatnonzero(in_place)
        addr[rows] = maps.addresses(table.file[rows]) + table.offset[rows]
        nbytes[rows] = table.size[rows]
        regions += maps.regions(table.file[rows])
        fetcher.blocks_in_place += len(rows)
        todo = np.flatnonzero(~in_place)
    if cache and len(todo):
        from ..cache import WHOLE, Pins
        pins = Pins(cache)
        arena = cache.arena
        need = table.need_key[todo] if table.need_key is not None else np.full(len(todo), WHOLE)
        hit, w0, nb, cov = cache.lookup(table.block[todo], need, pins, with_covered=True)
        rows = todo[hit]
        covered[rows] = cov[hit]
        addr[rows] = arena.ctypes.data + w0[hit] * 4
        nbytes[rows] = nb[hit]
        fetcher.blocks_cached += len(rows)
        miss = todo[~hit]
        got, slots = cache.reserve(table.block[miss], (table.capacity[miss] + 3) // 4, pins)
        into = miss[got >= 0]
        if len(into):
            sub = replace(table.take(into), slot=got[got >= 0], total_words=len(arena))
            w = fetcher.fetch(files, sub, buf=arena)
            ok = np.ones(len(into), bool)
            if w.words is not arena:          # a block overflowed its region: served from its own buffer
                ok = w.block_start == sub.slot + (arena.ctypes.data - w.words.ctypes.data) // 4
                regions.extend(w.keep)        # the arena and that buffer (w.words only views them)
                addr[into] = w.words.ctypes.data + w.block_start * 4
            else:
                addr[into] = arena.ctypes.data + sub.slot * 4
            nbytes[into] = w.block_nbytes
            covered = np.where(sub.partial, sub.need_key if sub.need_key is not None else WHOLE, WHOLE)
            cache.commit(slots[got >= 0], w.block_nbytes, covered, ok)
        regions.append(arena)
        todo = miss[got < 0]
    if len(todo):
        w = fetcher.fetch(files, table.take(todo))
        regions.extend(w.keep or (w.words,))   # an overflowed block: the buffers, not the view of them
        addr[todo] = w.words.ctypes.data + w.block_start * 4
        nbytes[todo] = w.block_nbytes
        if len(todo) == n:                     # the plain case: no view needed
            return Words(w.words, w.block_start, w.block_nbytes, w.keep, covered), pins
    if not regions:                            # no block at all
        return Words(fetcher.buffer(1)[:1], start, nbytes, covered=covered), pins
    view, base = span_view(regions)
    start[:] = (addr - base) // 4
    return Words(view, start, nbytes, keep=tuple(regions) + (maps,), covered=covered), pins

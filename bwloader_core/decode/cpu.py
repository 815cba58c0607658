"""Read and inflate data blocks on CPU threads, straight into one word buffer.

Every block has a slot in a shared buffer; threads fill contiguous chunks of slots, so no
single-threaded concatenation is needed afterwards. Local files take the compiled path
(`decode.native`: pread and inflate in one numba call per chunk, no GIL held); URLs and blocks that
path hands back take the Python path here (coalesced preads, libdeflate / zlib-ng from Python).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import os
import struct

import deflate
import numpy as np

from ..errors import BigWigFormatError
from .sections import Words


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


_ITEM_BYTES = {1: 12, 2: 8, 3: 4}
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
        if len(out) < 24:
            return _check_size(f, offset, _finish(d, out, ubs))
        bo = f.byteorder
        chrom, sstart, send, step, span_, typ, _res, count = struct.unpack_from(bo + "IIIIIBBH", out, 0)
        isz = _ITEM_BYTES.get(typ)
        if isz is None or chrom >= len(f.chrom_names):
            return _check_size(f, offset, _finish(d, out, ubs))             # let the parser report the problem
        total = 24 + count * isz
        need_pos = need_key - int(f.chrom_offsets[chrom])
        if typ == 3:
            n_need = min(count, max(0, -(-(need_pos - sstart) // max(step, 1)))) if step else count
        else:
            n_need = None
        while True:
            have = (min(len(out), total) - 24) // isz
            if have >= count:
                return _check_size(f, offset, _finish(d, out, ubs))
            if n_need is not None:
                if have >= n_need:
                    break
                want = 24 + n_need * isz
            else:
                if have > 0:
                    last = struct.unpack_from(bo + "I", out, 24 + (have - 1) * isz)[0]
                    if last >= need_pos:
                        break
                fpos = min(max((need_pos - sstart) / max(send - sstart, 1), 0.0), 1.0)
                want = max(24 + int(fpos * count * 1.15 + 32) * isz, len(out) * 2)
            more = d.decompress(d.unconsumed_tail, max(want - len(out), 64))
            if not more:
                return _check_size(f, offset, _finish(d, out, ubs))
            out += more
        _check_size(f, offset, out)
        keep = (len(out) - 24) // isz
        cut = bytearray(out[:24 + keep * isz])
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
    """Reads and inflates a batch's blocks into a reusable buffer, using a thread pool.

    Local files go through the compiled path (`decode.native`: pread + inflate per thread, GIL
    released) when it is available, with or without a block cache; URLs and the blocks the
    compiled path hands back go through Python (`_fetch_blocks`)."""

    def __init__(self, n_threads: int, cache=None):
        self.n_threads = max(1, int(n_threads))
        self.cache = cache
        self.partial = os.environ.get("BWLOADER_PARTIAL_INFLATE", "1") != "0"
        self.native = os.environ.get("BWLOADER_NATIVE_FETCH", "1") != "0"
        self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="bwloader-inflate") \
            if self.n_threads > 1 else None
        self._buf = np.zeros(0, np.uint32)
        self.bytes_read = 0
        self.blocks_native = 0      # blocks finished by the compiled path
        self.blocks_python = 0      # blocks read and inflated in Python

    def fetch(self, files, file_of_block, local_of_block, offset_of_block, need_key=None, described=None) -> Words:
        """`files`: list of BigWigFile; per block: its file index, its index in that file, its offset,
        and optionally the largest position (file key) any query needs from it: blocks are then
        inflated only up to the items that start before it (partial inflate). `described`: what
        `describe_blocks` would return for them, when the caller has it at hand."""
        n = len(file_of_block)
        fidx = np.asarray(file_of_block, np.int64)
        local = np.asarray(local_of_block, np.int64)
        p = described if described is not None else describe_blocks(files, fidx, local, need_key, self.partial)
        caps, starts, total = slot_layout(p)
        slot_words = (caps + 3) // 4
        buf = self.buffer(total)
        nbytes = np.zeros(n, np.int64)
        overflow: dict = {}
        todo = np.arange(n)
        if n and self.native and p["local"] and _native_available():
            if self.cache:
                todo = self._fetch_native_cached(fidx, local, p, caps, starts, buf, nbytes)
            else:
                todo = self._fetch_native(p, caps, starts, buf, nbytes)
        self.blocks_native += n - len(todo)
        self.blocks_python += len(todo)
        if len(todo):
            zng = _zlib_ng() if (need_key is not None and self.partial and not self.cache) else None
            ks = todo.tolist()
            n_chunks = self.n_threads if (self._pool is not None and len(ks) >= 2 * self.n_threads) else 1
            bounds = [len(ks) * i // n_chunks for i in range(n_chunks + 1)]
            args = [(ks[a:b], files, fidx.tolist(), local, offset_of_block, starts, slot_words, buf, nbytes,
                     self.cache, zng, need_key, overflow) for a, b in zip(bounds[:-1], bounds[1:])]
            if n_chunks == 1:
                read = [_fetch_blocks(*args[0])]
            else:
                read = [f.result() for f in [self._pool.submit(_fetch_blocks, *x) for x in args]]
            self.bytes_read += sum(read)
        if overflow:
            extra = sum((len(out) + 3) // 4 for out, _ in overflow.values())
            grown = np.empty(total + extra, np.uint32)
            grown[:total] = buf[:total]
            self._buf = buf = grown
            for k, (out, byteorder) in sorted(overflow.items()):
                starts[k] = total
                _place(out, byteorder, total, buf, nbytes, k)
                total += (len(out) + 3) // 4
        return Words(buf[:total], starts, nbytes)

    def _fetch_native(self, p, caps, starts, buf, nbytes):
        """Compiled pread + inflate over chunks of blocks on the pool; the blocks it hands back."""
        from . import native
        status = np.empty(len(caps), np.uint8)
        self.bytes_read += run_native(self._pool, self.n_threads, p, caps, starts, buf, nbytes, status)
        return np.flatnonzero(status != native.OK)

    def _fetch_native_cached(self, fidx, local, p, caps, starts, buf, nbytes):
        """Cache hits copied into their slots, misses fetched whole on the compiled path and stored;
        the blocks it hands back (for the Python path)."""
        from . import native
        keys = list(zip(fidx.tolist(), local.tolist()))
        miss = []
        for k, key in enumerate(keys):
            if not _place_cached(self.cache.get(key), buf, starts, nbytes, k):
                miss.append(k)
        miss = np.array(miss, np.int64)
        if not len(miss):
            return miss
        sub = {key: (v[miss] if isinstance(v, np.ndarray) else v) for key, v in p.items()}
        sub["partial"] = np.zeros(len(miss), bool)      # the cache keeps whole blocks
        status = np.empty(len(miss), np.uint8)
        got = np.zeros(len(miss), np.int64)
        self.bytes_read += run_native(self._pool, self.n_threads, sub, caps[miss], starts[miss], buf, got, status)
        done = miss[status == native.OK]
        nbytes[done] = got[status == native.OK]
        for k in done.tolist():
            _cache_slot(self.cache, keys[k], buf, int(starts[k]), int(nbytes[k]))
        return miss[status != native.OK]

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

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._buf = np.zeros(0, np.uint32)


def run_native(pool, n_threads, p, caps, starts, buf, nbytes, status) -> int:
    """`native.fetch_range` over chunks of the blocks described by `p` (see `describe_blocks`), on `pool`
    when there is one. More chunks than threads: partial inflate makes block costs uneven."""
    from . import native
    n = len(caps)
    slot_byte = starts * 4
    n_chunks = min(4 * n_threads, max(1, n // 4)) if pool is not None else 1
    bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64).tolist()

    def run(a, b):
        stage = np.empty(int(p["csize"][a:b].max()), np.uint8)
        strm = np.zeros(native.ZNG_STREAM_BYTES, np.uint8)
        return native.fetch_range(a, b, p["fd"], p["offset"], p["csize"], p["compressed"], caps, slot_byte,
                                  p["partial"], p["chrom"], p["need_pos"], p["want0"], p["big"], buf, stage, strm,
                                  nbytes, status)

    pairs = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if len(pairs) == 1:
        return run(*pairs[0])
    return sum(f.result() for f in [pool.submit(run, a, b) for a, b in pairs])


def slot_layout(p):
    """(slot capacity in bytes, first word of each slot, total words) for blocks described by `p`.

    A slot holds a block's inflated bytes. uncompressBufSize bounds them, but a forged header can make
    it huge: slots are also capped by a generous ratio of the compressed size, and the rare block that
    inflates past its slot is placed after the others."""
    caps = np.where(p["compressed"], np.minimum(p["ubs"], p["csize"] * SLOT_RATIO + 4096), p["csize"])
    slot_words = (caps + 3) // 4
    starts = np.zeros(len(caps), np.int64)
    if len(caps):
        starts[1:] = np.cumsum(slot_words)[:-1]
    return caps, starts, int(slot_words.sum())


def _native_available() -> bool:
    try:
        from . import native
    except ImportError:           # numba missing
        return False
    return native.available()


def describe_blocks(files, fidx, local, need_key, partial):
    """Per-block arrays (one NumPy pass per file): descriptor, offset, sizes, byte order, and for
    partial inflate the block's first chromosome, the needed position on it and a first guess
    of the bytes to inflate."""
    n = len(fidx)
    p = {"fd": np.full(n, -1, np.int32), "offset": np.zeros(n, np.int64), "csize": np.zeros(n, np.int64),
         "compressed": np.zeros(n, bool), "ubs": np.zeros(n, np.int64), "big": np.zeros(n, bool),
         "partial": np.zeros(n, bool), "chrom": np.zeros(n, np.int64), "need_pos": np.zeros(n, np.int64),
         "want0": np.zeros(n, np.int64), "local": True}
    order = np.argsort(fidx, kind="stable")
    cuts = np.flatnonzero(np.diff(fidx[order])) + 1
    for idx in np.split(order, cuts) if n else []:
        f = files[int(fidx[idx[0]])]
        loc = local[idx]
        fd = f.local_fd
        if fd is None:
            p["local"] = False
        else:
            p["fd"][idx] = fd
        p["offset"][idx] = f.block_offset[loc]
        p["csize"][idx] = f.block_size[loc]
        p["compressed"][idx] = f.compressed
        p["ubs"][idx] = f.uncompress_buf_size if f.compressed else 0
        p["big"][idx] = f.byteorder == ">"
        if need_key is None or not partial or not f.compressed:
            continue
        sk, ek, need = f.block_start_key[loc], f.block_end_key[loc], need_key[idx]
        chrom = np.clip(np.searchsorted(f.chrom_offsets, sk, side="right") - 1, 0, max(len(f.chrom_names) - 1, 0))
        p["chrom"][idx] = chrom
        p["need_pos"][idx] = need - f.chrom_offsets[chrom]
        p["partial"][idx], p["want0"][idx] = partial_plan(need, sk, ek, f.uncompress_buf_size)
    return p


def partial_plan(need, block_start, block_end, ubs):
    """Per block (keys in one key space): whether to inflate it partially, and how many bytes the
    first inflate call asks for."""
    frac = np.clip((need - block_start) / np.maximum(block_end - block_start, 1), 0.0, 1.0)
    partial = (need < block_end) & (frac < PARTIAL_MAX_FRACTION)
    # first guess a little short: the items it yields then estimate the rest closely (native._enough)
    return partial, np.maximum(512, (frac * ubs * PARTIAL_FIRST_GUESS).astype(np.int64))


def _fetch_blocks(ks, files, fidx, local, offsets, starts, slot_words, buf, nbytes, cache, zng, need_key, overflow):
    """Python path for the blocks `ks` (in order): cache, coalesced preads, inflate, place."""
    read = 0
    i = 0
    while i < len(ks):  # one run of blocks of the same file
        j = i
        while j < len(ks) and fidx[ks[j]] == fidx[ks[i]]:
            j += 1
        run = ks[i:j]
        f = files[fidx[run[0]]]
        blocks = {}
        placed = set()
        if cache:
            for k in run:
                if _place_cached(cache.get((fidx[k], int(local[k]))), buf, starts, nbytes, k):
                    placed.add(k)
        miss = [k for k in run if k not in placed]
        if miss:
            raw = f.read_blocks(local[miss])
            for k, data in zip(miss, raw):
                read += len(data)
                jl = int(local[k])
                if zng is not None and f.compressed and need_key[k] < f.block_end_key[jl]:
                    out = inflate_partial(zng, f, data, int(offsets[k]), int(need_key[k]),
                                          int(f.block_start_key[jl]), int(f.block_end_key[jl]))
                else:
                    out = inflate_one(f, data, int(offsets[k]))
                blocks[k] = out
        for k in miss:
            out = blocks[k]
            if (len(out) + 3) // 4 > slot_words[k]:
                overflow[k] = (out, f.byteorder)      # dict item assignment is atomic under the GIL
            else:
                _place(out, f.byteorder, int(starts[k]), buf, nbytes, k)
                if cache:
                    _cache_slot(cache, (fidx[k], int(local[k])), buf, int(starts[k]), int(nbytes[k]))
        i = j
    return read


def _cache_slot(cache, key, buf, w0, m):
    """Store a placed block: its byte length and a copy of its native words."""
    nw = (m + 3) // 4
    cache.put(key, (m, buf[w0:w0 + nw].copy()), size=nw * 4)


def _place_cached(hit, buf, starts, nbytes, k) -> bool:
    """Copy a cached block (see `_cache_slot`) into slot k; False for a miss."""
    if hit is None:
        return False
    m, words = hit
    w0 = int(starts[k])
    buf[w0:w0 + len(words)] = words
    nbytes[k] = m
    return True


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

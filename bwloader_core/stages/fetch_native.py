"""Read and inflate a range of local blocks in compiled code, with the GIL released.

One numba call per thread reads each block with ``pread`` and inflates it straight into its slot
of the word buffer: zlib-ng's streaming inflate, stopped once the items the batch needs are out
(partial inflate), or libdeflate's one-shot inflate for blocks needed whole. Both libraries are
already in the process (inside the ``zlib_ng`` and ``deflate`` wheels, which export their C
API); their functions are handed to numba by address, so nothing is compiled at install time.

A block this path cannot finish (short read, corrupt stream, output larger than its slot, ...)
is marked for the Python path in ``stages.fetch``, which raises the precise error or places it.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np
from numba import njit, types

from ..format.spec import ITEM_BYTES as _ITEM_BYTES

OK, REDO = 0, 1
_Z_STREAM_END, _Z_BUF_ERROR = 1, -5
ZNG_STREAM_BYTES = 128        # sizeof(zng_stream) is 104 on LP64; a little spare

_SYMBOLS = {
    # our name: (module holding the C library, its symbol, numba signature); pointers pass as uint64
    "bwl_zng_inflateInit2": ("zlib_ng.zlib_ng", "zng_inflateInit2", types.int32(types.uint64, types.int32)),
    "bwl_zng_inflateReset": ("zlib_ng.zlib_ng", "zng_inflateReset", types.int32(types.uint64)),
    "bwl_zng_inflate": ("zlib_ng.zlib_ng", "zng_inflate", types.int32(types.uint64, types.int32)),
    "bwl_zng_inflateEnd": ("zlib_ng.zlib_ng", "zng_inflateEnd", types.int32(types.uint64)),
    "bwl_ld_alloc": ("deflate._deflate", "libdeflate_alloc_decompressor", types.uint64()),
    "bwl_ld_free": ("deflate._deflate", "libdeflate_free_decompressor", types.void(types.uint64)),
    "bwl_ld_zlib": ("deflate._deflate", "libdeflate_zlib_decompress",
                    types.int32(types.uint64, types.uint64, types.uint64, types.uint64, types.uint64,
                                types.uint64)),
    "bwl_pread": (None, "pread", types.int64(types.int32, types.uint64, types.uint64, types.int64)),
    "bwl_memcpy": (None, "memcpy", types.uint64(types.uint64, types.uint64, types.uint64)),
}
_fn = {name: types.ExternalFunction(name, sig) for name, (_, _, sig) in _SYMBOLS.items()}
_inflate_init2 = _fn["bwl_zng_inflateInit2"]
_inflate_reset = _fn["bwl_zng_inflateReset"]
_inflate = _fn["bwl_zng_inflate"]
_inflate_end = _fn["bwl_zng_inflateEnd"]
_ld_alloc = _fn["bwl_ld_alloc"]
_ld_free = _fn["bwl_ld_free"]
_ld_zlib = _fn["bwl_ld_zlib"]
_pread = _fn["bwl_pread"]
_memcpy = _fn["bwl_memcpy"]

_lock = threading.Lock()
_state: dict = {}


def available() -> bool:
    """True when both C libraries export what this path calls (registered with LLVM once) and a
    known block inflates right through it. Logs once when it is not."""
    with _lock:
        if "ok" not in _state:
            _state["ok"] = _register()
            if not _state["ok"]:
                import logging
                logging.getLogger("bwloader").warning(
                    "compiled block fetch unavailable (zlib-ng / deflate C API not found or failed its check); "
                    "reading blocks on the slower Python path")
        return _state["ok"]


def _register() -> bool:
    import importlib

    import llvmlite.binding as ll
    addresses = {}
    try:
        for name, (module, symbol, _) in _SYMBOLS.items():
            lib = ctypes.CDLL(importlib.import_module(module).__file__) if module else ctypes.CDLL(None)
            addresses[name] = ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    except (ImportError, OSError, AttributeError):
        return False
    for name, addr in addresses.items():
        ll.add_symbol(name, addr)
    return _known_answer()


def _known_answer() -> bool:
    """Inflate a hand-made block whole and in part and compare with zlib: guards against a
    zlib-ng build whose stream struct is not the layout this module writes."""
    import struct
    import zlib
    items = b"".join(struct.pack("<IIf", 10 * i, 10 * i + 5, float(i)) for i in range(300))
    block = struct.pack("<IIIIIBBH", 0, 0, 3000, 0, 0, 1, 0, 300) + items
    comp = np.frombuffer(zlib.compress(block), np.uint8).copy()
    n = len(block)
    one = np.ones(1, np.int64)
    try:
        for partial, want0, expect in ((False, n, block), (True, 600, None)):
            words = np.zeros(n // 4 + 16, np.uint32)
            nbytes, status = np.zeros(1, np.int64), np.zeros(1, np.uint8)
            _fetch_range(0, 1, np.full(1, -1, np.int32), one * comp.ctypes.data, one * len(comp), np.ones(1, bool),
                         one * (n + 64), one * 0, np.array([partial]), one * 0, one * 1505, one * want0,
                         np.zeros(1, bool), words, np.zeros(8, np.uint8), np.zeros(ZNG_STREAM_BYTES, np.uint8),
                         nbytes, status, np.zeros(3, np.uint64))
            got = words.view(np.uint8)[:nbytes[0]].tobytes()
            if expect is None:        # at least the items up to the first that starts at or after 1505 (#151)
                kept = struct.unpack_from("<H", got, 22)[0] if len(got) >= 24 else 0
                expect = block[:22] + struct.pack("<H", kept) + items[:kept * 12] if 152 <= kept < 300 else None
            if status[0] != OK or got != expect:
                return False
    except Exception:  # noqa: BLE001 - any failure means: do not use this path
        return False
    return True


@njit(nogil=True, cache=True, inline="always")
def _u32(a, p, big):
    if big:
        return (np.int64(a[p]) << 24) | (np.int64(a[p + 1]) << 16) | (np.int64(a[p + 2]) << 8) | np.int64(a[p + 3])
    return np.int64(a[p]) | (np.int64(a[p + 1]) << 8) | (np.int64(a[p + 2]) << 16) | (np.int64(a[p + 3]) << 24)


@njit(nogil=True, cache=True)
def _enough(out, base, produced, big, exp_chrom, need_pos):
    """How a partly inflated one-section block stands: (-1, 0) inflate it whole, (0, n) stop with
    the first n items, (1, bytes) inflate up to `bytes`."""
    if produced < 24:
        return 1, 512
    chrom = _u32(out, base, big)
    typ = np.int64(out[base + 20])
    count = (np.int64(out[base + 22]) << 8 | np.int64(out[base + 23])) if big else \
        (np.int64(out[base + 22]) | np.int64(out[base + 23]) << 8)
    if typ < 1 or typ > 3 or chrom != exp_chrom:
        return -1, 0                  # not ours to judge: the parser reports it
    isz = _ITEM_BYTES[typ]
    have = (min(produced, 24 + count * isz) - 24) // isz
    if have >= count:
        return -1, 0                  # the section is complete: another may follow, take all
    sstart = _u32(out, base + 4, big)
    if typ == 3:
        step = _u32(out, base + 12, big)
        n_need = count
        if step > 0:
            n_need = min(count, max(0, -((sstart - need_pos) // step)))
        if have >= n_need:
            return 0, have
        return 1, 24 + n_need * isz
    last = _u32(out, base + 24 + (have - 1) * isz, big) if have > 0 else sstart
    if have > 0 and last >= need_pos:
        return 0, have
    if have >= 2:                     # the items so far give the bases per item: a close estimate
        per_item = (last - _u32(out, base + 24, big)) / (have - 1)
        more = np.int64((need_pos - last) / max(per_item, 1e-3) * 1.03) + 3
        return 1, 24 + min(have + more, count) * isz
    send = _u32(out, base + 8, big)
    frac = min(max((need_pos - sstart) / max(send - sstart, 1), 0.0), 1.0)
    return 1, 24 + np.int64(frac * count * 1.1 + 8) * isz


def fetch_range(*args):
    """`_fetch_range`, with fresh inflater state, once the C symbols are registered (calling
    compiled code that refers to unregistered symbols would jump to address 0)."""
    if not _state.get("ok") and not available():
        raise RuntimeError("the compiled fetch path needs zlib-ng's and libdeflate's C API (zlib-ng and "
                           "deflate wheels) and pread")
    return _fetch_range(*args, np.zeros(3, np.uint64))


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting per block (see stages.direct)
def _fetch_range(lo, hi, fd, offset, csize, compressed, cap, slot_byte, partial, exp_chrom, need_pos, want0,
                 big, words, stage, strm, nbytes, status, ctx):
    """Blocks lo..hi-1 into their slots of `words` (uint32); per block `nbytes` and `status`
    (OK, or REDO for the Python path). Returns the compressed bytes read. A block with `fd` -1
    (IN_MEMORY) is already in memory at address `offset` (used to time inflate alone); any other
    negative `fd` (not leased) is handed back. `ctx`: 3 x uint64 zeros (the inflaters' state)."""
    read = 0
    for k in range(lo, hi):
        m = _fetch_block(k, fd, offset, csize, compressed, cap, slot_byte, partial, exp_chrom, need_pos, want0,
                         big, words, stage, strm, ctx)
        status[k] = REDO if m < 0 else OK
        if m >= 0:
            nbytes[k] = m
            read += csize[k]
    _release(strm, ctx)
    return read


@njit(nogil=True, cache=True)
def _release(strm, ctx):
    """Free what `_fetch_block` set up in `ctx` (zlib-ng stream state, libdeflate decompressor)."""
    if ctx[0] != 0:
        _inflate_end(np.uint64(strm.ctypes.data))
        ctx[0] = 0
    if ctx[1] != 0:
        _ld_free(ctx[1])
        ctx[1] = 0


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting (see stages.direct)
def _fetch_block(k, fd, offset, csize, compressed, cap, slot_byte, partial, exp_chrom, need_pos, want0, big, words,
                 stage, strm, ctx):
    """Read and inflate block k into its slot as native words; its byte length, or -1 when the
    Python path must take it. `ctx` (3 x uint64, zeros at first) keeps the inflaters between
    calls: free them with `_release`."""
    out = words.view(np.uint8)
    n = csize[k]
    base = slot_byte[k]
    dst = np.uint64(np.int64(out.ctypes.data) + base)
    stage_addr = np.uint64(stage.ctypes.data)
    in_memory = fd[k] == -1
    if fd[k] < -1:
        return -1
    if not compressed[k]:
        if n > cap[k]:
            return -1
        if in_memory:
            _memcpy(dst, np.uint64(offset[k]), np.uint64(n))
        elif _pread(np.int32(fd[k]), dst, np.uint64(n), np.int64(offset[k])) != n:
            return -1
        m = n
    else:
        src = np.uint64(offset[k]) if in_memory else stage_addr
        if not in_memory and _pread(np.int32(fd[k]), stage_addr, np.uint64(n), np.int64(offset[k])) != n:
            return -1
        if not partial[k]:
            if ctx[1] == 0:
                ctx[1] = _ld_alloc()
                if ctx[1] == 0:
                    return -1
            actual = ctx[2:3]
            if _ld_zlib(ctx[1], src, np.uint64(n), dst, np.uint64(cap[k]), np.uint64(actual.ctypes.data)) != 0:
                return -1
            m = np.int64(actual[0])
        else:
            m = _inflate_partial(out, base, src, n, dst, cap[k], want0[k], big[k], exp_chrom[k], need_pos[k], strm,
                                 ctx)
            if m < 0:
                return -1
    w0 = base // 4
    nw = (m + 3) // 4
    for p in range(base + m, base + nw * 4):
        out[p] = 0                # a malformed tail: keep its bytes, zero the rest of the word
    if big[k]:
        for w in range(w0, w0 + nw):
            x = words[w]
            words[w] = ((x >> 24) & 0xFF) | ((x >> 8) & 0xFF00) | ((x << 8) & 0xFF0000) | ((x << 24) & 0xFF000000)
    return m


@njit(nogil=True, cache=True, _nrt=False)     # no reference counting (see stages.direct)
def _inflate_partial(out, base, src, n, dst, cap, want0, big, exp_chrom, need_pos, strm, ctx):
    """zlib-ng streaming inflate of one block into out[base:], stopped once the items up to
    `need_pos` are out (the section's item count is then patched to the items kept); -1 on error."""
    s = np.uint64(strm.ctypes.data)
    s64 = strm.view(np.uint64)
    s32 = strm.view(np.uint32)
    if ctx[0] == 0:
        if _inflate_init2(s, 15) != 0:
            return -1
        ctx[0] = 1
    elif _inflate_reset(s) != 0:
        return -1
    want = min(want0, cap)
    s64[0] = src
    s32[2] = n
    s64[3] = dst
    s32[8] = want
    whole = False
    v = np.int64(0)
    while True:
        r = _inflate(s, 0)
        produced = want - np.int64(s32[8])
        if r == _Z_STREAM_END:
            return produced
        if (r != 0 and r != _Z_BUF_ERROR) or s32[8] != 0 or want >= cap:
            return -1                 # corrupt, truncated, or larger than the slot
        if not whole:
            verdict, v = _enough(out, base, produced, big, exp_chrom, need_pos)
            if verdict == 0:
                if big:
                    out[base + 22] = (v >> 8) & 0xFF
                    out[base + 23] = v & 0xFF
                else:
                    out[base + 22] = v & 0xFF
                    out[base + 23] = (v >> 8) & 0xFF
                return 24 + v * _ITEM_BYTES[out[base + 20]]
            whole = verdict < 0
        nxt = cap if whole else min(max(v, produced + 64), cap)
        s32[8] = nxt - produced
        want = nxt


def read_range(*args):
    """`_read_range` once the C symbols are registered."""
    if not _state.get("ok") and not available():
        raise RuntimeError("the compiled read path needs pread (and the zlib-ng / deflate wheels)")
    return _read_range(*args)


@njit(nogil=True, cache=True)
def _read_range(lo, hi, fd, offset, size, skip, dst, dst_byte, status):
    """pread bytes [offset + skip, offset + size) of blocks lo..hi-1 to byte `dst_byte[k]` of `dst`
    (uint8); status OK or REDO (short read). Returns the bytes read. Used to stage blocks for the
    GPU: `skip` drops a zlib header so the raw Deflate payload lands where the caller aligned it."""
    base = np.int64(dst.ctypes.data)
    read = 0
    for k in range(lo, hi):
        n = size[k] - skip[k]
        if fd[k] < 0:
            status[k] = REDO
            continue
        got = _pread(np.int32(fd[k]), np.uint64(base + dst_byte[k]), np.uint64(n), np.int64(offset[k] + skip[k]))
        status[k] = OK if got == n else REDO
        read += max(got, 0)
    return read

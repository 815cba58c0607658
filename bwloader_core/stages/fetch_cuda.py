"""Fetch for the GPU: stage the batch's blocks in one host buffer, copy it to the device once, and
inflate there (nvCOMP batched raw Deflate) straight into the word buffer's slots.

The staging buffer has two regions:

    [ word region: laid out as the device word buffer (BlockTable slots) | payload region ]

- an uncompressed block is read into its own slot of the word region: after the copy, its bytes
  are already its words;
- a compressed (zlib) block is read whole into the payload region so that its raw Deflate payload
  (after the 2-byte zlib header) starts at a 16-byte-aligned offset: nvCOMP's raw Deflate needs
  aligned input. nvCOMP inflates each payload into the block's slot of the word region.

Every block is then checked as the CPU path checks it: a valid zlib header (on the host, before
the copy), a successful inflate that fits its slot, and the Adler-32 of what came out against the
stream's trailer (`cuda_kernels().adler32`). Big-endian blocks are swapped word by word on the
device. A block that fails any check is handed to the CPU fetcher, which raises the precise
`BigWigFormatError` (naming the file and the block's offset) or, where the CPU can read it after
all, supplies its words.

Under numba's CUDA simulator the same layout is staged in NumPy and `inflate_payloads_cpu` (libdeflate's
raw Deflate, one block at a time) stands in for nvCOMP.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import deflate
import numpy as np

from ..format.spec import ZLIB_HEADER_BYTES, ZLIB_TRAILER_BYTES
from .fetch import BlockTable

PAYLOAD_ALIGN = 16           # nvCOMP asks for 4 bytes for Deflate; 16 is its safe default
STATUS_OK, STATUS_FAILED = 0, 1


@dataclass(frozen=True, eq=False)
class StagingLayout:
    """Where each block of a `BlockTable` lies in the staging buffer (all byte offsets)."""
    words_bytes: int           # the word region (table.total_words * 4)
    read_at: np.ndarray        # int64: where the block's first byte is read to
    payload_at: np.ndarray     # int64: the raw Deflate payload (compressed) or the slot (raw)
    payload_size: np.ndarray   # int64: raw Deflate bytes (size - 6) or the block size
    total_bytes: int

    @classmethod
    def of(cls, table: BlockTable) -> "StagingLayout":
        words_bytes = table.total_words * 4
        comp = table.compressed
        csize = np.where(comp, table.size, 0)
        # payload k starts at a multiple of PAYLOAD_ALIGN; the block itself 2 bytes before it
        span = -(-(csize + PAYLOAD_ALIGN) // PAYLOAD_ALIGN) * PAYLOAD_ALIGN
        start = words_bytes + np.concatenate([[0], np.cumsum(span)[:-1]]).astype(np.int64) + PAYLOAD_ALIGN
        payload_at = np.where(comp, start, table.slot * 4)
        read_at = np.where(comp, start - ZLIB_HEADER_BYTES, table.slot * 4)
        payload_size = np.where(comp, table.size - ZLIB_HEADER_BYTES - ZLIB_TRAILER_BYTES, table.size)
        total = int(words_bytes + span.sum() + PAYLOAD_ALIGN)
        return cls(words_bytes, read_at, payload_at, payload_size, total)


def stage_blocks(files, table: BlockTable, layout: StagingLayout, staging: np.ndarray, run_parts,
                 n_parts: int) -> tuple[int, np.ndarray]:
    """Read every block of `table` to `layout.read_at` in `staging` (uint8, at least
    `layout.total_bytes`): compiled preads on `n_parts` threads for local files, Python reads for
    URLs. Returns (bytes read, per-block status: blocks that could not be read in full are
    STATUS_FAILED, left for the CPU fetcher to explain)."""
    n = len(table)
    status = np.zeros(n, np.uint8)
    if not n:
        return 0, status
    from .fetch import native_available
    if table.all_local and native_available():
        from . import fetch_native
        from ..io import HANDLES, Lease, lease_bounds
        skip = np.zeros(n, np.int64)
        fd = np.empty(n, np.int32)
        bounds = np.linspace(0, n, max(1, min(n_parts, n)) + 1).astype(np.int64).tolist()
        bounds = lease_bounds(table.file, bounds, HANDLES.max_lease(n_parts))

        def read(ab):               # the chunk's descriptors stay leased while compiled code reads them
            a, b = ab
            with Lease(files, table.file[a:b]) as lease:
                fd[a:b] = lease.fds
                return fetch_native.read_range(a, b, fd, table.offset, table.size, skip, staging, layout.read_at,
                                               status)

        got = run_parts(read, [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a])
        return int(sum(got)), (status != fetch_native.OK).astype(np.uint8)
    read = 0
    for k in range(n):
        f = files[int(table.file[k])]
        try:
            data = f.read_blocks(table.local[k:k + 1])[0]
        except (OSError, ValueError):
            status[k] = STATUS_FAILED
            continue
        a = int(layout.read_at[k])
        staging[a:a + len(data)] = np.frombuffer(data, np.uint8)
        read += len(data)
    return read, status


def zlib_header_ok(staging: np.ndarray, table: BlockTable, layout: StagingLayout) -> np.ndarray:
    """Per block: True for an uncompressed block or a valid zlib header (Deflate, no preset
    dictionary, check bits right), as zlib itself requires before inflating."""
    at = layout.read_at
    cmf = staging[at].astype(np.int64)
    flg = staging[at + 1].astype(np.int64)
    ok = ((cmf & 0x0F) == 8) & ((cmf >> 4) <= 7) & (((cmf << 8) | flg) % 31 == 0) & ((flg & 0x20) == 0)
    return ok | ~table.compressed


def adler_expected(staging: np.ndarray, table: BlockTable, layout: StagingLayout) -> np.ndarray:
    """The Adler-32 each compressed block's stream ends with (big-endian), from the staged bytes."""
    end = layout.read_at + table.size
    b = [staging[np.maximum(end - 4 + i, 0)].astype(np.uint32) for i in range(4)]
    return np.where(table.compressed, (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3], 0).astype(np.uint32)


def inflate_payloads_cpu(buffer: np.ndarray, table: BlockTable, layout: StagingLayout):
    """The simulator's stand-in for nvCOMP: raw Deflate of each staged payload into its slot of the
    word region of `buffer` (uint8, the "device" copy of the staging buffer), with libdeflate.
    Returns (bytes out, status) per block, as `inflate_payloads_nvcomp`."""
    n = len(table)
    nbytes = np.where(table.compressed, 0, table.size).astype(np.int64)
    status = np.zeros(n, np.uint8)
    for k in np.flatnonzero(table.compressed).tolist():
        a, m = int(layout.payload_at[k]), int(layout.payload_size[k])
        cap = int(table.capacity[k])
        try:
            out = deflate.deflate_decompress(bytes(buffer[a:a + max(m, 0)]), cap + 1)
        except deflate.DeflateError:
            status[k] = STATUS_FAILED
            continue
        if len(out) > cap or m <= 0:
            status[k] = STATUS_FAILED
            continue
        s = int(table.slot[k]) * 4
        buffer[s:s + len(out)] = np.frombuffer(out, np.uint8)
        nbytes[k] = len(out)
    return nbytes, status


class NvcompInflater:
    """nvCOMP's batched raw Deflate on one CUDA stream (one per worker: a Codec is not shared
    between threads)."""

    def __init__(self, cuda_stream_ptr: int):
        from nvidia import nvcomp
        self._nvcomp = nvcomp
        self._codec = nvcomp.Codec(algorithm="Deflate", bitstream_kind=nvcomp.BitstreamKind.RAW,
                                   cuda_stream=int(cuda_stream_ptr))
        self._stream = int(cuda_stream_ptr)
        self._warned = False
        self.failed_batches = 0

    def inflate(self, buffer, table: BlockTable, layout: StagingLayout):
        """Inflate the compressed blocks' payloads of `buffer` (device, uint8) into their slots.
        Returns (bytes out, status) per block (host arrays); a batch nvCOMP refuses as a whole
        (a block larger than its slot, a corrupt stream) comes back with every compressed block
        STATUS_FAILED, for the CPU fetcher to explain."""
        n = len(table)
        nbytes = np.where(table.compressed, 0, table.size).astype(np.int64)
        status = np.zeros(n, np.uint8)
        comp = np.flatnonzero(table.compressed)
        if not len(comp):
            return nbytes, status
        nv = self._nvcomp
        try:
            src = nv.as_arrays(buffer, layout.payload_at[comp].tolist(), layout.payload_size[comp].tolist(),
                               cuda_stream=self._stream)
            dst = nv.as_arrays(buffer, (table.slot[comp] * 4).tolist(), table.capacity[comp].tolist(),
                               cuda_stream=self._stream)
            out = self._codec.decode(src, out=dst)
            sizes = _decoded_sizes(out, len(comp))
        except Exception as exc:  # noqa: BLE001 - any nvCOMP failure: the CPU path names the bad block
            if not self._warned:          # a corrupt block is expected now and then; every batch is not
                self._warned = True
                import logging
                logging.getLogger("bwloader").warning(
                    "nvCOMP refused a batch (%s: %s); its blocks are read on the CPU. If this repeats "
                    "for every batch, set BWLOADER_CUDA_INFLATE=cpu", type(exc).__name__, exc)
            self.failed_batches += 1
            status[comp] = STATUS_FAILED
            return nbytes, status
        nbytes[comp] = sizes
        bad = (sizes <= 0) | (sizes > table.capacity[comp])
        status[comp[bad]] = STATUS_FAILED
        return nbytes, status


def _decoded_sizes(batch, n: int) -> np.ndarray:
    """Bytes each entry of a decoded nvCOMP BatchArray holds."""
    sizes = getattr(batch, "buffer_sizes", None)
    if sizes is None:
        sizes = [batch[i].buffer_size for i in range(n)]
    return np.asarray(list(sizes), np.int64)


cuda = None      # numba.cuda, imported by cuda_kernels() on first use (the simulator patches this global)


@cache
def cuda_kernels():
    """`adler32`: per block (grid-stride) the Adler-32 of its inflated bytes in `data` (uint8,
    file byte order), compared with `expected`; a mismatch sets `status`. `swap_words`: every word
    of the big-endian blocks byte-swapped to native order."""
    global cuda
    from numba import cuda

    @cuda.jit
    def adler32(data, slot_byte, nbytes, compressed, expected, status):
        for k in range(cuda.grid(1), slot_byte.shape[0], cuda.gridsize(1)):
            if not compressed[k] or status[k] != STATUS_OK:
                continue
            a = np.uint32(1)
            b = np.uint32(0)
            p = np.int64(slot_byte[k])
            end = p + np.int64(nbytes[k])
            while p < end:
                stop = min(end, p + 5552)       # the most bytes before the sums can overflow 32 bits
                while p < stop:
                    a += np.uint32(data[p])
                    b += a
                    p += 1
                a %= np.uint32(65521)
                b %= np.uint32(65521)
            if ((b << np.uint32(16)) | a) != expected[k]:
                status[k] = STATUS_FAILED

    @cuda.jit
    def swap_words(words, slot, nbytes, big_endian):
        for k in range(cuda.blockIdx.x, slot.shape[0], cuda.gridDim.x):
            if not big_endian[k]:
                continue
            w0 = np.int64(slot[k])
            nw = (np.int64(nbytes[k]) + 3) // 4
            for w in range(w0 + cuda.threadIdx.x, w0 + nw, cuda.blockDim.x):
                x = words[w]
                words[w] = ((x >> np.uint32(24)) & np.uint32(0xFF)) | ((x >> np.uint32(8)) & np.uint32(0xFF00)) | \
                    ((x << np.uint32(8)) & np.uint32(0xFF0000)) | ((x << np.uint32(24)) & np.uint32(0xFF000000))

    return adler32, swap_words

"""Inflate data blocks on CPU threads with libdeflate (which releases the GIL)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import deflate

from ..errors import BigWigFormatError


def _inflate_chunk(raw, files, offsets):
    out = []
    for mv, f, off in zip(raw, files, offsets):
        if not f.compressed:
            out.append(mv)
            continue
        try:
            out.append(deflate.zlib_decompress(mv, f.uncompress_buf_size))
        except deflate.DeflateError:
            raise BigWigFormatError(
                f.path, f"data block at offset {off} ({len(mv)} bytes) does not inflate: corrupt zlib "
                f"stream or larger than uncompressBufSize ({f.uncompress_buf_size})") from None
    return out


def inflate_blocks(raw, files, offsets, pool: ThreadPoolExecutor | None = None, n_chunks: int = 1) -> list:
    """Inflate blocks (`raw`: bytes-like per block; `files`: the BigWigFile of each block).

    With a pool, blocks are split into `n_chunks` contiguous chunks, one task each."""
    offsets = list(offsets)
    n = len(raw)
    if pool is None or n_chunks <= 1 or n < 2 * n_chunks:
        return _inflate_chunk(raw, files, offsets)
    bounds = [n * i // n_chunks for i in range(n_chunks + 1)]
    futs = [pool.submit(_inflate_chunk, raw[a:b], files[a:b], offsets[a:b])
            for a, b in zip(bounds[:-1], bounds[1:])]
    out = []
    for f in futs:
        out.extend(f.result())
    return out

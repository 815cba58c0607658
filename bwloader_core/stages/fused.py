"""The CPU stages fused per chunk of files, for windowed batches (window_size > 1).

The staged path inflates every block of a batch into one word buffer, then parses, searches and
fills: for a wide batch (thousands of tracks x 200 kb) the words pass through memory twice and
the buffer is gigabytes. Here each thread takes chunks of a few files (their blocks inflate to
about a megabyte) and, in one compiled call per share of chunks, holding no GIL:

    pread + inflate the chunk's blocks (partial where the plan allows) into a small buffer
    -> parse their sections -> per pair (query x track) of the chunk, in the plan's link order:
    clip to the section's chromosome, find the items, add them into the pair's windows
    -> finish the pair's windows straight into the float32 output

while the chunk's words are still in the core's cache. Every step is the staged path's own
kernel (`fetch_native._fetch_block`, `parse._walk`, `search.item_range`, `fill.accumulate_entry`,
`fill.finish_window`) in the same order, so the output is bit for bit the staged path's. Working
memory is a few megabytes per thread besides the output. Anything unusual (a block the compiled
fetch hands back, a malformed block, overlapping records) abandons the batch to the staged path,
which reads it again and reports the precise error.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import fetch_native
from .fill import OVERLAP, accumulate_entry, finalize_windows, finish_window
from .parse import _walk
from .search import item_range

CHUNK_BYTES = 1 << 20        # inflated bytes of one chunk of files: about what a core's L2 holds
FUSED_OK, FUSED_ABANDON = 0, 1
MODES = {"mean": 0, "sum": 1, "max": 2, "min": 2}


def chunk_rows(table_file: np.ndarray, capacity: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Row bounds of chunks of whole files (rows come grouped by file) of about `chunk_bytes`
    slot bytes each (a file larger than that is a chunk of its own)."""
    n = len(table_file)
    if n == 0:
        return np.zeros(1, np.int64)
    file_first = np.flatnonzero(np.r_[True, table_file[1:] != table_file[:-1]])
    ends = np.cumsum(capacity)[np.r_[file_first[1:], n] - 1]           # slot bytes up to each file's end
    starts_bytes = np.r_[0, ends[:-1]]
    chunk_id = (starts_bytes // max(int(chunk_bytes), 1)).astype(np.int64)
    new = np.r_[True, chunk_id[1:] != chunk_id[:-1]]
    return np.r_[file_first[new], n].astype(np.int64)


def empty_window_value(w: int, reduce: str, default: float) -> float:
    """What a window with no record finishes to (`finalize_windows` on zeros), for pairs with no block."""
    acc = np.array([-np.inf if reduce == "max" else np.inf])
    return float(finalize_windows(np.zeros(1), np.zeros(1), acc, w, reduce, default)[0])


@njit(nogil=True, cache=True)
def fused_windows(c_lo, c_hi, chunk_first, chunk_link_first, fd, offset, size, compressed, capacity, partial,
                  chrom, need_pos, want0, big, row_chrom_first, row_n_chroms, link_pair, link_row, key_lo, key_hi,
                  origin, chrom_key_base, chrom_len_flat, col_scale, n_batch, length, w, skip_nan, mode, is_max,
                  default, slot_byte, out):
    """Chunks c_lo..c_hi-1: blocks (table rows chunk_first[c]:chunk_first[c + 1]) read, inflated,
    parsed, and their links (chunk_link_first[c]:..., sorted by pair, then row) turned into the
    pairs' windows in `out` (T * B, length // w) float32, pair-major (`transpose_out` makes
    the batch's (B, length // w, T) of it). Returns (FUSED_OK or FUSED_ABANDON, bytes read).
    `slot_byte` (one per row, shared by the callers' disjoint chunks) is scratch."""
    nw = length // w
    lim = nw * w
    want_extreme = mode == 2
    # scratch, sized for the largest chunk of this share
    max_words, max_size, max_rows = 0, 1, 1
    for c in range(c_lo, c_hi):
        r0, r1 = chunk_first[c], chunk_first[c + 1]
        tot = 0
        for r in range(r0, r1):
            tot += (capacity[r] + 3) // 4
            max_size = max(max_size, size[r])
        max_words = max(max_words, tot)
        max_rows = max(max_rows, r1 - r0)
    words = np.empty(max_words + 1, np.uint32)
    fwords = words.view(np.float32)
    stage = np.empty(max_size, np.uint8)
    strm = np.zeros(fetch_native.ZNG_STREAM_BYTES, np.uint8)
    ctx = np.zeros(3, np.uint64)
    bstart = np.empty(max_rows, np.int64)
    bnbytes = np.empty(max_rows, np.int64)
    bswap = np.empty(max_rows, np.bool_)
    sec_first = np.empty(max_rows + 1, np.int64)
    secs = np.empty((9, 64), np.int64)
    sums = np.empty(nw)
    covered = np.empty(nw)
    acc = np.empty(nw)
    acc0 = -np.inf if is_max else np.inf
    read = 0
    status = FUSED_OK
    for c in range(c_lo, c_hi):
        r0, r1 = chunk_first[c], chunk_first[c + 1]
        nr = r1 - r0
        pos = 0
        for r in range(r0, r1):
            slot_byte[r] = pos * 4
            pos += (capacity[r] + 3) // 4
        for r in range(r0, r1):             # read + inflate
            m = fetch_native._fetch_block(r, fd, offset, size, compressed, capacity, slot_byte, partial, chrom,
                                          need_pos, want0, big, words, stage, strm, ctx)
            if m < 0:
                status = FUSED_ABANDON
                break
            read += size[r]
            bstart[r - r0] = slot_byte[r] // 4
            bnbytes[r - r0] = m
            bswap[r - r0] = big[r]
        if status != FUSED_OK:
            break
        n_sec = _walk(words, bstart[:nr], bnbytes[:nr], bswap[:nr], False, secs)     # parse
        if n_sec < 0:
            status = FUSED_ABANDON
            break
        if secs.shape[1] < n_sec:
            secs = np.empty((9, max(n_sec, 2 * secs.shape[1])), np.int64)
        _walk(words, bstart[:nr], bnbytes[:nr], bswap[:nr], True, secs)
        j = 0
        for k in range(nr):                  # first section of each block (sections come in block order)
            sec_first[k] = j
            while j < n_sec and secs[0, j] == k:
                if secs[1, j] >= row_n_chroms[r0 + k]:
                    status = FUSED_ABANDON   # a chromosome id the file lacks: the staged path names it
                j += 1
        sec_first[nr] = n_sec
        if status != FUSED_OK:
            break
        top = words.shape[0] - 1
        l0, l1 = chunk_link_first[c], chunk_link_first[c + 1]
        li = l0
        while li < l1:                       # pair by pair
            p = link_pair[li]
            sums[:] = 0.0
            covered[:] = 0.0
            if want_extreme:
                acc[:] = acc0
            last = np.int64(-1)
            col = p // n_batch
            sc = col_scale[col]
            while li < l1 and link_pair[li] == p:
                k = link_row[li] - r0
                for s in range(sec_first[k], sec_first[k + 1]):
                    cr = row_chrom_first[r0 + k] + secs[1, s]
                    cb = chrom_key_base[cr]
                    clen = chrom_len_flat[cr]
                    a = min(max(key_lo[p] - cb, 0), clen)
                    b = min(max(key_hi[p] - cb, 0), clen)
                    if b <= a:
                        continue
                    typ, cnt, iw = secs[6, s], secs[7, s], secs[8, s]
                    s0, st, sp = secs[2, s], secs[4, s], secs[5, s]
                    first, count = item_range(words, top, typ, cnt, iw, s0, st, sp, a, b)
                    if count == 0:
                        continue
                    last = accumulate_entry(words, fwords, typ, iw, first, count, s0, st, sp, a, b, origin[p] - cb,
                                            sc, 0, lim, w, skip_nan, want_extreme, is_max, last, sums, covered, acc)
                    if last == OVERLAP:
                        status = FUSED_ABANDON
                        break
                if status != FUSED_OK:
                    break
                li += 1
            if status != FUSED_OK:
                break
            for x in range(nw):
                out[p, x] = np.float32(finish_window(sums[x], covered[x], acc[x], w, mode, skip_nan, is_max, default))
        if status != FUSED_OK:
            break
    fetch_native._release(strm, ctx)
    return status, read


@njit(nogil=True, cache=True)
def transpose_out(src, dst, b_lo, b_hi):
    """dst[b, x, t] = src[t * B + b, x] for rows b_lo..b_hi-1, in tiles (both sides stay in cache)."""
    T = dst.shape[2]
    nw = dst.shape[1]
    B = dst.shape[0]
    tile = 32
    for b in range(b_lo, b_hi):
        for x0 in range(0, nw, tile):
            x1 = min(x0 + tile, nw)
            for t0 in range(0, T, tile):
                t1 = min(t0 + tile, T)
                for x in range(x0, x1):
                    for t in range(t0, t1):
                        dst[b, x, t] = src[t * B + b, x]


def fused_batch(files, index, plan, table, col_scale, spec, run_parts, n_threads: int, chunk_bytes: int = CHUNK_BYTES):
    """The windowed output (B, L // w, T) float32 of a planned batch through `fused_windows` on
    `run_parts` (a thread pool's map), or None when the batch must take the staged path.
    Returns (output, compressed bytes read)."""
    from ..io import HANDLES, Lease
    q = plan.queries
    T, B, L, w = q.n_tracks, q.batch, q.length, spec.window_size
    nw = L // w
    max_files = HANDLES.max_lease(n_threads)
    bounds = chunk_rows(table.file, table.capacity, chunk_bytes)
    if max_files < len(table):            # a pool short of descriptors: few files per chunk
        from ..io import lease_bounds
        bounds = np.asarray(lease_bounds(table.file, bounds.tolist(), max_files), np.int64)
    n_chunks = len(bounds) - 1
    link_chunk = np.searchsorted(bounds, plan.link_block, side="right") - 1
    order = np.argsort(link_chunk, kind="stable")      # per chunk, still by pair, then row
    link_pair = plan.link_pair[order]
    link_row = plan.link_block[order]
    chunk_link_first = np.searchsorted(link_chunk[order], np.arange(n_chunks + 1))
    # shares of whole chunks for the threads (more than threads: chunk costs are uneven)
    n_shares = max(1, min(4 * n_threads, n_chunks))
    cuts = np.linspace(0, n_chunks, n_shares + 1).astype(np.int64).tolist()
    if max_files < len(table):            # each share then holds one chunk's descriptors at a time
        cuts = list(range(n_chunks + 1))
    shares = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    pairs_out = np.empty((T * B, nw), np.float32)
    fd = np.full(len(table), -2, np.int32)
    slot_byte = np.empty(len(table), np.int64)
    row_chrom_first = index.file_chrom_first[table.file]
    row_n_chroms = index.file_n_chroms[table.file]
    reduce, default = spec.reduce, float(spec.default_value)
    skip_nan = bool(np.isnan(default))
    t = table

    def run(share):
        c_lo, c_hi = share
        r0, r1 = int(bounds[c_lo]), int(bounds[c_hi])
        with Lease(files, t.file[r0:r1]) as lease:      # descriptors stay open while compiled code reads
            fd[r0:r1] = lease.fds
            return fused_windows(c_lo, c_hi, bounds, chunk_link_first, fd, t.offset, t.size, t.compressed,
                                 t.capacity, t.partial, t.chrom, t.need_pos, t.want0, t.big_endian, row_chrom_first,
                                 row_n_chroms, link_pair, link_row, q.key_lo, q.key_hi, q.origin, index.chrom_key_base,
                                 index.chrom_len_flat, col_scale, B, L, w, skip_nan, MODES[reduce], reduce == "max",
                                 default, slot_byte, pairs_out)

    results = run_parts(run, shares)
    if any(status != FUSED_OK for status, _ in results):
        return None, 0
    has = np.zeros(T * B, bool)
    has[plan.link_pair] = True
    lonely = np.flatnonzero(~has)             # pairs with no block: every window as an empty one
    if len(lonely):
        pairs_out[lonely] = np.float32(empty_window_value(w, reduce, default))
    out = np.empty((B, nw, T), np.float32)
    cut = np.linspace(0, B, min(B, max(1, n_threads)) + 1).astype(np.int64).tolist()
    run_parts(lambda ab: transpose_out(pairs_out, out, ab[0], ab[1]), list(zip(cut[:-1], cut[1:])))
    return out, int(sum(r for _, r in results))

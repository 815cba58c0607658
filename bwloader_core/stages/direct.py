"""The direct path: search and fill fused, for blocks that already lie in memory, one compiled
call per share of output rows.

When every block of a batch can be read where it lies (uncompressed files in their memory maps,
blocks in the decoded-block cache), nothing needs reading, inflating or copying, and the staged
path's parse, search and fill (a dozen vector operations over links, sections and entries, then
a paint) are mostly bookkeeping. Here each thread takes rows of the output and, per (row,
track), in one compiled call holding no GIL:

    find the file's blocks that overlap the query (two bisections of its block index, or the
    batch plan's links) -> walk each block's section headers -> clip to the section's chromosome,
    find the items (`search.item_range`) -> paint them (window 1) or add them into the row's
    windows (`fill.accumulate_entry`, `fill.finish_window`)

in the order the staged path meets them, so the output is bit for bit the staged path's. Values
are written straight into the output (unsigned indices, runs of RUN values: one vector store
each where positions are adjacent, (batch, tracks, length) or one track; strided stores for a
few tracks in (batch, length, tracks)). From TRANSPOSE_MIN_TRACKS tracks, a (batch, length,
tracks) row is painted as (tracks, length) in a row buffer, then transposed into place: strided
stores of many tracks each touch their own cache line (transposing is 20% faster at 16
tracks). Anything unusual (a malformed block, a chromosome the file lacks, overlapping records
in a window) abandons the batch to the staged path, which reads it again and reports the
precise error.

Blocks are found in one of three ways (`BlockPlace`):
- by file: `file_word[f] >= 0` is the word of `words` where file f's byte 0 lies (its memory
  map), and a block's words start at `file_word[f] + block_offset // 4` (offsets 4-byte aligned);
- by link: every block a batch needs was a ready cache hit, pinned pair by pair
  (`BlockCache.pin_links`): the k-th block of a pair's range is one link, with its word and
  length in the cache's arena;
- by plan: the batch plan's blocks (sorted ids) with the first word and byte length of each in
  `words` (a fetch stage's `Words`: cache hits, blocks inflated into the cache, in-place blocks).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..format.spec import ITEM_WORDS, MAX_SECTIONS_PER_BLOCK, SECTION_HEADER_WORDS as HEADER_WORDS
from .fill import OVERLAP, _item, accumulate_entry, clip_run, finish_window
from .parse import section_extent
from .plan import block_range
from .search import _first_above, item_range

DIRECT_OK, DIRECT_ABANDON = 0, 1
MODES = {"mean": 0, "sum": 1, "max": 2, "min": 2}
PREFETCH_PAIRS = 32         # pairs (whole rows) whose blocks are asked for before they are painted
PREFETCH_WORDS = 1024      # the most words of one pair's items asked for ahead
RUN = 32                  # values `paint_items` writes at a time
TRANSPOSE_MIN_TRACKS = 8  # from this many tracks, a (B, L, T) row is painted as (T, L), then transposed


@dataclass(frozen=True, eq=False)
class BlockPlace:
    """Where the blocks of a batch lie in `words` (see the module docstring)."""
    words: np.ndarray        # uint32: a view spanning every region the blocks lie in
    file_word: np.ndarray    # int64 (n_files,): word of the file's byte 0, -1: look the block up by plan
    plan_blocks: np.ndarray  # int64 (n,): sorted FlatIndex block ids (empty: by file only)
    plan_word: np.ndarray    # int64 (n,): first word of each
    plan_nbytes: np.ndarray  # int64 (n,): its byte length
    plan_key_end: np.ndarray  # int64 (n,): the largest key its items reach (a partly inflated block's
                              # end before the block's own; it guides the search's first guess)
    keep: tuple = ()         # the memory regions `words` spans, held while it is read
    # by link (cache hits pinned pair by pair, `BlockCache.pin_links`): the k-th block of pair p's
    # range (`plan.block_ranges`) is link link_first[p] + k; word -1: a block the pair skips
    link_first: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    link_lo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # block row of link 0 per pair
    link_word: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    link_nbytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    link_key_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of_maps(cls, maps, tracks) -> "BlockPlace":
        """Every block of files `tracks` where it lies in its file's memory map."""
        words, file_word, arrays = maps.words_of(tracks)
        z = np.zeros(0, np.int64)
        return cls(words, file_word, z, z, z, z, arrays)

    @classmethod
    def of_words(cls, words, plan_blocks, n_files: int) -> "BlockPlace":
        """The blocks of a plan where a fetch stage's `Words` hold them."""
        from ..cache import WHOLE
        key_end = words.covered if words.covered is not None else np.full(len(plan_blocks), WHOLE)
        return cls(words.words, np.full(n_files, -1, np.int64), plan_blocks, words.block_start, words.block_nbytes,
                   key_end, (words,))

    @classmethod
    def of_cache_links(cls, arena, lo, links, n_files: int) -> "BlockPlace":
        """Every block of a batch as a pinned cache hit (`BlockCache.pin_links`' links of the
        pairs' block ranges starting at rows `lo`)."""
        z = np.zeros(0, np.int64)
        first, word, nbytes, key_end = links
        return cls(arena, np.full(n_files, -1, np.int64), z, z, z, z, (arena,), first, lo, word, nbytes, key_end)


@njit(nogil=True, cache=True, inline="always")
def _locate(blk, f, k, file_word, block_offset, block_size, block_end, plan_blocks, plan_word, plan_nbytes,
            plan_key_end, link_word, link_nbytes, link_key_end):
    """(first word, byte length, largest key its items reach) of block `blk` of file `f` (link k
    in link mode); (-1, 0, 0) when it is not in memory."""
    if link_word.shape[0] > 0:
        return link_word[k], link_nbytes[k], link_key_end[k]
    fw = file_word[f]
    end = np.int64(block_end[blk])
    if fw >= 0:
        off = np.int64(block_offset[blk])
        if off % 4:
            return np.int64(-1), np.int64(0), end    # not a word boundary: the staged path copies it
        return fw + off // 4, np.int64(block_size[blk]), end
    lo, hi = 0, plan_blocks.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if plan_blocks[mid] < blk:
            lo = mid + 1
        else:
            hi = mid
    if lo < plan_blocks.shape[0] and plan_blocks[lo] == blk:
        return plan_word[lo], plan_nbytes[lo], min(end, plan_key_end[lo])
    return np.int64(-1), np.int64(0), end


@njit(nogil=True, cache=True, inline="always")
def _fill_run(flat, base, stride, x, end, room, value):
    """Positions x..end-1 of a row (flat[base + x * stride]) = value, in whole runs of RUN values
    (so possibly past `end`, but never at or past `room`, the row's positions): one predictable
    loop trip for most runs, and stores the compiler vectorises (stride 1). Indices are
    unsigned, which spares each store a negative-index check."""
    while x < end:
        if x + np.uint64(RUN) <= room:
            if stride == 1:
                store_run(flat, base + x, value)
            else:
                for j in range(RUN):
                    flat[base + (x + np.uint64(j)) * stride] = value
            x += np.uint64(RUN)
        else:
            while x < end:
                flat[base + x * stride] = value
                x += np.uint64(1)


@njit(nogil=True, cache=True, inline="always")
def paint_items(words, fwords, typ, item_w, first, count, s0, st, sp, a, bb, o, sc, dflt, flat, base, stride, room,
                filled, nw):
    """Items first..first+count-1 of a section painted into the row at flat[base + x * stride]
    (`room` positions: nw or more), clipped to
    [a, bb) of the chromosome (output base 0 at `o`), the default written over the gaps from
    `filled` (where the row's painting stands) on. Returns the new `filled`.

    A later item overwrites an earlier one where they overlap (pyBigWig's order), as
    `fill.paint_rows`. Runs are written in blocks of RUN values, past their end: whatever lies
    past `filled` is written again by the next gap, item or the row's final default. An item
    that ends before `filled` (nested in an earlier one) is written exactly. The walk stops at
    the first item starting at or past `bb`, so `count` may be all the items left."""
    for i in range(first, first + count):
        s, e, v = _item(words, fwords, typ, item_w, i, s0, st, sp)
        if s >= bb:
            break                     # items start in order: none further reaches [a, bb)
        ls, le = clip_run(s, e, a, bb, o, nw)
        if le <= ls:
            continue
        val = np.float32(np.float64(v) * sc)
        uls = np.uint64(ls)
        ule = np.uint64(le)
        if ule >= filled:
            _fill_run(flat, base, stride, filled, uls, room, dflt)
            _fill_run(flat, base, stride, uls, ule, room, val)
            filled = ule
        else:
            for x in range(uls, ule):
                flat[base + x * stride] = val
    return filled


def _element_pointer(context, builder, aryty, ary_value, idxty, idx_value):
    """LLVM pointer to element idx of a 1-d array (no bounds check, no wraparound)."""
    ary = context.make_array(aryty)(context, builder, ary_value)
    i = context.cast(builder, idx_value, idxty, types.intp)
    return cgutils.get_item_pointer2(context, builder, data=ary.data,
                                     shape=cgutils.unpack_tuple(builder, ary.shape, aryty.ndim),
                                     strides=cgutils.unpack_tuple(builder, ary.strides, aryty.ndim),
                                     layout=aryty.layout, inds=[i], wraparound=False)


@intrinsic
def prefetch(typingctx, arr, idx):
    """Ask the CPU to bring arr[idx] into cache (LLVM's prefetch: read, keep, data); no bounds
    check and no fault (a hint). The direct path asks for the next row's blocks while it paints
    this row's, so the misses (and page walks) of different pairs overlap instead of queueing."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ptr = _element_pointer(context, builder, aryty, args[0], idxty, args[1])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@intrinsic
def store_run(typingctx, arr, idx, value):
    """arr[idx:idx + RUN] = value as one vector store (no bounds check: the caller keeps the run
    inside the row). Written as a loop, numba unrolls it fully and, without SLP vectorising,
    leaves RUN scalar stores: painting took 1.6x as long."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        aryty, idxty, valty = signature.args
        ptr = _element_pointer(context, builder, aryty, args[0], idxty, args[1])
        vec_t = ir.VectorType(context.get_value_type(aryty.dtype), RUN)
        one = builder.insert_element(ir.Constant(vec_t, ir.Undefined),
                                     context.cast(builder, args[2], valty, aryty.dtype), ir.IntType(32)(0))
        splat = ir.Constant(ir.VectorType(ir.IntType(32), RUN), [0] * RUN)
        vec = builder.shuffle_vector(one, ir.Constant(vec_t, ir.Undefined), splat)
        builder.store(vec, builder.bitcast(ptr, vec_t.as_pointer()), align=aryty.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.void(arr, idx, value), codegen


@njit(nogil=True, cache=True, inline="always")
def _guess(x, s0, s1, cnt):
    """The item index of position x, interpolated over a section spanning [s0, s1) with cnt items."""
    if s1 <= s0:
        return np.int64(0)
    return np.int64((x - s0) * cnt / (s1 - s0))


@njit(nogil=True, cache=True, inline="always")
def _transpose_row(rowbuf, flat, base, T, nw):
    """flat[base + x * T + c] = rowbuf[c * nw + x]: a (T, nw) row written as (nw, T)."""
    for x in range(nw):
        o = base + np.uint64(x) * np.uint64(T)
        for c in range(T):
            flat[o + np.uint64(c)] = rowbuf[np.uint64(c) * np.uint64(nw) + np.uint64(x)]


# No NRT (numba's reference counting) in `direct_rows`: every array it hands to a helper (all
# inlined) would otherwise be counted up and down, atomically, around each call, for every pair:
# a third of a batch's time. It allocates nothing; its scratch arrays come from `direct_batch`.
@njit(nogil=True, cache=True, _nrt=False)
def direct_rows(words, fwords, b_lo, b_hi, n_batch, tracks, key_lo, key_hi, origin, col_scale, file_word,
                plan_blocks, plan_word, plan_nbytes, plan_key_end, link_first, link_lo, link_word, link_nbytes,
                link_key_end, file_block_first, file_chrom_first, file_n_chroms, file_big_endian, block_start,
                block_end, block_end_cummax, block_offset, block_size, bucket_shift, bucket_first, bucket_row,
                chrom_key_base, chrom_len_flat, length, w, mode, skip_nan, is_max, default, channels_first,
                transpose, out, sums, covered, acc, rowbuf, ranges):
    """Output rows b_lo..b_hi-1 of `out` (B, length // w, T) float32, or (B, T, length // w) with
    `channels_first`: every (row, track) pair's blocks searched and its items painted (w == 1) or
    reduced into windows (`transpose`: a (B, length // w, T) row painted into `rowbuf` first).
    Scratch: `sums`, `covered`, `acc` (length // w each, windows only), `rowbuf` (T * length // w
    with `transpose`), `ranges` (rows of a prefetch chunk, T, 3). Returns (DIRECT_OK or
    DIRECT_ABANDON (nothing is then to be trusted in those rows), blocks searched)."""
    T = tracks.shape[0]
    nw = length // w
    lim = nw * w
    top = words.shape[0] - 1
    want_extreme = mode == 2
    acc0 = -np.inf if is_max else np.inf
    dflt = np.float32(default)
    # position x of track c in row r: r * nw * T + x * T + c, or channels first r * T * nw + c * nw + x
    oflat = out.reshape(-1)
    stride = np.uint64(1) if channels_first else np.uint64(T)
    col = np.uint64(nw) if channels_first else np.uint64(1)
    row_base = np.uint64(0)
    # transpose: each row painted track by track into `rowbuf` (T, nw), stride 1, then written
    # out position by position (T values each): many tracks' strided stores would each touch
    # their own cache line
    tgt = rowbuf if transpose else oflat
    t_stride = np.uint64(1) if transpose else stride
    t_col = np.uint64(nw) if transpose else col
    chunk = ranges.shape[0]       # rows whose blocks are touched before they are painted
    by_link = link_first.shape[0] > 0
    n_read = 0
    for b0 in range(b_lo, b_hi, chunk):
        b_end = min(b0 + chunk, b_hi)
        # the block rows of the chunk's pairs, and a prefetch of where each one's search starts
        # (its first block's header, and the items its range covers, guessed from the index), in
        # one loop: the misses (and page walks) of the chunk's pairs overlap, then its rows paint
        for b in range(b0, b_end):
            for c in range(T):
                p = c * n_batch + b
                lo_key, hi_key = key_lo[p], key_hi[p]
                f = tracks[c]
                lo, b1, kbase = np.int64(0), np.int64(0), np.int64(0)
                if hi_key > lo_key:
                    if by_link:                  # the ranges the cache lookup found
                        lo = link_lo[p]
                        b1 = lo + link_first[p + 1] - link_first[p]
                        kbase = link_first[p] - lo
                    else:
                        lo, b1 = block_range(f, lo_key, hi_key, file_block_first, block_start, block_end_cummax,
                                             bucket_shift, bucket_first, bucket_row)
                    while lo < b1 and np.int64(block_end[lo]) <= lo_key:
                        lo += 1
                    if lo < b1:
                        wd, nbytes, ke = _locate(lo, f, kbase + lo, file_word, block_offset, block_size, block_end,
                                                 plan_blocks, plan_word, plan_nbytes, plan_key_end, link_word,
                                                 link_nbytes, link_key_end)
                        if wd >= 0 and nbytes > 0:
                            prefetch(words, wd)
                            ks = np.int64(block_start[lo])
                            n_items_words = nbytes // 4 - HEADER_WORDS
                            top_item = max(n_items_words - 1, 0)
                            g0 = wd + HEADER_WORDS + min(max(_guess(lo_key, ks, ke, n_items_words) - 16, 0), top_item)
                            g1 = wd + HEADER_WORDS + min(max(_guess(hi_key, ks, ke, n_items_words) + 16, 0), top_item)
                            prefetch(words, g0)
                            for x in range(g0 + 16, min(g1, g0 + PREFETCH_WORDS) + 1, 16):   # a cache line at a time
                                prefetch(words, x)
                ranges[b - b0, c, 0] = lo
                ranges[b - b0, c, 1] = b1
                ranges[b - b0, c, 2] = kbase
        for r in range(b0, b_end):
            row_base = np.uint64(r) * np.uint64(nw) * np.uint64(T)
            t_base = np.uint64(0) if transpose else row_base
            for c in range(T):
                p = c * n_batch + r
                lo_key, hi_key = key_lo[p], key_hi[p]
                f = tracks[c]
                sc = col_scale[c]
                filled = np.uint64(0)
                last = np.int64(-1)
                if w > 1:
                    sums[:] = 0.0
                    covered[:] = 0.0
                    if want_extreme:
                        acc[:] = acc0
                cf = file_chrom_first[f]
                nch = file_n_chroms[f]
                swapped = file_big_endian[f]
                for blk in range(ranges[r - b0, c, 0], ranges[r - b0, c, 1]):
                    if np.int64(block_end[blk]) <= lo_key:
                        continue
                    wd, nbytes, key_end = _locate(blk, f, ranges[r - b0, c, 2] + blk, file_word, block_offset,
                                                  block_size, block_end, plan_blocks, plan_word, plan_nbytes,
                                                  plan_key_end, link_word, link_nbytes, link_key_end)
                    if wd < 0:
                        return DIRECT_ABANDON, n_read
                    n_read += 1
                    if nbytes <= 0:
                        continue
                    end_byte = wd * 4 + nbytes
                    cursor = wd
                    n_sec = 0
                    while True:                          # the block's sections
                        typ, cnt, nxt = section_extent(words, cursor, end_byte, swapped)
                        if typ < 0:
                            return DIRECT_ABANDON, n_read
                        iw = ITEM_WORDS[typ]
                        n_sec += 1
                        if n_sec > MAX_SECTIONS_PER_BLOCK:
                            return DIRECT_ABANDON, n_read
                        cid = np.int64(words[cursor])
                        if cid >= nch:
                            return DIRECT_ABANDON, n_read
                        cr = cf + cid
                        cb = chrom_key_base[cr]
                        clen = chrom_len_flat[cr]
                        a = min(max(lo_key - cb, 0), clen)
                        bb = min(max(hi_key - cb, 0), clen)
                        if bb > a and cnt > 0:
                            s0 = np.int64(words[cursor + 1])
                            st = np.int64(words[cursor + 3])
                            sp = np.int64(words[cursor + 4])
                            item_w = cursor + HEADER_WORDS
                            if typ == 3:
                                first, count = item_range(words, top, typ, cnt, item_w, s0, st, sp, a, bb)
                            else:                        # as `search.item_range`, guessing from the header
                                s1 = min(np.int64(words[cursor + 2]), key_end - cb)   # a partial block ends early
                                end_word = 1 if typ == 1 else 0
                                end_add = 0 if typ == 1 else sp
                                first = _first_above(words, top, item_w, cnt, iw, end_word, end_add, a,
                                                     _guess(a, s0, s1, cnt))
                                if w == 1:               # the paint stops at the first item past bb
                                    count = cnt - first
                                else:
                                    f1 = _first_above(words, top, item_w, cnt, iw, 0, 0, bb - 1,
                                                      _guess(bb, s0, s1, cnt))
                                    count = max(f1 - first, 0)
                            o = origin[p] - cb
                            if count == 0:
                                pass
                            elif w == 1:
                                filled = paint_items(words, fwords, typ, item_w, first, count, s0, st, sp, a, bb, o,
                                                     sc, dflt, tgt, t_base + np.uint64(c) * t_col, t_stride,
                                                     np.uint64(nw), filled, nw)
                            else:
                                last = accumulate_entry(words, fwords, typ, item_w, first, count, s0, st, sp, a, bb, o,
                                                        sc, 0, lim, w, skip_nan, want_extreme, is_max, last, sums,
                                                        covered, acc)
                                if last == OVERLAP:
                                    return DIRECT_ABANDON, n_read
                        cursor = nxt
                        if (nxt + HEADER_WORDS) * 4 > end_byte:
                            break
                if w == 1:
                    _fill_run(tgt, t_base + np.uint64(c) * t_col, t_stride, filled, np.uint64(nw), np.uint64(nw), dflt)
                else:
                    for x in range(nw):
                        wv = finish_window(sums[x], covered[x], acc[x] if want_extreme else 0.0, w, mode, skip_nan,
                                           is_max, default)
                        tgt[t_base + np.uint64(c) * t_col + np.uint64(x) * t_stride] = np.float32(wv)
            if transpose:
                _transpose_row(rowbuf, oflat, row_base, T, nw)
    return DIRECT_OK, n_read


def direct_batch(q, index, place: BlockPlace, col_scale, spec, out, run_parts, n_parts: int,
                 channels_first: bool = False) -> int:
    """Fill `out` (B, L // w, T) float32, or (B, T, L // w) with `channels_first`, with the
    values of queries `q`, every block in memory as
    `place` says, in `n_parts` shares of rows run by `run_parts(fn, items)` (a thread pool's
    map). Returns the number of (pair, block) reads, or -1 when the batch must take the staged
    path."""
    T, B, L, w = q.n_tracks, q.batch, q.length, spec.window_size
    if B == 0 or T == 0:
        return 0
    reduce, default = spec.reduce, float(spec.default_value)
    n_parts = max(1, min(n_parts, B))
    cut = np.linspace(0, B, n_parts + 1).astype(np.int64).tolist()
    fwords = place.words.view(np.float32)

    nw = L // w
    transpose = not channels_first and T >= TRANSPOSE_MIN_TRACKS
    chunk = max(1, -(-PREFETCH_PAIRS // T))
    kt = index.key_table

    def run(share):
        # scratch (one set per share): window sums, covered bases and extremes; the transposed
        # row; the block rows [lo, hi) and first link of each pair of a chunk of rows
        sums, covered, acc = (np.empty(nw if w > 1 else 0) for _ in range(3))
        rowbuf = np.empty(T * nw if transpose else 0, np.float32)
        ranges = np.empty((chunk, T, 3), np.int64)
        return direct_rows(place.words, fwords, share[0], share[1], B, q.tracks, q.key_lo, q.key_hi, q.origin,
                           col_scale, place.file_word, place.plan_blocks, place.plan_word, place.plan_nbytes,
                           place.plan_key_end, place.link_first, place.link_lo, place.link_word, place.link_nbytes,
                           place.link_key_end, index.file_block_first, index.file_chrom_first, index.file_n_chroms,
                           index.file_big_endian, index.block_start, index.block_end, index.block_end_cummax,
                           index.block_offset, index.block_size, kt.shift, kt.first, kt.rows, index.chrom_key_base,
                           index.chrom_len_flat, L, w, MODES[reduce], bool(np.isnan(default)), reduce == "max",
                           default, bool(channels_first), transpose, out, sums, covered, acc, rowbuf, ranges)

    shares = list(zip(cut[:-1], cut[1:]))
    results = run_parts(run, shares) if n_parts > 1 else [run(shares[0])]
    if any(status != DIRECT_OK for status, _ in results):
        return -1
    return int(sum(n for _, n in results))

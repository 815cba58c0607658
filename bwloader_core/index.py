"""FlatIndex: every file's chromosomes and data blocks in a few flat, read-only arrays.

Positions are *keys* in each file's own key space, `chrom_offset + base` (as `BigWigFile`
defines them): a pair (query, track) is planned by searching the blocks of its file only
(`stages.plan`). The blocks of file `t` are rows `file_block_first[t]:file_block_first[t + 1]` of
the block arrays, sorted by start key. The arrays take the narrowest dtypes that hold their values
(keys in uint32 while every genome is under 4 Gb, offsets in uint32 while every file is under
4 GiB), and files with the same chromosomes (names and sizes) share one chromosome table.
The files of a collection keep views of these arrays, not copies (`BigWigFile.adopt_blocks`).

Memory: about 16 bytes per data block (24 with 64-bit offsets or keys) plus a few hundred bytes
per file. The index is built once per collection and never written again, so DataLoader worker
processes forked from the parent share its pages instead of copying them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

U32_MAX = (1 << 32) - 1


def _frozen(a) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def narrowest_uint(max_value: int) -> np.dtype:
    """uint32 when every value fits in it, else int64 (never uint64: it mixes badly with int64)."""
    return np.dtype(np.uint32) if max_value <= U32_MAX else np.dtype(np.int64)


@dataclass(frozen=True, eq=False)
class FlatIndex:
    """Per-file, per-chromosome and per-block arrays of a collection (all read-only).

    Blocks of one file are sorted by start key; `block_end_cummax` is the running maximum of
    their end keys within each file (blocks may overlap in key, so a plain search on ends would
    not do); for the usual file whose ends already rise it is the `block_end` array itself."""
    chrom_names: tuple            # global chromosome names, in first-seen order
    chrom_sizes: dict             # name -> the largest size any file gives it
    # per file (track)
    file_block_first: np.ndarray  # int64 (T + 1,): the file's first row in the block arrays
    file_table: np.ndarray        # int32 (T,): the file's chromosome table
    file_chrom_first: np.ndarray  # int64 (T,): first row of its table in the flat chromosome arrays
    file_n_chroms: np.ndarray     # int64 (T,)
    file_big_endian: np.ndarray   # bool (T,)
    file_compressed: np.ndarray   # bool (T,)
    file_uncompress_buf_size: np.ndarray  # int64 (T,): 0 for uncompressed files
    file_in_place: np.ndarray     # bool (T,): data blocks can be read where they lie (memory map)
    file_aligned: np.ndarray      # bool (T,): every data block starts on a 4-byte boundary (read as words)
    all_local: bool               # every file is local (read by compiled preads through the descriptor pool)
    # per chromosome table (files with equal chromosome names and sizes share one), by global chromosome
    table_chrom_key: np.ndarray   # int64 (n_tables, G): key of base 0 of the chromosome
    table_chrom_len: np.ndarray   # int64 (n_tables, G): its length, -1 where the table lacks it
    # per (table, table chromosome), flat: row file_chrom_first[t] + chrom id
    chrom_key_base: np.ndarray    # int64: key of the chromosome's base 0 in its files' key space
    chrom_len_flat: np.ndarray    # int64
    chrom_sort_key: np.ndarray    # int64: chrom_key_base + table_sort_base of its table (ascending)
    table_sort_base: np.ndarray   # int64 (n_tables,): puts every table's keys in one ascending space
    # per data block (R-tree leaf), file by file, sorted by start key within a file
    block_start: np.ndarray       # uint32 / int64: first key
    block_end: np.ndarray         # uint32 / int64: key past the last base
    block_end_cummax: np.ndarray  # uint32 / int64: running maximum of block_end within the file
    block_offset: np.ndarray      # uint32 / int64: byte offset in its file
    block_size: np.ndarray        # uint32 / int64: bytes on disk

    @cached_property
    def key_table(self) -> "KeyTable":
        """The files' key tables (`KeyTable`), built on first use: by the first batch, not at open
        (their compiled fill would start numba there, 0.3 s and 100 MiB before any read)."""
        return _key_buckets(self.file_block_first, self.block_end_cummax)

    @property
    def n_files(self) -> int:
        return len(self.file_table)

    @property
    def n_blocks(self) -> int:
        return len(self.block_start)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (shared arrays counted once)."""
        seen, total = set(), 0
        for v in vars(self).values():
            if isinstance(v, np.ndarray) and id(v) not in seen:
                seen.add(id(v))
                total += v.nbytes
        return total

    def block_file(self, blocks) -> np.ndarray:
        """The file (track) of each block id."""
        return np.searchsorted(self.file_block_first, blocks, side="right") - 1

    def chrom_row_of_keys(self, files, keys) -> np.ndarray:
        """Flat chromosome row of key `keys[i]` in file `files[i]` (the last chromosome starting at
        or before it)."""
        tab = self.file_table[files]
        g = np.searchsorted(self.chrom_sort_key, self.table_sort_base[tab] + keys, side="right") - 1
        first = self.file_chrom_first[files]
        return np.clip(g, first, first + np.maximum(self.file_n_chroms[files] - 1, 0))

    @classmethod
    def build(cls, files, adopt: bool = False) -> "FlatIndex":
        """The index of open `BigWigFile`s (their order is the track order). With `adopt`, each
        file then keeps views of the index's block arrays instead of its own copies."""
        chrom_sizes: dict[str, int] = {}
        for f in files:
            for n, s in f.chrom_sizes.items():
                chrom_sizes[n] = max(s, chrom_sizes.get(n, 0))
        chrom_index = {n: i for i, n in enumerate(chrom_sizes)}
        G, T = len(chrom_sizes), len(files)
        # chromosome tables: one per distinct ChromTable object (BigWigFile interns them)
        table_of: dict[int, int] = {}
        tables = []
        file_table = np.empty(T, np.int32)
        for t, f in enumerate(files):
            ct = f.chrom_table
            k = table_of.get(id(ct))
            if k is None:
                k = table_of[id(ct)] = len(tables)
                tables.append(ct)
            file_table[t] = k
        nt = len(tables)
        table_key = np.zeros((nt, G), np.int64)
        table_len = np.full((nt, G), -1, np.int64)
        n_chroms = np.array([len(ct.names) for ct in tables], np.int64)
        table_first = np.concatenate([[0], np.cumsum(n_chroms)[:-1]]).astype(np.int64) if nt else np.zeros(0, np.int64)
        totals = np.array([ct.total_length + 1 for ct in tables], np.int64)
        sort_base = np.concatenate([[0], np.cumsum(totals)[:-1]]).astype(np.int64) if nt else np.zeros(0, np.int64)
        key_base, len_flat = [], []
        for k, ct in enumerate(tables):
            g = np.fromiter((chrom_index[n] for n in ct.names), np.int64, len(ct.names))
            table_key[k, g] = ct.offsets[:-1]
            table_len[k, g] = ct.lengths
            key_base.append(ct.offsets[:-1])
            len_flat.append(ct.lengths)
        cat = (lambda parts, dt: np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros(0, dt))
        chrom_key_base = cat(key_base, np.int64)
        chrom_sort_key = chrom_key_base + np.repeat(sort_base, n_chroms)

        # blocks: one preallocated array per field, each file's rows copied in (no temporaries)
        nb = np.array([f.n_blocks for f in files], np.int64)
        first = np.zeros(T + 1, np.int64)
        np.cumsum(nb, out=first[1:])
        n = int(first[-1])
        key_dt = narrowest_uint(max((ct.total_length for ct in tables), default=0))
        off_dt = narrowest_uint(max((f.file_size for f in files), default=0))
        arrays = {name: np.empty(n, dt) for name, dt in (("start", key_dt), ("end", key_dt), ("offset", off_dt),
                                                           ("size", off_dt))}
        rising = True
        for t, f in enumerate(files):
            a, b = first[t], first[t + 1]
            arrays["start"][a:b] = f.block_start_key
            arrays["end"][a:b] = f.block_end_key
            arrays["offset"][a:b] = f.block_offset
            arrays["size"][a:b] = f.block_size
            rising = rising and f.block_ends_rise
        end = arrays["end"]
        if rising:
            cummax = end                     # the usual file: ends already rise block by block
        else:
            cummax = end.copy()
            for t in range(T):
                seg = cummax[first[t]:first[t + 1]]
                np.maximum.accumulate(seg, out=seg)
        index = cls(
            chrom_names=tuple(chrom_sizes), chrom_sizes=chrom_sizes,
            file_block_first=_frozen(first),
            file_table=_frozen(file_table),
            file_chrom_first=_frozen(table_first[file_table]),
            file_n_chroms=_frozen(n_chroms[file_table]),
            file_big_endian=_frozen(np.array([f.byteorder == ">" for f in files], bool)),
            file_compressed=_frozen(np.array([f.compressed for f in files], bool)),
            file_uncompress_buf_size=_frozen(np.array([f.uncompress_buf_size if f.compressed else 0
                                                       for f in files], np.int64)),
            file_in_place=_frozen(np.array([f.readable_in_place for f in files], bool)),
            file_aligned=_frozen(np.array([bool((np.asarray(f.block_offset) % 4 == 0).all()) for f in files], bool)),
            all_local=all(f.is_local for f in files),
            table_chrom_key=_frozen(table_key), table_chrom_len=_frozen(table_len),
            chrom_key_base=_frozen(chrom_key_base), chrom_len_flat=_frozen(cat(len_flat, np.int64)),
            chrom_sort_key=_frozen(chrom_sort_key), table_sort_base=_frozen(sort_base),
            block_start=_frozen(arrays["start"]), block_end=_frozen(end),
            block_end_cummax=end if cummax is end else _frozen(cummax),
            block_offset=_frozen(arrays["offset"]), block_size=_frozen(arrays["size"]),
        )
        if adopt:
            for t, f in enumerate(files):
                f.adopt_blocks(index, t)
        return index


BLOCKS_PER_BUCKET = 2


@dataclass(frozen=True, eq=False)
class KeyTable:
    """A coarse table over each file's keys, so that a block search starts a row or two from its
    answer (`stages.plan.block_range`): bucket k of file f holds keys [k << shift[f], (k + 1) <<
    shift[f]), and rows[first[f] + k] is the first of f's blocks (counted from the file's first
    row) whose running-maximum end passes k << shift[f]."""
    shift: np.ndarray   # int64 (T,)
    first: np.ndarray   # int64 (T + 1,)
    rows: np.ndarray    # uint32


def _key_buckets(first: np.ndarray, end_cummax: np.ndarray) -> KeyTable:
    """The `KeyTable` of blocks (rows `first[t]:first[t + 1]` per file): per file, buckets of a
    power-of-two width holding about BLOCKS_PER_BUCKET blocks each (half an entry per block).
    Sized with NumPy over all files at once, filled by one compiled merge (3,000 files' tables
    in about 70 ms)."""
    T = len(first) - 1
    nb = np.diff(first)
    span = np.zeros(T, np.int64)
    has = nb > 0
    span[has] = end_cummax[first[1:][has] - 1]
    width = np.maximum(span * BLOCKS_PER_BUCKET // np.maximum(nb, 1), 1)
    shift = np.floor(np.log2(width.astype(np.float64))).astype(np.int64)
    shift -= (np.left_shift(1, shift) > width)            # floor(log2) exact, whatever the rounding
    shift += (np.left_shift(1, shift + 1) <= width)
    bucket_first = np.zeros(T + 1, np.int64)
    np.cumsum((span >> shift) + 2, out=bucket_first[1:])  # the last bucket starts past every block's end
    rows = np.empty(int(bucket_first[-1]), np.uint32)
    _fill_buckets(first, end_cummax, shift, bucket_first, rows)
    return KeyTable(shift, bucket_first, rows)


@njit(nogil=True, cache=True)
def _fill_buckets(first, end_cummax, shift, bucket_first, rows):
    """rows[bucket_first[t] + k] = the first of file t's blocks (counted from first[t]) whose
    running-maximum end passes k << shift[t]: one walk over the blocks and buckets of each file."""
    for t in range(first.shape[0] - 1):
        a, b = first[t], first[t + 1]
        r = a
        for k in range(bucket_first[t + 1] - bucket_first[t]):
            key = np.int64(k) << shift[t]
            while r < b and np.int64(end_cummax[r]) <= key:
                r += 1
            rows[bucket_first[t] + k] = r - a

"""FlatIndex: every file's chromosomes and data blocks in one sorted key space.

Each track (file) `t` gets a range of global *keys*: `track_base[t] + chrom_offset + base`. All
files' R-tree leaves, flattened at open, sit in that one space, so planning a batch over many
tracks is a pair of `searchsorted` calls. The index is built once per collection and is read-only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _frozen(a) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class FlatIndex:
    """Per-file, per-chromosome and per-block arrays of a collection (all read-only).

    Blocks are sorted by start key; `leaf_end_cummax` is the running maximum of their end keys
    (blocks of one file may overlap in key, so a plain `searchsorted` on ends would not do)."""
    chrom_names: tuple            # global chromosome names, in first-seen order
    chrom_sizes: dict             # name -> the largest size any file gives it
    # per file (track)
    track_base: np.ndarray        # int64 (T,): key of the file's first base
    file_chrom_first: np.ndarray  # int64 (T,): the file's first row in the flat chromosome arrays
    file_n_chroms: np.ndarray     # int64 (T,)
    file_big_endian: np.ndarray   # bool (T,)
    file_compressed: np.ndarray   # bool (T,)
    file_uncompress_buf_size: np.ndarray  # int64 (T,): 0 for uncompressed files
    file_fd: np.ndarray           # int32 (T,): local descriptor, -1 for a URL
    file_in_place: np.ndarray     # bool (T,): data blocks can be read where they lie (memory map)
    all_local: bool
    # per (file, global chromosome)
    chrom_key: np.ndarray         # int64 (T, G): key of base 0 of the chromosome in the file
    chrom_len: np.ndarray         # int64 (T, G): its length in the file, -1 where the file lacks it
    # per (file, file chromosome), flat: row file_chrom_first[t] + chrom id
    chrom_key_base: np.ndarray    # int64
    chrom_len_flat: np.ndarray    # int64
    # per data block (R-tree leaf), sorted by start key
    leaf_file: np.ndarray         # int64: file (track) of the block
    leaf_local: np.ndarray        # int64: the block's index in its file's block arrays
    leaf_start: np.ndarray        # int64: first key
    leaf_end: np.ndarray          # int64: key past the last base
    leaf_end_cummax: np.ndarray   # int64: running maximum of leaf_end
    leaf_offset: np.ndarray       # int64: byte offset in its file
    leaf_size: np.ndarray         # int64: bytes on disk

    @property
    def n_files(self) -> int:
        return len(self.track_base)

    @property
    def n_blocks(self) -> int:
        return len(self.leaf_file)

    @classmethod
    def build(cls, files) -> "FlatIndex":
        """The index of open `BigWigFile`s (their order is the track order)."""
        chrom_sizes: dict[str, int] = {}
        for f in files:
            for n, s in f.chrom_sizes.items():
                chrom_sizes[n] = max(s, chrom_sizes.get(n, 0))
        chrom_index = {n: i for i, n in enumerate(chrom_sizes)}
        G, T = len(chrom_sizes), len(files)
        totals = np.array([f.total_length + 1 for f in files], np.int64)
        track_base = np.concatenate([[0], np.cumsum(totals)[:-1]]).astype(np.int64) if T else np.zeros(0, np.int64)
        chrom_key = np.zeros((T, G), np.int64)
        chrom_len = np.full((T, G), -1, np.int64)
        first, key_base, len_flat = [], [], []
        pos = 0
        for t, f in enumerate(files):
            g = np.fromiter((chrom_index[n] for n in f.chrom_names), np.int64, len(f.chrom_names))
            chrom_key[t, g] = track_base[t] + f.chrom_offsets[:-1]
            chrom_len[t, g] = f.chrom_lengths
            first.append(pos)
            pos += len(f.chrom_names)
            key_base.append(track_base[t] + f.chrom_offsets[:-1])
            len_flat.append(f.chrom_lengths)
        nb = np.array([f.n_blocks for f in files], np.int64)
        cat = (lambda parts, dt: np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros(0, dt))
        leaf_end = cat([track_base[t] + f.block_end_key for t, f in enumerate(files)], np.int64)
        fds = [f.local_fd for f in files]
        return cls(
            chrom_names=tuple(chrom_sizes), chrom_sizes=chrom_sizes,
            track_base=_frozen(track_base),
            file_chrom_first=_frozen(np.array(first, np.int64)),
            file_n_chroms=_frozen(np.array([len(f.chrom_names) for f in files], np.int64)),
            file_big_endian=_frozen(np.array([f.byteorder == ">" for f in files], bool)),
            file_compressed=_frozen(np.array([f.compressed for f in files], bool)),
            file_uncompress_buf_size=_frozen(np.array([f.uncompress_buf_size if f.compressed else 0
                                                       for f in files], np.int64)),
            file_fd=_frozen(np.array([-1 if fd is None else fd for fd in fds], np.int32)),
            file_in_place=_frozen(np.array([f.readable_in_place for f in files], bool)),
            all_local=all(fd is not None for fd in fds),
            chrom_key=_frozen(chrom_key), chrom_len=_frozen(chrom_len),
            chrom_key_base=_frozen(cat(key_base, np.int64)), chrom_len_flat=_frozen(cat(len_flat, np.int64)),
            leaf_file=_frozen(np.repeat(np.arange(T, dtype=np.int64), nb)),
            leaf_local=_frozen(cat([np.arange(n, dtype=np.int64) for n in nb], np.int64)),
            leaf_start=_frozen(cat([track_base[t] + f.block_start_key for t, f in enumerate(files)], np.int64)),
            leaf_end=_frozen(leaf_end),
            leaf_end_cummax=_frozen(np.maximum.accumulate(leaf_end) if len(leaf_end) else leaf_end),
            leaf_offset=_frozen(cat([f.block_offset for f in files], np.int64)),
            leaf_size=_frozen(cat([f.block_size for f in files], np.int64)),
        )

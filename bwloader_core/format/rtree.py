"""The R-tree index of data blocks, flattened to NumPy arrays of leaves at open."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import BigWigFormatError

RTREE_MAGIC = 0x2468ACE0
MAX_DEPTH = 32


def read_rtree_leaves(source, offset: int, bo: str) -> np.ndarray:
    """Walk the R-tree from the root by child offsets; return a structured array of all leaf items
    (start_chrom, start_base, end_chrom, end_base, offset, size) in tree order."""
    path = source.path
    hdr = source.pread(offset, 48, "R-tree index header")
    magic, block_size, item_count = struct.unpack_from(bo + "IIQ", hdr)
    if magic != RTREE_MAGIC:
        raise BigWigFormatError(path, f"bad R-tree index magic 0x{magic:08X} at offset {offset}")
    if block_size == 0:
        raise BigWigFormatError(path, "R-tree blockSize is 0")
    if item_count > source.size // 2:
        raise BigWigFormatError(path, f"R-tree claims {item_count} blocks, more than the file can hold")
    leaf_dt = np.dtype([("start_chrom", bo + "u4"), ("start_base", bo + "u4"), ("end_chrom", bo + "u4"),
                        ("end_base", bo + "u4"), ("offset", bo + "u8"), ("size", bo + "u8")])
    node_dt = np.dtype([("start_chrom", bo + "u4"), ("start_base", bo + "u4"), ("end_chrom", bo + "u4"),
                        ("end_base", bo + "u4"), ("child", bo + "u8")])
    leaves = []
    level = [offset + 48]
    visited = 0
    seen = set()
    for _depth in range(MAX_DEPTH):
        next_level = []
        for node_off in level:
            if node_off in seen:
                raise BigWigFormatError(path, f"R-tree node at offset {node_off} is reached twice (a cycle)")
            seen.add(node_off)
            visited += 1
            if visited > item_count + 2 * MAX_DEPTH + 1:
                raise BigWigFormatError(path, "R-tree has more nodes than blocks (cycle?)")
            is_leaf, _, count = struct.unpack(bo + "BBH", source.pread(node_off, 4, "R-tree node"))
            if count > block_size:
                raise BigWigFormatError(path, f"R-tree node at {node_off} has {count} items > blockSize {block_size}")
            if is_leaf:
                leaves.append(np.frombuffer(source.pread(node_off + 4, count * 32, "R-tree leaf"), leaf_dt))
            else:
                items = np.frombuffer(source.pread(node_off + 4, count * 24, "R-tree node"), node_dt)
                next_level.extend(items["child"].tolist())
                if len(next_level) > item_count + 1:
                    raise BigWigFormatError(path, "R-tree has more nodes than blocks (corrupt child offsets)")
        if not next_level:
            break
        level = next_level
    else:
        raise BigWigFormatError(path, "R-tree deeper than 32 levels (corrupt)")
    out = np.concatenate(leaves) if leaves else np.zeros(0, leaf_dt)
    if len(out) != item_count:
        raise BigWigFormatError(path, f"R-tree holds {len(out)} blocks, its header says {item_count}")
    return out.astype(leaf_dt.newbyteorder("="))

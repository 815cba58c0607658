"""The R-tree index of data blocks, flattened to NumPy arrays of leaves at open."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import BigWigFormatError
from .spec import RTREE_HEADER_SIZE, RTREE_MAGIC
from .tree_walk import walk_tree


def read_rtree_leaves(source, offset: int, bo: str) -> np.ndarray:
    """Walk the R-tree from the root by child offsets; return a structured array of all leaf items
    (start_chrom, start_base, end_chrom, end_base, offset, size) in tree order."""
    path = source.path
    hdr = source.pread(offset, RTREE_HEADER_SIZE, "R-tree index header")
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
    out = walk_tree(source, offset + RTREE_HEADER_SIZE, bo, block_size, item_count, leaf_dt, node_dt, "R-tree")
    if len(out) != item_count:
        raise BigWigFormatError(path, f"R-tree holds {len(out)} blocks, its header says {item_count}")
    return out if bo == "<" and np.little_endian else out.astype(leaf_dt.newbyteorder("="))


def rtree_bytes_estimate(item_count: int, block_size: int) -> int:
    """Bytes an R-tree of `item_count` leaves in nodes of `block_size` items takes at most when
    written as UCSC and pyBigWig write it (nodes one after another, padded to full size): the
    window to read in one go before walking it."""
    bs = max(int(block_size), 2)
    nodes, level = 0, max(int(item_count), 1)
    while True:
        level = -(-level // bs)
        nodes += level
        if level <= 1:
            break
    return RTREE_HEADER_SIZE + nodes * (4 + bs * 32)


def read_zoom_rtree_leaves(source, offset: int, bo: str) -> np.ndarray:
    """Like read_rtree_leaves, for a zoom level's R-tree. libBigWig (pyBigWig, deepTools) writes a
    zoom R-tree's itemCount as its number of zoom records, not of blocks, so the count is not checked;
    the walk is bounded by the file size instead."""
    path = source.path
    magic, block_size = struct.unpack_from(bo + "II", source.pread(offset, 8, "zoom R-tree index header"))
    if magic != RTREE_MAGIC:
        raise BigWigFormatError(path, f"bad zoom R-tree index magic 0x{magic:08X} at offset {offset}")
    if block_size == 0:
        raise BigWigFormatError(path, "zoom R-tree blockSize is 0")
    leaf_dt = np.dtype([("start_chrom", bo + "u4"), ("start_base", bo + "u4"), ("end_chrom", bo + "u4"),
                        ("end_base", bo + "u4"), ("offset", bo + "u8"), ("size", bo + "u8")])
    node_dt = np.dtype([("start_chrom", bo + "u4"), ("start_base", bo + "u4"), ("end_chrom", bo + "u4"),
                        ("end_base", bo + "u4"), ("child", bo + "u8")])
    out = walk_tree(source, offset + RTREE_HEADER_SIZE, bo, block_size, max(source.size // leaf_dt.itemsize, 1),
                    leaf_dt, node_dt, "zoom R-tree")
    if len(out) and int((out["offset"].astype(np.int64) + out["size"].astype(np.int64)).max()) > source.size:
        raise BigWigFormatError(path, "a zoom block lies past the end of the file: truncated or corrupt")
    return out.astype(leaf_dt.newbyteorder("="))

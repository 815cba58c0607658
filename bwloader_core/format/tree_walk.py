"""Breadth-first walk of an on-disk tree (chromosome B+ tree, R-tree) by child offsets, with the
guards a corrupt file needs: node counts bounded by the block size, no node visited twice, no level
wider than the item count, bounded depth."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import BigWigFormatError
from .spec import NODE_HEADER_FORMAT, NODE_HEADER_SIZE

MAX_DEPTH = 32


def walk_tree(source, root: int, bo: str, block_size: int, item_count: int, leaf_dt: np.dtype,
              node_dt: np.dtype, what: str) -> list:
    """Leaf item arrays in tree order. `node_dt` must have a `child` field (the child node offset)."""
    path = source.path
    leaves = []
    level = [root]
    seen = set()
    for _depth in range(MAX_DEPTH):
        next_level = []
        for node_off in level:
            if node_off in seen:
                raise BigWigFormatError(path, f"{what} node at offset {node_off} is reached twice (a cycle)")
            seen.add(node_off)
            if len(seen) > item_count + 2 * MAX_DEPTH + 1:
                raise BigWigFormatError(path, f"{what} has more nodes than items (corrupt)")
            is_leaf, _, count = struct.unpack(bo + NODE_HEADER_FORMAT, source.pread(node_off, NODE_HEADER_SIZE, f"{what} node"))
            if count > block_size:
                raise BigWigFormatError(path, f"{what} node at {node_off} has {count} items > blockSize {block_size}")
            dt = leaf_dt if is_leaf else node_dt
            items = np.frombuffer(source.pread(node_off + NODE_HEADER_SIZE, count * dt.itemsize, f"{what} node"), dt)
            if is_leaf:
                leaves.append(items)
            else:
                next_level.extend(items["child"].tolist())
                if len(next_level) > item_count + 1:
                    raise BigWigFormatError(path, f"{what} has more nodes than items (corrupt child offsets)")
        if not next_level:
            return leaves
        level = next_level
    raise BigWigFormatError(path, f"{what} deeper than {MAX_DEPTH} levels (corrupt)")

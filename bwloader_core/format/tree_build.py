"""structures -> bytes for the two on-disk trees: the chromosome B+ tree and the R-tree (cirTree).

The counterpart of `chrom_tree.py` / `rtree.py` for programs that write bigWig files from parts
(`bwloader transcode`). Both trees are bulk-loaded the UCSC way: root first, one level after
another, every node padded to `block_size` items, so a node's offset is arithmetic.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from .spec import (CHROM_TREE_HEADER_FORMAT, CHROM_TREE_HEADER_SIZE, CHROM_TREE_MAGIC, NODE_HEADER_SIZE,
                   RTREE_HEADER_FORMAT, RTREE_HEADER_SIZE, RTREE_INTERNAL_ITEM_SIZE, RTREE_LEAF_ITEM_SIZE, RTREE_MAGIC)

_MAX_U32 = 0xFFFFFFFF

RTREE_LEAF_DTYPE = np.dtype([("start_chrom", "<u4"), ("start_base", "<u4"), ("end_chrom", "<u4"),
                             ("end_base", "<u4"), ("offset", "<u8"), ("size", "<u8")])
_RTREE_NODE_DTYPE = np.dtype([("start_chrom", "<u4"), ("start_base", "<u4"), ("end_chrom", "<u4"),
                              ("end_base", "<u4"), ("child", "<u8")])


def tree_levels(n_items: int, block_size: int) -> list[int]:
    """Node counts per level, leaves first (UCSC bulk-loaded shape); block_size >= 2 unless n <= 1."""
    counts = [max(1, math.ceil(n_items / block_size))]
    while counts[-1] > 1:
        counts.append(math.ceil(counts[-1] / block_size))
    return counts


def _node_bytes(items: np.ndarray, level_nodes: int, bs: int, is_leaf: int, item_size: int, bo: str) -> bytes:
    """`level_nodes` nodes of `bs` items each (the last may hold fewer), each padded to full size."""
    n = len(items)
    node_size = NODE_HEADER_SIZE + bs * item_size
    out = np.zeros((level_nodes, node_size), np.uint8)
    counts = np.minimum(bs, n - np.arange(level_nodes) * bs).clip(0)
    hdr = np.zeros(level_nodes, np.dtype([("leaf", "u1"), ("reserved", "u1"), ("count", bo + "u2")]))
    hdr["leaf"] = is_leaf
    hdr["count"] = counts
    out[:, :NODE_HEADER_SIZE] = hdr.view(np.uint8).reshape(level_nodes, NODE_HEADER_SIZE)
    raw = np.frombuffer(items.tobytes(), np.uint8)
    padded = np.zeros(level_nodes * bs * item_size, np.uint8)
    padded[:raw.size] = raw
    out[:, NODE_HEADER_SIZE:] = padded.reshape(level_nodes, bs * item_size)
    return out.tobytes()


# ------------------------------------------------------------------------------------------ R-tree
def rtree_size(n_items: int, block_size: int) -> int:
    """Bytes of an R-tree over n_items blocks (header included)."""
    levels = tree_levels(n_items, block_size)
    leaf = NODE_HEADER_SIZE + block_size * RTREE_LEAF_ITEM_SIZE
    internal = NODE_HEADER_SIZE + block_size * RTREE_INTERNAL_ITEM_SIZE
    return RTREE_HEADER_SIZE + levels[0] * leaf + sum(levels[1:]) * internal


def rtree_bytes(offset: int, leaves: np.ndarray, block_size: int, items_per_slot: int,
                end_file_offset: int, byteorder: str = "<") -> bytes:
    """An R-tree whose header lies at `offset`, over `leaves` (fields of RTREE_LEAF_DTYPE, in the
    order given: readers expect genomic order). Internal nodes bound their children."""
    bo = byteorder
    bs = int(block_size)
    if bs < 2:
        raise ValueError(f"R-tree block_size must be at least 2, got {bs}")
    n = len(leaves)
    u64 = np.uint64
    sk = (leaves["start_chrom"].astype(u64) << u64(32)) | leaves["start_base"].astype(u64)
    ek = (leaves["end_chrom"].astype(u64) << u64(32)) | leaves["end_base"].astype(u64)
    if n:
        lo, hi = int(sk.min()), int(ek.max())
        bounds = (lo >> 32, lo & _MAX_U32, hi >> 32, hi & _MAX_U32)
    else:
        bounds = (0, 0, 0, 0)
    out = [struct.pack(bo + RTREE_HEADER_FORMAT, RTREE_MAGIC, bs, n, *bounds, int(end_file_offset),
                       int(items_per_slot), 0)]
    levels = tree_levels(n, bs)
    leaf_size = NODE_HEADER_SIZE + bs * RTREE_LEAF_ITEM_SIZE
    internal_size = NODE_HEADER_SIZE + bs * RTREE_INTERNAL_ITEM_SIZE
    level_offset = {}
    off = int(offset) + RTREE_HEADER_SIZE
    for lvl in reversed(range(len(levels))):
        level_offset[lvl] = off
        off += levels[lvl] * (leaf_size if lvl == 0 else internal_size)
    node_bounds = [(sk, ek)]               # per level: bounds of its items (level 0: the leaves)
    for _ in levels[1:]:
        s, e = node_bounds[-1]
        idx = np.arange(0, len(s), bs)
        node_bounds.append((np.minimum.reduceat(s, idx), np.maximum.reduceat(e, idx)))
    for lvl in reversed(range(len(levels))):
        if lvl == 0:
            items = np.zeros(n, RTREE_LEAF_DTYPE.newbyteorder(bo))
            for f in RTREE_LEAF_DTYPE.names:
                items[f] = leaves[f]
            out.append(_node_bytes(items, levels[0], bs, 1, RTREE_LEAF_ITEM_SIZE, bo))
        else:
            s, e = node_bounds[lvl]        # bounds of the child nodes one level down
            child_size = leaf_size if lvl == 1 else internal_size
            items = np.zeros(len(s), _RTREE_NODE_DTYPE.newbyteorder(bo))
            items["start_chrom"], items["start_base"] = s >> u64(32), s & u64(_MAX_U32)
            items["end_chrom"], items["end_base"] = e >> u64(32), e & u64(_MAX_U32)
            items["child"] = level_offset[lvl - 1] + np.arange(len(s), dtype=u64) * u64(child_size)
            out.append(_node_bytes(items, levels[lvl], bs, 0, RTREE_INTERNAL_ITEM_SIZE, bo))
    return b"".join(out)


# ------------------------------------------------------------------------------ chromosome B+ tree
def chrom_tree_block_size(n_chroms: int, block_size: int) -> int:
    """The block size a tree over n_chroms uses: at most n_chroms (as UCSC), at least 2 when n > 1."""
    return max(1, min(int(block_size), n_chroms)) if n_chroms <= 1 else max(2, min(int(block_size), n_chroms))


def chrom_tree_size(n_chroms: int, key_size: int, block_size: int) -> int:
    bs = chrom_tree_block_size(n_chroms, block_size)
    node = NODE_HEADER_SIZE + bs * (key_size + 8)
    return CHROM_TREE_HEADER_SIZE + sum(tree_levels(n_chroms, bs)) * node


def chrom_tree_bytes(offset: int, names: list[str], sizes, key_size: int, block_size: int,
                     byteorder: str = "<") -> bytes:
    """A chromosome B+ tree at `offset`; chromosome i (its id) is names[i] with sizes[i]. Keys are
    sorted by their bytes, as the format requires."""
    bo = byteorder
    n = len(names)
    encoded = [nm.encode("utf-8") for nm in names]
    if n == 0:
        raise ValueError("a chromosome tree needs at least one chromosome")
    if max(len(k) for k in encoded) > key_size:
        raise ValueError(f"a chromosome name is longer than key_size={key_size}")
    bs = chrom_tree_block_size(n, block_size)
    keys = np.array(encoded, dtype=f"S{key_size}")
    order = np.argsort(keys, kind="stable")
    item_size = key_size + 8
    node_size = NODE_HEADER_SIZE + bs * item_size
    levels = tree_levels(n, bs)
    level_offset = {}
    off = int(offset) + CHROM_TREE_HEADER_SIZE
    for lvl in reversed(range(len(levels))):
        level_offset[lvl] = off
        off += levels[lvl] * node_size
    out = [struct.pack(bo + CHROM_TREE_HEADER_FORMAT, CHROM_TREE_MAGIC, bs, key_size, 8, n, 0)]
    leaf_dt = np.dtype([("key", f"S{key_size}"), ("id", bo + "u4"), ("size", bo + "u4")])
    node_dt = np.dtype([("key", f"S{key_size}"), ("child", bo + "u8")])
    sorted_keys = keys[order]
    for lvl in reversed(range(len(levels))):
        if lvl == 0:
            items = np.zeros(n, leaf_dt)
            items["key"] = sorted_keys
            items["id"] = order
            items["size"] = np.asarray(sizes, np.int64)[order]
            out.append(_node_bytes(items, levels[0], bs, 1, item_size, bo))
        else:
            child_span = bs ** lvl          # keys covered by one child node
            firsts = np.arange(0, n, child_span)
            items = np.zeros(len(firsts), node_dt)
            items["key"] = sorted_keys[firsts]
            items["child"] = level_offset[lvl - 1] + np.arange(len(firsts), dtype=np.uint64) * np.uint64(node_size)
            out.append(_node_bytes(items, levels[lvl], bs, 0, item_size, bo))
    return b"".join(out)

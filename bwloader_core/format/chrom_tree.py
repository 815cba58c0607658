"""The chromosome B+ tree: names -> (chromId, size), with internal nodes (many contigs)."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import BigWigFormatError
from .spec import CHROM_TREE_HEADER_FORMAT, CHROM_TREE_HEADER_SIZE, CHROM_TREE_MAGIC
from .tree_walk import walk_tree


def read_chrom_tree(source, offset: int, bo: str):
    """Walk the tree from its root by child offsets. Returns (names, ids, sizes) in chromId order."""
    path = source.path
    hdr = source.pread(offset, CHROM_TREE_HEADER_SIZE, "chromosome tree header")
    magic, block_size, key_size, val_size, item_count, _ = struct.unpack(bo + CHROM_TREE_HEADER_FORMAT, hdr)
    if magic != CHROM_TREE_MAGIC:
        raise BigWigFormatError(path, f"bad chromosome tree magic 0x{magic:08X} at offset {offset}")
    if not 0 < key_size <= 255 or val_size != 8 or block_size == 0:
        raise BigWigFormatError(path, f"bad chromosome tree header (keySize={key_size}, valSize={val_size}, "
                                      f"blockSize={block_size})")
    if item_count > source.size // (key_size + 8):
        raise BigWigFormatError(path, f"chromosome tree claims {item_count} chromosomes, more than the file can hold")
    leaf_dt = np.dtype([("key", f"S{key_size}"), ("id", bo + "u4"), ("size", bo + "u4")])
    node_dt = np.dtype([("key", f"S{key_size}"), ("child", bo + "u8")])
    leaves = walk_tree(source, offset + CHROM_TREE_HEADER_SIZE, bo, block_size, item_count, leaf_dt, node_dt, "chromosome tree")
    names = [k.rstrip(b"\0").decode("utf-8", "replace") for items in leaves for k in items["key"].tolist()]
    ids = [items["id"].astype(np.int64) for items in leaves]
    sizes = [items["size"].astype(np.int64) for items in leaves]
    ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    sizes = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    if len(names) != item_count:
        raise BigWigFormatError(path, f"chromosome tree holds {len(names)} chromosomes, header says {item_count}")
    if len(ids) and (ids.max() >= max(len(ids), 1) or len(np.unique(ids)) != len(ids)):
        raise BigWigFormatError(path, "chromosome ids in the chromosome tree are not 0..n-1 and unique")
    if len(set(names)) != len(names):
        raise BigWigFormatError(path, "duplicate chromosome names in the chromosome tree")
    order = np.argsort(ids, kind="stable")
    return [names[i] for i in order.tolist()], ids[order], sizes[order]

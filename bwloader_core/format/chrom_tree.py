"""The chromosome B+ tree: names -> (chromId, size), with internal nodes (many contigs)."""
from __future__ import annotations

import struct

import numpy as np

from ..errors import BigWigFormatError

CHROM_TREE_MAGIC = 0x78CA8C91
MAX_DEPTH = 32


def read_chrom_tree(source, offset: int, bo: str):
    """Walk the tree from its root by child offsets. Returns (names, ids, sizes) in chromId order."""
    path = source.path
    hdr = source.pread(offset, 32, "chromosome tree header")
    magic, block_size, key_size, val_size, item_count, _ = struct.unpack(bo + "IIIIQQ", hdr)
    if magic != CHROM_TREE_MAGIC:
        raise BigWigFormatError(path, f"bad chromosome tree magic 0x{magic:08X} at offset {offset}")
    if not 0 < key_size <= 255 or val_size != 8 or block_size == 0:
        raise BigWigFormatError(path, f"bad chromosome tree header (keySize={key_size}, valSize={val_size}, "
                                      f"blockSize={block_size})")
    if item_count > source.size // (key_size + 8):
        raise BigWigFormatError(path, f"chromosome tree claims {item_count} chromosomes, more than the file can hold")
    leaf_dt = np.dtype([("key", f"S{key_size}"), ("id", bo + "u4"), ("size", bo + "u4")])
    node_dt = np.dtype([("key", f"S{key_size}"), ("child", bo + "u8")])
    names, ids, sizes = [], [], []
    level = [offset + 32]
    visited = 0
    seen = set()
    for _depth in range(MAX_DEPTH):
        next_level = []
        for node_off in level:
            if node_off in seen:
                raise BigWigFormatError(path, f"chromosome tree node at offset {node_off} is reached twice (a cycle)")
            seen.add(node_off)
            visited += 1
            if visited > item_count + 2 * MAX_DEPTH + 1:
                raise BigWigFormatError(path, "chromosome tree has more nodes than items (cycle?)")
            is_leaf, _, count = struct.unpack(bo + "BBH", source.pread(node_off, 4, "chromosome tree node"))
            if count > block_size:
                raise BigWigFormatError(path, f"chromosome tree node at {node_off} has {count} items "
                                              f"> blockSize {block_size}")
            if is_leaf:
                items = np.frombuffer(source.pread(node_off + 4, count * leaf_dt.itemsize,
                                                   "chromosome tree leaf"), leaf_dt)
                names.extend(k.rstrip(b"\0").decode("utf-8", "replace") for k in items["key"].tolist())
                ids.append(items["id"].astype(np.int64))
                sizes.append(items["size"].astype(np.int64))
            else:
                items = np.frombuffer(source.pread(node_off + 4, count * node_dt.itemsize,
                                                   "chromosome tree node"), node_dt)
                next_level.extend(items["child"].tolist())
                if len(next_level) > item_count + 1:
                    raise BigWigFormatError(path, "chromosome tree has more nodes than chromosomes (corrupt)")
        if not next_level:
            break
        level = next_level
    else:
        raise BigWigFormatError(path, "chromosome tree deeper than 32 levels (corrupt)")
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

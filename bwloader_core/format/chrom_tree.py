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
    items = walk_tree(source, offset + CHROM_TREE_HEADER_SIZE, bo, block_size, item_count, leaf_dt, node_dt,
                      "chromosome tree")
    names = [k.rstrip(b"\0").decode("utf-8", "replace") for k in items["key"].tolist()]
    ids = items["id"].astype(np.int64)
    sizes = items["size"].astype(np.int64)
    if len(names) != item_count:
        raise BigWigFormatError(path, f"chromosome tree holds {len(names)} chromosomes, header says {item_count}")
    if len(ids) and (ids.max() >= max(len(ids), 1) or len(np.unique(ids)) != len(ids)):
        raise BigWigFormatError(path, "chromosome ids in the chromosome tree are not 0..n-1 and unique")
    if len(set(names)) != len(names):
        raise BigWigFormatError(path, "duplicate chromosome names in the chromosome tree")
    order = np.argsort(ids, kind="stable")
    return [names[i] for i in order.tolist()], ids[order], sizes[order]


class ChromTable:
    """A file's chromosomes: names (in chromId order), lengths, key offsets and lookups, read-only.

    Files with the same chromosomes (names and sizes) share one table (`ChromTable.of` interns
    them per process): a collection of thousands of files over one genome keeps one set of
    names, dicts and arrays, not one per file."""

    __slots__ = ("names", "lengths", "offsets", "sizes", "ids", "total_length", "__weakref__")
    _interned: "weakref.WeakValueDictionary" = None

    def __init__(self, names, lengths):
        self.names = list(names)
        lengths = np.asarray(lengths, np.int64)
        lengths.setflags(write=False)
        self.lengths = lengths
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        offsets.setflags(write=False)
        self.offsets = offsets
        self.sizes = dict(zip(self.names, lengths.tolist()))
        self.ids = {n: i for i, n in enumerate(self.names)}
        self.total_length = int(offsets[-1])

    @classmethod
    def of(cls, names, lengths) -> "ChromTable":
        """The process's table for these chromosomes (made on first use)."""
        import weakref
        if cls._interned is None:
            cls._interned = weakref.WeakValueDictionary()
        lengths = np.asarray(lengths, np.int64)
        key = ("\0".join(names), lengths.tobytes())
        table = cls._interned.get(key)
        if table is None:
            table = cls(names, lengths)
            cls._interned[key] = table
        return table

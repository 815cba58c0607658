"""A small, self-contained bigWig writer (UCSC bbiFile.h / bwgInternal.h layout).

It exists so that tests and demo data can produce files whose every structural
knob is under our control: byte order, compression on/off, section types
(bedGraph / variableStep / fixedStep), the number of items per data block, and
the fan-out of the chromosome B+ tree and of the R-tree index (small values force
multi-level trees). Files it writes are readable by UCSC tools, libBigWig/pyBigWig
(little-endian only) and bigtools.

File layout written::

    header (64 bytes)
    zoom headers (24 bytes each)
    total summary (40 bytes; version >= 2)
    chromosome B+ tree (header 32 bytes, nodes padded to block_size items)
    data count (uint64) + data blocks (one section per block)
    R-tree index of the data blocks
    per zoom level: record count (uint32) + zoom blocks, then the level's R-tree
    trailing magic (4 bytes)

Every multi-byte field, including the magic numbers and the items inside the data
blocks, uses ``byteorder``. Chromosome ids are assigned in the insertion order of
``chrom_sizes``; the B+ tree keys are sorted by name bytes, as the format requires.
Each ``add_*`` call writes its own sections (at most ``items_per_slot`` items each),
so data must be added in chromosome-id order and, within a chromosome, by position.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from typing import Mapping

import numpy as np

__all__ = ["BigWigWriter", "write_bigwig", "BIGWIG_MAGIC", "CHROM_TREE_MAGIC", "RTREE_MAGIC"]

from .spec import (BEDGRAPH as SECTION_BEDGRAPH, BIGWIG_MAGIC, CHROM_TREE_HEADER_SIZE, CHROM_TREE_MAGIC,
                   FIXEDSTEP as SECTION_FIXEDSTEP, HEADER_SIZE, NODE_HEADER_SIZE, RTREE_HEADER_SIZE,
                   RTREE_INTERNAL_ITEM_SIZE, RTREE_LEAF_ITEM_SIZE, RTREE_MAGIC, SECTION_HEADER_SIZE, SUMMARY_SIZE,
                   VARSTEP as SECTION_VARSTEP, ZOOM_HEADER_SIZE, ZOOM_RECORD_SIZE, SECTION_HEADER_FORMAT,
                   CHROM_TREE_HEADER_FORMAT, NODE_HEADER_FORMAT, ZOOM_HEADER_FORMAT, SUMMARY_FORMAT, HEADER_FORMAT,
                   RTREE_HEADER_FORMAT)

_MAX_U32 = 0xFFFFFFFF
_ZOOM_INCREMENT = 4


def _as_int_array(name: str, x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        raise ValueError(f"{name} must hold integers, got booleans")
    if arr.dtype.kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must hold finite integers")
        as_int = arr.astype(np.int64)
        if not np.array_equal(as_int, arr):
            raise ValueError(f"{name} must hold integers, got non-integral floats")
        return as_int
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")


def _as_value_array(name: str, x, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} items, expected {n}")
    return arr.astype(np.float32)


def _as_positive_int(name: str, x) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    x = int(x)
    if x < 1 or x > _MAX_U32:
        raise ValueError(f"{name} must be in [1, 2**32 - 1], got {x}")
    return x


def _tree_levels(n_items: int, block_size: int) -> list[int]:
    """Node counts per level, leaves first (UCSC bulk-loaded tree shape)."""
    counts = [max(1, math.ceil(n_items / block_size))]
    while counts[-1] > 1:
        counts.append(math.ceil(counts[-1] / block_size))
    return counts


class BigWigWriter:
    """Write a bigWig file.

    Parameters
    ----------
    path : file path to create (overwritten).
    chrom_sizes : mapping name -> size; its insertion order gives the chromosome ids.
    byteorder : "<" (little-endian, the usual) or ">" (big-endian).
    compress : zlib-compress every data/zoom block (uncompressBufSize is then the
        largest decompressed block); when False blocks are raw and uncompressBufSize is 0.
    items_per_slot : maximum number of items per data block (= per section).
    block_size : items per node of the chromosome B+ tree and of the R-trees.
    version : header version (1..4). Compression needs version >= 3; version 1
        files carry no total summary (totalSummaryOffset 0).
    zoom_levels : number of zoom levels to write (0 for none). The first level's reduction is
        10x the mean record length, each next one 4x coarser; records are bins aligned to multiples
        of the reduction. Fewer levels are written (and the header says so) when a level's bins
        already span the largest chromosome, or when there is no data.
    """

    def __init__(
        self,
        path,
        chrom_sizes: Mapping[str, int],
        *,
        byteorder: str = "<",
        compress: bool = True,
        items_per_slot: int = 1024,
        block_size: int = 256,
        version: int = 4,
        zoom_levels: int = 0,
    ):
        if byteorder not in ("<", ">"):
            raise ValueError(f"byteorder must be '<' or '>', got {byteorder!r}")
        items_per_slot = _as_positive_int("items_per_slot", items_per_slot)
        if items_per_slot > 0xFFFF:
            raise ValueError("items_per_slot must be at most 65535 (itemCount is 16 bits)")
        block_size = _as_positive_int("block_size", block_size)
        if block_size < 2:
            raise ValueError("block_size must be at least 2")
        if block_size > 0xFFFF:
            raise ValueError("block_size must be at most 65535 (node counts are 16 bits)")
        if isinstance(version, bool) or version not in (1, 2, 3, 4):
            raise ValueError(f"version must be 1, 2, 3 or 4, got {version!r}")
        if compress and version < 3:
            raise ValueError("compressed bigWig files need version >= 3")
        if isinstance(zoom_levels, bool) or not isinstance(zoom_levels, (int, np.integer)) \
                or not 0 <= zoom_levels <= 0xFFFF:
            raise ValueError(f"zoom_levels must be an integer in [0, 65535], got {zoom_levels!r}")
        if not chrom_sizes:
            raise ValueError("chrom_sizes must name at least one chromosome")

        names: list[str] = []
        sizes: list[int] = []
        for name, size in chrom_sizes.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"chromosome names must be non-empty strings, got {name!r}")
            if "\x00" in name:
                raise ValueError(f"chromosome name {name!r} contains a NUL byte")
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
                raise ValueError(f"size of {name!r} must be an integer, got {size!r}")
            if not 1 <= int(size) <= _MAX_U32:
                raise ValueError(f"size of {name!r} must be in [1, 2**32 - 1], got {size}")
            names.append(name)
            sizes.append(int(size))

        self.path = os.fspath(path)
        self.byteorder = byteorder
        self.compress = bool(compress)
        self.items_per_slot = items_per_slot
        self.block_size = block_size
        self.version = int(version)
        self.zoom_levels = int(zoom_levels)
        self._names = names
        self._sizes = sizes
        self._chrom_ids = {name: i for i, name in enumerate(names)}

        bo = byteorder
        self._u32 = np.dtype(bo + "u4")
        self._section_header = struct.Struct(bo + SECTION_HEADER_FORMAT)
        self._bedgraph_dtype = np.dtype([("start", bo + "u4"), ("end", bo + "u4"), ("value", bo + "f4")])
        self._varstep_dtype = np.dtype([("start", bo + "u4"), ("value", bo + "f4")])
        self._fixedstep_dtype = np.dtype(bo + "f4")

        # Running state
        self._last_chrom = -1
        self._last_end = 0
        self._max_block = 0
        # Block index: lists of numpy arrays (chrom, start, end, offset, size)
        self._index_parts: list[tuple[np.ndarray, ...]] = []
        # Summary accumulators (float64 over stored float32 values)
        self._bases = 0
        self._min = math.inf
        self._max = -math.inf
        self._sum = 0.0
        self._sumsq = 0.0
        self._n_records = 0
        # Records kept for zoom levels
        self._zoom_parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._closed = False

        self._fh = open(self.path, "wb")
        try:
            self._summary_offset = HEADER_SIZE + ZOOM_HEADER_SIZE * self.zoom_levels
            reserved = self._summary_offset + (SUMMARY_SIZE if self.version >= 2 else 0)
            self._fh.write(b"\x00" * reserved)
            self._chrom_tree_offset = reserved
            tree = self._chrom_tree_bytes()
            self._fh.write(tree)
            self._data_offset = self._chrom_tree_offset + len(tree)
            self._fh.write(b"\x00" * 8)  # data (block) count, filled at close
            self._pos = self._data_offset + 8
        except BaseException:
            self._fh.close()
            raise

    # ------------------------------------------------------------------ structure
    def _chrom_tree_bytes(self) -> bytes:
        bo = self.byteorder
        n = len(self._names)
        encoded = [name.encode("utf-8") for name in self._names]
        key_size = max(len(k) for k in encoded)
        order = sorted(range(n), key=lambda i: encoded[i])
        if len(set(encoded)) != n:
            raise ValueError("chromosome names must be unique")
        bs = min(self.block_size, n)
        item_size = key_size + 8  # leaf: chromId u32 + size u32; internal: child offset u64
        node_size = NODE_HEADER_SIZE + bs * item_size
        levels = _tree_levels(n, bs)  # leaves first
        # Offsets: root first, leaves last.
        base = self._chrom_tree_offset + CHROM_TREE_HEADER_SIZE
        level_offset = {}
        off = base
        for lvl in reversed(range(len(levels))):
            level_offset[lvl] = off
            off += levels[lvl] * node_size
        keys = [encoded[i].ljust(key_size, b"\x00") for i in order]

        out = [struct.pack(bo + CHROM_TREE_HEADER_FORMAT, CHROM_TREE_MAGIC, bs, key_size, 8, n, 0)]
        node_hdr = struct.Struct(bo + NODE_HEADER_FORMAT)
        leaf_val = struct.Struct(bo + "II")
        child_val = struct.Struct(bo + "Q")
        for lvl in reversed(range(len(levels))):
            span = bs ** (lvl + 1)  # items covered by one node of this level
            child_span = bs**lvl
            for j in range(levels[lvl]):
                first, last = j * span, min((j + 1) * span, n)
                parts = []
                if lvl == 0:
                    for k in range(first, last):
                        cid = order[k]
                        parts.append(keys[k] + leaf_val.pack(cid, self._sizes[cid]))
                else:
                    for c_first in range(first, last, child_span):
                        child = c_first // child_span
                        parts.append(keys[c_first] + child_val.pack(level_offset[lvl - 1] + child * node_size))
                count = len(parts)
                body = node_hdr.pack(1 if lvl == 0 else 0, 0, count) + b"".join(parts)
                out.append(body + b"\x00" * (node_size - len(body)))
        return b"".join(out)

    def _rtree_bytes(self, offset: int, chroms, starts, ends, offsets, sizes, end_file_offset: int) -> bytes:
        """R-tree (cirTree) over blocks, header at ``offset``."""
        bo = self.byteorder
        bs = self.block_size
        n = int(len(chroms))
        chroms = np.asarray(chroms, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        start_key = (chroms.astype(np.uint64) << np.uint64(32)) | starts.astype(np.uint64)
        end_key = (chroms.astype(np.uint64) << np.uint64(32)) | ends.astype(np.uint64)
        if n:
            lo, hi = int(start_key.min()), int(end_key.max())
            hdr_bounds = (lo >> 32, lo & _MAX_U32, hi >> 32, hi & _MAX_U32)
        else:
            hdr_bounds = (0, 0, 0, 0)
        out = [struct.pack(bo + RTREE_HEADER_FORMAT, RTREE_MAGIC, bs, n, *hdr_bounds,
                           end_file_offset, self.items_per_slot, 0)]

        levels = _tree_levels(n, bs)
        leaf_size = NODE_HEADER_SIZE + bs * RTREE_LEAF_ITEM_SIZE
        internal_size = NODE_HEADER_SIZE + bs * RTREE_INTERNAL_ITEM_SIZE
        level_offset = {}
        off = offset + RTREE_HEADER_SIZE
        for lvl in reversed(range(len(levels))):
            level_offset[lvl] = off
            off += levels[lvl] * (leaf_size if lvl == 0 else internal_size)

        leaf_dtype = np.dtype([("sc", bo + "u4"), ("sb", bo + "u4"), ("ec", bo + "u4"), ("eb", bo + "u4"),
                               ("off", bo + "u8"), ("size", bo + "u8")])
        int_dtype = np.dtype([("sc", bo + "u4"), ("sb", bo + "u4"), ("ec", bo + "u4"), ("eb", bo + "u4"),
                              ("off", bo + "u8")])
        node_hdr = struct.Struct(bo + NODE_HEADER_FORMAT)

        # Bounds of the nodes of each level, computed bottom-up.
        bounds = {}  # level -> (start_key per node, end_key per node)
        cur_s, cur_e = start_key, end_key
        for lvl in range(len(levels)):
            if cur_s.size:
                idx = np.arange(0, cur_s.size, bs)
                cur_s = np.minimum.reduceat(cur_s, idx)
                cur_e = np.maximum.reduceat(cur_e, idx)
            bounds[lvl] = (cur_s, cur_e)

        # Emit root first.
        for lvl in reversed(range(len(levels))):
            if lvl == 0:
                items = np.zeros(n, dtype=leaf_dtype)
                if n:
                    items["sc"] = chroms
                    items["sb"] = starts
                    items["ec"] = chroms
                    items["eb"] = ends
                    items["off"] = offsets
                    items["size"] = sizes
                raw = items.tobytes()
                for j in range(levels[0]):
                    a, b = j * bs, min((j + 1) * bs, n)
                    body = node_hdr.pack(1, 0, b - a) + raw[a * RTREE_LEAF_ITEM_SIZE:b * RTREE_LEAF_ITEM_SIZE]
                    out.append(body + b"\x00" * (leaf_size - len(body)))
            else:
                cs, ce = bounds[lvl - 1]
                nchild = cs.size
                child_size = leaf_size if lvl == 1 else internal_size
                items = np.zeros(nchild, dtype=int_dtype)
                items["sc"] = cs >> np.uint64(32)
                items["sb"] = cs & np.uint64(_MAX_U32)
                items["ec"] = ce >> np.uint64(32)
                items["eb"] = ce & np.uint64(_MAX_U32)
                items["off"] = level_offset[lvl - 1] + np.arange(nchild, dtype=np.uint64) * np.uint64(child_size)
                raw = items.tobytes()
                for j in range(levels[lvl]):
                    a, b = j * bs, min((j + 1) * bs, nchild)
                    body = node_hdr.pack(0, 0, b - a) + raw[a * RTREE_INTERNAL_ITEM_SIZE:b * RTREE_INTERNAL_ITEM_SIZE]
                    out.append(body + b"\x00" * (internal_size - len(body)))
        return b"".join(out)

    # ------------------------------------------------------------------ input checks
    def _check_open(self):
        if self._closed:
            raise ValueError("the writer is closed")

    def _chrom_id(self, chrom) -> int:
        if chrom not in self._chrom_ids:
            raise ValueError(f"chromosome {chrom!r} is not in chrom_sizes")
        return self._chrom_ids[chrom]

    def _check_order(self, cid: int, chrom: str, first_start: int, last_end: int):
        if cid < self._last_chrom:
            raise ValueError(
                f"chromosome {chrom!r} added after {self._names[self._last_chrom]!r}: chromosomes must be "
                "added in chrom_sizes order")
        if cid == self._last_chrom and first_start < self._last_end:
            raise ValueError(
                f"data on {chrom!r} starting at {first_start} overlaps or precedes data already written "
                f"(which ends at {self._last_end})")
        if first_start < 0:
            raise ValueError(f"negative start {first_start} on {chrom!r}")
        if last_end > self._sizes[cid]:
            raise ValueError(f"data on {chrom!r} ends at {last_end}, past the chromosome size {self._sizes[cid]}")

    # ------------------------------------------------------------------ public API
    def add_bedgraph(self, chrom, starts, ends, values):
        """Add bedGraph records [starts[i], ends[i]) = values[i] (sorted, non-overlapping)."""
        self._check_open()
        cid = self._chrom_id(chrom)
        starts = _as_int_array("starts", starts)
        ends = _as_int_array("ends", ends)
        if starts.shape != ends.shape:
            raise ValueError(f"starts and ends differ in length ({starts.size} vs {ends.size})")
        values = _as_value_array("values", values, starts.size)
        n = starts.size
        if n == 0:
            return
        if np.any(ends <= starts):
            i = int(np.argmax(ends <= starts))
            raise ValueError(f"record {i} on {chrom!r} is empty or reversed: [{starts[i]}, {ends[i]})")
        if n > 1 and np.any(starts[1:] < ends[:-1]):
            i = int(np.argmax(starts[1:] < ends[:-1])) + 1
            raise ValueError(f"records on {chrom!r} are unsorted or overlap at index {i}: "
                             f"[{starts[i - 1]}, {ends[i - 1]}) then [{starts[i]}, {ends[i]})")
        self._check_order(cid, chrom, int(starts[0]), int(ends[-1]))

        items = np.empty(n, dtype=self._bedgraph_dtype)
        items["start"] = starts
        items["end"] = ends
        items["value"] = values
        ips = self.items_per_slot
        firsts = np.arange(0, n, ips)
        lasts = np.minimum(firsts + ips, n) - 1
        self._write_sections(cid, SECTION_BEDGRAPH, items.tobytes(), 12, firsts,
                             starts[firsts], ends[lasts], 0, 0)
        self._account(cid, starts, ends, values)

    def add_variable_step(self, chrom, starts, values, span):
        """Add variableStep records [starts[i], starts[i] + span) = values[i]."""
        self._check_open()
        cid = self._chrom_id(chrom)
        span = _as_positive_int("span", span)
        starts = _as_int_array("starts", starts)
        values = _as_value_array("values", values, starts.size)
        n = starts.size
        if n == 0:
            return
        if n > 1 and np.any(starts[1:] < starts[:-1] + span):
            i = int(np.argmax(starts[1:] < starts[:-1] + span)) + 1
            raise ValueError(f"variableStep starts on {chrom!r} are unsorted or closer than span={span} "
                             f"at index {i}: {starts[i - 1]} then {starts[i]}")
        ends = starts + span
        self._check_order(cid, chrom, int(starts[0]), int(ends[-1]))

        items = np.empty(n, dtype=self._varstep_dtype)
        items["start"] = starts
        items["value"] = values
        ips = self.items_per_slot
        firsts = np.arange(0, n, ips)
        lasts = np.minimum(firsts + ips, n) - 1
        self._write_sections(cid, SECTION_VARSTEP, items.tobytes(), 8, firsts,
                             starts[firsts], ends[lasts], 0, span)
        self._account(cid, starts, ends, values)

    def add_fixed_step(self, chrom, start, values, span, step):
        """Add fixedStep records [start + i*step, start + i*step + span) = values[i] (span <= step)."""
        self._check_open()
        cid = self._chrom_id(chrom)
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise ValueError(f"start must be an integer, got {start!r}")
        start = int(start)
        span = _as_positive_int("span", span)
        step = _as_positive_int("step", step)
        if span > step:
            raise ValueError(f"fixedStep span ({span}) larger than step ({step}) makes records overlap")
        values = _as_value_array("values", values)
        n = values.size
        if n == 0:
            return
        starts = start + np.arange(n, dtype=np.int64) * step
        ends = starts + span
        self._check_order(cid, chrom, start, int(ends[-1]))

        items = values.astype(self._fixedstep_dtype)
        ips = self.items_per_slot
        firsts = np.arange(0, n, ips)
        lasts = np.minimum(firsts + ips, n) - 1
        self._write_sections(cid, SECTION_FIXEDSTEP, items.tobytes(), 4, firsts,
                             starts[firsts], ends[lasts], step, span)
        self._account(cid, starts, ends, values)

    # ------------------------------------------------------------------ internals
    def _write_sections(self, cid, kind, raw, item_size, firsts, sec_starts, sec_ends, step, span):
        n_items = len(raw) // item_size
        ips = self.items_per_slot
        nblk = len(firsts)
        offsets = np.empty(nblk, dtype=np.uint64)
        sizes = np.empty(nblk, dtype=np.uint64)
        pack = self._section_header.pack
        chunks = []
        pos = self._pos
        for b in range(nblk):
            a = int(firsts[b])
            cnt = min(ips, n_items - a)
            block = pack(cid, int(sec_starts[b]), int(sec_ends[b]), step, span, kind, 0, cnt) \
                + raw[a * item_size:(a + cnt) * item_size]
            if len(block) > self._max_block:
                self._max_block = len(block)
            if self.compress:
                block = zlib.compress(block)
            offsets[b] = pos
            sizes[b] = len(block)
            pos += len(block)
            chunks.append(block)
        self._fh.write(b"".join(chunks))
        self._pos = pos
        self._index_parts.append((np.full(nblk, cid, dtype=np.int64), np.asarray(sec_starts, dtype=np.int64),
                                  np.asarray(sec_ends, dtype=np.int64), offsets, sizes))

    def _account(self, cid, starts, ends, values):
        self._last_chrom = cid
        self._last_end = int(ends[-1])
        lengths = (ends - starts).astype(np.float64)
        v = values.astype(np.float64)
        self._n_records += int(starts.size)
        self._bases += int((ends - starts).sum())
        self._min = min(self._min, float(v.min()))
        self._max = max(self._max, float(v.max()))
        self._sum += float(np.dot(v, lengths))
        self._sumsq += float(np.dot(v * v, lengths))
        if self.zoom_levels:
            self._zoom_parts.append((cid, starts.copy(), ends.copy(), values.copy()))

    def _zoom_records(self, reduction: int):
        """Zoom records for one reduction level (bins aligned to multiples of ``reduction``)."""
        parts = []
        for cid, starts, ends, values in self._zoom_parts:
            first_bin = starts // reduction
            last_bin = (ends - 1) // reduction
            npieces = last_bin - first_bin + 1
            rec = np.repeat(np.arange(starts.size), npieces)
            within = np.arange(rec.size) - np.repeat(np.cumsum(npieces) - npieces, npieces)
            bins = first_bin[rec] + within
            p_start = np.maximum(starts[rec], bins * reduction)
            p_end = np.minimum(ends[rec], (bins + 1) * reduction)
            length = (p_end - p_start).astype(np.float64)
            v = values[rec].astype(np.float64)
            brk = np.flatnonzero(np.diff(bins)) + 1
            idx = np.concatenate(([0], brk))
            ubins = bins[idx]
            zs = np.zeros(idx.size, dtype=[("chrom", "i8"), ("start", "i8"), ("end", "i8"), ("count", "i8"),
                                            ("min", "f8"), ("max", "f8"), ("sum", "f8"), ("sumsq", "f8")])
            zs["chrom"] = cid
            zs["start"] = ubins * reduction
            zs["end"] = np.minimum((ubins + 1) * reduction, self._sizes[cid])
            zs["count"] = np.add.reduceat(p_end - p_start, idx)
            zs["min"] = np.minimum.reduceat(v, idx)
            zs["max"] = np.maximum.reduceat(v, idx)
            zs["sum"] = np.add.reduceat(v * length, idx)
            zs["sumsq"] = np.add.reduceat(v * v * length, idx)
            parts.append(zs)
        zs = np.concatenate(parts)
        # Separate add_* calls on one chromosome can share a bin: merge those.
        key = zs["chrom"] * (1 << 33) + zs["start"]
        brk = np.flatnonzero(np.diff(key)) + 1
        if brk.size + 1 != zs.size:
            idx = np.concatenate(([0], brk))
            merged = zs[idx].copy()
            merged["count"] = np.add.reduceat(zs["count"], idx)
            merged["min"] = np.minimum.reduceat(zs["min"], idx)
            merged["max"] = np.maximum.reduceat(zs["max"], idx)
            merged["sum"] = np.add.reduceat(zs["sum"], idx)
            merged["sumsq"] = np.add.reduceat(zs["sumsq"], idx)
            zs = merged
        return zs

    def _write_zoom_level(self, reduction: int):
        bo = self.byteorder
        zs = self._zoom_records(reduction)
        rec_dtype = np.dtype([("chrom", bo + "u4"), ("start", bo + "u4"), ("end", bo + "u4"), ("count", bo + "u4"),
                              ("min", bo + "f4"), ("max", bo + "f4"), ("sum", bo + "f4"), ("sumsq", bo + "f4")])
        recs = np.empty(zs.size, dtype=rec_dtype)
        for f in ("chrom", "start", "end", "count", "min", "max", "sum", "sumsq"):
            recs[f] = zs[f]
        data_offset = self._pos
        head = struct.pack(bo + "I", min(zs.size, _MAX_U32))
        pos = data_offset + len(head)
        chunks = [head]
        ips = self.items_per_slot
        # Blocks never cross chromosomes.
        chrom_breaks = np.flatnonzero(np.diff(zs["chrom"])) + 1
        firsts = []
        for a, b in zip(np.concatenate(([0], chrom_breaks)), np.concatenate((chrom_breaks, [zs.size]))):
            firsts.extend(range(int(a), int(b), ips))
        firsts.append(zs.size)
        raw = recs.tobytes()
        blk_chrom, blk_start, blk_end, blk_off, blk_size = [], [], [], [], []
        for a, b in zip(firsts[:-1], firsts[1:]):
            b = min(b, a + ips)
            block = raw[a * ZOOM_RECORD_SIZE:b * ZOOM_RECORD_SIZE]
            self._max_block = max(self._max_block, len(block))
            if self.compress:
                block = zlib.compress(block)
            blk_chrom.append(int(zs["chrom"][a]))
            blk_start.append(int(zs["start"][a]))
            blk_end.append(int(zs["end"][a:b].max()))
            blk_off.append(pos)
            blk_size.append(len(block))
            pos += len(block)
            chunks.append(block)
        self._fh.write(b"".join(chunks))
        index_offset = pos
        tree = self._rtree_bytes(index_offset, blk_chrom, blk_start, blk_end,
                                 np.asarray(blk_off, dtype=np.uint64), np.asarray(blk_size, dtype=np.uint64),
                                 index_offset)
        self._fh.write(tree)
        self._pos = index_offset + len(tree)
        return data_offset, index_offset

    def close(self):
        """Write the index, zoom levels, summary and header; close the file."""
        if self._closed:
            return
        try:
            self._finish()
        finally:
            self._closed = True
            self._fh.close()

    def _finish(self):
        bo = self.byteorder
        if self._index_parts:
            chroms, starts, ends, offsets, sizes = (np.concatenate(p) for p in zip(*self._index_parts))
        else:
            chroms = starts = ends = np.zeros(0, dtype=np.int64)
            offsets = sizes = np.zeros(0, dtype=np.uint64)
        n_blocks = int(chroms.size)
        index_offset = self._pos
        tree = self._rtree_bytes(index_offset, chroms, starts, ends, offsets, sizes, index_offset)
        self._fh.write(tree)
        self._pos = index_offset + len(tree)

        zoom_headers = []
        if self.zoom_levels and self._n_records:
            mean_len = self._bases / self._n_records
            reduction = max(1, int(round(10 * mean_len)))
            max_size = max(self._sizes)
            for _ in range(self.zoom_levels):
                if reduction > _MAX_U32:
                    break
                data_off, idx_off = self._write_zoom_level(reduction)
                zoom_headers.append(struct.pack(bo + ZOOM_HEADER_FORMAT, reduction, 0, data_off, idx_off))
                if reduction >= max_size:
                    break  # coarser levels would hold the same records
                reduction *= _ZOOM_INCREMENT
        self._fh.write(struct.pack(bo + "I", BIGWIG_MAGIC))

        if self.version >= 2:
            if self._n_records:
                summary = struct.pack(bo + SUMMARY_FORMAT, self._bases, self._min, self._max, self._sum, self._sumsq)
            else:
                summary = struct.pack(bo + SUMMARY_FORMAT, 0, 0.0, 0.0, 0.0, 0.0)
            self._fh.seek(self._summary_offset)
            self._fh.write(summary)
            summary_offset = self._summary_offset
        else:
            summary_offset = 0
        if zoom_headers:
            self._fh.seek(HEADER_SIZE)
            self._fh.write(b"".join(zoom_headers))
        self._fh.seek(self._data_offset)
        self._fh.write(struct.pack(bo + "Q", n_blocks))
        header = struct.pack(
            bo + HEADER_FORMAT,
            BIGWIG_MAGIC, self.version, len(zoom_headers), self._chrom_tree_offset, self._data_offset,
            index_offset, 0, 0, 0, summary_offset, self._max_block if self.compress else 0, 0)
        self._fh.seek(0)
        self._fh.write(header)

    def abort(self):
        """Close without finishing and delete the partial file."""
        if not self._closed:
            self._closed = True
            self._fh.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __del__(self):
        fh = getattr(self, "_fh", None)
        if fh is not None and not fh.closed:
            fh.close()


def write_bigwig(path, chrom_sizes: Mapping[str, int], starts_ends_values_by_chrom: Mapping, **kwargs):
    """Write a bedGraph-type bigWig: ``{chrom: (starts, ends, values)}`` (any dict order).

    Chromosomes are written in ``chrom_sizes`` order; keyword arguments go to
    :class:`BigWigWriter`. Returns ``path``.
    """
    unknown = [c for c in starts_ends_values_by_chrom if c not in chrom_sizes]
    if unknown:
        raise ValueError(f"chromosomes not in chrom_sizes: {unknown!r}")
    with BigWigWriter(path, chrom_sizes, **kwargs) as w:
        for chrom in chrom_sizes:
            if chrom in starts_ends_values_by_chrom:
                starts, ends, values = starts_ends_values_by_chrom[chrom]
                w.add_bedgraph(chrom, starts, ends, values)
    return path

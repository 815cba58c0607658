#!/usr/bin/env python
"""Fuzz the bigWig reader with mutated real files.

    python scripts/fuzz_campaign.py --cases 100000 --seed 1 [--jobs 2] [--out fuzz_out]

A seed corpus of real files (pyBigWig-written, the pyBigWig wheel's test.bw, our writer's
big-endian / uncompressed / deep-tree / many-chromosome / version-1 files, small and large) is
mutated case by case: truncation at every structure boundary, byte flips in each structure, flips
inside inflated data blocks (re-deflated, so zlib accepts them: the section parser sees garbage that
inflates fine), flips in a deflate stream with the adler32 recomputed, forged counts/offsets/sizes,
cycles in both trees, and flips in bytes no reader needs for values ("inert": zoom levels, summary,
node padding, ...). Each mutant is opened with BigWigCollection and queried (several random
batches, with and without windows, sometimes from zoom levels).

Allowed outcomes: arrays of the right shape and dtype (equal to the intact file's for inert
mutations), or BigWigFormatError whose message contains the file path. Anything else (another
exception, a hang, a crash) is *disallowed*: the mutant is saved with a reproducer note.

Case ``i`` of seed ``S`` is a pure function of (S, i, corpus), so any case can be regenerated.
Cases run in worker subprocesses (chunks), each case under SIGALRM; the parent restarts a worker
after a crash or hang and records the case that was running.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from bwloader_core.format.spec import (BIGWIG_MAGIC, CHROM_TREE_HEADER_FORMAT, CHROM_TREE_HEADER_SIZE,  # noqa: E402
                                       CHROM_TREE_MAGIC, HEADER_FORMAT as HEADER_FMT, HEADER_SIZE,
                                       NODE_HEADER_FORMAT, NODE_HEADER_SIZE, RTREE_HEADER_SIZE,
                                       RTREE_INTERNAL_ITEM_SIZE, RTREE_LEAF_ITEM_SIZE, RTREE_MAGIC,
                                       SECTION_HEADER_SIZE, ZOOM_HEADER_SIZE)

FAMILIES = {  # name -> weight
    "truncate": 10,
    "flip_header": 6,
    "flip_chrom_tree": 8,
    "flip_rtree": 8,
    "flip_data": 8,
    "flip_any": 8,
    "inflated_flip": 12,
    "deflate_adler": 6,
    "forge_section": 10,
    "forge_field": 14,
    "cycle": 5,
    "inert": 10,
    "fanout_cycle": 2,
}
SWEEP = "truncate_sweep"   # deterministic: case i = the i-th (seed, cut) of sweep_cuts()
SELFTEST_FAMILIES = ("selftest_crash", "selftest_hang", "selftest_hang_hard", "selftest_exception")
U64 = (1 << 64) - 1
EDGE_U32 = (0, 1, 2, 3, 0x7F, 0xFF, 0x100, 0xFFFF, 0x10000, 1 << 24, (1 << 30) - 1, 1 << 30, 0x7FFFFFFF,
            0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
EDGE_U64 = EDGE_U32 + (1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63, U64 - 1, U64)


# ================================================================================== seed corpus
SMALL_SIZES = {"chrB": 4_000, "chrA": 3_000, "chr10": 2_500, "chr2": 2_000, "chrM": 1_500, "chrY": 1_000}


def _small_ours(path, rng, **kw):
    from bwloader_core.testing import fixtures as df
    with df.BigWigWriter(path, SMALL_SIZES, **{"items_per_slot": 16, "block_size": 4, **kw}) as w:
        for i, (c, size) in enumerate(SMALL_SIZES.items()):
            if i % 3 == 0:
                w.add_bedgraph(c, *df.random_bedgraph(rng, size, 150, to_end=True))
            elif i % 3 == 1:
                s, v = df.random_varstep(rng, size, 120, 5)
                w.add_variable_step(c, s, v, 5)
            else:
                w.add_fixed_step(c, 17, df.random_values(rng, size // 10 - 5), 3, 10)


def _small_pybigwig(path, rng, kind):
    from bwloader_core.testing import fixtures as df
    import pyBigWig
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(SMALL_SIZES.items()), maxZooms=2)
    for c, size in SMALL_SIZES.items():
        if kind == "bedgraph":
            s, e, v = df.random_bedgraph(rng, size, 600)
            bw.addEntries([c] * len(s), s.tolist(), ends=e.tolist(), values=v.astype(np.float64).tolist())
        elif kind == "varstep":
            s, v = df.random_varstep(rng, size, 300, 4)
            bw.addEntries(c, s.tolist(), values=v.astype(np.float64).tolist(), span=4)
        else:
            bw.addEntries(c, 3, values=df.random_values(rng, size // 7 - 2).astype(np.float64).tolist(),
                          span=5, step=7)
    bw.close()


def build_corpus(directory, include_fixtures: bool = True) -> list[dict]:
    """Write the seed files into `directory`; returns and saves (manifest.json) their list."""
    from bwloader_core.testing import fixtures as df
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    seeds = []
    small = [("small_ours_zlib", dict(zoom_levels=2)), ("small_ours_raw", dict(compress=False)),
             ("small_ours_be", dict(byteorder=">", zoom_levels=2)),
             ("small_ours_be_raw", dict(byteorder=">", compress=False)),
             ("small_ours_v1", dict(compress=False, version=1)),
             ("small_ours_deep", dict(items_per_slot=2, block_size=2, zoom_levels=1)),
             ("small_ours_onenode", dict(items_per_slot=64, block_size=256))]
    for i, (name, kw) in enumerate(small):
        p = d / f"{name}.bw"
        _small_ours(p, np.random.default_rng([11, i]), **kw)
        seeds.append(dict(name=name, path=str(p)))
    for i, kind in enumerate(("bedgraph", "varstep", "fixedstep")):
        p = d / f"small_pybigwig_{kind}.bw"
        _small_pybigwig(p, np.random.default_rng([12, i]), kind)
        seeds.append(dict(name=p.stem, path=str(p)))
    p = d / "small_many_chroms.bw"   # 40 chromosomes, block_size 3: a 4-level chromosome B+ tree
    rng = np.random.default_rng(13)
    sizes = {f"ctg{i}": int(rng.integers(200, 900)) for i in range(40)}
    with df.BigWigWriter(p, sizes, block_size=3, items_per_slot=8, zoom_levels=1) as w:
        for c, size in sizes.items():
            if rng.random() < 0.8:
                w.add_bedgraph(c, *df.random_bedgraph(rng, size, 30))
    seeds.append(dict(name=p.stem, path=str(p)))
    p = d / "wheel_test.bw"
    shutil.copyfile(df.wheel_test_bw_path() / "test.bw", p)
    seeds.append(dict(name="wheel_test_bw", path=str(p)))
    if include_fixtures:   # the test suite's fixtures (larger: 50-400 kB)
        fx = df.build_all(d / "fixtures")
        for name in ("bigendian", "uncompressed", "deep_rtree", "many_chroms_ours", "pybigwig_mixed",
                     "version1", "many_chroms"):
            seeds.append(dict(name=f"fixture_{name}", path=fx[name].path))
    (d / "manifest.json").write_text(json.dumps(seeds, indent=1))
    return seeds


# ================================================================================== file layout
@dataclass
class Seed:
    """A seed file and where its structures lie (parsed here, independently of the package)."""
    name: str
    path: str
    raw: bytes
    bo: str
    hdr: dict
    compressed: bool
    chrom_nodes: list = field(default_factory=list)   # (offset, is_leaf, count, key_size)
    chrom_hdr_off: int = 0
    key_size: int = 0
    rtree_nodes: list = field(default_factory=list)   # (offset, is_leaf, count)
    leaf_items: list = field(default_factory=list)    # byte offset of every data leaf item
    leaves: list = field(default_factory=list)        # (offset, size) per data block
    boundaries: list = field(default_factory=list)
    live: np.ndarray = None                           # bool per byte: needed for values
    inert: np.ndarray = None                          # offsets of bytes never needed for values
    zoom_levels: list = field(default_factory=list)   # reduction levels


def _walk_rtree(raw, bo, offset):
    """R-tree nodes [(off, is_leaf, count)] and leaf item positions; (nodes, items, end)."""
    nodes, items = [], []
    frontier = [offset + RTREE_HEADER_SIZE]
    end = offset + RTREE_HEADER_SIZE
    while frontier:
        nxt = []
        for node in frontier:
            is_leaf, _, n = struct.unpack_from(bo + NODE_HEADER_FORMAT, raw, node)
            nodes.append((node, bool(is_leaf), n))
            if is_leaf:
                items.extend(node + NODE_HEADER_SIZE + RTREE_LEAF_ITEM_SIZE * k for k in range(n))
                end = max(end, node + NODE_HEADER_SIZE + RTREE_LEAF_ITEM_SIZE * n)
            else:
                nxt.extend(struct.unpack_from(bo + "Q", raw, node + NODE_HEADER_SIZE + RTREE_INTERNAL_ITEM_SIZE * k + 16)[0] for k in range(n))
                end = max(end, node + NODE_HEADER_SIZE + RTREE_INTERNAL_ITEM_SIZE * n)
        frontier = nxt
    return nodes, items, end


def load_seed(entry: dict) -> Seed:
    from bwloader_core.testing import fixtures as df
    raw = Path(entry["path"]).read_bytes()
    bo = df.detect_byteorder(raw)
    names = ("magic", "version", "zoom_levels", "chrom_tree_offset", "full_data_offset", "full_index_offset",
             "field_count", "defined_field_count", "autosql_offset", "total_summary_offset",
             "uncompress_buf_size", "extension_offset")
    hdr = dict(zip(names, struct.unpack_from(bo + HEADER_FMT, raw, 0)))
    s = Seed(entry["name"], entry["path"], raw, bo, hdr, hdr["uncompress_buf_size"] > 0)
    live = np.zeros(len(raw), bool)
    live[0:32] = True
    live[52:56] = True
    # chromosome B+ tree
    cto = hdr["chrom_tree_offset"]
    _, _, key_size, val_size, _, _ = struct.unpack_from(bo + CHROM_TREE_HEADER_FORMAT, raw, cto)
    s.chrom_hdr_off, s.key_size = cto, key_size
    live[cto:cto + CHROM_TREE_HEADER_SIZE] = True
    frontier = [cto + CHROM_TREE_HEADER_SIZE]
    while frontier:
        nxt = []
        for node in frontier:
            is_leaf, _, n = struct.unpack_from(bo + NODE_HEADER_FORMAT, raw, node)
            s.chrom_nodes.append((node, bool(is_leaf), n, key_size))
            live[node:node + NODE_HEADER_SIZE + n * (key_size + 8)] = True
            if not is_leaf:
                nxt.extend(struct.unpack_from(bo + "Q", raw, node + NODE_HEADER_SIZE + k * (key_size + 8) + key_size)[0]
                           for k in range(n))
        frontier = nxt
    # data R-tree and blocks
    fio = hdr["full_index_offset"]
    s.rtree_nodes, s.leaf_items, _ = _walk_rtree(raw, bo, fio)
    live[fio:fio + RTREE_HEADER_SIZE] = True
    for off, is_leaf, n in s.rtree_nodes:
        live[off:off + NODE_HEADER_SIZE + n * (RTREE_LEAF_ITEM_SIZE if is_leaf else RTREE_INTERNAL_ITEM_SIZE)] = True
    for pos in s.leaf_items:
        o, z = struct.unpack_from(bo + "QQ", raw, pos + 16)
        s.leaves.append((o, z))
        live[o:o + z] = True
    s.zoom_levels = [struct.unpack_from(bo + "I", raw, HEADER_SIZE + ZOOM_HEADER_SIZE * i)[0] for i in range(hdr["zoom_levels"])]
    s.live = live
    s.inert = np.flatnonzero(~live)
    s.boundaries = df.structure_boundaries(entry["path"])
    return s


# ================================================================================== mutations
@dataclass
class Mutant:
    family: str
    data: bytes
    desc: str
    inert: bool = False     # the mutation cannot change values


def _flip(b: bytearray, rng, positions, n=None):
    n = n or int(rng.choice([1, 1, 1, 2, 3, 8]))
    done = []
    for _ in range(n):
        pos = int(positions[int(rng.integers(len(positions)))])
        mask = int(rng.integers(1, 256)) if rng.random() < 0.7 else 1 << int(rng.integers(8))
        b[pos] ^= mask
        done.append(f"{pos}^{mask:#x}")
    return ",".join(done)


def _span(a, b):
    return np.arange(a, b) if b > a else np.arange(a, a + 1)


def _block_payload(s: Seed, k):
    o, z = s.leaves[k]
    blk = s.raw[o:o + z]
    return zlib.decompress(blk) if s.compressed else blk


def _replace_block(s: Seed, b: bytearray, k, payload: bytes) -> str:
    """Store a new payload for data block k: in place when the size allows, else appended at the end
    with the leaf repointed (and uncompressBufSize raised if needed)."""
    o, z = s.leaves[k]
    new = zlib.compress(payload) if s.compressed else payload
    if len(new) == z:
        b[o:o + z] = new
        return f"block {k} at {o} rewritten in place"
    pos = s.leaf_items[k]
    struct.pack_into(s.bo + "QQ", b, pos + 16, len(b), len(new))
    off = len(b)
    b.extend(new)
    if s.compressed and len(payload) > s.hdr["uncompress_buf_size"]:
        struct.pack_into(s.bo + "I", b, 52, len(payload))
    return f"block {k} ({len(payload)} B inflated) moved to {off}"


def _random_value(rng, bits):
    edges = EDGE_U32 if bits == 32 else EDGE_U64
    r = rng.random()
    if r < 0.6:
        return int(edges[int(rng.integers(len(edges)))])
    if r < 0.8:
        return int(rng.integers(0, 1 << min(bits, 62)))
    return None   # caller: "near the current value"


def mutate(s: Seed, family: str, rng) -> Mutant:
    raw = s.raw
    b = bytearray(raw)
    n = len(raw)
    bo = s.bo
    if family == "truncate":
        if rng.random() < 0.8:
            cut = int(s.boundaries[int(rng.integers(len(s.boundaries)))]) + int(rng.integers(-3, 4))
        else:
            cut = int(rng.integers(0, n))
        cut = min(max(cut, 0), n - 1)
        return Mutant(family, raw[:cut], f"truncated to {cut} of {n} bytes")
    if family == "flip_header":
        top = HEADER_SIZE + ZOOM_HEADER_SIZE * s.hdr["zoom_levels"]
        d = _flip(b, rng, _span(0, top))
        return Mutant(family, bytes(b), f"header flip {d}")
    if family == "flip_chrom_tree":
        pos = [np.arange(s.chrom_hdr_off, s.chrom_hdr_off + CHROM_TREE_HEADER_SIZE)]
        pos += [_span(o, o + NODE_HEADER_SIZE + c * (ks + 8)) for o, _, c, ks in s.chrom_nodes]
        d = _flip(b, rng, np.concatenate(pos))
        return Mutant(family, bytes(b), f"chromosome tree flip {d}")
    if family == "flip_rtree":
        fio = s.hdr["full_index_offset"]
        pos = [np.arange(fio, fio + RTREE_HEADER_SIZE)] + [_span(o, o + NODE_HEADER_SIZE + c * (RTREE_LEAF_ITEM_SIZE if lf else RTREE_INTERNAL_ITEM_SIZE)) for o, lf, c in s.rtree_nodes]
        d = _flip(b, rng, np.concatenate(pos))
        return Mutant(family, bytes(b), f"R-tree flip {d}")
    if family == "flip_data":
        k = int(rng.integers(len(s.leaves)))
        o, z = s.leaves[k]
        d = _flip(b, rng, _span(o, o + z))
        return Mutant(family, bytes(b), f"data block {k} raw flip {d}")
    if family == "flip_any":
        d = _flip(b, rng, np.arange(n), n=int(rng.choice([1, 2, 4, 16, 64])))
        return Mutant(family, bytes(b), f"flip anywhere {d}")
    if family == "inflated_flip":
        k = int(rng.integers(len(s.leaves)))
        p = bytearray(_block_payload(s, k))
        r = rng.random()
        if r < 0.6:
            d = "payload flip " + _flip(p, rng, np.arange(len(p)))
        elif r < 0.75:
            d = "section header flip " + _flip(p, rng, np.arange(min(SECTION_HEADER_SIZE, len(p))))
        elif r < 0.85:
            cut = int(rng.integers(0, len(p)))
            p = p[:cut]
            d = f"payload cut to {cut}"
        else:
            extra = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
            p = p + extra
            d = f"payload + {len(extra)} random bytes"
        where = _replace_block(s, b, k, bytes(p))
        return Mutant(family, bytes(b), f"inflated block {k}: {d}; {where}")
    if family == "deflate_adler":
        k = int(rng.integers(len(s.leaves)))
        o, z = s.leaves[k]
        if not s.compressed or z < 7:
            d = _flip(b, rng, _span(o, o + z))
            return Mutant(family, bytes(b), f"raw block {k} flip {d}")
        for attempt in range(40):
            blk = bytearray(raw[o:o + z])
            d = _flip(blk, rng, np.arange(2, z - 4), n=int(rng.choice([1, 1, 2])))
            dec = zlib.decompressobj(-15)   # the raw deflate stream between the zlib header and adler32
            try:
                out = dec.decompress(bytes(blk[2:-4]))
            except zlib.error:
                continue
            if not dec.eof or dec.unused_data:
                continue
            struct.pack_into(">I", blk, z - 4, zlib.adler32(out))
            b[o:o + z] = blk
            return Mutant(family, bytes(b), f"block {k} deflate flip {d}, adler32 fixed "
                                            f"(inflates to {len(out)} B, attempt {attempt})")
        b[o:o + z] = blk
        return Mutant(family, bytes(b), f"block {k} deflate flip {d} (does not inflate)")
    if family == "forge_section":
        k = int(rng.integers(len(s.leaves)))
        p = bytearray(_block_payload(s, k))
        if len(p) < SECTION_HEADER_SIZE:
            return mutate(s, "inflated_flip", rng)
        # chromId, start, end, itemStep, itemSpan (u32), type, reserved (u8), itemCount (u16)
        fields = [("chromId", 0, "I"), ("start", 4, "I"), ("end", 8, "I"), ("itemStep", 12, "I"),
                  ("itemSpan", 16, "I"), ("type", 20, "B"), ("itemCount", 22, "H")]
        name, off, fmt = fields[int(rng.integers(len(fields)))]
        bits = 8 * struct.calcsize(fmt)
        v = _random_value(rng, 32)
        cur = struct.unpack_from(bo + fmt, p, off)[0]
        v = cur + int(rng.integers(-3, 4)) if v is None else v
        v %= 1 << bits
        struct.pack_into(bo + fmt, p, off, v)
        where = _replace_block(s, b, k, bytes(p))
        return Mutant(family, bytes(b), f"block {k} section {name}: {cur} -> {v}; {where}")
    if family == "forge_field":
        return _forge_field(s, b, rng)
    if family == "cycle":
        return _cycle(s, b, rng)
    if family == "fanout_cycle":
        return _fanout(s, b, rng)
    if family == "inert":
        if len(s.inert) == 0:
            return mutate(s, "flip_any", rng)
        d = _flip(b, rng, s.inert, n=int(rng.choice([1, 2, 4, 32])))
        return Mutant(family, bytes(b), f"flip of bytes no value depends on: {d}", inert=True)
    raise ValueError(f"unknown family {family!r}")


def _forge_field(s: Seed, b: bytearray, rng) -> Mutant:
    """Counts, sizes and offsets set to edge values (past the end, huge, zero, off by a few)."""
    bo, n = s.bo, len(s.raw)
    header = [  # (what, byte offset, struct format)
        ("header.zoomLevels", 6, "H"), ("header.chromTreeOffset", 8, "Q"), ("header.fullDataOffset", 16, "Q"),
        ("header.fullIndexOffset", 24, "Q"), ("header.totalSummaryOffset", 44, "Q"),
        ("header.uncompressBufSize", 52, "I"), ("header.version", 4, "H")]
    chrom = [
        ("chromTree.blockSize", s.chrom_hdr_off + 4, "I"), ("chromTree.keySize", s.chrom_hdr_off + 8, "I"),
        ("chromTree.valSize", s.chrom_hdr_off + 12, "I"), ("chromTree.itemCount", s.chrom_hdr_off + 16, "Q")]
    rtree = [("rtree.blockSize", s.hdr["full_index_offset"] + 4, "I"),
             ("rtree.itemCount", s.hdr["full_index_offset"] + 8, "Q")]
    zoom, leaf = [], []
    for i in range(s.hdr["zoom_levels"]):
        zoom += [(f"zoom{i}.reductionLevel", HEADER_SIZE + ZOOM_HEADER_SIZE * i, "I"), (f"zoom{i}.dataOffset", HEADER_SIZE + ZOOM_HEADER_SIZE * i + 8, "Q"),
                    (f"zoom{i}.indexOffset", HEADER_SIZE + ZOOM_HEADER_SIZE * i + 16, "Q")]
    for off, is_leaf, cnt, ks in s.chrom_nodes:
        chrom.append((f"chromNode@{off}.count", off + 2, "H"))
        chrom.append((f"chromNode@{off}.isLeaf", off, "B"))
        if is_leaf and cnt:
            item = off + NODE_HEADER_SIZE + int(rng.integers(cnt)) * (ks + 8)
            chrom += [(f"chromLeaf@{item}.id", item + ks, "I"), (f"chromLeaf@{item}.size", item + ks + 4, "I")]
        elif cnt:
            item = off + NODE_HEADER_SIZE + int(rng.integers(cnt)) * (ks + 8)
            chrom.append((f"chromNode@{item}.child", item + ks, "Q"))
    for off, is_leaf, cnt in s.rtree_nodes:
        rtree.append((f"rtreeNode@{off}.count", off + 2, "H"))
        if not is_leaf and cnt:
            item = off + NODE_HEADER_SIZE + int(rng.integers(cnt)) * RTREE_INTERNAL_ITEM_SIZE
            rtree.append((f"rtreeNode@{item}.child", item + 16, "Q"))
    for _ in range(4):
        k = int(rng.integers(len(s.leaf_items)))
        item = s.leaf_items[k]
        for name, o, f in (("startChrom", 0, "I"), ("startBase", 4, "I"), ("endChrom", 8, "I"),
                           ("endBase", 12, "I"), ("offset", 16, "Q"), ("size", 24, "Q")):
            leaf.append((f"leaf{k}.{name}", item + o, f))
    groups = [g for g in (header, chrom, rtree, zoom, leaf) if g]
    targets = groups[int(rng.integers(len(groups)))]
    what, off, fmt = targets[int(rng.integers(len(targets)))]
    bits = 8 * struct.calcsize(fmt)
    cur = struct.unpack_from(bo + fmt, b, off)[0]
    r = rng.random()
    if r < 0.25:   # relative to the file: at, just before and past the end
        v = n + int(rng.integers(-40, 40))
    elif r < 0.4:
        v = cur + int(rng.integers(-4, 5))
    else:
        v = _random_value(rng, 64 if bits == 64 else 32)
        v = cur * 2 + 1 if v is None else v
    v %= 1 << bits
    struct.pack_into(bo + fmt, b, off, v)
    return Mutant("forge_field", bytes(b), f"{what}: {cur} -> {v} (file {n} bytes)")


def _cycle(s: Seed, b: bytearray, rng) -> Mutant:
    """A child offset pointing at its parent, the root, itself or the tree header; or a leaf turned
    into an internal node (its items then read as children)."""
    bo = s.bo
    opts = []
    root_c = s.chrom_nodes[0][0]
    for off, is_leaf, cnt, ks in s.chrom_nodes:
        if not is_leaf and cnt:
            opts.append(("chrom", off, cnt, ks + 8, ks))
    root_r = s.rtree_nodes[0][0]
    for off, is_leaf, cnt in s.rtree_nodes:
        if not is_leaf and cnt:
            opts.append(("rtree", off, cnt, RTREE_INTERNAL_ITEM_SIZE, 16))
    if not opts or rng.random() < 0.25:
        tree = "chrom" if rng.random() < 0.5 else "rtree"
        off = root_c if tree == "chrom" else root_r
        b[off] = 0
        return Mutant("cycle", bytes(b), f"{tree} root leaf at {off} marked internal")
    tree, off, cnt, isz, koff = opts[int(rng.integers(len(opts)))]
    root = root_c if tree == "chrom" else root_r
    hdr_off = s.chrom_hdr_off if tree == "chrom" else s.hdr["full_index_offset"]
    target = [off, root, hdr_off, off + NODE_HEADER_SIZE][int(rng.integers(4))]
    items = range(cnt) if rng.random() < 0.3 else [int(rng.integers(cnt))]
    for k in items:
        struct.pack_into(bo + "Q", b, off + NODE_HEADER_SIZE + k * isz + koff, target)
    return Mutant("cycle", bytes(b), f"{tree} node at {off}: child {list(items)[:4]} -> {target} (root {root})")


def fanout_bytes(s: Seed, tree: str, fanout: int) -> bytes:
    """The root of a tree made an internal node of `fanout` children that all point back at the root
    (blockSize and itemCount raised so the counts themselves pass the header checks)."""
    bo = s.bo
    b = bytearray(s.raw)
    if tree == "rtree":
        hdr, isz, koff = s.hdr["full_index_offset"], RTREE_INTERNAL_ITEM_SIZE, 16
        root = hdr + RTREE_HEADER_SIZE
    else:
        hdr, isz, koff = s.chrom_hdr_off, s.key_size + 8, s.key_size
        root = hdr + CHROM_TREE_HEADER_SIZE
    need = root + NODE_HEADER_SIZE + isz * fanout
    if len(b) < need:
        b.extend(bytes(need - len(b)))
    struct.pack_into(bo + "I", b, hdr + 4, 0xFFFF)                       # blockSize
    # itemCount: the most the reader's header check allows
    struct.pack_into(bo + "Q", b, hdr + (8 if tree == "rtree" else 16), len(b) // (2 if tree == "rtree" else isz))
    struct.pack_into(bo + NODE_HEADER_FORMAT, b, root, 0, 0, fanout)
    for k in range(fanout):
        item = root + 4 + isz * k
        b[item:item + isz] = bytes(isz)
        if tree == "rtree":
            struct.pack_into(bo + "IIII", b, item, 0, 0, 0, 1000)
        else:
            b[item:item + 3] = b"chr"
        struct.pack_into(bo + "Q", b, item + koff, root)
    return bytes(b)


def _fanout(s: Seed, b: bytearray, rng) -> Mutant:
    tree = "rtree" if rng.random() < 0.5 else "chrom"
    fanout = int(rng.integers(200, 6000))
    return Mutant("fanout_cycle", fanout_bytes(s, tree, fanout),
                  f"{tree} root: internal node with fan-out {fanout}, every child the root itself")


def pick_family(rng, families=None) -> str:
    names = list(families or FAMILIES)
    w = np.array([FAMILIES.get(f, 1) for f in names], float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def sweep_cuts(seeds: list[Seed], per_small: int = 60, per_large: int = 25) -> list[tuple[int, int]]:
    """(seed index, cut) for truncation at the structure boundaries (and one byte before each) of
    every seed: all of them up to `per_small` (`per_large` for files > 40 kB), else evenly spread."""
    out = []
    for k, s in enumerate(seeds):
        b = s.boundaries
        m = per_large if len(s.raw) > 40_000 else per_small
        if len(b) > m:
            b = [b[int(j)] for j in np.unique(np.linspace(0, len(b) - 1, m).astype(int))]
        cuts = sorted({c + d for c in b for d in (-1, 0) if 0 <= c + d < len(s.raw)})
        out.extend((k, c) for c in cuts)
    return out


_SWEEP_CACHE: dict = {}


def make_case(seeds: list[Seed], campaign_seed: int, i: int, families=None):
    """Case i: (seed, Mutant, query rng seed) — a pure function of (campaign_seed, i, corpus)."""
    rng = np.random.default_rng([campaign_seed, i])
    if families and list(families) == [SWEEP]:
        key = id(seeds)
        if key not in _SWEEP_CACHE:
            _SWEEP_CACHE.clear()
            _SWEEP_CACHE[key] = sweep_cuts(seeds)
        cuts = _SWEEP_CACHE[key]
        k, cut = cuts[i % len(cuts)]
        s = seeds[k]
        return s, Mutant(SWEEP, s.raw[:cut], f"truncated to {cut} of {len(s.raw)} bytes (sweep)"), \
            int(rng.integers(1 << 62))
    family = pick_family(rng, families)
    s = seeds[int(rng.integers(len(seeds)))]
    if family in SELFTEST_FAMILIES:
        return s, Mutant(family, s.raw, family), int(rng.integers(1 << 62))
    return s, mutate(s, family, rng), int(rng.integers(1 << 62))


# ================================================================================== run one case
class CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that `except Exception` in the core cannot swallow it."""


def make_queries(rng, chrom_sizes: dict, zoom_levels: list) -> list[dict]:
    chroms = list(chrom_sizes)
    out = []
    if not chroms:
        return out
    for k in range(3):
        w = 1 if k == 0 else int(rng.choice([2, 5, 10, 64, 128]))
        L = w * int(rng.integers(1, 2000 // w + 1))
        B = int(rng.integers(1, 7))
        cs, starts = [], []
        for _ in range(B):
            c = chroms[int(rng.integers(len(chroms)))]
            size = int(chrom_sizes[c])
            r = rng.random()
            if r < 0.6:
                st = int(rng.integers(-L // 4 - 1, max(size, 1)))
            elif r < 0.8:
                st = size - int(rng.integers(0, L + 10))
            else:
                st = int(rng.integers(-L - 10, 10))
            cs.append(c)
            starts.append(st)
        zoom = False
        if k == 2 and zoom_levels and rng.random() < 0.5:
            red = [z for z in zoom_levels if 0 < z <= 4096]
            if red:
                w = int(red[int(rng.integers(len(red)))]) * int(rng.integers(1, 4))
                L = w * int(rng.integers(1, 5))
                zoom = True
        out.append(dict(chroms=cs, starts=starts, length=L, window=w,
                        reduce=str(rng.choice(["mean", "max", "min", "sum"])),
                        default=float(rng.choice([0.0, np.nan])), zoom=zoom))
    return out


def run_queries(coll, queries, compare_with=None):
    """Run queries; check shapes. With `compare_with` (the intact file's collection), values must be
    equal (zoom queries are not compared). Returns a list of problems (strings)."""
    problems = []
    for q in queries:
        st = np.asarray(q["starts"], np.int64)
        args = (q["chroms"], st, st + q["length"])
        kw = dict(window_size=q["window"], reduce=q["reduce"], default_value=q["default"])
        got = coll.get_batch(*args, zoom=q["zoom"], **kw)
        want_shape = (len(st), q["length"] // q["window"], 1)
        if not isinstance(got, np.ndarray) or got.shape != want_shape or got.dtype != np.float32:
            problems.append(f"shape/dtype {getattr(got, 'shape', None)} {getattr(got, 'dtype', None)}, "
                            f"expected {want_shape} float32 for {q}")
        if compare_with is not None and not q["zoom"]:
            ref = compare_with.get_batch(*args, **kw)
            if not np.array_equal(got, ref, equal_nan=True):
                bad = np.argwhere(~((got == ref) | (np.isnan(got) & np.isnan(ref))))
                problems.append(f"values differ from the intact file at {len(bad)} positions "
                                f"(first {bad[0].tolist()}) for {q}")
    return problems


def normalize_message(msg: str, path: str) -> str:
    """A message kind: path removed, numbers -> N, quoted names -> '…'."""
    m = msg.replace(path, "<file>")
    m = re.sub(r"'[^']*'", "'…'", m)
    m = re.sub(r"0x[0-9A-Fa-f]+", "\x00", m)
    m = re.sub(r"-?\d+(\.\d+)?", "N", m)
    m = m.replace("\x00", "0x…").replace(" (N bytes)", "")
    return m[:110]


def run_case(mutant: Mutant, path: str, query_seed: int, intact=None, timeout: float = 20.0,
             n_threads=None) -> dict:
    """Write the mutant to `path`, open and query it. Returns dict(outcome, detail)."""
    from bwloader_core import BigWigCollection, BigWigFormatError

    if mutant.family == "selftest_crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    Path(path).write_bytes(mutant.data)
    rng = np.random.default_rng(query_seed)
    if n_threads is None:
        n_threads = int(rng.integers(1, 3))
    cache_bytes = int(rng.choice([0, 0, 1 << 20]))

    def _alarm(signum, frame):
        raise CaseTimeout(f"no answer within {timeout} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    coll = None
    try:
        if mutant.family == "selftest_hang":
            time.sleep(timeout * 10)
        if mutant.family == "selftest_hang_hard":   # where SIGALRM cannot reach: the parent kills
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(timeout * 100)
        if mutant.family == "selftest_exception":
            raise IndexError("selftest")
        coll = BigWigCollection([path], n_threads=n_threads, cache_bytes=cache_bytes)
        ref_sizes = intact.chrom_sizes if (mutant.inert and intact is not None) else coll.chrom_sizes
        zl = [z.reduction_level for z in coll.files[0].zoom_levels]
        queries = make_queries(rng, ref_sizes, zl)
        if mutant.inert and intact is not None and coll.chrom_sizes != intact.chrom_sizes:
            problems = [f"chromosomes differ from the intact file: {list(coll.chrom_sizes.items())[:5]}"]
        else:
            problems = run_queries(coll, queries, intact if mutant.inert else None)
        coll.close()
        coll = None
        if problems:
            return dict(outcome="DISALLOWED:wrong_values" if "differ" in problems[0] else "DISALLOWED:bad_shape",
                        detail=problems[0][:2000])
        return dict(outcome="ok", detail=f"{len(queries)} queries")
    except BigWigFormatError as e:
        if path not in str(e):
            return dict(outcome="DISALLOWED:message_without_path", detail=str(e)[:2000],
                        kind=normalize_message(str(e), path), tb=traceback.format_exc()[-3000:])
        return dict(outcome="error", kind=normalize_message(str(e), path))
    except CaseTimeout as e:
        return dict(outcome="DISALLOWED:hang", detail=str(e), tb=traceback.format_exc()[-3000:])
    except BaseException as e:  # noqa: BLE001 - everything else is a finding
        return dict(outcome=f"DISALLOWED:{type(e).__name__}", detail=f"{type(e).__name__}: {e}"[:2000],
                    kind=normalize_message(f"{type(e).__name__}: {e}", path), tb=traceback.format_exc()[-3000:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if coll is not None:
            try:
                coll.close()
            except BaseException:  # noqa: BLE001
                pass


# ================================================================================== worker
def worker_main(args):
    import faulthandler
    faulthandler.enable()
    try:
        import resource
        lim = int(args.mem_limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (lim, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ImportError, ValueError, OSError):
        pass
    from bwloader_core import BigWigCollection
    entries = json.loads(Path(args.corpus, "manifest.json").read_text())
    seeds = [load_seed(e) for e in entries]
    intact = {}
    families = args.families.split(",") if args.families else None
    work = Path(tempfile.mkdtemp(prefix="bwfuzz-"))
    path = str(work / "mutant.bw")
    try:
        with open(args.progress, "a") as prog, open(args.results, "a") as res:
            for i in range(args.start, args.stop):
                s, m, qseed = make_case(seeds, args.seed, i, families)
                prog.write(f"{i}\n")
                prog.flush()
                ref = None
                if m.inert:
                    if s.name not in intact:
                        intact[s.name] = BigWigCollection([s.path], n_threads=1)
                    ref = intact[s.name]
                t0 = time.perf_counter()
                r = run_case(m, path, qseed, ref, timeout=args.case_timeout)
                r.update(case=i, family=m.family, seed_file=s.name, desc=m.desc[:300],
                         seconds=round(time.perf_counter() - t0, 4))
                res.write(json.dumps(r) + "\n")
                res.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for c in intact.values():
            c.close()


# ================================================================================== parent
def _read_jsonl(p: Path) -> list[dict]:
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


# Open bugs of the core that the fuzzer finds, each with a strict-xfail test in tests/test_fuzz.py; a
# disallowed outcome matching one does not fail the CI campaign. All found so far are fixed (tree
# fan-out cycles, leaf dataSize >= 2^63, the too-many-sections message: f9f178b; uncompressBufSize too
# large or too small: a54f7b2), so their outcomes count as new findings again.
KNOWN_BUGS: dict = {}


def _ubs(data: bytes):
    if len(data) < 56:
        return None
    le = struct.unpack_from("<I", data, 0)[0] == BIGWIG_MAGIC
    return struct.unpack_from(("<" if le else ">") + "I", data, 52)[0]


def known_bug(rec: dict, m: Mutant, seed: Seed | None = None) -> str | None:
    """The KNOWN_BUGS key a disallowed outcome belongs to (None: a new finding). Add a predicate
    here (e.g. on `rec['outcome']`, `m.desc` or `_ubs(m.data)`) when a new open bug is recorded."""
    return None


_SEEDS_CACHE: dict = {}


def corpus_seeds(corpus) -> list[Seed]:
    key = str(Path(corpus).resolve())
    if key not in _SEEDS_CACHE:
        entries = json.loads((Path(corpus) / "manifest.json").read_text())
        _SEEDS_CACHE[key] = [load_seed(e) for e in entries]
    return _SEEDS_CACHE[key]


def save_reproducer(out_dir: Path, corpus: Path, seed: int, rec: dict, families=None) -> str:
    """Regenerate the case's mutant, save it with a note; returns the file path."""
    seeds = corpus_seeds(corpus)
    s, m, qseed = make_case(seeds, seed, rec["case"], families)
    d = out_dir / "reproducers"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"case-{seed}-{rec['case']}.bw"
    p.write_bytes(m.data)
    fam = f", families={families!r}" if families else ""
    note = (f"outcome: {rec['outcome']}\nseed file: {s.name} ({s.path})\nmutation: {m.desc}\n"
            f"detail: {rec.get('detail', '')}\n\n{rec.get('tb', '')}\n"
            f"reproduce:\n  python scripts/fuzz_campaign.py --replay {rec['case']} --seed {seed} --corpus {corpus}"
            f"{' --families ' + ','.join(families) if families else ''}\n"
            f"or in Python:\n  from bwloader_core import BigWigCollection\n"
            f"  c = BigWigCollection([{str(p)!r}])\n  # then the queries of make_queries(np.random.default_rng({qseed}), "
            f"c.chrom_sizes, zoom levels){fam}\n")
    p.with_suffix(".txt").write_text(note)
    rec["known_bug"] = known_bug(rec, m, s)
    return str(p)


def run_campaign(cases: int, seed: int, out_dir, corpus=None, jobs: int = 2, chunk: int = 1000,
                 case_timeout: float = 20.0, families=None, start: int = 0, mem_limit_gb: float = 4.0,
                 verbose: bool = False, include_fixtures: bool = True) -> dict:
    """Run cases [start, start + cases) in worker subprocesses; returns the summary dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = Path(corpus) if corpus else out_dir / "corpus"
    if not (corpus / "manifest.json").exists():
        build_corpus(corpus, include_fixtures=include_fixtures)
    runs = out_dir / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir()
    pending = [(a, min(a + chunk, start + cases)) for a in range(start, start + cases, chunk)]
    running = []   # (proc, a, b, results path, progress path, t_start)
    records: list[dict] = []
    t_begin = time.perf_counter()
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    n_launch = 0

    def launch(a, b):
        nonlocal n_launch
        n_launch += 1
        res, prog = runs / f"r{n_launch}.jsonl", runs / f"p{n_launch}.txt"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--corpus", str(corpus),
               "--seed", str(seed), "--start", str(a), "--stop", str(b), "--results", str(res),
               "--progress", str(prog), "--case-timeout", str(case_timeout), "--mem-limit-gb", str(mem_limit_gb)]
        if families:
            cmd += ["--families", ",".join(families)]
        errf = open(runs / f"e{n_launch}.txt", "w")
        p = subprocess.Popen(cmd, stdout=errf, stderr=subprocess.STDOUT, env=env)
        running.append((p, a, b, res, prog, time.monotonic(), errf))

    while pending or running:
        while pending and len(running) < jobs:
            launch(*pending.pop(0))
        time.sleep(0.05)
        for item in list(running):
            p, a, b, res, prog, t0, errf = item
            rc = p.poll()
            progress = _read_jsonl_ints(prog)
            last = progress[-1] if progress else None
            done = {r["case"] for r in _read_jsonl(res)}
            stuck = last is not None and last not in done and _stalled(prog, case_timeout * 2 + 5)
            if rc is None and not stuck:
                continue
            if rc is None:   # a case hangs where SIGALRM cannot reach (C code): kill the worker
                p.kill()
                p.wait()
                rc = "killed"
            errf.close()
            running.remove(item)
            recs = _read_jsonl(res)
            records.extend(recs)
            done = {r["case"] for r in recs}
            if last is not None and last not in done:
                tail = (runs / f"e{Path(res).stem[1:]}.txt").read_text()[-3000:]
                kind = "DISALLOWED:hang" if rc == "killed" else (
                    f"DISALLOWED:crash(signal {-rc})" if isinstance(rc, int) and rc < 0 else f"DISALLOWED:crash(exit {rc})")
                records.append(dict(case=last, outcome=kind, detail=f"worker exit {rc}", tb=tail,
                                    family="?", seed_file="?", desc="?"))
                if last + 1 < b:
                    pending.insert(0, (last + 1, b))
            elif rc != 0 and not done and last is None:
                tail = (runs / f"e{Path(res).stem[1:]}.txt").read_text()[-3000:]
                raise RuntimeError(f"fuzz worker failed before its first case (exit {rc}):\n{tail}")
            elif recs and max(done) + 1 < b:   # ended early without a running case: resume
                pending.insert(0, (max(done) + 1, b))
            if verbose:
                print(f"  cases {a}-{b}: {len(recs)} done, exit {rc}, {time.perf_counter() - t_begin:.0f} s",
                      flush=True)
    elapsed = time.perf_counter() - t_begin
    return summarize(records, seed, elapsed, out_dir, corpus, families)


def _read_jsonl_ints(p: Path) -> list[int]:
    if not p.exists():
        return []
    return [int(x) for x in p.read_text().split()]


def _stalled(p: Path, seconds: float) -> bool:
    try:
        return time.time() - p.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def summarize(records, seed, elapsed, out_dir: Path, corpus: Path, families=None) -> dict:
    records = sorted({r["case"]: r for r in records}.values(), key=lambda r: r["case"])
    for r in records:   # fill in what a crashed case's record lacks
        if r.get("family") == "?":
            s, m, _ = make_case(corpus_seeds(corpus), seed, r["case"], families)
            r.update(family=m.family, seed_file=s.name, desc=m.desc[:300])
    by_outcome = collections.Counter(r["outcome"] for r in records)
    by_family = collections.defaultdict(collections.Counter)
    for r in records:
        by_family[r["family"]][r["outcome"].split(":")[0]] += 1
    kinds = collections.Counter(r["kind"] for r in records if r["outcome"] == "error")
    disallowed = [r for r in records if r["outcome"].startswith("DISALLOWED")]
    for r in disallowed:
        r["reproducer"] = save_reproducer(out_dir, corpus, seed, r, families)
    secs = [r.get("seconds", 0.0) for r in records]
    summary = dict(seed=seed, cases=len(records), seconds=round(elapsed, 1),
                   cases_per_second=round(len(records) / max(elapsed, 1e-9), 1),
                   slowest_case_s=max(secs) if secs else 0.0,
                   outcomes=dict(by_outcome.most_common()),
                   by_family={f: dict(c) for f, c in sorted(by_family.items())},
                   error_kinds=dict(kinds.most_common()),
                   inert_cases=sum(r["family"] == "inert" for r in records),
                   inert_errors=sum(r["family"] == "inert" and r["outcome"] == "error" for r in records),
                   disallowed=[{k: r.get(k) for k in ("case", "outcome", "family", "seed_file", "desc", "detail",
                                                       "reproducer", "known_bug")} for r in disallowed])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def print_summary(s: dict, top: int = 40):
    print(f"seed {s['seed']}: {s['cases']} cases in {s['seconds']} s ({s['cases_per_second']} cases/s; "
          f"slowest case {s['slowest_case_s']:.2f} s)")
    print("outcomes:")
    for k, v in s["outcomes"].items():
        print(f"  {v:8d}  {k}")
    print("by family (ok / error / disallowed):")
    for f, c in s["by_family"].items():
        print(f"  {f:16s} {c.get('ok', 0):7d} {c.get('error', 0):7d} {c.get('DISALLOWED', 0):5d}")
    print(f"inert mutations: {s['inert_cases']} cases, {s['inert_errors']} rejected with an error "
          "(the rest gave the intact file's values)")
    print(f"BigWigFormatError messages by kind ({len(s['error_kinds'])} kinds; top {top}):")
    for k, v in list(s["error_kinds"].items())[:top]:
        print(f"  {v:8d}  {k}")
    kb = collections.Counter(d.get("known_bug") or "NEW" for d in s["disallowed"])
    print(f"disallowed outcomes: {len(s['disallowed'])}  by known bug: {dict(kb)}")
    for d in s["disallowed"][:50]:
        print(f"  case {d['case']} [{d['outcome']}] ({d.get('known_bug') or 'NEW'}) {d['family']} on "
              f"{d['seed_file']}: {d['desc']}\n"
              f"      {str(d['detail'])[:300]}\n      reproducer: {d['reproducer']}")


def replay(args):
    """Run one case in this process and print the traceback (for debugging a reproducer)."""
    entries = json.loads(Path(args.corpus, "manifest.json").read_text())
    seeds = [load_seed(e) for e in entries]
    families = args.families.split(",") if args.families else None
    s, m, qseed = make_case(seeds, args.seed, args.replay, families)
    print(f"case {args.replay}: {m.family} on {s.name}: {m.desc}")
    from bwloader_core import BigWigCollection
    intact = BigWigCollection([s.path]) if m.inert else None
    with tempfile.TemporaryDirectory() as d:
        r = run_case(m, str(Path(d) / "mutant.bw"), qseed, intact, timeout=args.case_timeout)
    print(json.dumps({k: v for k, v in r.items() if k != "tb"}, indent=1))
    print(r.get("tb", ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk", type=int, default=2000, help="cases per worker subprocess")
    ap.add_argument("--out", default="fuzz_out", help="summary.json, reproducers/, corpus/")
    ap.add_argument("--corpus", default=None, help="a corpus directory (default: OUT/corpus, built once)")
    ap.add_argument("--families", default=None, help="comma-separated subset of: " + ", ".join(FAMILIES))
    ap.add_argument("--case-timeout", type=float, default=20.0)
    ap.add_argument("--mem-limit-gb", type=float, default=4.0, help="address-space limit of each worker")
    ap.add_argument("--minutes", type=float, default=None, help="stop launching new chunks after this long")
    ap.add_argument("--replay", type=int, default=None, help="run one case in-process and show the traceback")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    ap.add_argument("--progress", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.replay is not None:
        if not args.corpus:
            args.corpus = str(Path(args.out) / "corpus")
        return replay(args)
    families = args.families.split(",") if args.families else None
    if args.minutes:   # run in slices until the time is up
        out = Path(args.out)
        total = []
        t0 = time.perf_counter()
        done, first = 0, args.start
        step = max(args.chunk * args.jobs, 1)
        summary = None
        while done < args.cases and time.perf_counter() - t0 < args.minutes * 60:
            n = min(step, args.cases - done)
            summary = run_campaign(n, args.seed, out / f"slice{first}", corpus=args.corpus or out / "corpus",
                                   jobs=args.jobs, chunk=args.chunk, case_timeout=args.case_timeout,
                                   families=families, start=first, mem_limit_gb=args.mem_limit_gb, verbose=True)
            total.append(summary)
            done += n
            first += n
        summary = merge_summaries(total, time.perf_counter() - t0)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    else:
        summary = run_campaign(args.cases, args.seed, args.out, corpus=args.corpus, jobs=args.jobs,
                               chunk=args.chunk, case_timeout=args.case_timeout, families=families,
                               start=args.start, mem_limit_gb=args.mem_limit_gb, verbose=True)
    print_summary(summary)
    return 1 if summary["disallowed"] else 0


def merge_summaries(parts: list[dict], elapsed: float) -> dict:
    out = dict(seed=parts[0]["seed"], cases=sum(p["cases"] for p in parts), seconds=round(elapsed, 1))
    out["cases_per_second"] = round(out["cases"] / max(elapsed, 1e-9), 1)
    out["slowest_case_s"] = max(p["slowest_case_s"] for p in parts)
    for key in ("outcomes", "error_kinds"):
        c = collections.Counter()
        for p in parts:
            c.update(p[key])
        out[key] = dict(c.most_common())
    fam = collections.defaultdict(collections.Counter)
    for p in parts:
        for f, c in p["by_family"].items():
            fam[f].update(c)
    out["by_family"] = {f: dict(c) for f, c in sorted(fam.items())}
    out["inert_cases"] = sum(p["inert_cases"] for p in parts)
    out["inert_errors"] = sum(p["inert_errors"] for p in parts)
    out["disallowed"] = [d for p in parts for d in p["disallowed"]]
    return out


if __name__ == "__main__":
    sys.exit(main())

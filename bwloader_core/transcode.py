"""`bwloader transcode`: rewrite bigWig files with raw (uncompressed) data and zoom blocks.

A transcoded file is a standard bigWig (header ``uncompressBufSize = 0``) that every reader
(pyBigWig, pybigtools, UCSC tools, bwloader) reads, with the same records, zoom records and total
summary as its source. What changes:

- every data and zoom block is stored inflated, so reading it costs no inflate (and bwloader can
  read it in place); the file grows by the compression ratio (typically 1.3-3x);
- the byte order is little-endian (a big-endian source is byte-swapped, so pyBigWig, which
  reads little-endian files only, can read the result);
- every block starts at a multiple of 4 bytes (so bwloader searches it where it lies, in a memory
  map);
- the R-trees are rebuilt over the same blocks (same bounds, same fan-out and items-per-slot as
  the source) with the new offsets; the chromosome tree is rebuilt with the source's key size,
  fan-out, ids and sizes; an extension header (bigBed extra indexes, never used by bigWig) is
  dropped.

Each output is written to a temporary file in the target directory, fsynced, checked by opening
it, and renamed: an interrupted run never leaves a partial file under the final name (a killed
process may leave a hidden ``.NAME.*.part`` file, which the next run ignores). Files are done in
parallel threads (inflate releases the GIL), remote sources (any fsspec URL) included.
"""
from __future__ import annotations

import errno
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BigWigFormatError
from .format.bigwig_file import BigWigFile
from .format.spec import (BIGWIG_MAGIC, CHROM_TREE_HEADER_FORMAT, CHROM_TREE_HEADER_SIZE, CHROM_TREE_MAGIC,
                          HEADER_FORMAT, HEADER_SIZE, ITEM_BYTES, RTREE_HEADER_FORMAT, RTREE_HEADER_SIZE, RTREE_MAGIC,
                          SECTION_HEADER_SIZE, SUMMARY_FORMAT, SUMMARY_SIZE, ZOOM_HEADER_FORMAT, ZOOM_HEADER_SIZE,
                          ZOOM_RECORD_SIZE)
from .format.rtree import read_rtree_leaves, read_zoom_rtree_leaves
from .format.tree_build import (RTREE_LEAF_DTYPE, chrom_tree_bytes, chrom_tree_size, rtree_bytes,
                                rtree_size)
from .io import is_url, read_blocks
from .progress import ProgressBar, human_bytes

__all__ = ["transcode", "transcode_file", "estimate_transcode", "output_path", "TranscodeResult",
           "TranscodeEstimate", "MeasuredSpeed", "MEASURED_READ_SPEED", "transcode_note", "speed_note",
           "expand_sources"]

CHUNK_BYTES = 16 << 20          # source bytes read, inflated and written per step
DATA_COUNT_SIZE = 8             # uint64 block count at fullDataOffset
ZOOM_COUNT_SIZE = 4             # uint32 record count at a zoom level's dataOffset (UCSC bits32)
BLOCK_ALIGN = 4                 # first block of each level at a multiple of 4 (blocks are whole words):
#                                 readers search uint32 words of a memory map where they lie
SPACE_MARGIN = 0.05             # free space wanted beyond the estimate (it is extrapolated from samples)
_ITEM_BYTES = np.array(ITEM_BYTES, np.int64)     # by section type
_BIGWIG_SUFFIXES = (".bw", ".bigwig")


# ------------------------------------------------------------------------------------ typed values
@dataclass(frozen=True)
class TranscodeEstimate:
    """What transcoding one file would cost: its size now and (estimated) after."""
    path: str
    compressed: bool
    source_bytes: int
    output_bytes: int            # estimated size of the transcoded file
    block_bytes: int             # bytes of the source's data and zoom blocks (what gets inflated)
    exact: bool                  # every block's size is known (an uncompressed source)
    sampled_blocks: int          # blocks inflated to estimate the inflated sizes

    @property
    def ratio(self) -> float:
        return self.output_bytes / max(self.source_bytes, 1)


@dataclass(frozen=True)
class TranscodeResult:
    """One source: where it went and the sizes before and after (or why it failed)."""
    source: str
    output: str
    source_bytes: int = 0
    output_bytes: int = 0
    estimated_bytes: int = 0
    seconds: float = 0.0
    source_byteorder: str = "<"
    was_compressed: bool = True
    data_blocks: int = 0
    zoom_levels: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ratio(self) -> float:
        return self.output_bytes / max(self.source_bytes, 1)


@dataclass(frozen=True)
class MeasuredSpeed:
    """A measured read speed on compressed vs transcoded copies of the same files."""
    compressed: float            # samples/s
    transcoded: float
    setup: str                   # what was measured
    source: str                  # where the numbers come from

    @property
    def ratio(self) -> float:
        return self.transcoded / self.compressed


# The latest measurement (bwloader get_batch, page cache warm). benchmarks/bench_fixed_regions.py
# measures it again and prints the values to put here.
MEASURED_READ_SPEED: MeasuredSpeed | None = MeasuredSpeed(
    compressed=13_537, transcoded=326_399,
    setup="S1: 3 benchmark tracks, 1,000 bp, batch 256, get_batch, cache_bytes=0",
    source="benchmarks/bench_fixed_regions.py (docs/fixed_regions.md), 2-core Intel Xeon VM")


@dataclass(frozen=True)
class _Level:
    """The blocks of one level (the data, or one zoom level) and its R-tree's parameters."""
    leaves: np.ndarray           # RTREE_LEAF_DTYPE, in the source tree's order
    block_size: int              # R-tree fan-out
    items_per_slot: int
    reduction: int = 0           # zoom reduction level (0: the data level)

    @property
    def source_bytes(self) -> int:
        return int(_unique_blocks(self.leaves)[1].sum())


@dataclass(frozen=True)
class _SourcePlan:
    """Everything the output needs from a source, read once at open."""
    path: str
    byteorder: str
    version: int
    compressed: bool
    uncompress_buf_size: int
    field_count: int
    defined_field_count: int
    file_size: int
    chrom_names: list
    chrom_sizes: np.ndarray
    key_size: int
    chrom_block_size: int
    summary: tuple | None        # (basesCovered, min, max, sum, sumSquares)
    data: _Level
    zooms: list = field(default_factory=list)   # list[_Level]

    def fixed_bytes(self) -> int:
        """Bytes of the output that are not blocks: header, trees, counts, padding, trailing magic
        (blocks and trees are whole words, so only the data section needs padding)."""
        n = HEADER_SIZE + ZOOM_HEADER_SIZE * len(self.zooms) + (SUMMARY_SIZE if self.summary else 0)
        n += chrom_tree_size(len(self.chrom_names), self.key_size, self.chrom_block_size)
        n += -(n + DATA_COUNT_SIZE) % BLOCK_ALIGN
        n += DATA_COUNT_SIZE + rtree_size(len(self.data.leaves), self.data.block_size)
        for z in self.zooms:
            n += ZOOM_COUNT_SIZE + rtree_size(len(z.leaves), z.block_size)
        return n + 4


# ------------------------------------------------------------------------------------------ reading
def _rtree_params(src, offset: int, bo: str) -> tuple[int, int]:
    magic, bs, _n, _sc, _sb, _ec, _eb, _end, ips, _ = struct.unpack(
        bo + RTREE_HEADER_FORMAT, src.pread(offset, RTREE_HEADER_SIZE, "R-tree index header"))
    if magic != RTREE_MAGIC:
        raise BigWigFormatError(src.path, f"bad R-tree index magic 0x{magic:08X} at offset {offset}")
    return max(int(bs), 2), int(ips)


def _level(f: BigWigFile, index_offset: int, reduction: int = 0) -> _Level:
    src, bo = f._source, f.byteorder
    leaves = (read_zoom_rtree_leaves if reduction else read_rtree_leaves)(src, index_offset, bo)
    out = np.zeros(len(leaves), RTREE_LEAF_DTYPE)
    for name in RTREE_LEAF_DTYPE.names:
        out[name] = leaves[name]
    bs, ips = _rtree_params(src, index_offset, bo)
    return _Level(out, bs, ips, reduction)


def _plan(f: BigWigFile) -> _SourcePlan:
    h = f.header
    src = f._source
    magic, cbs, key_size, _val, _n, _ = struct.unpack(h.byteorder + CHROM_TREE_HEADER_FORMAT, src.pread(
        h.chrom_tree_offset, CHROM_TREE_HEADER_SIZE, "chromosome tree header"))
    if magic != CHROM_TREE_MAGIC:
        raise BigWigFormatError(f.path, f"bad chromosome tree magic 0x{magic:08X}")
    zooms = []
    for i, z in enumerate(f.zoom_levels):
        try:
            zooms.append(_level(f, z.index_offset, z.reduction_level))
        except BigWigFormatError as exc:
            raise BigWigFormatError(f.path, f"zoom level {i} (reduction {z.reduction_level}): {exc.reason}") from exc
    s = f.summary
    summary = None if s is None else (s.bases_covered, s.min_val, s.max_val, s.sum_data, s.sum_squares)
    return _SourcePlan(
        path=f.path, byteorder=f.byteorder, version=f.version, compressed=f.compressed,
        uncompress_buf_size=f.uncompress_buf_size, field_count=h.field_count,
        defined_field_count=h.defined_field_count, file_size=f.file_size, chrom_names=list(f.chrom_names),
        chrom_sizes=np.asarray(f.chrom_lengths, np.int64), key_size=int(key_size), chrom_block_size=int(cbs),
        summary=summary, data=_level(f, h.full_index_offset), zooms=zooms)


def _unique_blocks(leaves: np.ndarray):
    """(offsets, sizes, inverse): each block once, in file order; leaves[i] is block inverse[i]."""
    off, first, inv = np.unique(leaves["offset"], return_index=True, return_inverse=True)
    sizes = leaves["size"][first].astype(np.int64)
    return off.astype(np.int64), sizes, inv


def _inflate(plan: _SourcePlan, data, offset: int, what: str):
    """The block's raw bytes (bytes-like: joined, never copied one by one)."""
    if not plan.compressed:
        return data
    import deflate
    try:
        return deflate.zlib_decompress(data, plan.uncompress_buf_size)
    except deflate.DeflateError:
        raise BigWigFormatError(plan.path, f"{what} at offset {offset} ({len(data)} bytes) does not inflate: "
                                           f"corrupt zlib stream or larger than uncompressBufSize "
                                           f"({plan.uncompress_buf_size})") from None


# ------------------------------------------------------------------------------------- estimating
def _sample(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.unique(np.linspace(0, n - 1, k).astype(np.int64))


def _estimate_level(f: BigWigFile, plan: _SourcePlan, level: _Level, max_samples: int) -> tuple[int, int]:
    """(estimated inflated bytes of the level's blocks, blocks inflated to estimate them)."""
    off, size, _ = _unique_blocks(level.leaves)
    if not plan.compressed or not len(off):
        return int(size.sum()), 0
    idx = _sample(len(off), max_samples)
    raw = read_blocks(f._source, off[idx], size[idx])
    inflated = sum(len(_inflate(plan, r, int(o), "block")) for r, o in zip(raw, off[idx].tolist()))
    est = int(round(size.sum() * inflated / max(int(size[idx].sum()), 1)))
    return min(est, len(off) * plan.uncompress_buf_size), len(idx)


def _estimate(f: BigWigFile, plan: _SourcePlan, max_samples: int) -> TranscodeEstimate:
    total, sampled = plan.fixed_bytes(), 0
    levels = [plan.data, *plan.zooms]
    for level in levels:
        est, k = _estimate_level(f, plan, level, max_samples if level is plan.data else max(8, max_samples // 4))
        total += est
        sampled += k
    return TranscodeEstimate(plan.path, plan.compressed, plan.file_size, total,
                             sum(level.source_bytes for level in levels), not plan.compressed, sampled)


def estimate_transcode(source, *, max_samples: int = 64) -> TranscodeEstimate:
    """Estimate the transcoded size of one file (a path, URL or open BigWigFile) by inflating up to
    `max_samples` evenly spread data blocks (and a few zoom blocks) and extrapolating their ratio."""
    if isinstance(source, BigWigFile):
        return _estimate(source, _plan(source), max_samples)
    with BigWigFile(source) as f:
        return _estimate(f, _plan(f), max_samples)


def transcode_note(est: TranscodeEstimate) -> str:
    """What transcoding one file would cost on disk, from its estimate."""
    if not est.compressed:
        return "already uncompressed (raw blocks): nothing to gain from transcoding"
    how = "exact" if est.exact else f"estimated from {est.sampled_blocks:,} inflated blocks"
    return (f"`bwloader transcode` would write ~{human_bytes(est.output_bytes)} "
            f"(x{est.ratio:.2f} the size; {how})")


def speed_note(speed: MeasuredSpeed | None = MEASURED_READ_SPEED) -> str | None:
    """What transcoding gains in reading speed, from the latest measurement (None: not measured)."""
    if speed is None:
        return None
    return (f"x{speed.ratio:.1f} samples/s measured on transcoded files ({speed.compressed:,.0f} -> "
            f"{speed.transcoded:,.0f}; {speed.setup}; {speed.source})")


# -------------------------------------------------------------------------------------- byte order
def _section_starts(plan: _SourcePlan, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray,
                    src_offsets: np.ndarray) -> np.ndarray:
    """Offsets in `buf` of every section header of the data blocks at `starts` (one section per
    block almost always; a block holding several is walked section by section)."""
    path = plan.path
    short = np.flatnonzero(lens < SECTION_HEADER_SIZE)
    if len(short):
        b = int(short[0])
        raise BigWigFormatError(path, f"data block at offset {int(src_offsets[b])} holds {int(lens[b])} bytes, "
                                      f"less than a section header")
    types = buf[starts + 20].astype(np.int64)
    hi, lo = (22, 23) if plan.byteorder == ">" else (23, 22)
    counts = buf[starts + hi].astype(np.int64) << 8 | buf[starts + lo].astype(np.int64)
    bad = np.flatnonzero((types < 1) | (types > 3))
    if len(bad):
        b = int(bad[0])
        raise BigWigFormatError(path, f"data block at offset {int(src_offsets[b])}: unknown section type "
                                      f"{int(types[b])}")
    single = SECTION_HEADER_SIZE + counts * _ITEM_BYTES[types] == lens
    if single.all():
        return starts
    out = [starts[single]]
    for b in np.flatnonzero(~single).tolist():
        p, end = int(starts[b]), int(starts[b] + lens[b])
        while p < end:
            if end - p < SECTION_HEADER_SIZE or not 1 <= int(buf[p + 20]) <= 3:
                raise BigWigFormatError(path, f"data block at offset {int(src_offsets[b])}: its sections do not "
                                              f"add up to its {int(lens[b])} inflated bytes")
            out.append(np.array([p], np.int64))
            n = int(buf[p + hi]) << 8 | int(buf[p + lo])
            p += SECTION_HEADER_SIZE + n * int(_ITEM_BYTES[int(buf[p + 20])])
        if p != end:
            raise BigWigFormatError(path, f"data block at offset {int(src_offsets[b])}: its sections do not add "
                                          f"up to its {int(lens[b])} inflated bytes")
    return np.sort(np.concatenate(out))


def _to_little_endian(plan: _SourcePlan, parts: list, src_offsets: np.ndarray, zoom: bool) -> bytes:
    """The blocks of one chunk joined, checked, and (for a big-endian source) byte-swapped: every
    field is a 4-byte word except a section header's type, reserved (bytes) and itemCount (u16)."""
    lens = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    joined = b"".join(parts)
    if zoom:
        bad = np.flatnonzero(lens % ZOOM_RECORD_SIZE)
        if len(bad):
            raise BigWigFormatError(plan.path, f"zoom block at offset {int(src_offsets[bad[0]])} is not a whole "
                                               f"number of {ZOOM_RECORD_SIZE}-byte records")
        if plan.byteorder == "<":
            return joined
        return np.frombuffer(joined, ">u4").astype("<u4").tobytes()
    buf = np.frombuffer(joined, np.uint8)
    heads = _section_starts(plan, buf, starts, lens, src_offsets)
    if plan.byteorder == "<":
        return joined
    bad = np.flatnonzero(lens % 4)
    if len(bad):
        raise BigWigFormatError(plan.path, f"data block at offset {int(src_offsets[bad[0]])} is not a whole "
                                           f"number of 4-byte words")
    out = np.frombuffer(joined, ">u4").astype("<u4").view(np.uint8)
    for k, src_k in ((20, 20), (21, 21), (22, 23), (23, 22)):   # type, reserved, itemCount swapped as u16
        out[heads + k] = buf[heads + src_k]
    return out.tobytes()


# ------------------------------------------------------------------------------------------ writing
class _Cancelled(Exception):
    pass


def _copy_level(f: BigWigFile, plan: _SourcePlan, level: _Level, fh, pos: int, zoom: bool, on_bytes,
                cancel) -> tuple[np.ndarray, int, int]:
    """Write the level's blocks raw from `pos`, in source file order. Returns (leaves with the new
    offsets and sizes, the position after the last block, inflated bytes written)."""
    off, size, inv = _unique_blocks(level.leaves)
    new_off = np.zeros(len(off), np.int64)
    new_size = np.zeros(len(off), np.int64)
    what = "zoom block" if zoom else "data block"
    limit = max(plan.uncompress_buf_size, 1) if plan.compressed else None
    a = 0
    while a < len(off):
        if cancel is not None and cancel.is_set():
            raise _Cancelled()
        b = int(np.searchsorted(np.cumsum(size[a:]), CHUNK_BYTES, side="right")) + a
        b = min(max(b, a + 1), len(off))
        raw = read_blocks(f._source, off[a:b], size[a:b])
        parts = [_inflate(plan, r, int(o), what) for r, o in zip(raw, off[a:b].tolist())]
        if limit is not None:
            big = [i for i, p in enumerate(parts) if len(p) > limit]
            if big:
                raise BigWigFormatError(plan.path, f"{what} at offset {int(off[a + big[0]])} inflates past "
                                                   f"uncompressBufSize ({limit})")
        data = _to_little_endian(plan, parts, off[a:b], zoom)
        lens = np.fromiter((len(p) for p in parts), np.int64, len(parts))
        new_size[a:b] = lens
        new_off[a:b] = pos + np.concatenate([[0], np.cumsum(lens)[:-1]])
        fh.write(data)
        pos += len(data)
        if on_bytes is not None:
            on_bytes(int(size[a:b].sum()))
        a = b
    leaves = level.leaves.copy()
    leaves["offset"] = new_off[inv]
    leaves["size"] = new_size[inv]
    return leaves, pos, int(new_size.sum())


def _write(f: BigWigFile, plan: _SourcePlan, fh, on_bytes=None, cancel=None) -> None:
    """The whole output, little-endian, from position 0 of `fh` (header last, at the end)."""
    nz = len(plan.zooms)
    pos = HEADER_SIZE + ZOOM_HEADER_SIZE * nz
    fh.write(b"\0" * pos)
    summary_offset = 0
    if plan.summary is not None:
        summary_offset = pos
        fh.write(struct.pack("<" + SUMMARY_FORMAT, *plan.summary))
        pos += SUMMARY_SIZE
    chrom_tree_offset = pos
    tree = chrom_tree_bytes(pos, plan.chrom_names, plan.chrom_sizes, plan.key_size, plan.chrom_block_size)
    pad = -(pos + len(tree) + DATA_COUNT_SIZE) % BLOCK_ALIGN     # blocks start aligned: read in place
    fh.write(tree + b"\0" * pad)
    pos += len(tree) + pad
    data_offset = pos
    n_data = len(_unique_blocks(plan.data.leaves)[0])
    fh.write(struct.pack("<Q", n_data))
    pos += DATA_COUNT_SIZE
    leaves, pos, _ = _copy_level(f, plan, plan.data, fh, pos, False, on_bytes, cancel)
    index_offset = pos
    tree = rtree_bytes(pos, leaves, plan.data.block_size, plan.data.items_per_slot, index_offset)
    fh.write(tree)
    pos += len(tree)
    zoom_headers = []
    for z in plan.zooms:
        pad = -(pos + ZOOM_COUNT_SIZE) % BLOCK_ALIGN
        fh.write(b"\0" * pad)
        pos += pad
        z_data = pos
        fh.write(b"\0" * ZOOM_COUNT_SIZE)
        pos += ZOOM_COUNT_SIZE
        zl, pos, nbytes = _copy_level(f, plan, z, fh, pos, True, on_bytes, cancel)
        z_index = pos
        tree = rtree_bytes(pos, zl, z.block_size, z.items_per_slot, z_index)
        fh.write(tree)
        pos += len(tree)
        fh.seek(z_data)
        fh.write(struct.pack("<I", min(nbytes // ZOOM_RECORD_SIZE, 0xFFFFFFFF)))
        fh.seek(pos)
        zoom_headers.append(struct.pack("<" + ZOOM_HEADER_FORMAT, z.reduction, 0, z_data, z_index))
    fh.write(struct.pack("<I", BIGWIG_MAGIC))
    header = struct.pack("<" + HEADER_FORMAT, BIGWIG_MAGIC, plan.version, nz, chrom_tree_offset, data_offset,
                         index_offset, plan.field_count, plan.defined_field_count, 0, summary_offset, 0, 0)
    fh.seek(0)
    fh.write(header + b"".join(zoom_headers))


def _check_output(plan: _SourcePlan, tmp: str) -> None:
    """Open the written file with our reader: the structure a reader sees matches the source's."""
    with BigWigFile(tmp) as g:
        problems = []
        if g.compressed:
            problems.append("it says compressed")
        if g.chrom_names != plan.chrom_names or not np.array_equal(g.chrom_lengths, plan.chrom_sizes):
            problems.append("chromosomes differ")
        if g.n_blocks != len(plan.data.leaves):
            problems.append(f"{g.n_blocks} data blocks, the source has {len(plan.data.leaves)}")
        if [z.reduction_level for z in g.zoom_levels] != [z.reduction for z in plan.zooms]:
            problems.append("zoom levels differ")
    if problems:
        raise RuntimeError(f"{plan.path}: the transcoded file fails its check ({'; '.join(problems)}); "
                           "please report this")


def _drop_cached(fd: int) -> None:
    """Drop the written (and synced) file's pages from the page cache. They were made in the
    sizes the writes had; read again through a reader's memory map they come back as 2 MiB pages
    where the map asks for them (`format.bigwig_file._map_file`), which reads in place faster."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _publish(tmp: str, out: str, force: bool) -> None:
    """Move the finished temporary file to its final name: without `force`, never over a file that
    appeared meanwhile (a hard link fails if the name exists)."""
    if force:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "output appeared while transcoding (use --force / force=True to "
                                            "overwrite)", out) from None
    except OSError:                      # no hard links here (some network/FUSE file systems)
        if os.path.exists(out):
            raise FileExistsError(errno.EEXIST, "output exists (use --force / force=True to overwrite)", out)
        os.replace(tmp, out)
        return
    os.unlink(tmp)


def _transcode_one(source: str, out: str, force: bool, on_bytes, cancel, mode: int,
                   estimated: int = 0) -> TranscodeResult:
    t0 = time.perf_counter()
    out_dir = os.path.dirname(os.path.abspath(out))
    with BigWigFile(source) as f:
        plan = _plan(f)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(out)}.", suffix=".part", dir=out_dir)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
                _write(f, plan, fh, on_bytes, cancel)
                if cancel is not None and cancel.is_set():
                    raise _Cancelled()
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
                _drop_cached(fh.fileno())
            _check_output(plan, tmp)
            _publish(tmp, out, force)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    _fsync_dir(out_dir)
    return TranscodeResult(
        source=source, output=out, source_bytes=plan.file_size, output_bytes=os.path.getsize(out),
        estimated_bytes=estimated, seconds=time.perf_counter() - t0, source_byteorder=plan.byteorder,
        was_compressed=plan.compressed, data_blocks=len(plan.data.leaves), zoom_levels=len(plan.zooms))


# --------------------------------------------------------------------------------------------- API
def expand_sources(sources) -> list[str]:
    """Paths and URLs as given; a local directory stands for its *.bw / *.bigWig files (sorted)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out = []
    for s in sources:
        s = os.fspath(s)
        if not is_url(s) and os.path.isdir(s):
            found = sorted(str(p) for p in Path(s).iterdir() if p.suffix.lower() in _BIGWIG_SUFFIXES)
            if not found:
                raise ValueError(f"no bigWig files (*.bw, *.bigWig) in directory {s}")
            out.extend(found)
        else:
            out.append(s)
    if not out:
        raise ValueError("no bigWig sources given")
    return out


def output_path(source: str, out_dir) -> str:
    """Where `source` goes: its file name (of the URL's path, for a URL) in `out_dir`."""
    from urllib.parse import unquote, urlsplit
    name = os.path.basename(unquote(urlsplit(source).path)) if is_url(source) else os.path.basename(source)
    if not name:
        raise ValueError(f"{source}: cannot tell the file name to write (no name at the end of the path)")
    return os.path.join(os.fspath(out_dir), name)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def transcode_file(source, output, *, force: bool = False) -> TranscodeResult:
    """Transcode one file to the path `output` (see :func:`transcode`)."""
    source, output = os.fspath(source), os.fspath(output)
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(output) and not force:
        raise FileExistsError(errno.EEXIST, "output exists (use force=True to overwrite)", output)
    if not is_url(source) and _same_file(source, output):
        raise ValueError(f"{output}: the output would replace its source {source}")
    return _transcode_one(source, output, force, None, None, _file_mode())


def transcode(sources, out_dir, *, force: bool = False, n_jobs: int | None = None, progress=True,
              keep_going: bool = False, check_space: bool = True, max_samples: int = 64) -> list[TranscodeResult]:
    """Write an uncompressed copy of each bigWig in `sources` into `out_dir` (created if needed),
    under the same file name.

    sources: paths, URLs (any fsspec protocol) or directories (their *.bw / *.bigWig files).
    force: overwrite existing outputs (otherwise refuse, before writing anything).
    n_jobs: files transcoded at once (threads; default: as many as CPUs, at most 8).
    progress: True draws a progress bar on stderr; a callable gets (bytes_done, bytes_total) of
        source bytes; False is silent.
    keep_going: a file that fails gives a result with `error` set and the others go on; by
        default the first failure stops the run (files already finished stay) and is raised.
    check_space: refuse to start when the estimated output (plus 5%) exceeds the free space.

    Every output is written atomically (temporary file in `out_dir`, fsync, rename). Returns one
    :class:`TranscodeResult` per source, in order.
    """
    srcs = expand_sources(sources)
    out_dir = os.fspath(out_dir)
    outs = [output_path(s, out_dir) for s in srcs]
    seen: dict[str, str] = {}
    for s, o in zip(srcs, outs):
        if o in seen:
            raise ValueError(f"{seen[o]} and {s} would both be written to {o}")
        seen[o] = s
    for s, o in zip(srcs, outs):
        if not is_url(s) and _same_file(s, o):
            raise ValueError(f"{o}: the output would replace its source {s}; choose another --out directory")
    existing = [o for o in outs if os.path.exists(o)]
    if existing and not force:
        others = [os.path.basename(o) for o in existing[1:]]
        more = (f" (and {', '.join(others[:3])}{f' and {len(others) - 3} more' if len(others) > 3 else ''})"
                if others else "")
        raise FileExistsError(errno.EEXIST, f"output exists{more}; use --force / force=True to overwrite",
                              existing[0])

    # Open every source once first: a bad one fails before anything is written.
    estimates: list[TranscodeEstimate | None] = []
    failed: dict[int, str] = {}
    for i, s in enumerate(srcs):
        try:
            estimates.append(estimate_transcode(s, max_samples=max_samples))
        except (OSError, ValueError) as exc:
            if not keep_going:
                raise
            estimates.append(None)
            failed[i] = str(exc) if s in str(exc) else f"{s}: {exc}"
    need = sum(e.output_bytes for e in estimates if e is not None)
    os.makedirs(out_dir, exist_ok=True)
    if check_space:
        free = shutil.disk_usage(out_dir).free
        if need * (1 + SPACE_MARGIN) > free:
            raise OSError(errno.ENOSPC, f"not enough free space: transcoding needs about {human_bytes(need)} "
                                        f"(+{SPACE_MARGIN:.0%}), {human_bytes(free)} free", out_dir)

    todo = [i for i in range(len(srcs)) if i not in failed]
    total = sum(estimates[i].block_bytes for i in todo)     # progress counts source block bytes
    bar = None
    if progress is True:
        src_total = sum(estimates[i].source_bytes for i in todo)
        free = shutil.disk_usage(out_dir).free
        sys.stderr.write(f"transcoding {len(todo)} file{'s' if len(todo) != 1 else ''} "
                         f"({human_bytes(src_total)}) into {out_dir}: about {human_bytes(need)} to write, "
                         f"{human_bytes(free)} free\n")
        bar = ProgressBar(total, len(todo), label="transcode ")
        on_bytes = bar.update
    elif callable(progress):
        lock = threading.Lock()
        done = [0]

        def on_bytes(n, units=0):
            with lock:
                done[0] += n
                progress(done[0], total)
    else:
        def on_bytes(n, units=0):
            return None

    mode = _file_mode()
    cancel = threading.Event()
    results: dict[int, TranscodeResult] = {}
    first_error: BaseException | None = None
    n_jobs = n_jobs or min(len(todo), os.cpu_count() or 1, 8)
    pool = ThreadPoolExecutor(max_workers=max(1, int(n_jobs)), thread_name_prefix="bwloader-transcode")
    try:
        futures = {}
        for i in todo:
            futures[pool.submit(_transcode_one, srcs[i], outs[i], force, on_bytes, cancel, mode,
                                estimates[i].output_bytes)] = i
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = futures[fut]
                exc = fut.exception()
                if exc is None:
                    results[i] = fut.result()
                    on_bytes(0, 1)
                    continue
                if isinstance(exc, _Cancelled):
                    continue
                msg = str(exc) if srcs[i] in str(exc) else f"{srcs[i]}: {exc}"
                failed[i] = msg
                if not keep_going and first_error is None:
                    first_error = exc
                    cancel.set()
                    for p in pending:
                        p.cancel()
    except BaseException:                 # Ctrl-C: running files stop at their next chunk, temp files go
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    if first_error is not None:
        raise first_error
    out = []
    for i, (s, o) in enumerate(zip(srcs, outs)):
        if i in results:
            out.append(results[i])
        else:
            est = estimates[i]
            out.append(TranscodeResult(source=s, output=o, source_bytes=est.source_bytes if est else 0,
                                       estimated_bytes=est.output_bytes if est else 0,
                                       error=failed.get(i, "not transcoded (cancelled)")))
    return out

"""Test bigWig files and their oracle (pyBigWig).

Needs the `dev` extra (pyBigWig and pybigtools write some of the files and are the oracle); they
are imported on first use, so importing this module costs nothing.

Every file is built deterministically from SEED into a directory (the session fixture in conftest.py
gives a pytest tmp dir). Each :class:`BWFile` names an ``oracle_path``: a pyBigWig-readable file with
the same content (the file itself, except for big-endian files, whose oracle is the same content
written little-endian). ``oracle_values`` / ``oracle_batch`` give the expected values.

Also here: independent, struct-based parsers of the on-disk structures (little- or big-endian), used
to check tree shapes and to find structure boundaries for the corruption tests.
"""
from __future__ import annotations

import dataclasses
import importlib
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

from ..format.spec import HEADER_FORMAT
from ..format.writer import BigWigWriter, write_bigwig


class _OnFirstUse:
    """A module imported when first used (pyBigWig and pybigtools are test-only dependencies)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


pyBigWig = _OnFirstUse("pyBigWig")
pybigtools = _OnFirstUse("pybigtools")

SEED = 20240611

# Shared chromosome sizes: a name has the same size in every file that has it.
SIZES = {
    "chr1": 1_000_000,
    "chr2": 400_011,
    "chr3": 100_000,
    "chr10": 200_000,
    "chrX": 150_000,
    "chrM": 16_569,
}


@dataclasses.dataclass(frozen=True)
class BWFile:
    name: str            # fixture name, also the file stem (= default track name)
    path: str
    description: str
    oracle_path: str     # pyBigWig-readable file holding the same data
    chrom_sizes: dict    # in chromosome-id order
    writer: str          # "pyBigWig", "pybigtools", "ours", "external"

    def __iter__(self):  # unpacks as (path, description)
        return iter((self.path, self.description))


# --------------------------------------------------------------------------------------- data gen
def random_values(rng, n) -> np.ndarray:
    """float32 values of mixed magnitudes and signs (and some exact zeros/integers)."""
    kind = rng.integers(0, 5, n)
    v = rng.normal(0.0, 3.0, n)
    v = np.where(kind == 1, np.round(v), v)
    v = np.where(kind == 2, v * 1e3, v)
    v = np.where(kind == 3, np.abs(v) * 1e-3, v)
    v = np.where(rng.random(n) < 0.02, 0.0, v)
    return v.astype(np.float32)


def random_bedgraph(rng, size, n_max, *, start=0, stop=None, to_end=False, sparse=False):
    """Sorted non-overlapping records in [start, stop): mixed lengths, adjacent runs, small and big gaps."""
    stop = size if stop is None else stop
    kind = rng.random(n_max)
    lengths = np.where(kind < 0.8, rng.integers(1, 9, n_max),
                       np.where(kind < 0.98, rng.integers(9, 50, n_max), rng.integers(50, 1000, n_max)))
    g = rng.random(n_max)
    gaps = np.where(g < 0.55, 0, np.where(g < 0.9, rng.integers(1, 11, n_max),
                                          np.where(g < 0.999, rng.integers(10, 200, n_max),
                                                   rng.integers(3000, 20000, n_max))))
    if sparse:
        gaps = gaps * 20 + rng.integers(0, 500, n_max)
    gaps[0] = rng.integers(0, 100)
    starts = start + np.cumsum(gaps + lengths) - lengths
    ends = starts + lengths
    keep = ends <= stop
    starts, ends = starts[keep], ends[keep]
    if to_end and starts.size:
        if ends[-1] < stop:  # stretch the last record to the end of the range
            ends[-1] = stop
    return starts.astype(np.int64), ends.astype(np.int64), random_values(rng, starts.size)


def random_varstep(rng, size, n_max, span, *, start=0, stop=None, to_end=False):
    stop = size if stop is None else stop
    g = rng.random(n_max)
    gaps = np.where(g < 0.5, 0, np.where(g < 0.95, rng.integers(1, 30, n_max), rng.integers(30, 3000, n_max)))
    starts = start + np.cumsum(gaps + span) - span
    keep = starts + span <= stop
    starts = starts[keep]
    if to_end and starts.size and starts[-1] + span < stop:
        starts = np.append(starts, stop - span)
    return starts.astype(np.int64), random_values(rng, starts.size)


# --------------------------------------------------------------------------------------- builders
def _pbw_header(bw, chroms, max_zooms):
    bw.addHeader([(c, SIZES[c]) for c in chroms], maxZooms=max_zooms)


def _pbw_bedgraph(bw, chrom, s, e, v):
    if len(s):
        bw.addEntries([chrom] * len(s), s.tolist(), ends=e.tolist(), values=v.astype(np.float64).tolist())


def _pbw_varstep(bw, chrom, s, v, span):
    if len(s):
        bw.addEntries(chrom, s.tolist(), values=v.astype(np.float64).tolist(), span=int(span))


def _pbw_fixedstep(bw, chrom, start, v, span, step):
    if len(v):
        bw.addEntries(chrom, int(start), values=v.astype(np.float64).tolist(), span=int(span), step=int(step))


def build_pybigwig_bedgraph(d: Path, rng) -> BWFile:
    p = d / "pybigwig_bedgraph.bw"
    chroms = ["chr1", "chr2", "chrX", "chrM"]
    bw = pyBigWig.open(str(p), "w")
    _pbw_header(bw, chroms, 10)
    _pbw_bedgraph(bw, "chr1", *random_bedgraph(rng, SIZES["chr1"], 40_000))
    _pbw_bedgraph(bw, "chr2", *random_bedgraph(rng, SIZES["chr2"], 20_000, to_end=True))
    _pbw_bedgraph(bw, "chrX", *random_bedgraph(rng, SIZES["chrX"], 3_000, sparse=True))
    # chrM: declared, no data
    bw.close()
    return BWFile("pybigwig_bedgraph", str(p), "pyBigWig writer, bedGraph sections, zoom levels, an empty chrM",
                  str(p), {c: SIZES[c] for c in chroms}, "pyBigWig")


def build_pybigwig_varstep(d: Path, rng) -> BWFile:
    p = d / "pybigwig_varstep.bw"
    chroms = ["chr1", "chr2", "chr3"]
    bw = pyBigWig.open(str(p), "w")
    _pbw_header(bw, chroms, 0)
    _pbw_varstep(bw, "chr1", *random_varstep(rng, SIZES["chr1"], 12_000, 25), 25)
    _pbw_varstep(bw, "chr2", *random_varstep(rng, SIZES["chr2"], 30_000, 1), 1)
    _pbw_varstep(bw, "chr3", *random_varstep(rng, SIZES["chr3"], 8_000, 7, to_end=True), 7)
    bw.close()
    return BWFile("pybigwig_varstep", str(p), "pyBigWig writer, variableStep sections, spans 25/1/7",
                  str(p), {c: SIZES[c] for c in chroms}, "pyBigWig")


def build_pybigwig_fixedstep(d: Path, rng) -> BWFile:
    p = d / "pybigwig_fixedstep.bw"
    chroms = ["chr1", "chr2", "chrX"]
    bw = pyBigWig.open(str(p), "w")
    _pbw_header(bw, chroms, 0)
    # chr1: span < step, then a gap, then span == step > 1
    _pbw_fixedstep(bw, "chr1", 37, random_values(rng, 10_000), 5, 20)
    _pbw_fixedstep(bw, "chr1", 210_000, random_values(rng, 700), 50, 50)
    # chr2: one value per base from 0
    _pbw_fixedstep(bw, "chr2", 0, random_values(rng, 40_000), 1, 1)
    # chrX: span 10, step 13, last item ending exactly at the chromosome end
    n = 3000
    start = SIZES["chrX"] - (n - 1) * 13 - 10
    _pbw_fixedstep(bw, "chrX", start, random_values(rng, n), 10, 13)
    bw.close()
    return BWFile("pybigwig_fixedstep", str(p), "pyBigWig writer, fixedStep sections, span<step, span>1",
                  str(p), {c: SIZES[c] for c in chroms}, "pyBigWig")


def build_pybigwig_mixed(d: Path, rng) -> BWFile:
    p = d / "pybigwig_mixed.bw"
    chroms = ["chr1", "chr2", "chrX", "chrM"]
    bw = pyBigWig.open(str(p), "w")
    _pbw_header(bw, chroms, 2)
    # chr1: bedGraph, then fixedStep, then variableStep, then bedGraph again
    _pbw_bedgraph(bw, "chr1", *random_bedgraph(rng, SIZES["chr1"], 8_000, stop=80_000))
    _pbw_fixedstep(bw, "chr1", 80_000, random_values(rng, 9_000), 3, 5)
    _pbw_varstep(bw, "chr1", *random_varstep(rng, SIZES["chr1"], 4_000, 9, start=125_003, stop=200_000), 9)
    _pbw_bedgraph(bw, "chr1", *random_bedgraph(rng, SIZES["chr1"], 4_000, start=200_000, to_end=True))
    _pbw_varstep(bw, "chr2", *random_varstep(rng, SIZES["chr2"], 9_000, 4), 4)
    _pbw_fixedstep(bw, "chrX", 5, random_values(rng, 20_000), 2, 2)
    _pbw_bedgraph(bw, "chrM", *random_bedgraph(rng, SIZES["chrM"], 3_000, to_end=True))
    bw.close()
    return BWFile("pybigwig_mixed", str(p), "pyBigWig writer, all three section types, also on one chromosome",
                  str(p), {c: SIZES[c] for c in chroms}, "pyBigWig")


def wheel_test_bw_path() -> Path:
    spec = importlib.util.find_spec("pyBigWigTest")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyBigWigTest (shipped in the pyBigWig wheel) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def build_pybigwig_wheel_test_bw(d: Path, rng) -> BWFile:
    src = wheel_test_bw_path() / "test.bw"
    p = d / "pybigwig_wheel_test_bw.bw"
    shutil.copyfile(src, p)
    b = pyBigWig.open(str(p))
    sizes = dict(b.chroms())
    b.close()
    return BWFile("pybigwig_wheel_test_bw", str(p), "test.bw from the pyBigWig wheel (a copy)", str(p), sizes,
                  "external")


def _ours_mixed(w: BigWigWriter, rng, chroms):
    """Mixed section types over the given chromosomes (our writer)."""
    for i, c in enumerate(chroms):
        size = SIZES[c]
        kind = i % 3
        if kind == 0:
            half = size // 2
            w.add_bedgraph(c, *random_bedgraph(rng, size, 12_000, stop=half))
            n_fixed = min(5_000, size // 24)
            w.add_fixed_step(c, half + 3, random_values(rng, n_fixed), 4, 6)
            s, v = random_varstep(rng, size, 5_000, 11, start=half + 3 + 6 * n_fixed + 97, to_end=True)
            w.add_variable_step(c, s, v, 11)
        elif kind == 1:
            s, v = random_varstep(rng, size, 15_000, 3)
            w.add_variable_step(c, s, v, 3)
        else:
            n = min(15_000, size // 4 - 10)
            w.add_fixed_step(c, size - n * 4, random_values(rng, n), 4, 4)


def build_uncompressed(d: Path, rng) -> BWFile:
    p = d / "uncompressed.bw"
    chroms = ["chr2", "chr10", "chr1"]  # id order differs from name order
    with BigWigWriter(p, {c: SIZES[c] for c in chroms}, compress=False, items_per_slot=512) as w:
        _ours_mixed(w, rng, chroms)
    return BWFile("uncompressed", str(p), "our writer, compress=False (uncompressBufSize 0), mixed sections",
                  str(p), {c: SIZES[c] for c in chroms}, "ours")


def build_bigendian(d: Path, rng) -> BWFile:
    p = d / "bigendian.bw"
    oracle_dir = d / "oracles"
    oracle_dir.mkdir(exist_ok=True)
    q = oracle_dir / "bigendian_le_twin.bw"
    chroms = ["chr1", "chrX", "chr3", "chrM"]
    state = rng.bit_generator.state
    for path, bo in ((p, ">"), (q, "<")):
        rng.bit_generator.state = state  # identical content
        with BigWigWriter(path, {c: SIZES[c] for c in chroms}, byteorder=bo, items_per_slot=200,
                          block_size=8, zoom_levels=3) as w:
            _ours_mixed(w, rng, chroms)
    return BWFile("bigendian", str(p), "our writer, big-endian, zoom levels, mixed sections", str(q),
                  {c: SIZES[c] for c in chroms}, "ours")


def many_chrom_sizes(n, rng, prefix):
    return {f"{prefix}{i}": int(rng.integers(500, 6_000)) for i in range(n)}


def build_many_chroms(d: Path, rng) -> BWFile:
    """pybigtools writer, 600 chromosomes (note: pybigtools writes the whole B+ tree as one leaf)."""
    p = d / "many_chroms.bw"
    sizes = many_chrom_sizes(600, rng, "scaffold_")
    recs = []
    # pybigtools expects records sorted by chromosome name; it leaves chromosomes without data out of
    # the file, so every chromosome gets some
    for c in sorted(sizes):
        s, e, v = random_bedgraph(rng, sizes[c], 60, to_end=bool(rng.random() < 0.3))
        recs.extend(zip([c] * len(s), s.tolist(), e.tolist(), v.astype(np.float64).tolist()))
    pybigtools.open(str(p), "w").write(sizes, recs)
    b = pyBigWig.open(str(p))
    file_sizes = dict(b.chroms())
    b.close()
    return BWFile("many_chroms", str(p), "pybigtools writer, 600 chromosomes, chrom tree after the data",
                  str(p), file_sizes, "pybigtools")


def build_many_chroms_ours(d: Path, rng) -> BWFile:
    p = d / "many_chroms_ours.bw"
    sizes = many_chrom_sizes(650, rng, "ctg")
    with BigWigWriter(p, sizes, block_size=4, items_per_slot=8) as w:
        for c, size in sizes.items():
            if rng.random() < 0.1:
                continue
            w.add_bedgraph(c, *random_bedgraph(rng, size, 40, to_end=bool(rng.random() < 0.3)))
    return BWFile("many_chroms_ours", str(p), "our writer, 650 chromosomes, block_size=4: 5-level B+ tree",
                  str(p), sizes, "ours")


def build_many_chroms_ucsc_like(d: Path, rng) -> BWFile:
    p = d / "many_chroms_256.bw"
    sizes = many_chrom_sizes(700, rng, "contig_")
    with BigWigWriter(p, sizes, block_size=256, zoom_levels=2) as w:
        for c, size in sizes.items():
            if rng.random() < 0.5:
                w.add_bedgraph(c, *random_bedgraph(rng, size, 30))
    return BWFile("many_chroms_256", str(p), "our writer, 700 chromosomes, block_size=256 as UCSC tools",
                  str(p), sizes, "ours")


def build_deep_rtree(d: Path, rng) -> BWFile:
    p = d / "deep_rtree.bw"
    chroms = ["chr1", "chr2", "chrM"]
    with BigWigWriter(p, {c: SIZES[c] for c in chroms}, items_per_slot=4, block_size=4) as w:
        w.add_bedgraph("chr1", *random_bedgraph(rng, SIZES["chr1"], 6_000))
        s, v = random_varstep(rng, SIZES["chr2"], 2_000, 6)
        w.add_variable_step("chr2", s, v, 6)
        w.add_fixed_step("chrM", 0, random_values(rng, SIZES["chrM"] // 3), 3, 3)
    return BWFile("deep_rtree", str(p), "our writer, items_per_slot=4, block_size=4: 6-level R-tree",
                  str(p), {c: SIZES[c] for c in chroms}, "ours")


def build_version1(d: Path, rng) -> BWFile:
    p = d / "version1.bw"
    chroms = ["chrM", "chr3"]
    with BigWigWriter(p, {c: SIZES[c] for c in chroms}, compress=False, version=1, items_per_slot=300) as w:
        w.add_bedgraph("chrM", *random_bedgraph(rng, SIZES["chrM"], 2_000))
        w.add_bedgraph("chr3", *random_bedgraph(rng, SIZES["chr3"], 3_000, to_end=True))
    return BWFile("version1", str(p), "our writer, version 1, uncompressed, totalSummaryOffset 0",
                  str(p), {c: SIZES[c] for c in chroms}, "ours")


BUILDERS = {
    "pybigwig_bedgraph": build_pybigwig_bedgraph,
    "pybigwig_varstep": build_pybigwig_varstep,
    "pybigwig_fixedstep": build_pybigwig_fixedstep,
    "pybigwig_mixed": build_pybigwig_mixed,
    "pybigwig_wheel_test_bw": build_pybigwig_wheel_test_bw,
    "uncompressed": build_uncompressed,
    "bigendian": build_bigendian,
    "many_chroms": build_many_chroms,
    "many_chroms_ours": build_many_chroms_ours,
    "many_chroms_256": build_many_chroms_ucsc_like,
    "deep_rtree": build_deep_rtree,
    "version1": build_version1,
}
FIXTURE_NAMES = list(BUILDERS)


def build_all(directory, seed: int = SEED) -> dict[str, BWFile]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, (name, builder) in enumerate(BUILDERS.items()):
        rng = np.random.default_rng([seed, i])
        out[name] = builder(d, rng)
    return out


# --------------------------------------------------------------------------------------- oracle
_handles: dict[str, object] = {}
_dense: dict[tuple[str, str], np.ndarray] = {}
_intervals: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
DENSE_LIMIT = 5_000_000


def _handle(path: str):
    h = _handles.get(path)
    if h is None:
        h = pyBigWig.open(path)
        if h is None:
            raise RuntimeError(f"pyBigWig cannot open {path}")
        _handles[path] = h
    return h


def _oracle_path(path_or_file) -> str:
    return path_or_file.oracle_path if isinstance(path_or_file, BWFile) else str(path_or_file)


def oracle_chrom_sizes(path_or_file) -> dict:
    return dict(_handle(_oracle_path(path_or_file)).chroms())


def oracle_values(path_or_file, chrom, start, end) -> np.ndarray:
    """pyBigWig values() as float64 over [start, end): NaN without data, before 0, past the end,
    and on chromosomes the file lacks."""
    path = _oracle_path(path_or_file)
    start, end = int(start), int(end)
    out = np.full(max(end - start, 0), np.nan)
    h = _handle(path)
    size = h.chroms(chrom)
    if size is None:
        return out
    s, e = max(start, 0), min(end, size)
    if s >= e:
        return out
    key = (path, chrom)
    if size <= DENSE_LIMIT:
        dense = _dense.get(key)
        if dense is None:
            dense = np.asarray(h.values(chrom, 0, size, numpy=True), dtype=np.float64)
            _dense[key] = dense
        out[s - start:e - start] = dense[s:e]
    else:
        out[s - start:e - start] = np.asarray(h.values(chrom, s, e, numpy=True), dtype=np.float64)
    return out


def oracle_batch(path_or_file, chroms, starts, ends) -> np.ndarray:
    """(batch, length) float64 oracle values for equal-length queries."""
    return np.stack([oracle_values(path_or_file, c, s, e) for c, s, e in zip(chroms, starts, ends)])


def oracle_intervals(path_or_file, chrom) -> tuple[np.ndarray, np.ndarray]:
    """Record starts and ends (pyBigWig intervals) on chrom; empty for a missing chromosome."""
    path = _oracle_path(path_or_file)
    key = (path, chrom)
    if key not in _intervals:
        h = _handle(path)
        iv = h.intervals(chrom) if h.chroms(chrom) is not None else None
        if not iv:
            _intervals[key] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        else:
            a = np.asarray([(x[0], x[1]) for x in iv], dtype=np.int64)
            _intervals[key] = (a[:, 0], a[:, 1])
    return _intervals[key]


# --------------------------------------------------------------------------------------- queries
_anchors: dict[tuple[str, str], np.ndarray] = {}


def anchor_positions(f: BWFile, chrom) -> np.ndarray:
    """Positions worth straddling on chrom: record and block boundaries, 0 and the chromosome end."""
    key = (f.oracle_path, chrom)
    if key not in _anchors:
        s, e = oracle_intervals(f, chrom)
        parts = [s, e, np.array([0, f.chrom_sizes[chrom]], np.int64)]
        try:
            layout = _cached_layout(f.oracle_path)
            cid = layout.chrom_ids[chrom]
            leaves = layout.data_leaves
            sel = leaves["start_chrom"] == cid
            parts += [leaves["start_base"][sel].astype(np.int64), leaves["end_base"][sel].astype(np.int64)]
        except Exception:  # layout parsing is a nicety for anchors only
            pass
        _anchors[key] = np.unique(np.concatenate(parts))
    return _anchors[key]


_layouts: dict[str, "Layout"] = {}


def _cached_layout(path) -> "Layout":
    if path not in _layouts:
        _layouts[path] = parse_layout(path)
    return _layouts[path]


def random_queries(f: BWFile | list, rng, length: int, n: int, chrom_pool=None):
    """n queries of one length over the file(s): most straddle record/block boundaries; some are near
    or past the chromosome ends, before 0, or uniformly placed."""
    files = f if isinstance(f, list) else [f]
    chroms, starts = [], []
    for _ in range(n):
        src = files[int(rng.integers(len(files)))]
        pool = chrom_pool or list(src.chrom_sizes)
        chrom = pool[int(rng.integers(len(pool)))]
        size = max((g.chrom_sizes.get(chrom, 0) for g in files), default=0) or src.chrom_sizes.get(chrom, 1)
        r = rng.random()
        if r < 0.55:
            anchors = anchor_positions(src, chrom) if chrom in src.chrom_sizes else np.array([0, size])
            a = int(anchors[int(rng.integers(anchors.size))])
            start = a - int(rng.integers(0, length + 1))
        elif r < 0.70:
            start = size - int(rng.integers(0, length + 200))
        elif r < 0.80:
            start = int(rng.integers(-length - 50, 100))
        elif r < 0.95:
            start = int(rng.integers(0, size))
        else:
            start = size + int(rng.integers(0, 1000))
        chroms.append(chrom)
        starts.append(start)
    starts = np.asarray(starts, dtype=np.int64)
    return chroms, starts, starts + length


def query_lengths(rng, n_batches: int) -> list[int]:
    fixed = [1, 2, 3, 7, 64, 1000, 4999, 5000]
    rest = np.exp(rng.uniform(0, np.log(5000), max(n_batches - len(fixed), 0))).astype(int)
    return fixed[:n_batches] + [int(max(1, x)) for x in rest]


# --------------------------------------------------------------------------------------- layout
@dataclasses.dataclass
class Layout:
    byteorder: str
    header: dict
    zoom_headers: list
    chrom_ids: dict            # name -> id
    chrom_sizes: dict          # name -> size (id order)
    chrom_tree_levels: int
    chrom_tree_root_is_leaf: bool
    chrom_tree_root_count: int
    chrom_tree_block_size: int
    chrom_tree_end: int        # end of the last node read
    data_count: int
    data_leaves: np.ndarray    # structured: start_chrom, start_base, end_chrom, end_base, offset, size
    rtree_levels: int
    rtree_root_is_leaf: bool
    rtree_node_offsets: list   # offsets of every R-tree node
    rtree_end: int
    zoom_leaves: list          # per zoom level, like data_leaves
    zoom_rtree_node_offsets: list
    file_size: int


_HDR = HEADER_FORMAT
_HDR_NAMES = ("magic", "version", "zoom_levels", "chrom_tree_offset", "full_data_offset", "full_index_offset",
              "field_count", "defined_field_count", "autosql_offset", "total_summary_offset",
              "uncompress_buf_size", "extension_offset")


def detect_byteorder(raw: bytes) -> str:
    if struct.unpack_from("<I", raw, 0)[0] == 0x888FFC26:
        return "<"
    if struct.unpack_from(">I", raw, 0)[0] == 0x888FFC26:
        return ">"
    raise ValueError("not a bigWig")


def _walk_rtree(raw, bo, offset):
    magic, bs, count, *_ = struct.unpack_from(bo + "IIQIIIIQII", raw, offset)
    assert magic == 0x2468ACE0, hex(magic)
    leaf_dtype = np.dtype([("start_chrom", bo + "u4"), ("start_base", bo + "u4"), ("end_chrom", bo + "u4"),
                           ("end_base", bo + "u4"), ("offset", bo + "u8"), ("size", bo + "u8")])
    leaves, nodes = [], []
    depth = 0
    end = offset + 48
    frontier = [offset + 48]
    root_is_leaf = None
    while frontier:
        depth += 1
        nxt = []
        for node in frontier:
            nodes.append(node)
            is_leaf, _, n = struct.unpack_from(bo + "BBH", raw, node)
            if root_is_leaf is None:
                root_is_leaf = bool(is_leaf)
            if is_leaf:
                leaves.append(np.frombuffer(raw, leaf_dtype, n, node + 4))
                end = max(end, node + 4 + 32 * n)
            else:
                for k in range(n):
                    nxt.append(struct.unpack_from(bo + "Q", raw, node + 4 + 24 * k + 16)[0])
                end = max(end, node + 4 + 24 * n)
        frontier = nxt
    arr = np.concatenate(leaves) if leaves else np.zeros(0, leaf_dtype)
    arr = arr.astype(leaf_dtype.newbyteorder("="))
    return arr, depth, root_is_leaf, nodes, end


def parse_layout(path) -> Layout:
    """Parse a bigWig's structures with struct/numpy (independent of the package under test)."""
    raw = Path(path).read_bytes()
    bo = detect_byteorder(raw)
    hdr = dict(zip(_HDR_NAMES, struct.unpack_from(bo + _HDR, raw, 0)))
    zooms = [dict(zip(("reduction", "reserved", "data_offset", "index_offset"),
                      struct.unpack_from(bo + "IIQQ", raw, 64 + 24 * i))) for i in range(hdr["zoom_levels"])]
    # chromosome B+ tree
    off = hdr["chrom_tree_offset"]
    magic, bs, key_size, val_size, item_count, _ = struct.unpack_from(bo + "IIIIQQ", raw, off)
    assert magic == 0x78CA8C91, hex(magic)
    ids, sizes = {}, {}
    levels = 0
    frontier = [off + 32]
    root_leaf = root_count = None
    tree_end = off + 32
    while frontier:
        levels += 1
        nxt = []
        for node in frontier:
            is_leaf, _, n = struct.unpack_from(bo + "BBH", raw, node)
            if root_leaf is None:
                root_leaf, root_count = bool(is_leaf), n
            p = node + 4
            for _k in range(n):
                key = raw[p:p + key_size].rstrip(b"\x00").decode()
                if is_leaf:
                    cid, size = struct.unpack_from(bo + "II", raw, p + key_size)
                    ids[key], sizes[key] = cid, size
                else:
                    nxt.append(struct.unpack_from(bo + "Q", raw, p + key_size)[0])
                p += key_size + val_size
            tree_end = max(tree_end, p)
        frontier = nxt
    assert len(ids) == item_count
    by_id = dict(sorted(sizes.items(), key=lambda kv: ids[kv[0]]))
    data_count = struct.unpack_from(bo + "Q", raw, hdr["full_data_offset"])[0]
    leaves, depth, rleaf, rnodes, rend = _walk_rtree(raw, bo, hdr["full_index_offset"])
    count = struct.unpack_from(bo + "Q", raw, hdr["full_index_offset"] + 8)[0]
    assert leaves.size == count, (leaves.size, count)
    zleaves, znodes = [], []
    for z in zooms:
        zl, _, _, zn, _ = _walk_rtree(raw, bo, z["index_offset"])
        zleaves.append(zl)
        znodes.append(zn)
    return Layout(bo, hdr, zooms, ids, by_id, levels, root_leaf, root_count, bs, tree_end, data_count, leaves,
                  depth, rleaf, rnodes, rend, zleaves, znodes, len(raw))


def read_block(path, offset, size, compressed: bool) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(size)
    return zlib.decompress(raw) if compressed else raw


def decode_sections(path) -> list[dict]:
    """Every data block's section header and items, decoded independently of the package."""
    lay = parse_layout(path)
    bo = lay.byteorder
    compressed = lay.header["uncompress_buf_size"] > 0
    out = []
    for leaf in lay.data_leaves:
        blk = read_block(path, int(leaf["offset"]), int(leaf["size"]), compressed)
        cid, start, end, step, span, typ, _, n = struct.unpack_from(bo + "IIIIIBBH", blk, 0)
        sec = dict(chrom_id=cid, start=start, end=end, step=step, span=span, type=typ, count=n,
                   raw_size=len(blk))
        if typ == 1:
            items = np.frombuffer(blk, np.dtype([("s", bo + "u4"), ("e", bo + "u4"), ("v", bo + "f4")]), n, 24)
            sec.update(starts=items["s"].astype(np.int64), ends=items["e"].astype(np.int64),
                       values=items["v"].astype(np.float32))
        elif typ == 2:
            items = np.frombuffer(blk, np.dtype([("s", bo + "u4"), ("v", bo + "f4")]), n, 24)
            s = items["s"].astype(np.int64)
            sec.update(starts=s, ends=s + span, values=items["v"].astype(np.float32))
        elif typ == 3:
            v = np.frombuffer(blk, np.dtype(bo + "f4"), n, 24).astype(np.float32)
            s = start + np.arange(n, dtype=np.int64) * step
            sec.update(starts=s, ends=s + span, values=v)
        else:
            raise ValueError(f"unknown section type {typ}")
        out.append(sec)
    return out


def structure_boundaries(path) -> list[int]:
    """Offsets where one on-disk structure ends and the next begins (for truncation tests)."""
    lay = parse_layout(path)
    h = lay.header
    b = {0, 4, 8, 64, 64 + 24 * h["zoom_levels"], h["chrom_tree_offset"], h["chrom_tree_offset"] + 32,
         lay.chrom_tree_end, h["full_data_offset"], h["full_data_offset"] + 8, h["full_index_offset"],
         h["full_index_offset"] + 48, lay.rtree_end, lay.file_size, lay.file_size - 4}
    if h["total_summary_offset"]:
        b |= {h["total_summary_offset"], h["total_summary_offset"] + 40}
    for z in lay.zoom_headers:
        b |= {z["data_offset"], z["index_offset"], z["index_offset"] + 48}
    b |= set(lay.rtree_node_offsets)
    for leaf in lay.data_leaves:
        b |= {int(leaf["offset"]), int(leaf["offset"] + leaf["size"])}
    return sorted(x for x in b if 0 <= x <= lay.file_size)

"""Damaged and wrong files: the core must either give the right values or raise BigWigFormatError
naming the file; never another exception, a crash, or a hang.

Every case runs in-process. A SIGALRM guard turns a hang into a test failure.
"""
from __future__ import annotations

import contextlib
import itertools
import shutil
import signal
from pathlib import Path

import numpy as np
import pyBigWig
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError

CASE_TIMEOUT_S = 20
_counter = itertools.count()


@contextlib.contextmanager
def time_limit(seconds=CASE_TIMEOUT_S, what=""):
    def _raise(signum, frame):
        raise TimeoutError(f"{what}: no answer within {seconds} s (hang?)")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------------ small files
SMALL_SIZES = {"chrB": 4_000, "chrA": 3_000, "chr10": 2_500, "chr2": 2_000, "chrM": 1_500, "chrY": 1_000}


def _small_ours(path, rng, **kw):
    with df.BigWigWriter(path, SMALL_SIZES, items_per_slot=16, block_size=4, **kw) as w:
        for i, (c, size) in enumerate(SMALL_SIZES.items()):
            if i % 3 == 0:
                w.add_bedgraph(c, *df.random_bedgraph(rng, size, 150, to_end=True))
            elif i % 3 == 1:
                s, v = df.random_varstep(rng, size, 120, 5)
                w.add_variable_step(c, s, v, 5)
            else:
                n = size // 10 - 5
                w.add_fixed_step(c, 17, df.random_values(rng, n), 3, 10)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """name -> (path, oracle path): small files of every kind, so that cutting and flipping is cheap."""
    d = tmp_path_factory.mktemp("small")
    out = {}
    for name, kw in [("ours_compressed", dict(zoom_levels=2)), ("ours_uncompressed", dict(compress=False)),
                     ("ours_bigendian", dict(byteorder=">", zoom_levels=1))]:
        p = d / f"{name}.bw"
        _small_ours(p, np.random.default_rng(7), **kw)
        oracle = p
        if kw.get("byteorder") == ">":
            oracle = d / "ours_bigendian_le.bw"
            _small_ours(oracle, np.random.default_rng(7), **{**kw, "byteorder": "<"})
        out[name] = (p, oracle)
    p = d / "pybigwig_small.bw"
    rng = np.random.default_rng(8)
    bw = pyBigWig.open(str(p), "w")
    bw.addHeader(list(SMALL_SIZES.items()), maxZooms=2)
    for c, size in SMALL_SIZES.items():
        s, e, v = df.random_bedgraph(rng, size, 3000)
        bw.addEntries([c] * len(s), s.tolist(), ends=e.tolist(), values=v.astype(np.float64).tolist())
    bw.close()
    out["pybigwig_small"] = (p, p)
    return out


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("corrupt")


def oracle_arrays(oracle_path) -> dict:
    sizes = df.oracle_chrom_sizes(str(oracle_path))
    return {c: df.oracle_values(str(oracle_path), c, 0, s).astype(np.float32) for c, s in sizes.items()}


def check(path: Path, expected: dict | None, *, strict: bool, what: str) -> str:
    """Open `path` and query every chromosome of `expected` in full (plus a margin).

    Returns "error" (BigWigFormatError naming the file), "equal" (values equal the oracle), or
    "different" (values differ: a failure only when strict). Any other exception propagates."""
    spath = str(path)
    with time_limit(what=what):
        try:
            coll = BigWigCollection([spath])
        except BigWigFormatError as e:
            assert spath in str(e), f"{what}: the error does not name the file: {e}"
            return "error"
        try:
            equal = True
            for chrom, exp in (expected or {}).items():
                if chrom not in coll.chrom_sizes:
                    equal = False
                    continue
                size = exp.size
                got = coll.get_batch([chrom], [-2], [size + 2], default_value=np.nan)
                assert got.shape == (1, size + 4, 1), what
                g = got[0, 2:-2, 0]
                if not (np.array_equal(g, exp, equal_nan=True) and np.isnan(got[0, :2, 0]).all()
                        and np.isnan(got[0, -2:, 0]).all()):
                    equal = False
            if expected is None:  # no oracle: query whatever the file says it has
                for chrom, size in list(coll.chrom_sizes.items())[:10]:
                    n = int(min(max(size, 1), 10_000))
                    got = coll.get_batch([chrom], [0], [n], default_value=np.nan)
                    assert got.shape == (1, n, 1), what
        except BigWigFormatError as e:
            assert spath in str(e), f"{what}: the error does not name the file: {e}"
            return "error"
        finally:
            coll.close()
    if strict:
        assert equal, f"{what}: neither an error nor the right values"
    return "equal" if equal else "different"


def fresh_path(work_dir: Path, stem: str) -> Path:
    return work_dir / f"{stem}_{next(_counter)}.bw"


# ------------------------------------------------------------------------------------ truncation
@pytest.mark.parametrize("name", ["ours_compressed", "ours_uncompressed", "ours_bigendian", "pybigwig_small"])
def test_truncated(small_files, work_dir, name):
    path, oracle = small_files[name]
    raw = path.read_bytes()
    expected = oracle_arrays(oracle)
    assert check(path, expected, strict=True, what=f"{name} intact") == "equal"
    bounds = df.structure_boundaries(path)
    cuts = {b + d for b in bounds for d in (-1, 0, 1, 2)}
    cuts |= set(range(0, len(raw), max(1, len(raw) // 150)))
    cuts = sorted(c for c in cuts if 0 <= c < len(raw))
    outcomes = {}
    for cut in cuts:
        p = fresh_path(work_dir, f"{name}_cut{cut}")
        p.write_bytes(raw[:cut])
        outcomes[cut] = check(p, expected, strict=True, what=f"{name} cut at {cut} of {len(raw)}")
        p.unlink()
    lay = df.parse_layout(path)
    # everything up to the end of the data index is needed: cutting there must be an error
    needed_end = max(lay.rtree_end, max(int(x["offset"] + x["size"]) for x in lay.data_leaves))
    for cut, outcome in outcomes.items():
        if cut < needed_end:
            assert outcome == "error", f"{name}: cut at {cut} (< {needed_end}) gave the full right answer"


# ------------------------------------------------------------------------------------ byte flips
def _detectable_positions(path: Path) -> np.ndarray:
    """Bytes whose change a reader can always notice: the magic numbers and every byte of the
    zlib-compressed data blocks (zlib header, deflate stream, adler32)."""
    lay = df.parse_layout(path)
    h = lay.header
    pos = list(range(0, 4)) + list(range(h["chrom_tree_offset"], h["chrom_tree_offset"] + 4)) \
        + list(range(h["full_index_offset"], h["full_index_offset"] + 4))
    for leaf in lay.data_leaves:
        pos.extend(range(int(leaf["offset"]), int(leaf["offset"] + leaf["size"])))
    return np.array(sorted(set(pos)))


_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", ["ours_compressed", "ours_bigendian", "pybigwig_small"])
def test_byte_flips_detectable(small_files, work_dir, name):
    """A flipped byte in a compressed block or a magic number: the right values or the error."""
    path, oracle = small_files[name]
    raw = path.read_bytes()
    expected = oracle_arrays(oracle)
    positions = _detectable_positions(path)

    @settings(max_examples=300, **_SETTINGS)
    @given(i=st.integers(0, len(positions) - 1), mask=st.integers(1, 255))
    def run(i, mask):
        pos = int(positions[i])
        b = bytearray(raw)
        b[pos] ^= mask
        p = fresh_path(work_dir, f"{name}_flip{pos}")
        p.write_bytes(bytes(b))
        try:
            check(p, expected, strict=True, what=f"{name} byte {pos} ^ {mask:#x}")
        finally:
            p.unlink()

    run()


@pytest.mark.parametrize("name", ["ours_compressed", "ours_uncompressed", "ours_bigendian", "pybigwig_small"])
def test_byte_flips_anywhere_do_not_crash(small_files, work_dir, name):
    """Any flipped byte (also ones nobody can detect, e.g. in a value or a chromosome name): the core
    returns arrays of the right shape or raises BigWigFormatError naming the file."""
    path, _ = small_files[name]
    raw = path.read_bytes()

    @settings(max_examples=400, **_SETTINGS)
    @given(pos=st.integers(0, len(raw) - 1), mask=st.integers(1, 255), second=st.none() | st.integers(0, len(raw) - 1))
    def run(pos, mask, second):
        b = bytearray(raw)
        b[pos] ^= mask
        if second is not None:
            b[second] ^= 0xFF
        p = fresh_path(work_dir, f"{name}_any{pos}")
        p.write_bytes(bytes(b))
        try:
            check(p, None, strict=False, what=f"{name} byte {pos} ^ {mask:#x}, second {second}")
        finally:
            p.unlink()

    run()


def test_header_fields_out_of_range(small_files, work_dir):
    """Offsets and sizes in the header pointing past the end of the file, or absurd."""
    import struct

    path, oracle = small_files["ours_compressed"]
    raw = path.read_bytes()
    expected = oracle_arrays(oracle)
    size = len(raw)
    fields = {"chrom_tree_offset": (8, "Q"), "full_data_offset": (16, "Q"), "full_index_offset": (24, "Q"),
              "uncompress_buf_size": (52, "I"), "zoom_levels": (6, "H"), "version": (4, "H")}
    for field, (off, fmt) in fields.items():
        top = 2 ** (8 * struct.calcsize(fmt)) - 1
        for value in sorted({min(v, top) for v in (0, 1, 5, size - 1, size, size + 1000, 2**31, top)}):
            b = bytearray(raw)
            struct.pack_into("<" + fmt, b, off, value)
            p = fresh_path(work_dir, f"hdr_{field}")
            p.write_bytes(bytes(b))
            try:
                check(p, expected, strict=False, what=f"{field} = {value}")
            finally:
                p.unlink()


# ------------------------------------------------------------------------------------ wrong files
def test_empty_file(work_dir):
    p = fresh_path(work_dir, "empty")
    p.write_bytes(b"")
    with pytest.raises(BigWigFormatError) as ei:
        BigWigCollection([str(p)]).get_batch(["chr1"], [0], [10])
    assert str(p) in str(ei.value)


def test_text_file(work_dir):
    p = fresh_path(work_dir, "text")
    p.write_text("track type=bedGraph\nchr1\t0\t100\t1.5\nchr1\t100\t200\t2.5\n" * 10)
    with pytest.raises(BigWigFormatError) as ei:
        BigWigCollection([str(p)]).get_batch(["chr1"], [0], [10])
    assert str(p) in str(ei.value)


@pytest.mark.parametrize("length", [1, 3, 4, 7, 63])
def test_tiny_files(small_files, work_dir, length):
    raw = small_files["ours_compressed"][0].read_bytes()
    p = fresh_path(work_dir, "tiny")
    p.write_bytes(raw[:length])
    with pytest.raises(BigWigFormatError) as ei:
        BigWigCollection([str(p)]).get_batch(["chrA"], [0], [10])
    assert str(p) in str(ei.value)


def test_bigbed_is_named_as_such(work_dir):
    src = df.wheel_test_bw_path() / "test.bigBed"
    for suffix in (".bb", ".bw"):
        p = work_dir / f"a_bigbed_{next(_counter)}{suffix}"
        shutil.copyfile(src, p)
        with pytest.raises(BigWigFormatError) as ei:
            BigWigCollection([str(p)]).get_batch(["chr1"], [0], [10])
        msg = str(ei.value)
        assert str(p) in msg
        assert "bigbed" in msg.lower(), msg


def test_one_bad_file_among_good_ones(small_files, work_dir, tmp_path):
    good = small_files["ours_compressed"][0]
    shutil.copyfile(good, tmp_path / "good1.bw")
    shutil.copyfile(small_files["pybigwig_small"][0], tmp_path / "good2.bw")
    bad = tmp_path / "bad.bw"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(BigWigFormatError) as ei:
        with time_limit(what="directory with a bad file"):
            BigWigCollection(str(tmp_path)).get_batch(["chrA"], [0], [100])
    assert str(bad) in str(ei.value)
    with pytest.raises(BigWigFormatError) as ei:
        BigWigCollection([str(tmp_path / "good1.bw"), str(bad)]).get_batch(["chrA"], [0], [100])
    assert str(bad) in str(ei.value)


def test_big_endian_bigbed_magic_and_swapped_magic(small_files, work_dir):
    """The bigBed magic in either byte order is a bigBed; anything else is not a bigWig."""
    import struct

    raw = small_files["ours_compressed"][0].read_bytes()
    for bo in "<>":
        b = bytearray(raw)
        struct.pack_into(bo + "I", b, 0, 0x8789F2EB)
        p = fresh_path(work_dir, "bbmagic")
        p.write_bytes(bytes(b))
        with pytest.raises(BigWigFormatError) as ei:
            BigWigCollection([str(p)]).get_batch(["chrA"], [0], [10])
        assert str(p) in str(ei.value) and "bigbed" in str(ei.value).lower()
    b = bytearray(raw)
    b[0:4] = b"\x00\x01\x02\x03"
    p = fresh_path(work_dir, "badmagic")
    p.write_bytes(bytes(b))
    with pytest.raises(BigWigFormatError) as ei:
        BigWigCollection([str(p)]).get_batch(["chrA"], [0], [10])
    assert str(p) in str(ei.value)

"""`bwloader transcode`: uncompressed copies that every reader sees as the same file.

Every fixture type (pyBigWig/pybigtools/our writers; bedGraph, variableStep, fixedStep, mixed,
big-endian, multi-level trees, uncompressed and version-1 input, the pyBigWig wheel's test.bw) is
transcoded once; pyBigWig, an independent struct parser and our reader then compare output and
source. The writing side: atomic outputs (a killed, interrupted or failing run leaves nothing under
the final name), refusing to overwrite, --force, free space, remote sources, the CLI.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pyBigWig
import pytest

import data_files
from bwloader_core import BigWigCollection, BigWigFormatError
from bwloader_core import transcode as tc
from bwloader_core.transcode import estimate_transcode, transcode, transcode_file

NAMES = data_files.FIXTURE_NAMES
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def transcoded(bw_files, tmp_path_factory):
    """Every fixture transcoded once (3 at a time): name -> TranscodeResult."""
    out = tmp_path_factory.mktemp("transcoded")
    names = list(bw_files)
    results = transcode([bw_files[n].path for n in names], out, n_jobs=3, progress=False)
    return dict(zip(names, results))


def _intervals(h, chrom):
    return h.intervals(chrom) or ()


def _stats(h, chrom, size, kind):
    try:
        return np.asarray(h.stats(chrom, 0, size, type=kind, nBins=37), dtype=float)
    except RuntimeError:          # pyBigWig's zoom path fails on some layouts: must fail alike on both
        return "error"


def _zoom_records(path):
    """Every zoom level's records as a native-endian structured array (independent parser)."""
    lay = data_files.parse_layout(path)
    compressed = lay.header["uncompress_buf_size"] > 0
    dt = np.dtype([(f, lay.byteorder + t) for f, t in (("chrom", "u4"), ("start", "u4"), ("end", "u4"),
                                                       ("valid", "u4"), ("min", "f4"), ("max", "f4"),
                                                       ("sum", "f4"), ("sumsq", "f4"))])
    out = []
    for leaves in lay.zoom_leaves:
        recs = [np.frombuffer(data_files.read_block(path, int(lf["offset"]), int(lf["size"]), compressed), dt)
                for lf in leaves]
        out.append(np.concatenate(recs).astype(dt.newbyteorder("=")) if recs else np.zeros(0, dt))
    return out


# ---------------------------------------------------------------------------------- same content
@pytest.mark.parametrize("name", NAMES)
def test_pybigwig_reads_the_same_file(bw_files, transcoded, name):
    """values(), intervals(), zoom-based stats and the header summary equal the source's (for a
    big-endian source: its little-endian twin, as pyBigWig cannot read big-endian files)."""
    f, r = bw_files[name], transcoded[name]
    assert r.ok and r.output_bytes == os.path.getsize(r.output)
    a, b = pyBigWig.open(f.oracle_path), pyBigWig.open(r.output)
    try:
        assert b.chroms() == a.chroms()
        assert b.header() == a.header()          # version, zoom levels, bases covered, min, max, sums
        for chrom, size in a.chroms().items():
            assert _intervals(b, chrom) == _intervals(a, chrom), chrom
            np.testing.assert_array_equal(b.values(chrom, 0, size, numpy=True), a.values(chrom, 0, size, numpy=True))
            for kind in ("mean", "min", "max", "coverage"):
                sa, sb = _stats(a, chrom, size, kind), _stats(b, chrom, size, kind)
                if isinstance(sa, str) or isinstance(sb, str):
                    assert sa == sb, (chrom, kind)
                else:
                    np.testing.assert_array_equal(sb, sa, err_msg=f"{chrom} {kind}")
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("name", NAMES)
def test_structure_matches_source(bw_files, transcoded, name):
    """An independent parser: little-endian, uncompressBufSize 0, the same blocks (bounds, sections,
    items), the same R-tree and chromosome-tree depth and fan-out, the same zoom records."""
    src, out = bw_files[name].path, transcoded[name].output
    ls, lo = data_files.parse_layout(src), data_files.parse_layout(out)
    assert lo.byteorder == "<" and lo.header["uncompress_buf_size"] == 0
    assert lo.header["version"] == ls.header["version"]
    assert (lo.header["total_summary_offset"] == 0) == (ls.header["total_summary_offset"] == 0)
    assert lo.chrom_sizes == ls.chrom_sizes and lo.chrom_ids == ls.chrom_ids
    assert lo.chrom_tree_levels == ls.chrom_tree_levels and lo.chrom_tree_block_size == ls.chrom_tree_block_size
    assert lo.rtree_levels == ls.rtree_levels
    for fld in ("start_chrom", "start_base", "end_chrom", "end_base"):
        np.testing.assert_array_equal(lo.data_leaves[fld], ls.data_leaves[fld])
    assert lo.data_count == len(lo.data_leaves)
    assert [z["reduction"] for z in lo.zoom_headers] == [z["reduction"] for z in ls.zoom_headers]
    for zs, zo in zip(_zoom_records(src), _zoom_records(out)):
        np.testing.assert_array_equal(zo, zs)
    secs_s, secs_o = data_files.decode_sections(src), data_files.decode_sections(out)
    assert len(secs_o) == len(secs_s)
    for s, o in zip(secs_s, secs_o):
        for k in ("chrom_id", "start", "end", "step", "span", "type", "count"):
            assert o[k] == s[k], k
        for k in ("starts", "ends", "values"):
            np.testing.assert_array_equal(o[k], s[k])
    raw = Path(out).read_bytes()
    assert struct.unpack_from("<I", raw, len(raw) - 4)[0] == 0x888FFC26   # trailing magic
    assert (lo.data_leaves["offset"] % 4 == 0).all()                     # word-aligned: read in place


@pytest.mark.parametrize("name", NAMES)
def test_our_reader_reads_the_same_values(bw_files, transcoded, name):
    f = bw_files[name]
    rng = np.random.default_rng([15, NAMES.index(name)])
    with BigWigCollection([f.path]) as src, BigWigCollection([transcoded[name].output]) as out:
        assert not out.files[0].compressed and out.files[0].readable_in_place
        for length in (1, 999, 4000):
            q = data_files.random_queries(f, rng, length, 48)
            np.testing.assert_array_equal(out.get_batch(*q, default_value=np.nan),
                                          src.get_batch(*q, default_value=np.nan))
        q = data_files.random_queries(f, rng, 5000, 24)
        np.testing.assert_array_equal(out.get_batch(*q, window_size=50, reduce="max"),
                                      src.get_batch(*q, window_size=50, reduce="max"))
        if out.files[0].n_blocks:                   # searched where they lie (memory map), not copied
            assert out._processor._fetcher.blocks_in_place > 0
        if f.chrom_sizes and src.files[0].zoom_levels:
            w = 2 * max(z.reduction_level for z in src.files[0].zoom_levels)
            q = data_files.random_queries(f, rng, 10 * w, 16)
            np.testing.assert_array_equal(out.get_batch(*q, window_size=w, zoom=True),
                                          src.get_batch(*q, window_size=w, zoom=True))


def test_big_endian_source_is_written_little_endian(bw_files, transcoded, tmp_path):
    """The big-endian file and its little-endian twin (same content) transcode to the same bytes."""
    r = transcoded["bigendian"]
    assert r.source_byteorder == ">" and r.was_compressed
    twin = transcode_file(bw_files["bigendian"].oracle_path, tmp_path / "twin.bw")
    assert twin.source_byteorder == "<"
    assert Path(r.output).read_bytes() == Path(twin.output).read_bytes()


def test_transcoding_is_deterministic_and_idempotent(bw_files, transcoded, tmp_path):
    """Serial and parallel runs write the same bytes; a transcoded file transcodes to itself."""
    names = ["pybigwig_mixed", "deep_rtree", "uncompressed"]
    again = transcode([bw_files[n].path for n in names], tmp_path / "serial", n_jobs=1, progress=False)
    for n, r in zip(names, again):
        assert Path(r.output).read_bytes() == Path(transcoded[n].output).read_bytes()
    twice = transcode_file(transcoded["pybigwig_mixed"].output, tmp_path / "twice.bw")
    assert not twice.was_compressed
    assert Path(twice.output).read_bytes() == Path(transcoded["pybigwig_mixed"].output).read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_size_estimate(bw_files, transcoded, name):
    """The free-space check's estimate: exact for uncompressed sources, within 10% otherwise."""
    est = estimate_transcode(bw_files[name].path)
    actual = transcoded[name].output_bytes
    assert est.source_bytes == os.path.getsize(bw_files[name].path)
    if not est.compressed:
        assert est.exact and est.output_bytes == actual
    else:
        assert abs(est.output_bytes - actual) <= 0.10 * actual, (est.output_bytes, actual)
        assert est.sampled_blocks > 0


# ------------------------------------------------------------------------------------ writing
def _bw_names(d):
    return sorted(p.name for p in Path(d).iterdir())


def test_refuses_to_overwrite_then_force(bw_files, tmp_path):
    a, b = bw_files["pybigwig_varstep"].path, bw_files["version1"].path
    out = tmp_path / "out"
    out.mkdir()
    (out / "pybigwig_varstep.bw").write_bytes(b"precious")
    with pytest.raises(FileExistsError) as ei:
        transcode([a, b], out, progress=False)
    assert ei.value.filename == str(out / "pybigwig_varstep.bw") and "force" in str(ei.value)
    assert (out / "pybigwig_varstep.bw").read_bytes() == b"precious"
    assert _bw_names(out) == ["pybigwig_varstep.bw"]           # the other file was not written either
    res = transcode([a, b], out, force=True, progress=False)
    assert [r.ok for r in res] == [True, True] and _bw_names(out) == ["pybigwig_varstep.bw", "version1.bw"]
    assert pyBigWig.open(str(out / "pybigwig_varstep.bw")).chroms() == pyBigWig.open(a).chroms()
    with pytest.raises(FileExistsError):
        transcode_file(a, out / "pybigwig_varstep.bw")


def test_output_names_checked(bw_files, tmp_path):
    a = bw_files["version1"].path
    dup = tmp_path / "dup"
    dup.mkdir()
    shutil.copy(a, dup / "version1.bw")
    with pytest.raises(ValueError, match="both be written"):
        transcode([a, str(dup / "version1.bw")], tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="replace its source"):
        transcode([str(dup / "version1.bw")], dup, force=True, progress=False)
    # a directory stands for its bigWig files
    res = transcode(dup, tmp_path / "fromdir", progress=False)
    assert [Path(r.output).name for r in res] == ["version1.bw"]
    mode = os.stat(res[0].output).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask                               # not mkstemp's 0600


def test_bad_source_stops_before_writing(bw_files, tmp_path):
    good, missing = bw_files["version1"].path, str(tmp_path / "missing.bw")
    with pytest.raises((OSError, ValueError), match="missing.bw"):
        transcode([good, missing], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or _bw_names(tmp_path / "out") == []
    res = transcode([good, missing], tmp_path / "out", progress=False, keep_going=True)
    assert res[0].ok and not res[1].ok and "missing.bw" in res[1].error
    assert _bw_names(tmp_path / "out") == ["version1.bw"]


def _corrupt_last_block(src, dst):
    """A copy whose last data block no longer inflates (the first ones still do)."""
    raw = bytearray(Path(src).read_bytes())
    lay = data_files.parse_layout(src)
    last = lay.data_leaves[np.argmax(lay.data_leaves["offset"])]
    o, n = int(last["offset"]), int(last["size"])
    raw[o + 2:o + n] = bytes(n - 2)       # zlib header kept, deflate stream zeroed
    Path(dst).write_bytes(bytes(raw))
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(raw[o:o + n]))
    return o


def test_failure_mid_write_leaves_nothing(bw_files, tmp_path, monkeypatch):
    """A block that fails to inflate after earlier blocks were written: an error naming the file
    and the block, no output under the final name and no temporary file."""
    monkeypatch.setattr(tc, "CHUNK_BYTES", 4096)      # many chunks: the failure comes mid-file
    bad = tmp_path / "src" / "bad.bw"
    bad.parent.mkdir()
    off = _corrupt_last_block(bw_files["pybigwig_bedgraph"].path, bad)
    out = tmp_path / "out"
    seen = []
    with pytest.raises(BigWigFormatError) as ei:
        transcode([bad], out, progress=lambda done, total: seen.append(done), max_samples=1)
    assert str(bad) in str(ei.value) and f"offset {off}" in str(ei.value)
    assert len(seen) > 1                               # blocks had been written before it failed
    assert _bw_names(out) == []


_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bwloader_core.transcode import transcode
    marker = Path(sys.argv[3])
    def progress(done, total):
        if not marker.exists():
            marker.write_text("mid-write")
            time.sleep(float(sys.argv[4]))
    try:
        transcode([sys.argv[1]], sys.argv[2], progress=progress)
    except KeyboardInterrupt:
        sys.exit(130)
""")


def _run_until_mid_write(tmp_path, src, pause):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    marker = tmp_path / "marker"
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, str(script), src, str(out), str(marker), str(pause)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not marker.exists():
        assert p.poll() is None, p.communicate()
        assert time.time() < deadline, "the writer never reached its first block"
        time.sleep(0.02)
    return p, out


def test_killed_writer_leaves_no_file_under_the_final_name(bw_files, tmp_path):
    src = bw_files["pybigwig_bedgraph"].path
    p, out = _run_until_mid_write(tmp_path, src, 60)
    parts = [n for n in _bw_names(out) if n.endswith(".part")]
    assert parts and parts[0].startswith(".pybigwig_bedgraph.bw.")   # it was writing
    p.kill()
    p.communicate(timeout=30)
    assert not (out / "pybigwig_bedgraph.bw").exists()
    # a new run is not confused by the dead run's temporary file
    r = transcode([src], out, progress=False)[0]
    assert r.ok and pyBigWig.open(r.output).header() == pyBigWig.open(src).header()


def test_interrupted_writer_cleans_up(bw_files, tmp_path):
    """Ctrl-C (SIGINT) mid-write: the running file stops, its temporary file is removed."""
    p, out = _run_until_mid_write(tmp_path, bw_files["pybigwig_bedgraph"].path, 2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert _bw_names(out) == []


def test_not_enough_space(bw_files, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(tc.shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    with pytest.raises(OSError) as ei:
        transcode([bw_files["pybigwig_bedgraph"].path], tmp_path / "out", progress=False)
    assert ei.value.errno == errno.ENOSPC and "free" in str(ei.value)
    assert _bw_names(tmp_path / "out") == []
    assert transcode([bw_files["pybigwig_bedgraph"].path], tmp_path / "out", progress=False, check_space=False)[0].ok


def test_progress_callback(bw_files, tmp_path):
    names = ["pybigwig_mixed", "bigendian"]
    seen = []
    transcode([bw_files[n].path for n in names], tmp_path, progress=lambda d, t: seen.append((d, t)), n_jobs=2)
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1] > 0


# -------------------------------------------------------------------------------------- remote
def test_remote_source_equals_local(bw_files, transcoded, tmp_path):
    pytest.importorskip("fsspec")
    pytest.importorskip("aiohttp")
    from http_server import RangeServer
    names = ["pybigwig_mixed", "bigendian", "deep_rtree"]
    served = tmp_path / "served"
    served.mkdir()
    for n in names:
        os.symlink(bw_files[n].path, served / f"{n}.bw")
    with RangeServer(served, idle_timeout=5.0) as srv:
        res = transcode([srv.url(f"{n}.bw") for n in names], tmp_path / "out", progress=False)
    for n, r in zip(names, res):
        assert r.output == str(tmp_path / "out" / f"{n}.bw")
        assert Path(r.output).read_bytes() == Path(transcoded[n].output).read_bytes()


# ----------------------------------------------------------------------------------------- CLI
def _cli(*args):
    exe = Path(sys.executable).parent / "bwloader"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bwloader_core.cli"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def test_cli_transcode_and_info(bw_files, tmp_path):
    a, b = bw_files["pybigwig_mixed"].path, bw_files["bigendian"].path
    out = tmp_path / "out"
    r = _cli("transcode", a, b, "--out", out)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{a} -> {out / 'pybigwig_mixed.bw'}: ") and " KiB -> " in lines[0]
    assert "big-endian source, written little-endian" in lines[1]
    assert lines[2].startswith("2 files: ")
    assert "transcoding 2 files" in r.stderr and "free" in r.stderr and "2/2 files" in r.stderr
    assert _bw_names(out) == ["bigendian.bw", "pybigwig_mixed.bw"]
    before = (out / "bigendian.bw").stat().st_mtime_ns

    r = _cli("transcode", a, b, "--out", out)
    assert r.returncode == 1 and "exists" in r.stderr and "--force" in r.stderr
    assert str(out / "pybigwig_mixed.bw") in r.stderr and "Traceback" not in r.stderr
    assert (out / "bigendian.bw").stat().st_mtime_ns == before

    r = _cli("transcode", b, "--out", out, "--force", "-q")
    assert r.returncode == 0 and r.stderr == "" and (out / "bigendian.bw").stat().st_mtime_ns != before

    r = _cli("transcode", tmp_path / "nope.bw", a, "--out", tmp_path / "out2", "-k", "-q")
    assert r.returncode == 1 and "nope.bw" in r.stderr and _bw_names(tmp_path / "out2") == ["pybigwig_mixed.bw"]

    r = _cli("info", a, out / "pybigwig_mixed.bw")
    assert r.returncode == 0, r.stderr
    src_part, out_part = r.stdout.split(f"\n{out / 'pybigwig_mixed.bw'}\n")
    assert "compression:        zlib" in src_part and "`bwloader transcode` would write ~" in src_part
    assert "samples/s measured on transcoded files" in src_part
    est = estimate_transcode(a)
    assert f"x{est.ratio:.2f} the size" in src_part
    assert "compression:        none" in out_part and "already uncompressed" in out_part


# ------------------------------------------------------------------------------ edge cases
def test_file_without_data(tmp_path):
    """Chromosomes but no records: an empty R-tree, no zoom levels; still a valid bigWig."""
    src = tmp_path / "empty.bw"
    with data_files.BigWigWriter(src, {"chr1": 1000, "chr2": 500}, zoom_levels=2):
        pass
    r = transcode_file(src, tmp_path / "out" / "empty.bw")
    assert r.ok and r.data_blocks == 0
    a, b = pyBigWig.open(str(src)), pyBigWig.open(r.output)
    assert b.chroms() == a.chroms() and b.header() == a.header() and b.intervals("chr1") == a.intervals("chr1")
    with BigWigCollection([r.output]) as c:
        assert np.isnan(c.get_batch(["chr1"], [0], [100], default_value=np.nan)).all()


def _section(bo, typ, start, items):
    """One section (header + items) in byte order `bo`; items as (start, end, value) triples."""
    n = len(items)
    step = span = 5
    head = struct.pack(bo + "IIIIIBBH", 0, start, start + 5 * n, step, span, typ, 0, n)
    if typ == 1:
        body = b"".join(struct.pack(bo + "IIf", s, e, v) for s, e, v in items)
    elif typ == 2:
        body = b"".join(struct.pack(bo + "If", s, v) for s, _, v in items)
    else:
        body = b"".join(struct.pack(bo + "f", v) for _, _, v in items)
    return head + body


def test_byte_swap_of_blocks_with_several_sections():
    """A big-endian block of several sections (bedGraph, fixedStep with 300 items: the 16-bit
    itemCount's bytes matter, variableStep) becomes exactly its little-endian twin."""
    from types import SimpleNamespace
    items = [(i * 5, i * 5 + 3, float(i) - 0.5) for i in range(300)]
    blocks = {bo: [_section(bo, 1, 0, items[:7]) + _section(bo, 3, 100, items) + _section(bo, 2, 9000, items[:2]),
                   _section(bo, 3, 0, items[:1])] for bo in "<>"}
    plan = SimpleNamespace(path="x.bw", byteorder=">")
    out = tc._to_little_endian(plan, blocks[">"], np.array([64, 999]), zoom=False)
    assert out == b"".join(blocks["<"])
    le = SimpleNamespace(path="x.bw", byteorder="<")
    assert tc._to_little_endian(le, blocks["<"], np.array([64, 999]), zoom=False) == b"".join(blocks["<"])
    with pytest.raises(BigWigFormatError, match=r"x\.bw: data block at offset 999: its sections do not add up"):
        tc._to_little_endian(plan, [blocks[">"][0], blocks[">"][1] + b"\0" * 8], np.array([64, 999]), zoom=False)

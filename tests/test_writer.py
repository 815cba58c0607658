"""Our bigWig writer (bwloader_core/format/writer.py) checked against pyBigWig, pybigtools and an
independent struct-based parser (data_files.parse_layout / decode_sections)."""
from __future__ import annotations

import math
import os
import struct
import time

import numpy as np
import pyBigWig
import pybigtools
import pytest

import data_files as df
from data_files import BigWigWriter, write_bigwig


def pbw_intervals(path, chrom):
    b = pyBigWig.open(str(path))
    try:
        iv = b.intervals(chrom)
    finally:
        b.close()
    if not iv:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    a = np.asarray(iv, dtype=np.float64)
    return a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2].astype(np.float32)


def assert_intervals(path, chrom, starts, ends, values):
    s, e, v = pbw_intervals(path, chrom)
    np.testing.assert_array_equal(s, np.asarray(starts, np.int64))
    np.testing.assert_array_equal(e, np.asarray(ends, np.int64))
    np.testing.assert_array_equal(v, np.asarray(values, np.float32))


def dense(size, starts, ends, values):
    out = np.full(size, np.nan)
    for s, e, v in zip(starts, ends, np.asarray(values, np.float32)):
        out[s:e] = v
    return out


def expected_levels(n, bs):
    levels = 1
    while n > bs:
        n = math.ceil(n / bs)
        levels += 1
    return levels


# ---------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("kind", ["bedgraph", "varstep", "fixedstep"])
def test_roundtrip_section_types(tmp_path, compress, kind):
    rng = np.random.default_rng(1)
    sizes = {"chrB": 300_000, "chrA": 200_000}
    p = tmp_path / f"{kind}.bw"
    expect = {}
    with BigWigWriter(p, sizes, compress=compress, items_per_slot=100) as w:
        for chrom, size in sizes.items():
            if kind == "bedgraph":
                s, e, v = df.random_bedgraph(rng, size, 5_000, to_end=True)
                w.add_bedgraph(chrom, s, e, v)
            elif kind == "varstep":
                s, v = df.random_varstep(rng, size, 5_000, 17, to_end=True)
                e = s + 17
                w.add_variable_step(chrom, s, v, span=17)
            else:
                n = 4_000
                v = df.random_values(rng, n)
                start = size - (n - 1) * 9 - 4
                s = start + 9 * np.arange(n)
                e = s + 4
                w.add_fixed_step(chrom, start, v, span=4, step=9)
            expect[chrom] = (s, e, v)
    b = pyBigWig.open(str(p))
    assert b.chroms() == sizes
    hdr = b.header()
    b.close()
    for chrom, (s, e, v) in expect.items():
        assert_intervals(p, chrom, s, e, v)
        # values() against a dense expectation, including the chromosome end
        got = df.oracle_values(str(p), chrom, sizes[chrom] - 50_000, sizes[chrom])
        np.testing.assert_array_equal(got, dense(sizes[chrom], s, e, v)[-50_000:])

    # total summary
    all_v = np.concatenate([x[2] for x in expect.values()]).astype(np.float64)
    all_len = np.concatenate([x[1] - x[0] for x in expect.values()])
    assert hdr["nBasesCovered"] == all_len.sum()
    assert hdr["minVal"] == pytest.approx(all_v.min(), abs=1)  # pyBigWig reports these as integers
    assert hdr["maxVal"] == pytest.approx(all_v.max(), abs=1)

    lay = df.parse_layout(p)
    assert lay.header["magic"] == 0x888FFC26
    secs = df.decode_sections(p)
    assert {s["type"] for s in secs} == {{"bedgraph": 1, "varstep": 2, "fixedstep": 3}[kind]}
    assert max(s["count"] for s in secs) == 100
    if compress:
        assert lay.header["uncompress_buf_size"] == max(s["raw_size"] for s in secs)
    else:
        assert lay.header["uncompress_buf_size"] == 0
    # every block holds one section of one chromosome, and the R-tree leaf bounds match it
    for leaf, sec in zip(lay.data_leaves, secs):
        assert leaf["start_chrom"] == leaf["end_chrom"] == sec["chrom_id"]
        assert leaf["start_base"] == sec["start"] == sec["starts"][0]
        assert leaf["end_base"] == sec["end"] == sec["ends"][-1]
    # summary fields exactly (float64 sums of float32 values)
    raw = p.read_bytes()
    cnt, mn, mx, sm, ss = struct.unpack_from("<Qdddd", raw, lay.header["total_summary_offset"])
    assert cnt == all_len.sum() and mn == all_v.min() and mx == all_v.max()
    assert sm == pytest.approx(float(np.dot(all_v, all_len)), rel=1e-12)
    assert ss == pytest.approx(float(np.dot(all_v * all_v, all_len)), rel=1e-12)


def test_mixed_sections_and_multiple_calls(tmp_path):
    p = tmp_path / "mixed.bw"
    sizes = {"chr2": 10_000, "chr10": 5_000, "chr1": 8_000}  # ids: chr2=0, chr10=1, chr1=2
    with BigWigWriter(p, sizes, items_per_slot=3) as w:
        w.add_bedgraph("chr2", [0, 5, 9], [5, 9, 10], [1, 2, 3])
        w.add_fixed_step("chr2", 100, [4, 5, 6, 7, 8], span=2, step=3)
        w.add_variable_step("chr2", [200, 300], [9, 10], span=50)
        w.add_bedgraph("chr2", [9_990], [10_000], [-1.5])
        w.add_variable_step("chr1", np.arange(7_000, 8_000, 100), np.arange(10), span=100)
    assert_intervals(p, "chr2", [0, 5, 9, 100, 103, 106, 109, 112, 200, 300, 9_990],
                     [5, 9, 10, 102, 105, 108, 111, 114, 250, 350, 10_000], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -1.5])
    assert_intervals(p, "chr10", [], [], [])
    assert_intervals(p, "chr1", np.arange(7_000, 8_000, 100), np.arange(7_100, 8_100, 100), np.arange(10))
    lay = df.parse_layout(p)
    assert lay.chrom_ids == {"chr2": 0, "chr10": 1, "chr1": 2}
    assert list(lay.chrom_sizes) == ["chr2", "chr10", "chr1"]
    secs = df.decode_sections(p)
    assert [s["type"] for s in secs] == [1, 3, 3, 2, 1, 2, 2, 2, 2]
    fixed = secs[1]
    assert (fixed["start"], fixed["end"], fixed["step"], fixed["span"], fixed["count"]) == (100, 108, 3, 2, 3)
    # pybigtools reads it too
    r = pybigtools.open(str(p))
    assert [tuple(x) for x in r.records("chr1")][:2] == [(7_000, 7_100, 0.0), (7_100, 7_200, 1.0)]


def test_many_chromosomes_deep_bplus_tree(tmp_path):
    rng = np.random.default_rng(2)
    n = 650
    sizes = {f"c{i}": int(rng.integers(100, 3_000)) for i in range(n)}  # id order != name order
    p = tmp_path / "many.bw"
    expect = {}
    with BigWigWriter(p, sizes, block_size=4, items_per_slot=5) as w:
        for c, size in sizes.items():
            if rng.random() < 0.8:
                expect[c] = df.random_bedgraph(rng, size, 20, to_end=bool(rng.random() < 0.5))
                w.add_bedgraph(c, *expect[c])
    lay = df.parse_layout(p)
    assert lay.chrom_tree_block_size == 4
    assert not lay.chrom_tree_root_is_leaf
    assert lay.chrom_tree_levels == expected_levels(n, 4) == 5
    assert lay.chrom_sizes == sizes and list(lay.chrom_sizes) == list(sizes)
    b = pyBigWig.open(str(p))
    assert b.chroms() == sizes
    assert list(b.chroms()) == list(sizes)
    b.close()
    for c in sizes:
        if c in expect:
            assert_intervals(p, c, *expect[c])
        else:
            assert_intervals(p, c, [], [], [])
    r = pybigtools.open(str(p))
    assert r.chroms() == sizes


@pytest.mark.parametrize("n_chroms,block_size,levels", [(256, 256, 1), (257, 256, 2), (700, 256, 2),
                                                        (3, 2, 2), (1, 256, 1)])
def test_bplus_tree_shape(tmp_path, n_chroms, block_size, levels):
    sizes = {f"chr{i}": 1_000 + i for i in range(n_chroms)}
    p = tmp_path / "t.bw"
    with BigWigWriter(p, sizes, block_size=block_size) as w:
        w.add_bedgraph(f"chr{n_chroms - 1}", [0], [10], [1.0])
    lay = df.parse_layout(p)
    assert lay.chrom_tree_levels == levels
    assert lay.chrom_tree_root_is_leaf == (levels == 1)
    assert lay.chrom_tree_block_size == min(block_size, n_chroms)
    assert lay.chrom_sizes == sizes
    assert_intervals(p, f"chr{n_chroms - 1}", [0], [10], [1.0])


def test_deep_rtree(tmp_path):
    rng = np.random.default_rng(3)
    sizes = {"chr1": 500_000, "chr2": 100_000}
    p = tmp_path / "deep.bw"
    s1, e1, v1 = df.random_bedgraph(rng, sizes["chr1"], 10_000)
    s2, v2 = df.random_varstep(rng, sizes["chr2"], 3_000, 2)
    with BigWigWriter(p, sizes, items_per_slot=3, block_size=3) as w:
        w.add_bedgraph("chr1", s1, e1, v1)
        w.add_variable_step("chr2", s2, v2, 2)
    lay = df.parse_layout(p)
    n_blocks = math.ceil(len(s1) / 3) + math.ceil(len(s2) / 3)
    assert lay.data_count == n_blocks == len(lay.data_leaves)
    assert not lay.rtree_root_is_leaf
    assert lay.rtree_levels == expected_levels(n_blocks, 3) >= 7
    # leaves come out in (chrom, start) order and point at consecutive blocks
    keys = lay.data_leaves["start_chrom"].astype(np.int64) * 2**32 + lay.data_leaves["start_base"]
    assert np.all(np.diff(keys) > 0)
    assert_intervals(p, "chr1", s1, e1, v1)
    assert_intervals(p, "chr2", s2, s2 + 2, v2)
    got = df.oracle_values(str(p), "chr1", 1_000, 60_000)
    np.testing.assert_array_equal(got, dense(sizes["chr1"], s1, e1, v1)[1_000:60_000])


@pytest.mark.parametrize("compress", [True, False])
def test_big_endian(tmp_path, compress):
    rng = np.random.default_rng(4)
    sizes = {"chrZ": 50_000, "chrA": 30_000, "chrM": 700}
    pb, pl = tmp_path / "be.bw", tmp_path / "le.bw"
    state = rng.bit_generator.state
    for path, bo in ((pb, ">"), (pl, "<")):
        rng.bit_generator.state = state
        with BigWigWriter(path, sizes, byteorder=bo, compress=compress, items_per_slot=50, block_size=4,
                          zoom_levels=2) as w:
            w.add_bedgraph("chrZ", *df.random_bedgraph(rng, sizes["chrZ"], 2_000))
            s, v = df.random_varstep(rng, sizes["chrA"], 1_000, 5)
            w.add_variable_step("chrA", s, v, 5)
            w.add_fixed_step("chrM", 0, df.random_values(rng, 350), 2, 2)
    raw_b, raw_l = pb.read_bytes(), pl.read_bytes()
    assert raw_b[:4] == bytes.fromhex("888ffc26") and raw_l[:4] == bytes.fromhex("26fc8f88")
    assert raw_b[-4:] == bytes.fromhex("888ffc26")
    lb, ll = df.parse_layout(pb), df.parse_layout(pl)
    assert lb.byteorder == ">" and ll.byteorder == "<"
    if not compress:  # same layout, every field swapped
        assert len(raw_b) == len(raw_l)
        assert lb.header == ll.header
        assert lb.zoom_headers == ll.zoom_headers
        np.testing.assert_array_equal(lb.data_leaves, ll.data_leaves)
    assert lb.chrom_sizes == ll.chrom_sizes == sizes
    for sb, sl in zip(df.decode_sections(pb), df.decode_sections(pl)):
        for k in sb:
            np.testing.assert_array_equal(sb[k], sl[k])
    # bigtools reads big-endian files; compare with pyBigWig on the little-endian twin
    r = pybigtools.open(str(pb))
    assert r.chroms() == dict(sorted(sizes.items()))
    for c in sizes:
        got = np.asarray(list(r.records(c)), dtype=np.float64).reshape(-1, 3)
        s, e, v = pbw_intervals(pl, c)
        np.testing.assert_array_equal(got[:, 0], s)
        np.testing.assert_array_equal(got[:, 1], e)
        np.testing.assert_array_equal(got[:, 2].astype(np.float32), v)


def test_zoom_levels(tmp_path):
    rng = np.random.default_rng(5)
    sizes = {"chr1": 400_000, "chr2": 150_000}
    p = tmp_path / "zoom.bw"
    data = {c: df.random_bedgraph(rng, sizes[c], 12_000) for c in sizes}
    with BigWigWriter(p, sizes, zoom_levels=4, items_per_slot=64) as w:
        for c in sizes:
            w.add_bedgraph(c, *data[c])
    lay = df.parse_layout(p)
    assert len(lay.zoom_headers) == 4
    n_rec = sum(len(d[0]) for d in data.values())
    bases = sum(int((d[1] - d[0]).sum()) for d in data.values())
    red0 = lay.zoom_headers[0]["reduction"]
    assert red0 == round(10 * bases / n_rec)
    assert [z["reduction"] for z in lay.zoom_headers] == [red0 * 4**i for i in range(4)]
    total = sum(float(np.dot(d[2].astype(np.float64), d[1] - d[0])) for d in data.values())
    for z, leaves in zip(lay.zoom_headers, lay.zoom_leaves):
        recs = []
        for leaf in leaves:
            blk = df.read_block(p, int(leaf["offset"]), int(leaf["size"]), True)
            recs.append(np.frombuffer(blk, dtype=[("c", "<u4"), ("s", "<u4"), ("e", "<u4"), ("n", "<u4"),
                                                  ("mn", "<f4"), ("mx", "<f4"), ("sum", "<f4"), ("ss", "<f4")]))
        recs = np.concatenate(recs)
        assert int(recs["n"].sum()) == bases
        assert float(recs["sum"].astype(np.float64).sum()) == pytest.approx(total, rel=1e-5)
        assert np.all(recs["s"] % z["reduction"] == 0)
        assert np.all(recs["e"] - recs["s"] <= z["reduction"])
        assert np.all(recs["n"] <= recs["e"] - recs["s"])
        if z is lay.zoom_headers[0]:  # brute force the first level's records
            for c, (st, en, va) in data.items():
                cid = lay.chrom_ids[c]
                dv = dense(sizes[c], st, en, va)
                sel = recs[recs["c"] == cid]
                bins = np.unique(np.concatenate([np.arange(a // z["reduction"], (b - 1) // z["reduction"] + 1)
                                                 for a, b in zip(st, en)]))
                np.testing.assert_array_equal(sel["s"], bins * z["reduction"])
                for r in sel[:: max(1, len(sel) // 200)]:
                    window = dv[r["s"]:r["e"]]
                    assert r["n"] == np.count_nonzero(~np.isnan(window))
                    assert r["mn"] == np.nanmin(window) and r["mx"] == np.nanmax(window)
                    assert r["sum"] == pytest.approx(np.nansum(window), rel=1e-5, abs=1e-3)
    # pyBigWig answers summaries from the zoom levels; with bins aligned to a zoom level's records
    # the answer equals the exact one (to float32 precision)
    b = pyBigWig.open(str(p))
    assert b.header()["nLevels"] == 4
    for z in lay.zoom_headers:
        for c in sizes:
            n = sizes[c] // (4 * z["reduction"])
            if n == 0:
                continue
            approx = b.stats(c, 0, n * 4 * z["reduction"], type="mean", nBins=n)
            exact = b.stats(c, 0, n * 4 * z["reduction"], type="mean", nBins=n, exact=True)
            np.testing.assert_allclose(np.asarray(approx, float), np.asarray(exact, float), rtol=1e-5, atol=1e-5)
    for c in sizes:
        assert b.stats(c, type="max")[0] == pytest.approx(float(data[c][2].max()))
    b.close()


def test_version1_uncompressed_without_summary(tmp_path):
    p = tmp_path / "v1.bw"
    with BigWigWriter(p, {"a": 1_000}, version=1, compress=False) as w:
        w.add_bedgraph("a", [10, 20], [20, 25], [1.5, -2.0])
    lay = df.parse_layout(p)
    assert lay.header["version"] == 1
    assert lay.header["total_summary_offset"] == 0
    assert lay.header["uncompress_buf_size"] == 0
    assert_intervals(p, "a", [10, 20], [20, 25], [1.5, -2.0])


def test_empty_file(tmp_path):
    p = tmp_path / "empty.bw"
    BigWigWriter(p, {"a": 100, "b": 50}).close()
    lay = df.parse_layout(p)
    assert lay.data_count == 0 and len(lay.data_leaves) == 0
    b = pyBigWig.open(str(p))
    assert b.chroms() == {"a": 100, "b": 50}
    assert np.isnan(b.values("a", 0, 10)).all()
    b.close()


def test_write_bigwig_convenience(tmp_path):
    p = tmp_path / "conv.bw"
    sizes = {"x": 100, "y": 200}
    out = write_bigwig(p, sizes, {"y": ([5], [10], [2.0]), "x": ([0, 50], [1, 100], [1.0, 3.0])},
                       compress=False)
    assert out == p
    assert_intervals(p, "x", [0, 50], [1, 100], [1.0, 3.0])
    assert_intervals(p, "y", [5], [10], [2.0])
    with pytest.raises(ValueError, match="not in chrom_sizes"):
        write_bigwig(tmp_path / "bad.bw", sizes, {"z": ([0], [1], [1.0])})


def test_validation_errors(tmp_path):
    sizes = {"a": 1_000, "b": 500}
    p = tmp_path / "v.bw"
    w = BigWigWriter(p, sizes)
    with pytest.raises(ValueError, match="not in chrom_sizes"):
        w.add_bedgraph("zz", [0], [1], [1.0])
    with pytest.raises(ValueError, match="overlap"):
        w.add_bedgraph("a", [0, 5], [10, 20], [1, 2])
    with pytest.raises(ValueError, match="overlap|unsorted"):
        w.add_bedgraph("a", [50, 10], [60, 20], [1, 2])
    with pytest.raises(ValueError, match="empty or reversed"):
        w.add_bedgraph("a", [5], [5], [1])
    with pytest.raises(ValueError, match="past the chromosome size"):
        w.add_bedgraph("a", [990], [1_001], [1])
    with pytest.raises(ValueError, match="negative"):
        w.add_bedgraph("a", [-1], [3], [1])
    with pytest.raises(ValueError, match="differ in length"):
        w.add_bedgraph("a", [1, 2], [3], [1])
    with pytest.raises(ValueError, match="items"):
        w.add_bedgraph("a", [1, 5], [3, 6], [1])
    with pytest.raises(ValueError, match="integers"):
        w.add_bedgraph("a", [1.5], [3], [1])
    with pytest.raises(ValueError, match="span"):
        w.add_fixed_step("a", 0, [1, 2], span=5, step=3)
    with pytest.raises(ValueError, match="span"):
        w.add_variable_step("a", [0, 3], [1, 2], span=5)
    with pytest.raises(ValueError, match="span"):
        w.add_variable_step("a", [0], [1], span=0)
    with pytest.raises(ValueError, match="past the chromosome size"):
        w.add_fixed_step("a", 990, [1, 2], span=5, step=8)
    # nothing was written by the failed calls: the file is still valid and empty
    w.add_bedgraph("b", [10], [20], [1.0])
    with pytest.raises(ValueError, match="chrom_sizes order"):
        w.add_bedgraph("a", [0], [1], [1.0])
    with pytest.raises(ValueError, match="overlaps or precedes"):
        w.add_bedgraph("b", [15], [16], [1.0])
    w.add_fixed_step("b", 20, [3.0], span=1, step=1)  # adjacent is fine
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.add_bedgraph("b", [100], [101], [1.0])
    assert_intervals(p, "b", [10, 20], [20, 21], [1.0, 3.0])
    assert_intervals(p, "a", [], [], [])

    with pytest.raises(ValueError, match="version"):
        BigWigWriter(tmp_path / "x.bw", sizes, version=2, compress=True)
    with pytest.raises(ValueError, match="byteorder"):
        BigWigWriter(tmp_path / "x.bw", sizes, byteorder="=")
    with pytest.raises(ValueError, match="block_size"):
        BigWigWriter(tmp_path / "x.bw", sizes, block_size=1)
    with pytest.raises(ValueError, match="items_per_slot"):
        BigWigWriter(tmp_path / "x.bw", sizes, items_per_slot=0)
    with pytest.raises(ValueError, match="at least one"):
        BigWigWriter(tmp_path / "x.bw", {})
    with pytest.raises(ValueError, match="size"):
        BigWigWriter(tmp_path / "x.bw", {"a": 2**32})


def test_exception_in_with_block_removes_partial_file(tmp_path):
    p = tmp_path / "partial.bw"
    with pytest.raises(RuntimeError):
        with BigWigWriter(p, {"a": 100}) as w:
            w.add_bedgraph("a", [0], [10], [1.0])
            raise RuntimeError("boom")
    assert not p.exists()


# ---------------------------------------------------------------------------------- the fixtures
def test_fixture_files_are_what_they_claim(bw_files):
    lay = {name: df.parse_layout(f.path) for name, f in bw_files.items()}
    # pybigtools (0.3.0) and pyBigWig write the whole chromosome B+ tree as a single leaf, whatever
    # the number of chromosomes; the multi-level trees come from our writer.
    assert lay["many_chroms"].chrom_tree_root_is_leaf and lay["many_chroms"].chrom_tree_root_count == 600
    assert lay["many_chroms"].header["chrom_tree_offset"] > lay["many_chroms"].header["full_data_offset"]
    assert not lay["many_chroms_ours"].chrom_tree_root_is_leaf
    assert lay["many_chroms_ours"].chrom_tree_levels == expected_levels(650, 4)
    assert not lay["many_chroms_256"].chrom_tree_root_is_leaf
    assert lay["deep_rtree"].rtree_levels >= 5 and not lay["deep_rtree"].rtree_root_is_leaf
    assert lay["bigendian"].byteorder == ">" and lay["bigendian"].rtree_levels >= 2
    assert lay["uncompressed"].header["uncompress_buf_size"] == 0
    assert lay["version1"].header["total_summary_offset"] == 0
    for name in ("pybigwig_bedgraph", "pybigwig_varstep", "pybigwig_fixedstep", "pybigwig_mixed"):
        assert lay[name].data_count >= 6, name
    types = {name: {s["type"] for s in df.decode_sections(bw_files[name].path)}
             for name in ("pybigwig_bedgraph", "pybigwig_varstep", "pybigwig_fixedstep", "pybigwig_mixed",
                          "uncompressed", "bigendian")}
    assert types["pybigwig_bedgraph"] == {1}
    assert types["pybigwig_varstep"] == {2}
    assert types["pybigwig_fixedstep"] == {3}
    assert types["pybigwig_mixed"] == types["uncompressed"] == types["bigendian"] == {1, 2, 3}
    # our files read back by pyBigWig exactly as decoded by the independent parser
    for name, f in bw_files.items():
        assert df.oracle_chrom_sizes(f) == f.chrom_sizes, name
        if f.writer != "ours":
            continue
        secs = df.decode_sections(f.path)
        ids = {v: k for k, v in lay[name].chrom_ids.items()}
        by_chrom = {}
        for s in secs:
            by_chrom.setdefault(ids[s["chrom_id"]], []).append(s)
        for chrom in f.chrom_sizes:
            ss = by_chrom.get(chrom, [])
            s_, e_, v_ = df.oracle_intervals(f, chrom) + (None,)
            if not ss:
                assert s_.size == 0
                continue
            np.testing.assert_array_equal(np.concatenate([s["starts"] for s in ss]), s_)
            np.testing.assert_array_equal(np.concatenate([s["ends"] for s in ss]), e_)


def test_oracle_values_edges(bw_files):
    f = bw_files["pybigwig_bedgraph"]
    size = f.chrom_sizes["chr2"]
    v = df.oracle_values(f, "chr2", size - 10, size + 5)
    assert v.shape == (15,) and np.isnan(v[10:]).all() and not np.isnan(v[:10]).all()
    v = df.oracle_values(f, "chr1", -5, 3)
    assert v.shape == (8,) and np.isnan(v[:5]).all()
    assert np.isnan(df.oracle_values(f, "chr3", 0, 100)).all()  # chromosome absent from the file
    assert np.isnan(df.oracle_values(f, "chrM", 0, 100)).all()  # declared, no data
    assert np.isnan(df.oracle_values(f, "chr1", -100, -50)).all()


@pytest.mark.slow
def test_writer_speed_8m_records(tmp_path):
    rng = np.random.default_rng(6)
    sizes = {f"chr{i}": 10_000_000 for i in range(20)}
    data = {}
    for c in sizes:
        n = 400_000
        lengths = rng.integers(1, 20, n)
        gaps = rng.integers(0, 5, n)
        s = np.cumsum(lengths + gaps) - lengths
        data[c] = (s, s + lengths, rng.random(n, dtype=np.float32))
    p = tmp_path / "big.bw"
    t = time.perf_counter()
    write_bigwig(p, sizes, data)
    dt = time.perf_counter() - t
    assert dt < 60, f"writing 8M records took {dt:.1f} s"
    b = pyBigWig.open(str(p))
    assert b.header()["nBasesCovered"] == sum(int((d[1] - d[0]).sum()) for d in data.values())
    s, e, v = data["chr13"]
    iv = b.intervals("chr13", int(s[200_000]), int(e[200_010]))
    b.close()
    np.testing.assert_array_equal(np.asarray(iv)[:, 0], s[200_000:200_011])
    np.testing.assert_array_equal(np.asarray(iv)[:, 2].astype(np.float32), v[200_000:200_011])
    os.unlink(p)

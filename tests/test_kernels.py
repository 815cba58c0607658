"""The compiled (numba) kernels equal the NumPy reference; the NumPy fast paths equal the dense ones."""
from contextlib import contextmanager

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.stages.fetch import BlockTable
from bwloader_core.stages.fill import (fill_runs, fill_runs_reference, runs_disjoint, window_reduce,
                                       window_reduce_runs)

pytest.importorskip("numba")
pyBigWig = pytest.importorskip("pyBigWig")

CASES = [(1, "mean"), (7, "mean"), (128, "sum"), (50, "max"), (3, "min")]


@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_numba_equals_numpy_on_every_fixture(bw_files, name):
    f = bw_files[name]
    with BigWigCollection([f.path], scaling=[1.5]) as coll:
        rng = np.random.default_rng(11)
        chroms, starts, ends = df.random_queries(f, rng, 700, 40)
        procs = {k: BatchProcessor(coll, n_threads=1, kernel=k) for k in ("numba", "numpy")}
        try:
            for window, reduce in CASES:
                for default in (np.nan, 0.0, -2.0):
                    got = {k: p.process(chroms, starts, ends, window_size=window, reduce=reduce,
                                        default_value=default) for k, p in procs.items()}
                    np.testing.assert_array_equal(got["numba"], got["numpy"],
                                                  err_msg=f"{name} window={window} {reduce} default={default}")
        finally:
            for p in procs.values():
                p.close()


@contextmanager
def every_block(path):
    """A one-thread processor over one file and all its blocks fetched whole: (file, table, words, processor)."""
    with BigWigCollection([path]) as coll:
        p = BatchProcessor(coll, n_threads=1)
        try:
            table = BlockTable.from_index(coll.index, np.arange(coll.files[0].n_blocks))
            yield coll.files[0], table, p.fetch(table), p
        finally:
            p.close()


@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_item_ranges_numba_equals_numpy(bw_files, name):
    """Every section of the file against random ranges, some empty, some past its ends."""
    from bwloader_core.stages.search import item_ranges, item_ranges_numba
    with every_block(bw_files[name].path) as (_, table, words, p):
        secs, _ = p.parse(table, words)
        rng = np.random.default_rng(3)
        sec = np.repeat(np.arange(len(secs.start)), 20)
        a = secs.start[sec] + rng.integers(-300, 2000, len(sec)) - rng.integers(0, 2, len(sec)) * 5000
        b = a + rng.integers(0, 3000, len(sec))
        want = item_ranges(words, secs, sec, a, b)
        got = item_ranges_numba(words.words, secs.type[sec], secs.count[sec], secs.item_word[sec],
                                secs.start[sec], secs.step[sec], secs.span[sec], a, b)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[1].sum() > 0


@pytest.fixture(scope="module")
def overlapping_file(tmp_path_factory):
    """fixedStep with span > step: records overlap; pyBigWig paints later records over earlier ones."""
    p = str(tmp_path_factory.mktemp("overlap") / "overlap.bw")
    bw = pyBigWig.open(p, "w")
    bw.addHeader([("chr1", 5000)], maxZooms=0)
    vals = np.random.default_rng(2).random(400).round(3)
    bw.addEntries("chr1", 100, values=vals.tolist(), span=10, step=4)
    bw.close()
    return p


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_overlapping_records_match_pybigwig(overlapping_file, kernel):
    bw = pyBigWig.open(overlapping_file)
    with BigWigCollection([overlapping_file]) as coll:
        p = BatchProcessor(coll, n_threads=1, kernel=kernel)
        starts = np.arange(0, 1800, 97)
        got = p.process(["chr1"] * len(starts), starts, starts + 200, default_value=np.nan)
        for i, s in enumerate(starts):
            exp = np.array(bw.values("chr1", int(s), int(s) + 200), np.float32)
            np.testing.assert_array_equal(got[i, :, 0], exp)
        win = p.process(["chr1"] * len(starts), starts, starts + 200, window_size=20, default_value=np.nan)
        for i, s in enumerate(starts):
            exp = np.nanmean(np.array(bw.values("chr1", int(s), int(s) + 200)).reshape(10, 20), axis=1)
            np.testing.assert_allclose(win[i, :, 0], exp.astype(np.float32), rtol=1e-6)
        p.close()


def _random_runs(rng, P, L, overlap=False):
    runs = []
    for p in range(P):
        pos = 0
        while pos < L:
            a = pos + int(rng.integers(0, 15)) - (int(rng.integers(0, 5)) if overlap and pos else 0)
            b = a + int(rng.integers(1, 40))
            if a >= L:
                break
            v = np.float32(rng.random() * 10) if rng.random() > 0.05 else np.float32(np.nan)
            runs.append((p, max(a, 0), min(b, L), v))
            pos = min(b, L)
    r = np.array(runs, dtype=np.float64).reshape(-1, 4)
    return r[:, 0].astype(np.int64), r[:, 1].astype(np.int64), r[:, 2].astype(np.int64), r[:, 3].astype(np.float32)


def test_numpy_fast_fill_equals_reference():
    rng = np.random.default_rng(0)
    for _ in range(100):
        P, L = int(rng.integers(1, 5)), int(rng.integers(1, 300))
        pair, ls, le, v = _random_runs(rng, P, L)
        assert runs_disjoint(pair, ls, le)
        for default in (np.nan, 0.5):
            a = fill_runs(pair, ls, le, v, P, L, default, np.float32)
            b = fill_runs_reference(pair, ls, le, v, P, L, default, np.float32)
            np.testing.assert_array_equal(a, b)


def test_overlap_detection_and_reference_paints_later_over_earlier():
    pair = np.array([0, 0]); ls = np.array([0, 5]); le = np.array([10, 8])
    v = np.array([1.0, 2.0], np.float32)
    assert not runs_disjoint(pair, ls, le)
    out = fill_runs_reference(pair, ls, le, v, 1, 12, -1.0, np.float32)
    np.testing.assert_array_equal(out[0], [1, 1, 1, 1, 1, 2, 2, 2, 1, 1, -1, -1])


def test_window_reduce_from_runs_equals_dense():
    rng = np.random.default_rng(1)
    for _ in range(150):
        P, L, w = int(rng.integers(1, 5)), int(rng.integers(1, 400)), int(rng.integers(1, 60))
        if L < w:
            continue
        pair, ls, le, v = _random_runs(rng, P, L)
        for default in (np.nan, 0.0, -1.5):
            dense = fill_runs(pair, ls, le, v.astype(np.float64), P, L, default, np.float64)
            for red in ("mean", "sum", "max", "min"):
                ref = window_reduce(dense, w, red, bool(np.isnan(default))).astype(np.float32)
                got = window_reduce_runs(pair, ls, le, v, P, L, w, red, default).astype(np.float32)
                if red in ("max", "min"):
                    np.testing.assert_array_equal(got, ref)
                else:
                    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_section_walk_numba_equals_numpy(bw_files, name):
    from bwloader_core.stages.parse import parse_section_headers, parse_sections
    with every_block(bw_files[name].path) as (bw, table, words, _):
        ids = table.file
        swap = np.full(len(ids), bw.byteorder == ">")
        want = parse_section_headers(words, swap, lambda b: (bw.path, 0))
        got = parse_sections(words, swap)
        for field in ("block", "chrom_id", "start", "end", "step", "span", "type", "count", "item_word"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
        assert len(got.block) >= len(ids)
        # a block that ends inside a section: the compiled walk declines, the NumPy walk names it
        words.block_nbytes[0] = 30
        assert parse_sections(words, swap) is None


@pytest.mark.parametrize("typ", [1, 2])
def test_item_ranges_on_clustered_items(typ):
    """Very uneven item spacing (where the interpolated first guess is far off) gives the same
    ranges as the NumPy bisection."""
    from bwloader_core.stages.fetch import Words
    from bwloader_core.stages.parse import Sections
    from bwloader_core.stages.search import item_ranges, item_ranges_numba
    rng = np.random.default_rng(12)
    words, secs = [], []
    for n in (1, 2, 7, 500, 3000):
        gaps = np.where(rng.random(n) < 0.05, rng.integers(1000, 100000, n), rng.integers(1, 30, n))
        starts = 100 + np.cumsum(gaps)
        lens = rng.integers(1, 25, n)
        base = len(words) + 6
        secs.append((base, n, int(starts[0]), int(starts[-1] + lens[-1])))
        words.extend([0] * 6)
        for s, ln in zip(starts.tolist(), lens.tolist()):
            words.extend([s, s + ln, 0] if typ == 1 else [s, 0])
    w = Words(np.array(words, np.uint32), np.zeros(1, np.int64), np.array([len(words) * 4]))
    col = lambda i: np.array([x[i] for x in secs], np.int64)  # noqa: E731
    m = len(secs)
    s = Sections(np.zeros(m, np.int64), np.zeros(m, np.int64), col(2), col(3), np.zeros(m, np.int64),
                 np.full(m, 10, np.int64), np.full(m, typ, np.int64), col(1), col(0))
    sec = np.repeat(np.arange(m), 400)
    lo, hi = s.start[sec] - 2000, s.end[sec] + 2000
    a = lo + (rng.random(len(sec)) * (hi - lo)).astype(np.int64)
    b = a + rng.integers(0, 5000, len(sec))
    want = item_ranges(w, s, sec, a, b)
    got = item_ranges_numba(w.words, s.type[sec], s.count[sec], s.item_word[sec], s.start[sec], s.step[sec],
                            s.span[sec], a, b)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert (want[1] > 0).mean() > 0.1


@pytest.mark.parametrize("name", ["pybigwig_mixed", "bigendian", "pybigwig_fixedstep"])
def test_threaded_search_and_fill_equal_one_thread(bw_files, name):
    """Search, paint and window sums split over threads by output rows give the one-thread result."""
    f = bw_files[name]
    with BigWigCollection([f.path] * 3, track_names=["a", "b", "c"], scaling=[1.0, 2.0, 0.5]) as coll:
        rng = np.random.default_rng(13)
        chroms, starts, ends = df.random_queries(f, rng, 1200, 200)
        one = BatchProcessor(coll, n_threads=1)
        many = BatchProcessor(coll, n_threads=3)
        try:
            for window, reduce in CASES:
                for default in (np.nan, 0.0):
                    a = one.process(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default)
                    b = many.process(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default)
                    np.testing.assert_array_equal(a, b, err_msg=f"{name} window={window} {reduce}")
        finally:
            one.close()
            many.close()


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_threaded_windows_fall_back_on_overlaps(overlapping_file):
    """Overlapping records make a thread's window sums bail out; the batch then takes the reference
    path and still equals pyBigWig."""
    with BigWigCollection([overlapping_file] * 2, track_names=["a", "b"]) as coll:
        p = BatchProcessor(coll, n_threads=2)
        starts = np.arange(0, 4000, 10)[:300]
        got = p.process(["chr1"] * len(starts), starts, starts + 1000, window_size=50, reduce="mean",
                        default_value=np.nan)
        bw = pyBigWig.open(overlapping_file)
        for i in (0, 57, 299):
            v = np.asarray(bw.values("chr1", int(starts[i]), int(starts[i]) + 1000), np.float64)
            want = np.nanmean(v.reshape(-1, 50), axis=1)
            np.testing.assert_allclose(got[i, :, 0], want, rtol=1e-6, equal_nan=True)
        bw.close()
        p.close()


def test_bfloat16_bits_equal_ml_dtypes():
    """The integer float32 -> bfloat16 rounding the GPU path uses (NumPy or CuPy alike) gives the
    bits ml_dtypes gives: round to nearest even, overflow to inf, NaN the canonical one of its sign."""
    import ml_dtypes
    from bwloader_core.stages.fill import to_bfloat16_bits
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF,
                        0x7F7FFFFF, 0x00000001, 0x807FFFFF, 0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F80FFFF], np.uint32)
    x = np.concatenate([bits, special]).view(np.float32)
    with np.errstate(invalid="ignore"):
        want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(to_bfloat16_bits(x), want)
    assert np.isnan(x).sum() > 100


def test_block_ranges_key_table_equals_plain_bisection(bw_files):
    """The compiled block search (bucketed key table, then a bisection within the bucket) finds
    the block rows two plain searchsorted calls find, for every fixture, on queries that straddle
    blocks, start before 0 or lie past the chromosome and the file's last key; and keys far
    outside any chromosome, including negative ones."""
    from bwloader_core.stages.plan import Queries, block_ranges
    files = [bw_files[n] for n in df.FIXTURE_NAMES]
    rng = np.random.default_rng(4)
    with BigWigCollection([f.path for f in files]) as coll:
        idx = coll.index
        assert len(idx.key_table.rows) <= idx.n_blocks + 2 * idx.n_files
        for length in (1, 900, 40_000):
            q = coll.prepare_queries(*df.random_queries(files, rng, length, 120))
            got = block_ranges(idx, q)
            want = block_ranges(idx, q, compiled=False)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        T, B = idx.n_files, 200
        key_lo = rng.integers(-10 ** 6, 10 ** 9, T * B)
        key_hi = key_lo + rng.integers(1, 10 ** 6, T * B)
        raw = Queries(tracks=np.arange(T), batch=B, length=1, key_lo=key_lo, key_hi=key_hi, origin=key_lo.copy())
        got, want = block_ranges(idx, raw), block_ranges(idx, raw, compiled=False)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])

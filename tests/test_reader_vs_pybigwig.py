"""BigWigCollection.get_batch against pyBigWig (the oracle) on every test file.

The expected values are built from pyBigWig's values() only (data_files.oracle_values), so these tests
are right by construction whatever the core does. Queries (fixed seeds) straddle record, block and
section boundaries, chromosome ends and gaps, and reach before 0 and past the chromosome ends.
"""
from __future__ import annotations

import shutil
import zlib

import ml_dtypes
import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection

BATCH = 40          # queries per get_batch call
N_LENGTHS = 36      # get_batch calls per file (one query length each): ~1400 queries per file


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng([df.SEED, zlib.crc32(repr(key).encode())])


def expected(oracle: np.ndarray, default: float, scale: float = 1.0) -> np.ndarray:
    """float64 (B, L) oracle -> float64 values the loader should produce at window 1 (before the cast):
    covered bases scaled, the rest `default`."""
    return np.where(np.isnan(oracle), default, oracle * scale)


def reduce_windows(x: np.ndarray, window: int, how: str, nan_default: bool) -> np.ndarray:
    """(B, L) float64 -> (B, L // window) float64. With nan_default only covered bases count and a
    window without any is NaN; otherwise x has no NaN."""
    b, length = x.shape
    n = length // window
    x = x[:, : n * window].reshape(b, n, window)
    cov = ~np.isnan(x)
    cnt = cov.sum(-1)
    if how == "sum":
        out = np.where(cov, x, 0.0).sum(-1)
    elif how == "mean":
        out = np.where(cov, x, 0.0).sum(-1) / np.maximum(cnt, 1)
    elif how == "max":
        out = np.where(cov, x, -np.inf).max(-1)
    elif how == "min":
        out = np.where(cov, x, np.inf).min(-1)
    else:
        raise ValueError(how)
    if nan_default:
        out = np.where(cnt == 0, np.nan, out)
    return out


def assert_close_f32(got: np.ndarray, exp64: np.ndarray, row_scale: np.ndarray, what: str):
    """got (float32) equals float32(exp64) up to a few ulps, or up to the float64 rounding that a
    different summation order (prefix sums) can produce on this row (row_scale: sum of |values|)."""
    exp = exp64.astype(np.float32)
    assert got.dtype == np.float32
    nan_g, nan_e = np.isnan(got), np.isnan(exp)
    assert np.array_equal(nan_g, nan_e), f"{what}: NaN positions differ at {np.argwhere(nan_g != nan_e)[:5]}"
    g, e = got[~nan_g].astype(np.float64), exp[~nan_e].astype(np.float64)
    tol = 4 * np.spacing(np.abs(e).astype(np.float32)).astype(np.float64) \
        + 1e-12 * np.broadcast_to(row_scale, got.shape)[~nan_g]
    bad = np.abs(g - e) > tol
    assert not bad.any(), f"{what}: {bad.sum()} values differ, e.g. got {g[bad][:5]} expected {e[bad][:5]}"


@pytest.fixture(scope="module")
def collections(bw_files):
    """One single-file collection per test file, opened lazily and closed at the end."""
    opened = {}

    def get(name):
        if name not in opened:
            opened[name] = BigWigCollection([bw_files[name].path])
        return opened[name]

    yield get
    for c in opened.values():
        c.close()


# ------------------------------------------------------------------------------ one file at a time
@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_random_queries_match_pybigwig(bw_files, collections, name):
    f = bw_files[name]
    coll = collections(name)
    assert coll.track_names == [name]
    assert coll.chrom_sizes == f.chrom_sizes
    rng = rng_for("single", name)
    for length in df.query_lengths(rng, N_LENGTHS):
        chroms, starts, ends = df.random_queries(f, rng, length, BATCH)
        oracle = df.oracle_batch(f, chroms, starts, ends)
        got = coll.get_batch(chroms, starts, ends, default_value=np.nan)
        assert got.shape == (BATCH, length, 1) and got.dtype == np.float32
        np.testing.assert_array_equal(got[:, :, 0], oracle.astype(np.float32),
                                      err_msg=f"{name} length {length} default nan")
        got0 = coll.get_batch(chroms, starts, ends, default_value=0.0)
        np.testing.assert_array_equal(got0[:, :, 0], expected(oracle, 0.0).astype(np.float32),
                                      err_msg=f"{name} length {length} default 0")


@pytest.mark.parametrize("name", ["pybigwig_mixed", "bigendian", "deep_rtree", "many_chroms_ours"])
def test_whole_chromosomes(bw_files, collections, name):
    """Every chromosome in full (plus a margin on both sides), one query each."""
    f = bw_files[name]
    coll = collections(name)
    chroms = list(f.chrom_sizes)[:40]
    for c in chroms:
        size = f.chrom_sizes[c]
        got = coll.get_batch([c], [-3], [size + 3], default_value=np.nan)
        np.testing.assert_array_equal(got[0, :, 0], df.oracle_values(f, c, -3, size + 3).astype(np.float32),
                                      err_msg=f"{name} {c}")


def test_special_queries(bw_files, collections):
    f = bw_files["pybigwig_bedgraph"]
    coll = collections("pybigwig_bedgraph")
    size = f.chrom_sizes["chr2"]
    cases = [("chr2", size - 1), ("chr2", size), ("chr2", size + 10), ("chr1", -1), ("chr1", -100),
             ("chrM", 0), ("chr1", 0), ("chrX", 12_345)]
    for length in (1, 100):
        chroms = [c for c, _ in cases]
        starts = np.array([s for _, s in cases])
        got = coll.get_batch(chroms, starts, starts + length, default_value=-7.0)
        oracle = df.oracle_batch(f, chroms, starts, starts + length)
        np.testing.assert_array_equal(got[:, :, 0], expected(oracle, -7.0).astype(np.float32))
    # plain Python lists and int32 arrays as coordinates, one chromosome name for the whole batch
    got = coll.get_batch("chr1", [10, 20], [60, 70], default_value=np.nan)
    np.testing.assert_array_equal(got[:, :, 0], df.oracle_batch(f, ["chr1"] * 2, [10, 20], [60, 70]).astype(np.float32))
    got = coll.get_batch(["chr1", "chr2"], np.array([10, 20], np.int32), np.array([60, 70], np.int32),
                         default_value=np.nan)
    np.testing.assert_array_equal(got[:, :, 0],
                                  df.oracle_batch(f, ["chr1", "chr2"], [10, 20], [60, 70]).astype(np.float32))


# ------------------------------------------------------------------------------ many files as tracks
MULTI = ["pybigwig_bedgraph", "pybigwig_varstep", "bigendian", "many_chroms_ours", "pybigwig_wheel_test_bw",
         "uncompressed", "pybigwig_fixedstep"]


def test_multi_file_tracks(bw_files):
    files = [bw_files[n] for n in MULTI]
    with BigWigCollection([f.path for f in files]) as coll:
        assert coll.track_names == MULTI
        union = {}
        for f in files:
            union.update(f.chrom_sizes)
        assert coll.chrom_sizes == union
        rng = rng_for("multi")
        for length in df.query_lengths(rng, 16):
            chroms, starts, ends = df.random_queries(files, rng, length, BATCH)
            got = coll.get_batch(chroms, starts, ends, default_value=np.nan)
            assert got.shape == (BATCH, length, len(files))
            got0 = coll.get_batch(chroms, starts, ends, default_value=0.0)
            for t, f in enumerate(files):
                oracle = df.oracle_batch(f, chroms, starts, ends)
                np.testing.assert_array_equal(got[:, :, t], oracle.astype(np.float32), err_msg=f"track {f.name}")
                np.testing.assert_array_equal(got0[:, :, t], expected(oracle, 0.0).astype(np.float32),
                                              err_msg=f"track {f.name}")
        # a track subset, in the order asked for
        chroms, starts, ends = df.random_queries(files, rng, 300, BATCH)
        sel = ["uncompressed", "pybigwig_bedgraph", "bigendian"]
        got = coll.get_batch(chroms, starts, ends, default_value=np.nan, tracks=sel)
        assert got.shape == (BATCH, 300, 3)
        for t, n in enumerate(sel):
            np.testing.assert_array_equal(got[:, :, t], df.oracle_batch(bw_files[n], chroms, starts, ends)
                                          .astype(np.float32), err_msg=n)


def test_directory_collection(bw_files, tmp_path):
    names = ["pybigwig_varstep", "many_chroms", "deep_rtree", "version1"]
    for n in names:
        shutil.copyfile(bw_files[n].path, tmp_path / f"{n}.bw")
    (tmp_path / "notes.txt").write_text("not a bigWig, and not named like one")
    with BigWigCollection(str(tmp_path)) as coll:
        assert sorted(coll.track_names) == sorted(names)
        rng = rng_for("dir")
        files = [bw_files[n] for n in names]
        for length in (1, 77, 2048):
            chroms, starts, ends = df.random_queries(files, rng, length, BATCH)
            got = coll.get_batch(chroms, starts, ends, default_value=np.nan)
            for t, n in enumerate(coll.track_names):
                np.testing.assert_array_equal(got[:, :, t], df.oracle_batch(bw_files[n], chroms, starts, ends)
                                              .astype(np.float32), err_msg=n)


def test_custom_track_names(bw_files):
    paths = [bw_files["pybigwig_mixed"].path, bw_files["bigendian"].path]
    with BigWigCollection(paths, track_names=["a", "b"]) as coll:
        assert coll.track_names == ["a", "b"]
        got = coll.get_batch(["chr1"], [1000], [1100], default_value=np.nan, tracks=["b"])
        np.testing.assert_array_equal(got[0, :, 0], df.oracle_values(bw_files["bigendian"], "chr1", 1000, 1100)
                                      .astype(np.float32))


# ------------------------------------------------------------------------------ windows
WINDOW_FILES = ["pybigwig_mixed", "bigendian", "deep_rtree", "pybigwig_fixedstep"]


@pytest.fixture(scope="module")
def window_collection(bw_files):
    coll = BigWigCollection([bw_files[n].path for n in WINDOW_FILES])
    yield coll
    coll.close()


@pytest.mark.parametrize("reduce", ["mean", "max", "min", "sum"])
@pytest.mark.parametrize("default", [np.nan, 0.0, -1.0])
def test_windowed(bw_files, window_collection, reduce, default):
    files = [bw_files[n] for n in WINDOW_FILES]
    rng = rng_for("window", reduce, default)
    nan_default = bool(np.isnan(default))
    for window, length in [(2, 2), (2, 1001), (7, 700), (32, 4096), (128, 5000), (1000, 3999), (5, 5)]:
        chroms, starts, ends = df.random_queries(files, rng, length, 24)
        got = window_collection.get_batch(chroms, starts, ends, window_size=window, reduce=reduce,
                                          default_value=default)
        assert got.shape == (24, length // window, len(files))
        for t, f in enumerate(files):
            x = expected(df.oracle_batch(f, chroms, starts, ends), default)
            exp = reduce_windows(x, window, reduce, nan_default)
            what = f"{f.name} window {window} {reduce} default {default}"
            if reduce in ("max", "min"):
                np.testing.assert_array_equal(got[:, :, t], exp.astype(np.float32), err_msg=what)
            else:
                scale = np.nansum(np.abs(x), axis=1)[:, None]
                assert_close_f32(got[:, :, t], exp, scale, what)


# ------------------------------------------------------------------------------ scaling
SCALE_FILES = ["pybigwig_bedgraph", "uncompressed", "bigendian"]


@pytest.mark.parametrize("as_dict", [False, True])
def test_scaling_exact(bw_files, as_dict):
    files = [bw_files[n] for n in SCALE_FILES]
    factors = [2.0, 0.5, -4.0]  # powers of two: scaling is exact in float32 and float64
    scaling = dict(zip(SCALE_FILES, factors)) if as_dict else factors
    rng = rng_for("scale", as_dict)
    with BigWigCollection([f.path for f in files], scaling=scaling) as coll:
        for length in (1, 500, 3333):
            chroms, starts, ends = df.random_queries(files, rng, length, BATCH)
            for default in (np.nan, 0.0, -1.0):
                got = coll.get_batch(chroms, starts, ends, default_value=default)
                for t, (f, s) in enumerate(zip(files, factors)):
                    exp = expected(df.oracle_batch(f, chroms, starts, ends), default, s)
                    np.testing.assert_array_equal(got[:, :, t], exp.astype(np.float32),
                                                  err_msg=f"{f.name} scale {s} default {default}")


def test_scaling_inexact_and_windowed(bw_files):
    files = [bw_files[n] for n in SCALE_FILES]
    factors = [1.7, 0.1, -3.3]
    rng = rng_for("scale-inexact")
    with BigWigCollection([f.path for f in files], scaling=factors) as coll:
        chroms, starts, ends = df.random_queries(files, rng, 1200, BATCH)
        for default in (np.nan, -1.0):
            got = coll.get_batch(chroms, starts, ends, default_value=default)
            gotw = coll.get_batch(chroms, starts, ends, default_value=default, window_size=50, reduce="mean")
            for t, (f, s) in enumerate(zip(files, factors)):
                x = expected(df.oracle_batch(f, chroms, starts, ends), default, s)
                scale = np.nansum(np.abs(x), axis=1)[:, None]
                assert_close_f32(got[:, :, t], x, scale, f"{f.name} scale {s} default {default}")
                # the default is never scaled, also inside windows
                exp = reduce_windows(x, 50, "mean", bool(np.isnan(default)))
                assert_close_f32(gotw[:, :, t], exp, scale, f"{f.name} windowed scale {s} default {default}")


# ------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("default", [np.nan, 0.0, -1.0])
def test_low_precision_dtypes(bw_files, dtype, default):
    files = [bw_files[n] for n in ("pybigwig_mixed", "bigendian")]
    target = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
    rng = rng_for("dtype", dtype, default)
    with BigWigCollection([f.path for f in files]) as coll:
        for length in (1, 999, 5000):
            chroms, starts, ends = df.random_queries(files, rng, length, BATCH)
            got = coll.get_batch(chroms, starts, ends, default_value=default, dtype=dtype)
            assert got.dtype == target and got.shape == (BATCH, length, 2)
            for t, f in enumerate(files):
                exp = expected(df.oracle_batch(f, chroms, starts, ends), default).astype(np.float32).astype(target)
                np.testing.assert_array_equal(got[:, :, t].astype(np.float32), exp.astype(np.float32),
                                              err_msg=f"{f.name} {dtype} default {default}")


def test_bfloat16_rounds_to_nearest_even(tmp_path):
    """Values halfway between two bfloat16 numbers and just around them: round-to-nearest-even."""
    base = np.array([1.0, 1.0078125, -3.0, 1e-3, 7e4], np.float32)
    ulp = np.array([2.0**-7, 2.0**-7, 2.0**-6, 2.0**-17, 2.0**9], np.float32)  # bf16 spacing at each base
    vals = np.concatenate([base + ulp / 2, base + ulp / 2 + ulp / 64, base + ulp / 2 - ulp / 64,
                           base + ulp * 1.5]).astype(np.float32)
    n = vals.size
    p = tmp_path / "bf.bw"
    df.write_bigwig(p, {"c": 1000}, {"c": (np.arange(n), np.arange(n) + 1, vals)})
    with BigWigCollection([str(p)]) as coll:
        got = coll.get_batch(["c"], [0], [n], default_value=0.0, dtype="bfloat16")
    exp = vals.astype(ml_dtypes.bfloat16)
    # truncation would give base for the halfway cases; check that some of them round up
    assert (exp.astype(np.float32) != (vals.view(np.uint32) & 0xFFFF0000).view(np.float32)).any()
    np.testing.assert_array_equal(got[0, :, 0].astype(np.float32), exp.astype(np.float32))


# ------------------------------------------------------------------------------ errors and lifecycle
def test_errors(bw_files):
    files = [bw_files[n] for n in ("pybigwig_bedgraph", "uncompressed")]
    with BigWigCollection([f.path for f in files]) as coll:
        with pytest.raises(ValueError):
            coll.get_batch(["chr1", "chr1"], [0, 10], [100, 120])
        with pytest.raises((KeyError, ValueError)):
            coll.get_batch(["chr1"], [0], [100], tracks=["no_such_track"])
        with pytest.raises((KeyError, ValueError)):
            BigWigCollection([f.path for f in files], scaling={"no_such_track": 2.0})
        with pytest.raises(ValueError):
            coll.get_batch(["chr1"], [0], [100], reduce="median", window_size=10)
        with pytest.raises(ValueError):
            coll.get_batch(["chr1"], [0], [100], dtype="int8")
        # a chromosome no file has: an error, or the default everywhere
        try:
            got = coll.get_batch(["chrNope"], [0], [50], default_value=-2.0)
        except (KeyError, ValueError):
            pass
        else:
            assert got.shape == (1, 50, 2) and (got == -2.0).all()


def test_close_and_context_manager(bw_files):
    coll = BigWigCollection([bw_files["deep_rtree"].path])
    a = coll.get_batch(["chr1"], [0], [1000], default_value=np.nan)
    coll.close()
    coll.close()  # twice is fine
    with BigWigCollection([bw_files["deep_rtree"].path]) as c2:
        b = c2.get_batch(["chr1"], [0], [1000], default_value=np.nan)
    np.testing.assert_array_equal(a, b)


def test_batches_are_not_overwritten(bw_files):
    """A batch the caller keeps must not change when the next batch is computed."""
    f = bw_files["pybigwig_mixed"]
    with BigWigCollection([f.path]) as coll:
        first = coll.get_batch(["chr1"], [1000], [3000], default_value=np.nan)
        keep = first.copy()
        for s in range(0, 50_000, 5_000):
            coll.get_batch(["chr1"], [s], [s + 2000], default_value=np.nan)
        np.testing.assert_array_equal(first, keep)


# ------------------------------------------------------------------------------ random files
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def file_specs(draw):
    n_chroms = draw(st.integers(1, 12))
    sizes = {f"c{draw(st.integers(0, 10_000))}_{i}": draw(st.integers(1, 20_000)) for i in range(n_chroms)}
    sections = []
    for chrom, size in sizes.items():
        pos = 0
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["bedgraph", "varstep", "fixedstep"]))
            n = draw(st.integers(1, 300))
            pos += draw(st.integers(0, 500))
            if kind == "fixedstep":
                span = draw(st.integers(1, 20))
                step = span + draw(st.integers(0, 10))
                n = min(n, (size - pos - span) // step + 1) if size - pos >= span else 0
                if n > 0:
                    sections.append((chrom, kind, pos, n, span, step))
                    pos += (n - 1) * step + span
            else:
                span = draw(st.integers(1, 30))
                sections.append((chrom, kind, pos, n, span, 0))
                pos += n * (span + 40)
            if pos >= size:
                break
    return dict(sizes=sizes, sections=sections, seed=draw(st.integers(0, 2**31)),
                items_per_slot=draw(st.sampled_from([1, 2, 5, 64, 1024])),
                block_size=draw(st.sampled_from([2, 3, 4, 256])),
                compress=draw(st.booleans()), byteorder=draw(st.sampled_from("<>")))


def _write_spec(path, spec, byteorder):
    rng = np.random.default_rng(spec["seed"])
    with df.BigWigWriter(path, spec["sizes"], byteorder=byteorder, compress=spec["compress"],
                         items_per_slot=spec["items_per_slot"], block_size=spec["block_size"]) as w:
        for chrom, kind, pos, n, span, step in spec["sections"]:
            size = spec["sizes"][chrom]
            if kind == "fixedstep":
                w.add_fixed_step(chrom, pos, df.random_values(rng, n), span, step)
                continue
            gaps = rng.integers(0, 40, n)
            starts = pos + np.cumsum(gaps + span) - span
            starts = starts[starts + span <= size]
            if starts.size == 0:
                continue
            if kind == "varstep":
                w.add_variable_step(chrom, starts, df.random_values(rng, starts.size), span)
            else:
                ends = np.minimum(starts + rng.integers(1, span + 1, starts.size), size)
                w.add_bedgraph(chrom, starts, ends, df.random_values(rng, starts.size))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=file_specs())
def test_random_files_from_our_writer(tmp_path_factory, spec):
    d = tmp_path_factory.mktemp("hyp")
    path, oracle = d / "f.bw", d / "f_le.bw"
    _write_spec(path, spec, spec["byteorder"])
    if spec["byteorder"] == ">":
        _write_spec(oracle, spec, "<")
    else:
        oracle = path
    f = df.BWFile("f", str(path), "hypothesis", str(oracle), spec["sizes"], "ours")
    rng = np.random.default_rng(spec["seed"])
    with BigWigCollection([str(path)]) as coll:
        assert coll.chrom_sizes == spec["sizes"]
        for length in (1, int(rng.integers(2, 3000))):
            chroms, starts, ends = df.random_queries(f, rng, length, 16)
            got = coll.get_batch(chroms, starts, ends, default_value=np.nan)
            np.testing.assert_array_equal(got[:, :, 0], df.oracle_batch(f, chroms, starts, ends).astype(np.float32))
        for chrom, size in list(spec["sizes"].items())[:4]:
            got = coll.get_batch([chrom], [0], [size], default_value=np.nan)
            np.testing.assert_array_equal(got[0, :, 0], df.oracle_values(f, chrom, 0, size).astype(np.float32))

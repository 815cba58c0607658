"""The direct path (`stages.direct`): batches whose blocks lie in memory (transcoded files in
their memory maps, the decoded-block cache) are searched and filled in one compiled pass per
share of rows. Its output must equal the staged path's bit for bit, and pyBigWig's."""
import gc
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError
from bwloader_core.output_pool import OutputPool
from bwloader_core.transcode import transcode

NAMES = df.FIXTURE_NAMES


@pytest.fixture(scope="module")
def transcoded(bw_files, tmp_path_factory):
    """Every fixture transcoded (uncompressed, little-endian, word-aligned blocks): name -> path."""
    out = tmp_path_factory.mktemp("direct")
    names = list(bw_files)
    results = transcode([bw_files[n].path for n in names], out, n_jobs=2, progress=False)
    return {n: r.output for n, r in zip(names, results)}


@pytest.fixture
def staged(monkeypatch):
    """Call `staged(fn)` to run fn with the direct path off."""
    def run(fn):
        with monkeypatch.context() as m:
            m.setenv("BWLOADER_DIRECT", "0")
            return fn()
    return run


def _batch(coll, q, **kw):
    before = coll._processor.batches_direct if coll._processor else 0
    out = coll.get_batch(*q, **kw)
    return out, coll._processor.batches_direct - before


@pytest.mark.parametrize("name", NAMES)
def test_transcoded_direct_equals_staged_and_pybigwig(bw_files, transcoded, staged, name):
    f = bw_files[name]
    rng = np.random.default_rng([7, NAMES.index(name)])
    with BigWigCollection([transcoded[name]], n_threads=2) as c:
        for length in (1, 317, 3000):
            q = df.random_queries(f, rng, length, 300)          # 300 pairs: two threads share the rows
            got, n_direct = _batch(c, q, default_value=np.nan)
            assert n_direct == 1
            np.testing.assert_array_equal(got, staged(lambda: c.get_batch(*q, default_value=np.nan)))
            np.testing.assert_array_equal(got[:, :, 0], df.oracle_batch(f, *q))
        for reduce in ("mean", "sum", "max", "min"):
            q = df.random_queries(f, rng, 2000, 40)
            got, n_direct = _batch(c, q, window_size=64, reduce=reduce, default_value=np.nan)
            assert n_direct == 1
            np.testing.assert_array_equal(got, staged(lambda: c.get_batch(*q, window_size=64, reduce=reduce,
                                                                          default_value=np.nan)))


def test_many_tracks_transposed_rows_equal_staged_and_pybigwig(bw_files, transcoded, staged):
    """Every fixture at once (12 tracks: (B, L, T) rows go through the transposed row buffer),
    with windows too, equals the staged path and pyBigWig track by track."""
    from bwloader_core.stages import direct
    assert len(NAMES) >= direct.TRANSPOSE_MIN_TRACKS
    rng = np.random.default_rng(5)
    with BigWigCollection([transcoded[n] for n in NAMES], n_threads=2) as c:
        q = df.random_queries([bw_files[n] for n in NAMES], rng, 1200, 90)
        for window in (1, 40):
            got, n_direct = _batch(c, q, window_size=window, default_value=np.nan)
            assert n_direct == 1
            np.testing.assert_array_equal(got, staged(lambda: c.get_batch(*q, window_size=window,
                                                                          default_value=np.nan)))
        got = c.get_batch(*q, default_value=np.nan)
        for t, n in enumerate(NAMES):
            np.testing.assert_array_equal(got[:, :, t], df.oracle_batch(bw_files[n], *q))


QUERY = st.tuples(st.integers(0, 3), st.integers(-3000, 1_100_000), st.integers(1, 2500), st.integers(1, 40),
                  st.sampled_from([1, 1, 7, 100]), st.sampled_from(["mean", "sum", "max", "min"]),
                  st.sampled_from([0.0, np.nan, -1.5]), st.integers(0, 2 ** 32 - 1), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(QUERY)
def test_hypothesis_direct_equals_staged(mixed_collection, staged, monkeypatch, args):
    """Random batches over a collection of every section type, transcoded (with scaling), and
    transcoded and compressed side by side (direct only when every chosen track is transcoded);
    (batch, length, tracks) rows painted strided or through the transposed row buffer."""
    from bwloader_core.stages import direct
    c_inplace, c_mixed = mixed_collection
    chrom_i, start, length, batch, window, reduce, default, seed, transposed = args
    monkeypatch.setattr(direct, "TRANSPOSE_MIN_TRACKS", 1 if transposed else 10 ** 9)
    rng = np.random.default_rng(seed)
    chroms = list(c_inplace.chrom_sizes)
    length = max(window, length - length % window)
    starts = rng.integers(-2000, 1_000_000, batch)
    starts[0] = start
    q = ([chroms[(chrom_i + k) % len(chroms)] for k in range(batch)], starts, starts + length)
    tracks = rng.permutation(c_inplace.n_tracks)[:rng.integers(1, c_inplace.n_tracks + 1)].tolist()
    for c in (c_inplace, c_mixed):
        kw = dict(window_size=window, reduce=reduce, default_value=default, tracks=tracks)
        got, n_direct = _batch(c, q, **kw)
        assert n_direct == int(c is c_inplace or all(t % 2 for t in tracks))   # odd tracks: transcoded
        np.testing.assert_array_equal(got, staged(lambda: c.get_batch(*q, **kw)))


@pytest.fixture(scope="module")
def mixed_collection(bw_files, transcoded):
    names = ["pybigwig_bedgraph", "pybigwig_varstep", "pybigwig_fixedstep", "pybigwig_mixed", "bigendian",
             "deep_rtree"]
    names = [n for n in names if n in bw_files]
    inplace = BigWigCollection([transcoded[n] for n in names], n_threads=2,
                               scaling=[1.0, 0.5, 3.0, 1.0, 2.0, 1.0][:len(names)])
    mixed = BigWigCollection([transcoded[n] if i % 2 else bw_files[n].path for i, n in enumerate(names)],
                             n_threads=2, track_names=names)
    yield inplace, mixed
    inplace.close()
    mixed.close()


def test_warm_cache_direct_equals_uncached(bw_files, staged):
    """With a block cache, batches take the direct path (hits searched where they lie in the
    arena, misses inflated into it) and equal the uncached staged path, through evictions."""
    paths = [bw_files[n].path for n in ("pybigwig_bedgraph", "pybigwig_varstep", "pybigwig_fixedstep")]
    rng = np.random.default_rng(3)
    with BigWigCollection(paths, n_threads=2, cache_bytes=48 << 10) as small, \
            BigWigCollection(paths, n_threads=2, cache_bytes=0) as plain:
        for k in range(12):
            starts = rng.integers(0, 390_000, 64)
            q = (["chr1"] * 32 + ["chr2"] * 32, starts, starts + 777)
            w = 1 if k % 3 else 37
            got, n_direct = _batch(small, q, window_size=w)
            assert n_direct == 1
            np.testing.assert_array_equal(got, staged(lambda: plain.get_batch(*q, window_size=w)))
        stats = small.cache.stats()
        assert stats["hits"] > 0 and stats["misses"] > 0 and stats["bytes"] <= 48 << 10


def test_malformed_uncompressed_block_falls_back_to_the_precise_error(bw_files, transcoded, tmp_path):
    """A corrupt section header in a transcoded file: the direct pass abandons the batch, and the
    staged path names the file and the problem (no crash, no wrong numbers)."""
    src = transcoded["pybigwig_bedgraph"]
    bad = tmp_path / "bad.bw"
    raw = bytearray(open(src, "rb").read())
    with BigWigCollection([src]) as c:
        off = int(c.files[0].block_offset[0])
    raw[off + 20] = 9                                      # section type 9: no such type
    bad.write_bytes(bytes(raw))
    with BigWigCollection([str(bad)]) as c:
        with pytest.raises(BigWigFormatError, match="bad.bw.*unknown section type 9"):
            c.get_batch(["chr1"] * 4, [0, 10, 20, 30], [5000, 5010, 5020, 5030])


def test_output_memory_is_reused_only_once_released(transcoded):
    with BigWigCollection([transcoded["pybigwig_bedgraph"]], n_threads=1) as c:
        q1 = (["chr1"] * 8, np.arange(8) * 1000, np.arange(8) * 1000 + 500)
        q2 = (["chr1"] * 8, np.arange(8) * 1000 + 7, np.arange(8) * 1000 + 507)
        a = c.get_batch(*q1)
        keep = a.copy()
        view = a[2:5]                        # a view keeps the memory as much as the array does
        del a
        b = c.get_batch(*q2)
        np.testing.assert_array_equal(view, keep[2:5])
        assert not np.shares_memory(view, b)
        pool = c._processor.outputs
        del view, b
        gc.collect()
        reused = pool.reused
        c2 = c.get_batch(*q1)
        assert pool.reused == reused + 1
        np.testing.assert_array_equal(c2, keep)
        assert c2.flags.c_contiguous and c2.flags.writeable


def test_output_pool_bounds_and_torch_tensors():
    pool = OutputPool(keep=2, max_bytes=1 << 20)
    arrays = [pool.empty((10, 10), np.float32) for _ in range(3)]
    del arrays
    gc.collect()
    assert pool.nbytes == 2 * 400                           # at most `keep` per size
    big = pool.empty((1 << 19,), np.float32)                # 2 MiB > max_bytes: not kept
    del big
    gc.collect()
    assert pool.nbytes == 800
    torch = pytest.importorskip("torch")
    a = pool.empty((4, 5), np.float32)
    a[:] = 3.0
    t = torch.from_numpy(a)
    del a
    gc.collect()
    b = pool.empty((4, 5), np.float32)                      # the tensor still holds the first slab
    b[:] = 0.0
    assert float(t.sum()) == 60.0
    assert pool.empty((0, 5), np.float32).shape == (0, 5)


def test_direct_off_switch_and_gpu_untouched(transcoded, monkeypatch):
    """BWLOADER_DIRECT=0 turns the path off (the staged path then reads in place as before)."""
    monkeypatch.setenv("BWLOADER_DIRECT", "0")
    with BigWigCollection([transcoded["pybigwig_bedgraph"]]) as c:
        c.get_batch(["chr1"], [0], [1000])
        assert c._processor.batches_direct == 0 and not c._processor.direct
        assert c._processor._fetcher.blocks_in_place > 0
    monkeypatch.delenv("BWLOADER_DIRECT")
    assert os.environ.get("BWLOADER_DIRECT") is None


def test_threads_sharing_a_small_cache_stay_exact(bw_files):
    """Two threads, each with its own processor, on one collection whose cache holds a few blocks:
    hits are pinned pair by pair while evictions go on around them, and every batch equals the
    uncached one."""
    import threading
    from bwloader_core.batch_processor import BatchProcessor
    paths = [bw_files[n].path for n in ("pybigwig_bedgraph", "pybigwig_mixed", "bigendian")]
    with BigWigCollection(paths, cache_bytes=96 << 10) as shared, BigWigCollection(paths) as plain:
        errors, direct = [], []

        def work(seed):
            try:
                proc = BatchProcessor(shared, n_threads=2)
                rng = np.random.default_rng(seed)
                for k in range(25):
                    starts = rng.integers(0, 120_000, 48) if k % 2 else np.full(48, 5_000) + np.arange(48)
                    q = (["chr1"] * 48, starts, starts + 640)
                    got = proc.process(*q)
                    np.testing.assert_array_equal(got, plain.get_batch(*q))
                direct.append(proc.batches_direct)
                proc.close()
            except BaseException as exc:     # noqa: BLE001 (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert sum(direct) == 50
        stats = shared.cache.stats()
        assert stats["hits"] > 0 and stats["bytes"] <= 96 << 10


def test_overlapping_records_transcoded_match_pybigwig(tmp_path):
    """fixedStep with span > step (records overlap: later ones paint over earlier ones), read in
    place, painted straight into the output (one track) and through the scratch (five)."""
    import pyBigWig
    src = str(tmp_path / "overlap.bw")
    bw = pyBigWig.open(src, "w")
    bw.addHeader([("chr1", 5000)], maxZooms=0)
    bw.addEntries("chr1", 100, values=np.random.default_rng(2).random(400).round(3).tolist(), span=10, step=4)
    bw.close()
    out = transcode([src], tmp_path / "t", progress=False)[0].output
    h = pyBigWig.open(src)
    starts = np.arange(0, 1800, 97)
    want = np.stack([np.array(h.values("chr1", int(s), int(s) + 200), np.float32) for s in starts])
    for n in (1, 5):
        with BigWigCollection([out] * n, track_names=[f"t{i}" for i in range(n)], n_threads=2) as c:
            got, n_direct = _batch(c, (["chr1"] * len(starts), starts, starts + 200), default_value=np.nan)
            assert n_direct == 1
            for t in range(n):
                np.testing.assert_array_equal(got[:, :, t], want)


@pytest.mark.parametrize("where", ["in_place", "cache", "mixed", "compressed"])
def test_channels_first_layout(bw_files, transcoded, where):
    """layout="BTL" (batch, tracks, length): made directly on the direct path, by one transposing
    copy elsewhere; always the (B, L, T) values transposed, C-contiguous."""
    names = ["pybigwig_bedgraph", "pybigwig_fixedstep", "bigendian", "pybigwig_varstep", "deep_rtree"]
    paths = {"in_place": [transcoded[n] for n in names],
             "cache": [bw_files[n].path for n in names],
             "mixed": [transcoded[n] if i % 2 else bw_files[n].path for i, n in enumerate(names)],
             "compressed": [bw_files[n].path for n in names]}[where]
    rng = np.random.default_rng(11)
    with BigWigCollection(paths, n_threads=2, cache_bytes=(1 << 26) if where == "cache" else 0) as c:
        for window, reduce in ((1, "mean"), (25, "max")):
            starts = rng.integers(-500, 390_000, 70)
            q = (["chr1"] * 35 + ["chr2"] * 35, starts, starts + 1000)
            blt = c.get_batch(*q, window_size=window, reduce=reduce, default_value=np.nan)
            for _ in range(2):           # the second time every block is a cache hit
                btl, n_direct = _batch(c, q, window_size=window, reduce=reduce, default_value=np.nan, layout="BTL")
                assert btl.shape == (70, 5, 1000 // window) and btl.flags.c_contiguous
                np.testing.assert_array_equal(btl, blt.transpose(0, 2, 1))
                assert n_direct == (where in ("in_place", "cache"))
        half = c.get_batch(*q, dtype="float16", layout="BTL")
        np.testing.assert_array_equal(half, c.get_batch(*q, dtype="float16").transpose(0, 2, 1))
        with pytest.raises(ValueError, match="layout must be 'BLT'"):
            c.get_batch(*q, layout="LBT")


def test_huge_page_maps_only_for_collections_that_fit_in_memory(transcoded, monkeypatch):
    """Files that fit in memory are mapped asking for huge pages, a collection bigger than half
    the available memory is not; the values are the same either way."""
    from bwloader_core.stages.fetch import MemoryMaps
    names = ["pybigwig_bedgraph", "deep_rtree"]
    q = (["chr1"] * 8, np.arange(8) * 5000, np.arange(8) * 5000 + 900)
    outs = []
    for share in (0.5, 0.0):
        monkeypatch.setattr(MemoryMaps, "HUGE_PAGES_MEMORY_SHARE", share)
        with BigWigCollection([transcoded[n] for n in names]) as c:
            outs.append(c.get_batch(*q))
            assert c.memory_maps.huge_pages is (share > 0)
    np.testing.assert_array_equal(outs[0], outs[1])

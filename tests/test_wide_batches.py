"""Wide batches (issue #13): the fused path for windowed batches and the track groups of the staged
path give, bit for bit, what the staged path gives in one go; anything unusual falls back to the
staged path with its precise error; working memory stays bounded."""
import shutil

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.device import Device
from bwloader_core.stages.fused import chunk_rows

pyBigWig = pytest.importorskip("pyBigWig")

CASES = [(7, "mean"), (128, "sum"), (50, "max"), (3, "min"), (1000, "mean")]


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint16 if a.dtype.itemsize == 2 else np.uint32)


def _staged(monkeypatch, p, *args, **kw):
    monkeypatch.setenv("BWLOADER_FUSED", "0")
    try:
        return p.process(*args, **kw)
    finally:
        monkeypatch.delenv("BWLOADER_FUSED")


@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_fused_equals_staged_on_every_fixture(bw_files, name, monkeypatch):
    """Every fixture (bedGraph, variableStep, fixedStep, big-endian, uncompressed, many chromosomes,
    ...), several tracks of it with scaling, every reduction, defaults 0 / NaN / -2: the same bits."""
    f = bw_files[name]
    other = bw_files["pybigwig_mixed"]           # a file with other chromosomes: pairs without any block
    with BigWigCollection([f.path, other.path, f.path], track_names=["a", "b", "c"],
                          scaling=[1.0, 2.0, 0.5]) as coll:
        # uncompressed files are otherwise read where they lie (memory maps), not fused
        p = BatchProcessor(coll, n_threads=2, device=Device.cpu(read_in_place=False))
        in_place = BatchProcessor(coll, n_threads=2)
        rng = np.random.default_rng(5)
        chroms, starts, ends = df.random_queries(f, rng, 3000, 24)
        try:
            for window, reduce in CASES:
                for default in (0.0, np.nan, -2.0):
                    before = p.batches_fused
                    got = p.process(chroms, starts, ends, window_size=window, reduce=reduce, default_value=default)
                    assert p.batches_fused == before + 1, "the fused path was not taken"
                    want = _staged(monkeypatch, p, chroms, starts, ends, window_size=window, reduce=reduce,
                                   default_value=default)
                    assert np.array_equal(_bits(got), _bits(want)), f"{name} w={window} {reduce} default={default}"
                    other = in_place.process(chroms, starts, ends, window_size=window, reduce=reduce,
                                             default_value=default)
                    assert np.array_equal(_bits(got), _bits(other))
        finally:
            p.close()
            in_place.close()


def test_fused_with_track_selection_dtypes_and_oracle(bw_files, monkeypatch):
    """Tracks chosen out of order and twice; float16 / bfloat16 outputs; the mean equals pyBigWig's."""
    names = ["pybigwig_bedgraph", "pybigwig_varstep", "bigendian", "uncompressed"]
    files = [bw_files[n] for n in names]
    with BigWigCollection([f.path for f in files]) as coll:
        p = BatchProcessor(coll, n_threads=3)
        rng = np.random.default_rng(8)
        chroms, starts, ends = df.random_queries(files, rng, 4000, 16)
        tracks = [2, 0, 2, 3, 1]
        for dtype in ("float32", "float16", "bfloat16"):
            got = p.process(chroms, starts, ends, tracks=tracks, window_size=100, dtype=dtype)
            want = _staged(monkeypatch, p, chroms, starts, ends, tracks=tracks, window_size=100, dtype=dtype)
            assert got.dtype == want.dtype and np.array_equal(_bits(got), _bits(want)), dtype
        got = p.process(chroms, starts, ends, tracks=tracks, window_size=100, default_value=0.0)
        for col, t in enumerate(tracks):
            for i in range(len(starts)):
                v = np.nan_to_num(df.oracle_values(files[t], chroms[i], starts[i], ends[i]), nan=0.0)
                np.testing.assert_allclose(got[i, :, col], v.reshape(-1, 100).mean(axis=1), rtol=2e-6, atol=1e-6)
        assert p.batches_fused >= 4
        p.close()


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_fused_falls_back_on_overlapping_records(tmp_path):
    """Overlapping records (fixedStep with span > step): the fused path gives the batch back and the
    reference paints them as pyBigWig does."""
    path = str(tmp_path / "overlap.bw")
    bw = pyBigWig.open(path, "w")
    bw.addHeader([("chr1", 5000)], maxZooms=0)
    bw.addEntries("chr1", 100, values=np.random.default_rng(2).random(400).round(3).tolist(), span=10, step=4)
    bw.close()
    with BigWigCollection([path]) as coll:
        p = BatchProcessor(coll, n_threads=2)
        starts = np.arange(0, 1800, 97)
        got = p.process(["chr1"] * len(starts), starts, starts + 200, window_size=20, default_value=np.nan)
        assert p.batches_fused == 0
        ref = pyBigWig.open(path)
        for i, s in enumerate(starts):
            want = np.nanmean(np.array(ref.values("chr1", int(s), int(s) + 200)).reshape(10, 20), axis=1)
            np.testing.assert_allclose(got[i, :, 0], want.astype(np.float32), rtol=1e-6)
        p.close()


def test_corrupt_block_in_a_windowed_batch_names_file_and_offset(bw_files, tmp_path):
    f = bw_files["pybigwig_bedgraph"]
    bad = tmp_path / "bad.bw"
    shutil.copy(f.path, bad)
    with BigWigCollection([f.path]) as good:
        off, size = int(good.files[0].block_offset[3]), int(good.files[0].block_size[3])
        chrom = good.files[0].chrom_names[0]
        length = good.files[0].chrom_sizes[chrom]
    raw = bytearray(bad.read_bytes())
    raw[off + size // 2:off + size // 2 + 16] = bytes(16)
    bad.write_bytes(bytes(raw))
    with BigWigCollection([f.path, str(bad)]) as coll:
        p = BatchProcessor(coll, n_threads=2)
        with pytest.raises(BigWigFormatError, match=rf"bad\.bw: data block at offset {off}"):
            p.process([chrom], [0], [length - length % 10], window_size=10)
        assert p.batches_fused == 0
        p.close()


@pytest.mark.parametrize("window", [1, 64])
def test_track_groups_equal_one_group(bw_files, window, monkeypatch):
    """The staged path with a tiny working-memory budget runs the batch in many track groups into one
    output: the same bits as one group, every dtype, with scaling."""
    names = ["pybigwig_bedgraph", "pybigwig_mixed", "bigendian", "pybigwig_fixedstep", "uncompressed"]
    paths = [bw_files[n].path for n in names] * 3
    monkeypatch.setenv("BWLOADER_FUSED", "0")
    with BigWigCollection(paths, track_names=[f"t{i}" for i in range(len(paths))],
                          scaling=list(np.linspace(0.5, 2.0, len(paths)))) as coll:
        whole = BatchProcessor(coll, n_threads=2)
        grouped = BatchProcessor(coll, n_threads=2)
        grouped.group_bytes = 64 << 10
        rng = np.random.default_rng(1)
        chroms, starts, ends = df.random_queries([bw_files[n] for n in names], rng, 2560, 12)
        for dtype in ("float32", "bfloat16"):
            a = whole.process(chroms, starts, ends, window_size=window, dtype=dtype, default_value=np.nan)
            n0 = grouped.groups_run
            b = grouped.process(chroms, starts, ends, window_size=window, dtype=dtype, default_value=np.nan)
            assert grouped.groups_run - n0 > 3
            assert whole.groups_run == 0
            assert a.dtype == b.dtype and np.array_equal(_bits(a), _bits(b)), dtype
        whole.close()
        grouped.close()


def test_chunks_keep_files_whole():
    files = np.repeat(np.arange(6), [3, 1, 4, 2, 2, 5])
    cap = np.full(len(files), 300_000)
    bounds = chunk_rows(files, cap, chunk_bytes=1 << 20)
    assert bounds[0] == 0 and bounds[-1] == len(files)
    starts_of_files = set(np.flatnonzero(np.r_[True, files[1:] != files[:-1]]).tolist())
    assert set(bounds[:-1].tolist()) <= starts_of_files           # never inside a file
    assert len(bounds) - 1 >= 3                                    # about 1 MiB each

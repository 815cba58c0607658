"""The compiled fetch path (pread + inflate in numba, GIL released) against the Python path and pyBigWig."""
import os
import shutil

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.decode import native

pytestmark = pytest.mark.skipif(not native.available(), reason="zlib-ng / deflate C API not found")


def _processor(coll, native_on, partial=True, n_threads=2):
    p = BatchProcessor(coll, n_threads=n_threads)
    p._fetcher.native = native_on
    p._fetcher.partial = partial
    return p


@pytest.mark.parametrize("name", df.FIXTURE_NAMES)
def test_native_equals_python_and_pybigwig(bw_files, name):
    f = bw_files[name]
    with BigWigCollection([f.path]) as coll:
        fast = _processor(coll, True)
        slow = _processor(coll, False)
        whole = _processor(coll, True, partial=False, n_threads=1)
        rng = np.random.default_rng(5)
        for length, window in ((1, 1), (300, 1), (2000, 10), (9000, 3)):
            chroms, starts, ends = df.random_queries(f, rng, length, 48)
            a = fast.process(chroms, starts, ends, window_size=window, default_value=np.nan)
            b = slow.process(chroms, starts, ends, window_size=window, default_value=np.nan)
            c = whole.process(chroms, starts, ends, window_size=window, default_value=np.nan)
            np.testing.assert_array_equal(a, b, err_msg=f"{name} length {length}")
            np.testing.assert_array_equal(a, c, err_msg=f"{name} length {length} (whole blocks)")
            if window == 1:
                np.testing.assert_array_equal(a[..., 0], df.oracle_batch(f, chroms, starts, ends).astype(np.float32))
        assert fast._fetcher.blocks_native > 0 and fast._fetcher.blocks_python == 0
        assert whole._fetcher.blocks_native > 0 and whole._fetcher.blocks_python == 0
        assert slow._fetcher.blocks_native == 0
        for p in (fast, slow, whole):
            p.close()


def test_native_many_files_many_threads(bw_files):
    """Blocks of several files split over more chunks than threads land in the right slots."""
    files = [f for f in bw_files.values() if "chr1" in f.chrom_sizes]
    assert len(files) >= 5
    with BigWigCollection([f.path for f in files]) as coll:
        rng = np.random.default_rng(9)
        chroms = ["chr1"] * 64
        starts = rng.integers(0, min(f.chrom_sizes["chr1"] for f in files) - 500, 64)
        fast = _processor(coll, True, n_threads=3)
        slow = _processor(coll, False, n_threads=1)
        a = fast.process(chroms, starts, starts + 500, default_value=np.nan)
        b = slow.process(chroms, starts, starts + 500, default_value=np.nan)
        np.testing.assert_array_equal(a, b)
        assert fast._fetcher.blocks_native > 0 and fast._fetcher.blocks_python == 0
        fast.close()
        slow.close()


def _corrupt_first_block(src, dst):
    shutil.copy(src, dst)
    from bwloader_core import BigWigFile
    with BigWigFile(dst) as f:
        off, size = int(f.block_offset[0]), int(f.block_size[0])
        chrom = f.chrom_names[0]
    with open(dst, "r+b") as fh:
        fh.seek(off + size // 2)
        fh.write(bytes(64))
    return chrom


def test_corrupt_block_handed_back_with_a_clear_error(bw_files, tmp_path):
    """A block the compiled path cannot inflate goes to the Python path, which names file and offset."""
    f = bw_files["pybigwig_bedgraph"]
    bad = tmp_path / "bad.bw"
    chrom = _corrupt_first_block(f.path, bad)
    with BigWigCollection([str(bad)]) as coll:
        p = _processor(coll, True)
        with pytest.raises(BigWigFormatError, match=r"bad\.bw.*(offset|inflate|corrupt)"):
            p.process([chrom], [0], [f.chrom_sizes[chrom]])
        assert p._fetcher.blocks_python > 0
        p.close()


def test_file_truncated_while_open_is_an_error_not_a_crash(bw_files, tmp_path):
    f = bw_files["pybigwig_bedgraph"]
    p = tmp_path / "t.bw"
    shutil.copy(f.path, p)
    with BigWigCollection([str(p)]) as coll:
        chrom = coll.files[0].chrom_names[0]
        size = coll.files[0].chrom_sizes[chrom]
        half = int(coll.files[0].block_offset[len(coll.files[0].block_offset) // 2])
        os.truncate(p, half)
        with pytest.raises(BigWigFormatError, match="t.bw"):
            coll.get_batch([chrom], [0], [size])


def test_disabled_by_environment(bw_files, monkeypatch):
    monkeypatch.setenv("BWLOADER_NATIVE_FETCH", "0")
    f = bw_files["pybigwig_bedgraph"]
    with BigWigCollection([f.path]) as coll:
        chrom = coll.files[0].chrom_names[0]
        coll.get_batch([chrom], [0], [1000])
        assert coll._processor._fetcher.blocks_native == 0


def test_collection_describe_equals_per_file_describe(bw_files):
    """BatchProcessor.describe (flat collection arrays) == decode.cpu.describe_blocks (per file)."""
    from bwloader_core.decode.cpu import describe_blocks
    files = list(bw_files.values())
    with BigWigCollection([f.path for f in files]) as coll:
        p = BatchProcessor(coll, n_threads=1)
        rng = np.random.default_rng(4)
        ids = np.unique(rng.integers(0, len(coll._leaf_file), 400))
        ids = np.r_[0, ids, len(coll._leaf_file) - 1]
        s, e = coll._leaf_start[ids], coll._leaf_end[ids]
        need = s + (rng.random(len(ids)) * 1.3 * (e - s)).astype(np.int64)
        got = p.describe(ids, need)
        fidx = coll._leaf_file[ids]
        want = describe_blocks(coll.files, fidx, coll._leaf_local[ids], need - coll._track_base[fidx], True)
        comp = want["compressed"]       # chrom, need_pos and want0 only count for compressed blocks
        for key in want:
            a, b = np.asarray(got[key]), np.asarray(want[key])
            if key in ("chrom", "need_pos", "want0"):
                a, b = a[comp], b[comp]
            np.testing.assert_array_equal(a, b, err_msg=key)
        assert got["partial"].any() and not got["partial"].all()
        p.close()

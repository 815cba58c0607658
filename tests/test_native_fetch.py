"""The compiled fetch path (pread + inflate in numba, GIL released) against the Python path and pyBigWig."""
import errno
import os
import shutil

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError, BigWigReadError
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.device import Device
from bwloader_core.stages import fetch_native as native

pytestmark = pytest.mark.skipif(not native.available(), reason="zlib-ng / deflate C API not found")


def _processor(coll, native_on, partial=True, n_threads=2):
    return BatchProcessor(coll, n_threads=n_threads,
                          device=Device.cpu(native_fetch=native_on, partial_inflate=partial, read_in_place=False))


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
        with pytest.raises(BigWigReadError, match=r"t\.bw: short read .* truncated while open") as ei:
            coll.get_batch([chrom], [0], [size])
        assert isinstance(ei.value, OSError) and not isinstance(ei.value, BigWigFormatError)
        assert ei.value.errno == errno.EIO


def test_disabled_by_environment(bw_files, monkeypatch):
    monkeypatch.setenv("BWLOADER_NATIVE_FETCH", "0")
    f = bw_files["pybigwig_bedgraph"]
    with BigWigCollection([f.path]) as coll:
        chrom = coll.files[0].chrom_names[0]
        coll.get_batch([chrom], [0], [1000])
        assert coll._processor._fetcher.blocks_native == 0


def test_block_table_rows_and_partial_plan(bw_files):
    """BlockTable.from_index: each row describes its block as its BigWigFile does; partial inflate
    only for compressed blocks needed up to less than PARTIAL_MAX_FRACTION of their span."""
    from bwloader_core.stages.fetch import PARTIAL_MAX_FRACTION, BlockTable
    files = list(bw_files.values())
    with BigWigCollection([f.path for f in files]) as coll:
        ix = coll.index
        rng = np.random.default_rng(4)
        ids = np.unique(rng.integers(0, ix.n_blocks, 400))
        ids = np.r_[0, ids, ix.n_blocks - 1]
        s, e = ix.block_start[ids].astype(np.int64), ix.block_end[ids].astype(np.int64)
        need = s + (rng.random(len(ids)) * 1.3 * (e - s)).astype(np.int64)
        t = BlockTable.from_index(ix, ids, need, partial=True)
        for k in range(len(ids)):
            bw = coll.files[int(t.file[k])]
            j = int(t.local[k])
            assert (t.offset[k], t.size[k]) == (bw.block_offset[j], bw.block_size[j])
            assert t.compressed[k] == bw.compressed and t.big_endian[k] == (bw.byteorder == ">")
            assert t.need_key[k] == need[k]
            assert (t.start_key[k], t.end_key[k]) == (bw.block_start_key[j], bw.block_end_key[j])
            frac = (need[k] - s[k]) / max(e[k] - s[k], 1)
            assert t.partial[k] == (bw.compressed and need[k] < e[k] and frac < PARTIAL_MAX_FRACTION)
            if t.partial[k]:
                co = bw.chrom_offsets
                assert co[t.chrom[k]] <= bw.block_start_key[j] < co[t.chrom[k] + 1]
                assert t.need_pos[k] == t.need_key[k] - co[t.chrom[k]]
        assert t.partial.any() and not t.partial.all()
        assert np.array_equal(t.slot[1:], np.cumsum((t.capacity + 3) // 4)[:-1])
        sub = t.take(np.array([2, 0]))
        assert sub.slot.tolist() == [t.slot[2], t.slot[0]] and not sub.whole().partial.any()

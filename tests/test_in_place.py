"""Reading in place: blocks of local uncompressed files are searched where they lie in a memory
map (no copy); the results equal the copying path and pyBigWig."""
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import data_files as df
from bwloader_core import BigWigCollection, BigWigFormatError, BigWigReadError
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.device import Device

REDUCES = ["mean", "sum", "max", "min"]


@pytest.fixture(scope="module")
def raw_files(bw_files, tmp_path_factory):
    """Uncompressed files of every section type: aligned (version 1; ours with a padded header)
    and not (our `uncompressed` fixture), so that one batch mixes blocks read in place and copied."""
    d = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(8)
    sizes = {"chr1": 300_000, "chr2": 120_000}
    out = []
    for i, (kind, pad) in enumerate([("bedgraph", 0), ("varstep", 2), ("fixedstep", 1)]):
        p = str(d / f"{kind}.bw")
        name = "c" * (4 * (i + 1) + pad)          # key size moves the data start: some files aligned, some not
        w = df.BigWigWriter(p, {**sizes, name: 1000}, compress=False, items_per_slot=200)
        for chrom, size in sizes.items():
            if kind == "bedgraph":
                w.add_bedgraph(chrom, *df.random_bedgraph(rng, size, 3000))
            elif kind == "varstep":
                s = 20 * np.sort(rng.choice((size - 30) // 20, 2000, replace=False))
                w.add_variable_step(chrom, s, df.random_values(rng, len(s)), span=20)
            else:
                w.add_fixed_step(chrom, 50, df.random_values(rng, (size - 100) // 37), step=37, span=13)
        w.close()
        out.append(p)
    return out + [bw_files["version1"].path, bw_files["uncompressed"].path]


def _processors(coll):
    return (BatchProcessor(coll, n_threads=2, device=Device.cpu(read_in_place=True)),
            BatchProcessor(coll, n_threads=2, device=Device.cpu(read_in_place=False)))


def test_blocks_read_in_place_and_copied_equal_pybigwig(raw_files):
    import pyBigWig
    with BigWigCollection(raw_files) as coll:
        aligned = [bool((f.block_offset % 4 == 0).all()) for f in coll.files]
        assert any(aligned) and not all(aligned)
        inplace, copied = _processors(coll)
        rng = np.random.default_rng(1)
        for window in (1, 9):
            chroms = list(rng.choice(["chr1", "chr2"], 40))
            starts = rng.integers(-100, 120_000, 40)
            a = inplace.process(chroms, starts, starts + 450, window_size=window, default_value=np.nan)
            b = copied.process(chroms, starts, starts + 450, window_size=window, default_value=np.nan)
            np.testing.assert_array_equal(a, b)
            if window == 1:
                for t, p in enumerate(raw_files):
                    np.testing.assert_array_equal(a[..., t], df.oracle_batch(p, chroms, starts, starts + 450))
        assert inplace._fetcher.blocks_in_place > 0 and copied._fetcher.blocks_in_place == 0
        assert inplace._fetcher.bytes_read < copied._fetcher.bytes_read
        inplace.close()
        copied.close()
    assert pyBigWig


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_in_place_equals_copy_on_random_queries(raw_files, data):
    with BigWigCollection(raw_files) as coll:
        inplace, copied = _processors(coll)
        n = data.draw(st.integers(1, 12))
        length = data.draw(st.integers(1, 3000))
        window = data.draw(st.sampled_from([1, 2, 7, 50]).filter(lambda w: w <= length))
        reduce = data.draw(st.sampled_from(REDUCES))
        default = data.draw(st.sampled_from([0.0, np.nan, -1.5]))
        chroms = data.draw(st.lists(st.sampled_from(["chr1", "chr2"]), min_size=n, max_size=n))
        starts = np.array(data.draw(st.lists(st.integers(-500, 310_000), min_size=n, max_size=n)))
        tracks = data.draw(st.lists(st.integers(0, len(raw_files) - 1), min_size=1, max_size=5))
        kw = dict(window_size=window, reduce=reduce, default_value=default, tracks=tracks)
        a = inplace.process(chroms, starts, starts + length, **kw)
        b = copied.process(chroms, starts, starts + length, **kw)
        np.testing.assert_array_equal(a, b)
        inplace.close()
        copied.close()


def test_truncated_while_open_is_an_error_not_a_crash(bw_files, tmp_path):
    """A mapped file that shrinks would fault the process on reading; every batch checks first."""
    p = tmp_path / "v1.bw"
    shutil.copy(bw_files["version1"].path, p)
    with BigWigCollection([str(p)]) as coll:
        chrom = coll.files[0].chrom_names[0]
        coll.get_batch([chrom], [0], [1000])
        assert coll._processor._fetcher.blocks_in_place > 0
        os.truncate(p, int(coll.files[0].block_offset[len(coll.files[0].block_offset) // 2]))
        with pytest.raises(BigWigReadError, match="v1.bw.*truncated while open") as ei:   # I/O, not format
            coll.get_batch([chrom], [0], [1000])
        assert not isinstance(ei.value, BigWigFormatError)


def test_switched_off_by_environment(bw_files, monkeypatch):
    monkeypatch.setenv("BWLOADER_IN_PLACE", "0")
    with BigWigCollection([bw_files["version1"].path]) as coll:
        coll.get_batch([coll.files[0].chrom_names[0]], [0], [1000])
        assert coll._processor._fetcher.blocks_in_place == 0


def test_overflowing_block_beside_blocks_read_in_place_and_cached(bw_files, tmp_path):
    """A compressed block that inflates past its slot (constant values compress > 64x) gets a buffer
    of its own; in a batch that also reads blocks in place, or from the cache, the Words keep that
    buffer alive and the values equal the oracle's."""
    import pyBigWig
    p = str(tmp_path / "flat.bw")
    w = df.BigWigWriter(p, {"chr3": 100_000}, items_per_slot=60_000)
    w.add_fixed_step("chr3", 0, np.full(60_000, 2.5, np.float32), step=1, span=1)
    w.close()
    raw = bw_files["version1"].path
    chrom = "chr3"
    assert chrom in pyBigWig.open(raw).chroms()
    starts = np.array([0, 10_000, 59_000])
    for cache in (0, 1 << 24):
        with BigWigCollection([p, raw], cache_bytes=cache) as coll:
            for _ in range(2):
                got = coll.get_batch([chrom] * 3, starts, starts + 2000, default_value=np.nan)
                np.testing.assert_array_equal(got[..., 0], df.oracle_batch(p, [chrom] * 3, starts, starts + 2000))
                np.testing.assert_array_equal(got[..., 1], df.oracle_batch(raw, [chrom] * 3, starts, starts + 2000))
            assert coll._processor._fetcher.blocks_in_place > 0

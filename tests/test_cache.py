"""The decoded-block cache: same values, bounded by bytes, hits on later epochs."""
import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection
from bwloader_core.cache import BlockCache


def test_lru_is_bounded_by_bytes():
    c = BlockCache(100)
    for i in range(10):
        c.put(i, b"x" * 30)
        assert c.nbytes <= 100
    assert c.get(9) is not None and c.get(0) is None
    c.put("big", b"x" * 101)          # larger than the whole cache: not stored
    assert c.get("big") is None
    with pytest.raises(ValueError):
        BlockCache(-1)


@pytest.mark.parametrize("name", ["pybigwig_mixed", "bigendian", "uncompressed", "deep_rtree"])
def test_cached_values_equal_uncached(bw_files, name):
    f = bw_files[name]
    rng = np.random.default_rng(5)
    chroms, starts, ends = df.random_queries(f, rng, 500, 64)
    with BigWigCollection([f.path]) as plain, BigWigCollection([f.path], cache_bytes=1 << 26) as cached:
        ref = plain.get_batch(chroms, starts, ends, default_value=np.nan)
        for epoch in range(3):
            got = cached.get_batch(chroms, starts, ends, default_value=np.nan)
            np.testing.assert_array_equal(got, ref)
        s = cached.cache.stats()
        assert s["hits"] >= 2 * s["misses"] > 0
        assert s["bytes"] <= s["capacity_bytes"]
        fetcher = cached._processor._fetcher
        assert fetcher.blocks_native > 0 and fetcher.blocks_python == 0    # misses took the compiled path


@pytest.mark.parametrize("native", [True, False])
def test_cache_filled_by_either_path_serves_the_other(bw_files, native):
    """Blocks cached by the Python path are read back by the compiled one and the other way round."""
    f = bw_files["bigendian"]
    rng = np.random.default_rng(8)
    chroms, starts, ends = df.random_queries(f, rng, 800, 48)
    with BigWigCollection([f.path]) as plain, BigWigCollection([f.path], cache_bytes=1 << 26) as cached:
        ref = plain.get_batch(chroms, starts, ends, default_value=np.nan)
        cached.get_batch(chroms[:1], starts[:1], ends[:1])
        fetcher = cached._processor._fetcher
        fetcher.native = native
        np.testing.assert_array_equal(cached.get_batch(chroms, starts, ends, default_value=np.nan), ref)
        fetcher.native = not native
        np.testing.assert_array_equal(cached.get_batch(chroms, starts, ends, default_value=np.nan), ref)
        assert cached.cache.stats()["hits"] > 0


def test_small_cache_stays_within_its_bound(bw_files):
    f = bw_files["deep_rtree"]
    rng = np.random.default_rng(6)
    with BigWigCollection([f.path], cache_bytes=20_000) as coll:
        for _ in range(5):
            chroms, starts, ends = df.random_queries(f, rng, 2000, 16)
            coll.get_batch(chroms, starts, ends)
            assert coll.cache.nbytes <= 20_000

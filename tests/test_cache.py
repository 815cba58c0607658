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


def test_small_cache_stays_within_its_bound(bw_files):
    f = bw_files["deep_rtree"]
    rng = np.random.default_rng(6)
    with BigWigCollection([f.path], cache_bytes=20_000) as coll:
        for _ in range(5):
            chroms, starts, ends = df.random_queries(f, rng, 2000, 16)
            coll.get_batch(chroms, starts, ends)
            assert coll.cache.nbytes <= 20_000

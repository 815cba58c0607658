"""The decoded-block cache: an arena of inflated blocks, searched in place; same values, bounded
by bytes, pinned blocks never overwritten, hits on later epochs."""
import threading

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.cache import WHOLE, BlockCache, Pins


def _fill(cache, blocks, n_words, covered=WHOLE):
    pins = Pins(cache)
    got, slots = cache.reserve(np.asarray(blocks), np.full(len(blocks), n_words), pins)
    cache.commit(slots, np.full(len(blocks), n_words * 4), np.full(len(blocks), covered), got >= 0)
    return got, pins


def test_ring_is_bounded_and_evicts_the_oldest():
    c = BlockCache(400)                        # 100 words
    for i in range(10):
        got, pins = _fill(c, [i], 30)
        pins.release()
        assert got[0] >= 0 and c.nbytes <= 400
    hit, _, _ = c.lookup([9, 8, 7, 0, 1], np.zeros(5, np.int64), Pins(c))
    assert hit.tolist() == [True, True, True, False, False]
    got, _ = _fill(c, [99], 101)               # larger than the whole arena: never stored
    assert got[0] == -1
    with pytest.raises(ValueError):
        BlockCache(-1)


def test_pinned_blocks_are_never_overwritten():
    c = BlockCache(400)
    got, held = _fill(c, [50], 60)             # pinned: a batch is reading it
    c.arena[got[0]:got[0] + 60] = 7
    for i in range(5):
        g, p = _fill(c, [i], 30)
        p.release()
    assert (c.arena[got[0]:got[0] + 60] == 7).all()
    assert c.stats()["refused"] > 0
    held.release()
    for i in range(5, 10):
        _fill(c, [i], 30)[1].release()
    assert not c.lookup([50], np.zeros(1, np.int64), Pins(c))[0][0]      # evicted once released


def test_partially_inflated_blocks_serve_what_they_cover():
    c = BlockCache(4000)
    _fill(c, [3], 10, covered=500)[1].release()
    hit, _, _ = c.lookup([3, 3], np.array([500, 501]), Pins(c))
    assert hit.tolist() == [True, False]


def test_a_block_looked_up_twice_is_pinned_twice_and_released_to_zero():
    c = BlockCache(4000)
    _fill(c, [3], 10)[1].release()
    pins = Pins(c)
    hit, _, _ = c.lookup([3, 3], np.zeros(2, np.int64), pins)
    assert hit.tolist() == [True, True]
    slot = int(c._slot_of_block[3])
    assert c._r_pins[slot] == 2
    pins.release()
    assert c._r_pins[slot] == 0


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
        assert fetcher.blocks_cached > 0 and fetcher.blocks_python == 0


def test_hits_are_read_in_place_not_fetched(bw_files):
    """Epoch 2 reads nothing: every block comes from the arena, where the kernels search it."""
    f = bw_files["pybigwig_bedgraph"]
    rng = np.random.default_rng(2)
    chroms, starts, ends = df.random_queries(f, rng, 2000, 40)
    with BigWigCollection([f.path], cache_bytes=1 << 26) as coll:
        p = BatchProcessor(coll, n_threads=2)
        first = p.process(chroms, starts, ends)
        read = p.bytes_read
        second = p.process(chroms, starts, ends)
        np.testing.assert_array_equal(first, second)
        assert p.bytes_read == read and p._fetcher.blocks_cached > 0
        p.close()


def test_first_epoch_inflates_partially_then_wider_queries_refetch(bw_files):
    """Misses are inflated as without a cache (partial inflate): a later query reaching further
    into a block than its cached prefix covers is a miss, and gets the right values."""
    f = bw_files["pybigwig_bedgraph"]
    chrom = list(f.chrom_sizes)[0]
    with BigWigCollection([f.path]) as plain, BigWigCollection([f.path], cache_bytes=1 << 26) as cached:
        for length in (100, 3000, 30_000):
            ref = plain.get_batch([chrom], [1000], [1000 + length])
            np.testing.assert_array_equal(cached.get_batch([chrom], [1000], [1000 + length]), ref)
        assert cached.cache.stats()["misses"] >= 2


def test_eviction_while_batches_read_cached_blocks(bw_files):
    """A cache far smaller than the working set, four threads: blocks in use are pinned, so no
    batch ever reads a block another thread's batch is overwriting."""
    f = bw_files["deep_rtree"]
    rng = np.random.default_rng(6)
    queries = [df.random_queries(f, rng, 3000, 24) for _ in range(12)]
    with BigWigCollection([f.path]) as plain:
        want = [plain.get_batch(*q, default_value=np.nan) for q in queries]
    with BigWigCollection([f.path], cache_bytes=60_000) as coll:
        errors = []

        def run(seed):
            p = BatchProcessor(coll, n_threads=1)
            order = np.random.default_rng(seed).permutation(len(queries))
            try:
                for _ in range(3):
                    for i in order:
                        np.testing.assert_array_equal(p.process(*queries[i], default_value=np.nan), want[i])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                p.close()

        threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        s = coll.cache.stats()
        assert s["bytes"] <= 60_000 and s["hits"] > 0


def test_small_cache_stays_within_its_bound(bw_files):
    f = bw_files["deep_rtree"]
    rng = np.random.default_rng(6)
    with BigWigCollection([f.path], cache_bytes=20_000) as coll:
        for _ in range(5):
            chroms, starts, ends = df.random_queries(f, rng, 2000, 16)
            coll.get_batch(chroms, starts, ends)
            assert coll.cache.nbytes <= 20_000


def test_forked_child_does_not_write_the_parents_cache(bw_files):
    """A DataLoader worker is a fork: its inflates and evictions land in its own copy of the arena
    (private memory), so the parent's cached blocks still hold the parent's data afterwards."""
    import multiprocessing as mp
    paths = [bw_files[n].path for n in ("pybigwig_bedgraph", "pybigwig_varstep")]
    rng = np.random.default_rng(4)
    mine = rng.integers(0, 300_000, 64)
    theirs = rng.integers(300_000, 390_000, 64)
    with BigWigCollection(paths, cache_bytes=256 << 10) as c, BigWigCollection(paths) as plain:
        q = (["chr1"] * 64, mine, mine + 900)
        want = plain.get_batch(*q)
        np.testing.assert_array_equal(c.get_batch(*q), want)        # now cached in the parent
        hits = c.cache.hits
        ctx = mp.get_context("fork")
        child = ctx.Process(target=_read_in_child, args=(c, theirs))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        np.testing.assert_array_equal(c.get_batch(*q), want)
        assert c.cache.hits > hits                                     # served from the parent's arena


def _read_in_child(coll, starts):
    for k in range(6):
        s = starts + 1000 * k
        coll.get_batch(["chr1"] * len(s), s, s + 900)

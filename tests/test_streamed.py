"""StreamedDataloader / WorkerContext / BigWigDataset: order, errors, shutdown, ownership."""
import gc
import threading
import time
import traceback

import numpy as np
import pytest

pyBigWig = pytest.importorskip("pyBigWig")

from bwloader_core import BigWigCollection  # noqa: E402
from bwloader_core.dataset import BigWigDataset  # noqa: E402
from bwloader_core.sampling import QueryBatchGenerator  # noqa: E402
from bwloader_core.streamed import StreamedDataloader  # noqa: E402

CHROMS = [("chr1", 400_000), ("chr2", 250_000)]


@pytest.fixture(scope="module")
def collection_paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(7)
    paths = []
    for t in range(3):
        p = str(d / f"track{t}.bw")
        bw = pyBigWig.open(p, "w")
        bw.addHeader(CHROMS, maxZooms=0)
        for c, size in CHROMS:
            lens = rng.integers(5, 40, size // 20)
            ends = np.cumsum(lens)
            starts = ends - lens
            m = (ends <= size) & (rng.random(len(ends)) > 0.1)
            bw.addEntries([c] * int(m.sum()), starts[m].tolist(), ends=ends[m].tolist(),
                          values=rng.random(int(m.sum())).tolist())
        bw.close()
        paths.append(p)
    return paths


@pytest.fixture
def coll(collection_paths):
    with BigWigCollection(collection_paths) as c:
        yield c


def _gen(coll, n=12, bs=16, seed=3, **kw):
    return QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=500, batch_size=bs,
                               batches_per_epoch=n, seed=seed, **kw)


def _bwloader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("bwloader")]


def test_batches_in_query_order_and_equal_to_get_batch(coll):
    gen = _gen(coll, n=20)
    queries = list(gen)
    with StreamedDataloader(iter(queries), coll, num_workers=3, queue_size=2) as loader:
        batches = list(loader)
    assert [b.index for b in batches] == [q.index for q in queries]
    for b, q in zip(batches, queries):
        np.testing.assert_array_equal(b.starts, q.starts)
        ref = coll.get_batch(q.chromosomes, q.target_starts, q.target_ends, tracks=q.track_indices)
        np.testing.assert_array_equal(b.values, ref)
        assert set(b.timings) >= {"plan", "read+inflate", "decode", "search", "fill", "queue_wait"}


def test_batches_own_their_arrays(coll):
    """A kept batch never changes when later batches are produced."""
    queries = list(_gen(coll, n=10))
    with StreamedDataloader(iter(queries), coll, num_workers=2) as loader:
        kept = [(b, b.values.copy()) for b in loader]
    for b, snapshot in kept:
        np.testing.assert_array_equal(b.values, snapshot)
    ptrs = {b.values.__array_interface__["data"][0] for b, _ in kept}
    assert len(ptrs) == len(kept)


def test_close_joins_every_thread(coll):
    before = len(_bwloader_threads())
    loader = StreamedDataloader(iter(list(_gen(coll, n=30))), coll, num_workers=3, queue_size=2)
    it = iter(loader)
    next(it)
    assert len(_bwloader_threads()) > before
    loader.close()
    assert len(_bwloader_threads()) == before


def test_break_mid_epoch_stops_threads(coll):
    before = len(_bwloader_threads())
    ds = BigWigDataset(coll, _gen(coll, n=50), num_workers=2, queue_size=2)
    for i, _ in enumerate(ds):
        if i == 2:
            break
    gc.collect()
    deadline = time.monotonic() + 5
    while len(_bwloader_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_bwloader_threads()) == before


def test_unclosed_loader_is_cleaned_up_by_gc(coll):
    before = len(_bwloader_threads())
    loader = StreamedDataloader(iter(list(_gen(coll, n=30))), coll, num_workers=2, queue_size=1)
    it = iter(loader)
    next(it)
    del it, loader
    gc.collect()
    deadline = time.monotonic() + 5
    while len(_bwloader_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_bwloader_threads()) == before


class Boom(RuntimeError):
    pass


def test_sampler_error_reaches_consumer_with_traceback(coll):
    queries = list(_gen(coll, n=5))

    def source():
        yield queries[0]
        yield queries[1]
        raise Boom("sampler failed on purpose")

    seen = 0
    t0 = time.monotonic()
    with pytest.raises(Boom) as info:
        with StreamedDataloader(source(), coll, num_workers=2) as loader:
            for _ in loader:
                seen += 1
    assert time.monotonic() - t0 < 5
    assert "source" in "".join(traceback.format_tb(info.value.__traceback__))
    assert seen <= 2


def test_worker_error_reaches_consumer_within_a_second(coll):
    queries = list(_gen(coll, n=6))
    bad = queries[3]
    bad.chromosomes = np.array(["chrUnknown"] * len(bad.chromosomes))
    before = len(_bwloader_threads())
    t0 = time.monotonic()
    with pytest.raises(KeyError, match="chrUnknown"):
        for _ in StreamedDataloader(iter(queries), coll, num_workers=2):
            pass
    assert time.monotonic() - t0 < 1.5
    assert len(_bwloader_threads()) == before


def test_dataset_epochs_are_reproducible(coll):
    ds = BigWigDataset(coll, _gen(coll, n=4, reverse_complement=True), num_workers=2)
    ds.set_epoch(3)
    a = [b.values for b in ds]
    ds.set_epoch(3)
    b = [b.values for b in ds]
    ds.set_epoch(4)
    c = [b.values for b in ds]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_reverse_complement_reverses_values(coll):
    gen = _gen(coll, n=3, reverse_complement=True)
    queries = list(gen)
    batches = list(StreamedDataloader(iter(queries), coll, num_workers=1))
    flipped = 0
    for b, q in zip(batches, queries):
        ref = coll.get_batch(q.chromosomes, q.target_starts, q.target_ends, tracks=q.track_indices)
        for i, rc in enumerate(q.reverse_complement):
            expect = ref[i, ::-1] if rc else ref[i]
            np.testing.assert_array_equal(b.values[i], expect)
            flipped += bool(rc)
    assert flipped > 0


def test_iterating_twice_is_refused(coll):
    loader = StreamedDataloader(iter(list(_gen(coll, n=2))), coll)
    list(loader)
    with pytest.raises(RuntimeError, match="once"):
        list(loader)


def test_bad_arguments(coll):
    with pytest.raises(ValueError, match="num_workers"):
        StreamedDataloader(iter([]), coll, num_workers=0)
    with pytest.raises(ValueError, match="reduce"):
        StreamedDataloader(iter([]), coll, reduce="median")


def test_empty_source_ends_cleanly(coll):
    assert list(StreamedDataloader(iter([]), coll, num_workers=2)) == []

"""Failing files, failing user code and every way of stopping a stream.

Real files, real threads: a bigWig deleted or truncated while the loader reads it, paths that
cannot be opened, a custom positions iterable or track sampler that raises, KeyboardInterrupt and
`break` in the consumer's loop, an unclosed loader left to the garbage collector, and many
open/iterate/close cycles. After each: every `bwloader*` thread has ended and the process holds
no more file descriptors than before.
"""
from __future__ import annotations

import errno
import gc
import os
import shutil
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

import stream_data
from bwloader_core import BigWigCollection, BigWigFormatError, BigWigReadError, LoaderConfig
from bwloader_core.dataset import BigWigDataset
from bwloader_core.sampling import QueryBatchGenerator
from bwloader_core.streamed import StreamedDataloader

SEQ = 400


# ------------------------------------------------------------------------------------ helpers
def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def bw_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("bwloader")]


def wait_for(pred, timeout=5.0, step=0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def assert_clean(fd_before: int, timeout=5.0):
    """Every loader thread ends, and the fd count returns to `fd_before`."""
    assert wait_for(lambda: not bw_threads(), timeout), f"threads still running: {bw_threads()}"
    gc.collect()
    assert wait_for(lambda: fds() <= fd_before, timeout), f"fd leak: {fds()} open, {fd_before} before"


@pytest.fixture(scope="module")
def sdata(tmp_path_factory):
    return stream_data.write_stream_data(tmp_path_factory.mktemp("failures"), seed=5)


@pytest.fixture
def copies(sdata, tmp_path):
    """A private copy of the bigWigs (and FASTA) that a test may delete or truncate."""
    paths = []
    for p in sdata.bigwig_paths:
        q = tmp_path / Path(p).name
        shutil.copyfile(p, q)
        paths.append(str(q))
    fasta = tmp_path / "genome.fa"
    shutil.copyfile(sdata.fasta, fasta)
    return paths, str(fasta)


def config(paths, fasta=None, **kw) -> LoaderConfig:
    base = dict(bigwig_paths=list(paths), reference_genome=fasta, sequence_length=SEQ, batch_size=8,
                batches_per_epoch=40, num_workers=2, queue_size=2, seed=3)
    base.update(kw)
    return LoaderConfig(**base)


@pytest.fixture(autouse=True, scope="module")
def _warm_up(sdata):
    """Import and compile everything once so that lazy imports do not count as fd changes."""
    ds = config(sdata.bigwig_paths, sdata.fasta, batches_per_epoch=2).build()
    list(ds)
    ds.close()
    assert wait_for(lambda: not bw_threads())


@pytest.fixture
def clean():
    """Checks after the test that no thread or fd is left over."""
    gc.collect()
    assert not bw_threads(), f"threads left by an earlier test: {bw_threads()}"
    before = fds()
    yield before
    assert_clean(before)


# ------------------------------------------------------------------------------------ files changing under the loader
def test_unlinked_files_keep_streaming_the_same_values(copies, sdata, clean):
    """On Linux an unlinked file stays readable through its open descriptor: the stream goes on
    and gives the same batches as the intact files."""
    paths, fasta = copies
    ref = config(sdata.bigwig_paths, sdata.fasta).build()
    expected = [(b.values, b.sequences) for b in ref]
    ref.close()
    ds = config(paths, fasta).build()
    got = []
    for i, b in enumerate(ds):
        got.append((b.values, b.sequences))
        if i == 2:
            for p in paths + [fasta]:
                os.unlink(p)
            assert not any(Path(p).exists() for p in paths)
    ds.close()
    assert len(got) == len(expected) == 40
    for (v, s), (ev, es) in zip(got, expected):
        np.testing.assert_array_equal(v, ev)
        np.testing.assert_array_equal(s, es)


def test_file_truncated_while_open_fails_fast_naming_the_file(copies, clean):
    paths, fasta = copies
    victim = paths[1]
    ds = config(paths, fasta, batches_per_epoch=100_000, batch_size=16).build()
    seen = 0
    with pytest.raises(BigWigReadError) as ei:       # an I/O failure (OSError), not a format error
        for seen, _ in enumerate(ds, 1):
            if seen == 3:
                os.truncate(victim, os.path.getsize(victim) // 2)
                t_cut = time.monotonic()
    elapsed = time.monotonic() - t_cut
    assert victim in str(ei.value), ei.value
    assert "truncated while open" in str(ei.value)
    assert isinstance(ei.value, OSError) and not isinstance(ei.value, BigWigFormatError)
    assert elapsed < 1.0, f"the error took {elapsed:.2f} s to reach the consumer"
    assert seen < 1000
    assert wait_for(lambda: not bw_threads()), bw_threads()
    ds.close()


def test_collection_truncated_while_open_direct_get_batch(copies, clean):
    paths, _ = copies
    with BigWigCollection(paths, n_threads=2) as c:
        c.get_batch(["chr1"] * 4, [0, 50_000, 100_000, 150_000], [2000, 52_000, 102_000, 152_000])
        os.truncate(paths[0], 1000)
        with pytest.raises(BigWigReadError, match="truncated while open") as ei:
            c.get_batch(["chr1", "chr2"], [10_000, 90_000], [60_000, 140_000])
        assert paths[0] in str(ei.value)


# ------------------------------------------------------------------------------------ paths that cannot be opened
def test_missing_file_is_a_clear_error_at_open(sdata, tmp_path, clean):
    missing = str(tmp_path / "no_such_track.bw")
    for make in (lambda: BigWigCollection([sdata.bigwig_paths[0], missing]),
                 lambda: config([sdata.bigwig_paths[0], missing]).build()):
        with pytest.raises(FileNotFoundError) as ei:
            make()
        assert isinstance(ei.value, BigWigReadError) and ei.value.errno == errno.ENOENT
        assert ei.value.filename == missing
        assert missing in str(ei.value) and "No such file" in str(ei.value)


def test_directory_in_place_of_a_file_is_a_clear_error(sdata, tmp_path, clean):
    d = tmp_path / "looks_like.bw"
    d.mkdir()
    with pytest.raises(IsADirectoryError) as ei:
        BigWigCollection([sdata.bigwig_paths[0], str(d)])
    assert isinstance(ei.value, BigWigReadError)
    assert str(d) in str(ei.value)
    assert "directory" in str(ei.value).lower()


def test_empty_directory_is_a_clear_error(tmp_path, clean):
    with pytest.raises(ValueError, match="no bigWig files"):
        config([str(tmp_path)]).build()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_a_clear_error(copies, clean):
    paths, _ = copies
    os.chmod(paths[0], 0)
    try:
        with pytest.raises(PermissionError) as ei:
            BigWigCollection(paths)
        assert isinstance(ei.value, BigWigReadError) and ei.value.errno == errno.EACCES
        assert paths[0] in str(ei.value) and "ermission" in str(ei.value)
    finally:
        os.chmod(paths[0], 0o644)


def test_failed_open_of_one_file_closes_the_others(sdata, tmp_path, clean):
    bad = tmp_path / "bad.bw"
    bad.write_bytes(b"not a bigwig at all" * 10)
    before = fds()
    for _ in range(20):
        with pytest.raises(BigWigFormatError):
            BigWigCollection(sdata.bigwig_paths + [str(bad)])
    gc.collect()
    assert fds() == before


# ------------------------------------------------------------------------------------ user code raising
class SamplerBoom(RuntimeError):
    pass


def _positions_that_fail(after: int):
    rng = np.random.default_rng(0)
    for i in range(after):
        yield ("chr1", int(rng.integers(1_000, 150_000)))
    raise SamplerBoom(f"positions iterable failed after {after} positions")


def test_exception_in_positions_iterable_reaches_the_consumer(sdata, clean):
    with BigWigCollection(sdata.bigwig_paths) as coll:
        gen = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=SEQ, batch_size=4,
                                  batches_per_epoch=50, positions=_positions_that_fail(4 * 5 + 2), seed=1)
        ds = BigWigDataset(coll, gen, num_workers=2, queue_size=2)
        n = 0
        t0 = time.monotonic()
        with pytest.raises(SamplerBoom) as ei:
            for _ in ds:
                n += 1
        assert time.monotonic() - t0 < 5
        assert n <= 5
        tb = "".join(traceback.format_tb(ei.value.__traceback__))
        assert "_positions_that_fail" in tb, tb
        assert wait_for(lambda: not bw_threads()), bw_threads()


def test_exception_in_custom_track_sampler_reaches_the_consumer(sdata, clean):
    def pick_tracks(rng, stream_index):
        if stream_index == 3:
            raise SamplerBoom("track sampler failed on purpose")
        return [0, 2]

    with BigWigCollection(sdata.bigwig_paths) as coll:
        gen = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=SEQ, batch_size=4,
                                  batches_per_epoch=20, tracks=pick_tracks, seed=1)
        n = 0
        with pytest.raises(SamplerBoom) as ei:
            for b in StreamedDataloader(iter(gen), coll, num_workers=2):
                assert b.values.shape[2] == 2
                n += 1
        assert n <= 3   # the error comes as soon as it happens, possibly before earlier batches
        assert "pick_tracks" in "".join(traceback.format_tb(ei.value.__traceback__))
        assert wait_for(lambda: not bw_threads()), bw_threads()


def test_exception_in_a_lazy_query_source_reaches_the_consumer(sdata, clean):
    """A QueryBatch source that fails while being iterated (the feeder thread)."""
    with BigWigCollection(sdata.bigwig_paths) as coll:
        gen = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=SEQ, batch_size=4,
                                  batches_per_epoch=10, seed=1)

        def source():
            for i, qb in enumerate(gen):
                if i == 4:
                    raise MemoryError("simulated out-of-memory in the feeder")
                yield qb

        with pytest.raises(MemoryError, match="simulated"):
            list(StreamedDataloader(source(), coll, num_workers=3))
        assert wait_for(lambda: not bw_threads()), bw_threads()


# ------------------------------------------------------------------------------------ stopping the consumer
def test_keyboard_interrupt_in_the_loop_body_stops_every_thread(sdata, clean):
    ds = config(sdata.bigwig_paths, sdata.fasta, batches_per_epoch=10_000).build()
    n = 0
    with pytest.raises(KeyboardInterrupt):
        for _ in ds:
            n += 1
            if n == 5:
                raise KeyboardInterrupt
    assert wait_for(lambda: not bw_threads(), 3.0), bw_threads()
    ds.close()


def test_break_stops_every_thread_without_gc(sdata, clean):
    ds = config(sdata.bigwig_paths, sdata.fasta, batches_per_epoch=10_000).build()
    gc.disable()
    try:
        for i, _ in enumerate(ds):
            if i == 3:
                break
        assert wait_for(lambda: not bw_threads(), 3.0), bw_threads()
    finally:
        gc.enable()
    # the dataset can start another epoch after a break
    assert len([b for _, b in zip(range(3), ds)]) == 3
    ds.close()


def test_unclosed_dataset_is_cleaned_up_by_gc(sdata, clean):
    ds = config(sdata.bigwig_paths, sdata.fasta, batches_per_epoch=10_000).build()
    it = iter(ds)
    next(it)
    next(it)
    assert bw_threads()
    del it, ds
    gc.collect()
    # `clean` checks that the threads end and the files (bigWigs and FASTA) are closed


def test_close_from_another_thread_unblocks_the_consumer(sdata, clean):
    """A consumer thread iterating a never-ending stream; the main thread closes the dataset."""
    ds = config(sdata.bigwig_paths, sdata.fasta, batches_per_epoch=1_000_000).build()
    result = {}

    def consume():
        n = 0
        try:
            for _ in ds:
                n += 1
                time.sleep(0.002)
            result["end"] = n
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=consume)
    t.start()
    assert wait_for(lambda: len(bw_threads()) >= 3)
    time.sleep(0.1)
    ds.close()
    t.join(5)
    assert not t.is_alive(), "the consumer is still blocked after close()"
    assert "error" in result or "end" in result
    if "error" in result:
        assert isinstance(result["error"], RuntimeError) and "closed" in str(result["error"])


# ------------------------------------------------------------------------------------ many cycles
def test_200_open_iterate_close_cycles_keep_fds_and_threads_flat(sdata, clean):
    base_fds = fds()
    base_threads = threading.active_count()
    cfg = config(sdata.bigwig_paths, sdata.fasta, batches_per_epoch=2, batch_size=2, sequence_length=200,
                 num_workers=1, queue_size=1, threads_per_worker=1)
    counts = []
    for i in range(200):
        ds = cfg.build()
        assert sum(b.batch_size for b in ds) == 4
        ds.close()
        del ds
        counts.append((fds(), threading.active_count()))
    bad = [(i, c) for i, c in enumerate(counts) if c[0] > base_fds or c[1] > base_threads]
    assert not bad, f"fds/threads above ({base_fds}, {base_threads}) after cycles: {bad[:5]}"


def test_collection_close_frees_its_fds(sdata, clean):
    before = fds()
    coll = BigWigCollection(sdata.bigwig_paths, n_threads=2)
    assert fds() == before + len(sdata.bigwig_paths)
    coll.get_batch(["chr1", "chr2"], [0, 500], [1000, 1500])
    coll.close()
    assert fds() == before
    coll.close()   # twice is fine
    with pytest.raises(ValueError, match="closed"):
        coll.get_batch(["chr1"], [0], [10])
    assert not bw_threads()


def test_dataset_close_frees_the_bigwig_fds(sdata, clean):
    before = fds()
    ds = config(sdata.bigwig_paths).build()
    assert fds() == before + len(sdata.bigwig_paths)
    for i, _ in enumerate(ds):
        if i == 5:
            break
    ds.close()
    assert fds() == before


def test_dataset_close_frees_the_fasta_fds(sdata):
    gc.collect()
    before = fds()
    ds = config(sdata.bigwig_paths, sdata.fasta).build()
    for i, _ in enumerate(ds):
        if i == 5:
            break
    ds.close()
    after_close = fds()
    del ds
    gc.collect()
    assert fds() == before   # freed by the garbage collector ...
    assert after_close == before, f"{after_close - before} fds still open after close()"   # ... not by close()

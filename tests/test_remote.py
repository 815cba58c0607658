"""bigWig files over HTTP (and other fsspec protocols): the same values as locally, few requests,
retries of transient failures, clear errors for missing, forbidden, truncated and failing files.

A real HTTP/1.1 server (tests/http_server.py) on 127.0.0.1 serves the session's test files.
"""
from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

import data_files  # noqa: E402
from http_server import RangeServer  # noqa: E402

from bwloader_core import io as bwio  # noqa: E402
from bwloader_core.collection import BigWigCollection  # noqa: E402
from bwloader_core.errors import BigWigFormatError, BigWigReadError  # noqa: E402
from bwloader_core.format import BigWigFile  # noqa: E402

NAMES = ["pybigwig_mixed", "bigendian", "uncompressed", "deep_rtree", "many_chroms_ours", "many_chroms",
         "pybigwig_fixedstep", "version1"]
ZOOM_NAMES = ["pybigwig_mixed", "bigendian", "many_chroms_256"]


@pytest.fixture(scope="module")
def served(bw_files, tmp_path_factory):
    """A directory with every test file (symlinked), a truncated copy and the streaming data."""
    d = tmp_path_factory.mktemp("served")
    for name, f in bw_files.items():
        os.symlink(f.path, d / f"{name}.bw")
    raw = Path(bw_files["pybigwig_mixed"].path).read_bytes()
    (d / "cut_mixed.bw").write_bytes(raw[:int(len(raw) * 0.6)])
    (d / "empty.bw").write_bytes(b"")
    from stream_data import write_stream_data
    sdata = write_stream_data(d / "stream", seed=3)
    return d, sdata, len(raw)


@pytest.fixture(scope="module")
def server(served):
    srv = RangeServer(served[0], idle_timeout=5.0).start()
    yield srv
    srv.stop()


@pytest.fixture
def srv(server):
    server.reset()
    yield server
    server.reset()


def _pair(bw_files, srv, name, **kw):
    return BigWigCollection([srv.url(f"{name}.bw")], **kw), BigWigCollection([bw_files[name].path], **kw)


def _same(a, b):
    np.testing.assert_array_equal(a, b)  # NaN == NaN


# -- values ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_values_over_http_equal_local(bw_files, srv, name):
    rng = np.random.default_rng([7, NAMES.index(name)])
    f = bw_files[name]
    remote, local = _pair(bw_files, srv, name)
    with remote, local:
        rf, lf = remote.files[0], local.files[0]
        assert rf.chrom_sizes == lf.chrom_sizes and rf.file_size == lf.file_size
        for attr in ("block_offset", "block_size", "block_start_key", "block_end_key"):
            np.testing.assert_array_equal(getattr(rf, attr), getattr(lf, attr))
        for length in (1, 1000, 4999):
            q = data_files.random_queries(f, rng, length, 40)
            _same(remote.get_batch(*q, default_value=np.nan), local.get_batch(*q, default_value=np.nan))
        q = data_files.random_queries(f, rng, 5000, 30)
        for reduce in ("mean", "max"):
            _same(remote.get_batch(*q, window_size=50, reduce=reduce), local.get_batch(*q, window_size=50, reduce=reduce))


@pytest.mark.parametrize("name", ZOOM_NAMES)
def test_zoom_over_http_equal_local(bw_files, srv, name):
    rng = np.random.default_rng(11)
    f = bw_files[name]
    remote, local = _pair(bw_files, srv, name)
    with remote, local:
        assert remote.files[0].zoom_levels
        w = 2 * max(z.reduction_level for z in remote.files[0].zoom_levels)
        q = data_files.random_queries(f, rng, 20 * w, 25)
        srv.clear_counts()
        got = remote.get_batch(*q, window_size=w, zoom=True)
        _same(got, local.get_batch(*q, window_size=w, zoom=True))
        assert srv.count() <= 4  # the zoom index (one window) and its coalesced blocks


def test_many_urls_in_one_collection_and_pickle(bw_files, srv):
    names = ["pybigwig_mixed", "bigendian", "uncompressed", "deep_rtree"]
    urls = [srv.url(f"{n}.bw") for n in names]
    rng = np.random.default_rng(5)
    with BigWigCollection(urls) as remote, BigWigCollection([bw_files[n].path for n in names]) as local:
        assert remote.track_names == local.track_names == names
        q = data_files.random_queries([bw_files[n] for n in names], rng, 2000, 64)
        _same(remote.get_batch(*q, window_size=10), local.get_batch(*q, window_size=10))
        back = pickle.loads(pickle.dumps(remote))  # a DataLoader worker reopens the URLs
        with back:
            _same(back.get_batch(*q, window_size=10), local.get_batch(*q, window_size=10))


def test_small_windows_and_read_ahead_still_exact(bw_files, srv, monkeypatch):
    """Tiny head / read-ahead / window cache: index walks span many windows, windows get evicted."""
    for key, v in dict(head_bytes=1024, readahead=4096, max_readahead=16384, window_cache_bytes=40_000,
                       coalesce_gap=0).items():
        monkeypatch.setitem(bwio.REMOTE_OPTIONS, key, v)
    rng = np.random.default_rng(3)
    for name in ("deep_rtree", "many_chroms_ours", "bigendian"):
        srv.clear_counts()
        remote, local = _pair(bw_files, srv, name)
        with remote, local:
            opened = srv.count()
            size = remote.files[0].file_size
            # read-ahead doubles: far fewer requests than index nodes, all bytes read at most ~twice
            assert opened <= 2 + int(np.ceil(np.log2(size / 4096))) + size // 16384, (name, opened)
            q = data_files.random_queries(bw_files[name], rng, 3000, 40)
            _same(remote.get_batch(*q), local.get_batch(*q))
    assert bwio._WINDOWS.nbytes <= 40_000 + 16384


def test_memory_protocol(bw_files):
    """Any fsspec protocol works: memory://."""
    import fsspec
    fs = fsspec.filesystem("memory")
    fs.pipe("/bwloader-test/mixed.bw", Path(bw_files["pybigwig_mixed"].path).read_bytes())
    try:
        rng = np.random.default_rng(1)
        with BigWigCollection(["memory://bwloader-test/mixed.bw"]) as remote, \
                BigWigCollection([bw_files["pybigwig_mixed"].path]) as local:
            q = data_files.random_queries(bw_files["pybigwig_mixed"], rng, 800, 30)
            _same(remote.get_batch(*q), local.get_batch(*q))
        with pytest.raises(FileNotFoundError, match="not found") as ei:
            BigWigFile("memory://bwloader-test/nope.bw")
        assert isinstance(ei.value, BigWigReadError)
    finally:
        fs.rm("/bwloader-test", recursive=True)


def test_local_paths_and_file_urls_stay_local(bw_files):
    p = bw_files["version1"].path
    for path in (p, Path(p), "file://" + p):
        src = bwio.open_source(path)
        try:
            assert isinstance(src, bwio.LocalSource) and src.coalesce_gap == 4096
        finally:
            src.close()


def test_missing_fsspec_says_what_to_install(srv, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ImportError, match=r"bwloader\[remote\]"):
        bwio.open_source(srv.url("version1.bw"))


# -- requests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_open_takes_few_requests(srv, name):
    srv.clear_counts()
    t0 = time.perf_counter()
    with BigWigFile(srv.url(f"{name}.bw")) as f:
        n = srv.count()
        assert f.n_blocks > 0
    # GET of the first 64 KiB, HEAD for the size (files over 64 KiB), one R-tree window
    assert n <= 3, srv.requests
    assert time.perf_counter() - t0 < 2.0


def test_batches_coalesce_into_few_concurrent_requests(bw_files, srv):
    f = bw_files["pybigwig_bedgraph"]
    with BigWigCollection([srv.url("pybigwig_bedgraph.bw")]) as remote, BigWigCollection([f.path]) as local:
        src = remote.files[0]._source
        assert src.coalesce_gap == 64 << 10
        starts = np.arange(0, 990_000, 4_950)
        srv.clear_counts()
        _same(remote.get_batch("chr1", starts, starts + 1000), local.get_batch("chr1", starts, starts + 1000))
        assert 1 <= srv.count() <= 4, srv.requests  # 200 queries over chr1: a few coalesced runs
        # runs far apart are separate requests, fetched together (pread_many)
        srv.clear_counts()
        offs, sizes = remote.files[0].block_offset, remote.files[0].block_size
        raw = bwio.read_blocks(src, offs, sizes, max_gap=0)
        assert [bytes(r) for r in raw] == [bytes(r) for r in local.files[0].read_blocks(np.arange(len(offs)))]


def test_concurrent_preads_are_thread_safe(bw_files, srv):
    path = bw_files["bigendian"].path
    raw = Path(path).read_bytes()
    src = bwio.open_source(srv.url("bigendian.bw"))
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(30):
                a = int(rng.integers(0, len(raw) - 1))
                n = int(rng.integers(1, min(50_000, len(raw) - a) + 1))
                assert src.pread(a, n, "data block") == raw[a:a + n]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    src.close()
    assert not errors, errors[:1]
    with pytest.raises(ValueError, match="closed"):
        src.pread(0, 10)


# -- errors ----------------------------------------------------------------------------------------
def test_not_found_fails_at_once(srv):
    url = srv.url("no_such_file.bw")
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="not found") as ei:
        BigWigCollection([url])
    assert isinstance(ei.value, BigWigReadError) and not isinstance(ei.value, BigWigFormatError)
    assert url in str(ei.value) and "404" in str(ei.value) and ei.value.filename == url
    assert time.perf_counter() - t0 < 1.0
    assert srv.count() == 1  # no retries
    srv.clear_counts()
    srv.missing.add("version1.bw")
    with pytest.raises(BigWigReadError, match="not found"):
        BigWigFile(srv.url("version1.bw"))
    assert srv.count() == 1


def test_forbidden_fails_at_once(srv):
    srv.forbidden.add("pybigwig_mixed.bw")
    url = srv.url("pybigwig_mixed.bw")
    with pytest.raises(PermissionError, match="permission denied") as ei:
        BigWigFile(url)
    assert isinstance(ei.value, BigWigReadError)
    assert url in str(ei.value) and "403" in str(ei.value)
    assert srv.count() == 1


@pytest.mark.parametrize("failure", ["500", "503", "drop"])
def test_transient_failures_at_open_are_retried(bw_files, srv, failure):
    if failure == "drop":
        srv.drop_next(2)
    else:
        srv.fail_next(2, status=int(failure))
    with BigWigFile(srv.url("pybigwig_mixed.bw")) as f:
        assert f.n_blocks == 17
    assert srv.count() == 2 + 3


@pytest.mark.parametrize("failure", ["500", "drop"])
def test_failing_size_query_is_retried(srv, failure):
    (srv.drop_next if failure == "drop" else srv.fail_next)(1, method="HEAD")
    with BigWigFile(srv.url("bigendian.bw")) as f:
        assert f.file_size == os.path.getsize(srv.root + "/bigendian.bw")


@pytest.mark.parametrize("failure", ["500", "drop"])
def test_transient_failures_of_data_reads_are_retried(bw_files, srv, failure):
    rng = np.random.default_rng(9)
    remote, local = _pair(bw_files, srv, "pybigwig_bedgraph")
    with remote, local:
        src = remote.files[0]._source
        raw = Path(bw_files["pybigwig_bedgraph"].path).read_bytes()
        srv.clear_counts()
        (srv.drop_next if failure == "drop" else srv.fail_next)(2)
        assert src.pread(70_000, 5_000, "data block") == raw[70_000:75_000]
        assert srv.count() == 3
        (srv.drop_next if failure == "drop" else srv.fail_next)(2)
        q = data_files.random_queries(bw_files["pybigwig_bedgraph"], rng, 3000, 50)
        _same(remote.get_batch(*q), local.get_batch(*q))


@pytest.mark.parametrize("failure", ["500", "drop"])
def test_persistent_failures_give_a_clear_error_after_bounded_retries(bw_files, srv, failure):
    url = srv.url("pybigwig_bedgraph.bw")
    with BigWigCollection([url]) as remote:
        src = remote.files[0]._source
        srv.clear_counts()
        (srv.drop_next if failure == "drop" else srv.fail_next)(10**6)
        t0 = time.perf_counter()
        with pytest.raises(BigWigReadError, match="after 3 tries") as ei:
            src.pread(70_000, 5_000, "data block")
        elapsed = time.perf_counter() - t0
        msg = str(ei.value)
        # a dropped connection is a ConnectionError; a 500 a plain read error (EIO)
        assert isinstance(ei.value, ConnectionError) == (failure == "drop"), type(ei.value)
        assert url in msg and ("500" in msg if failure == "500" else "Payload" in msg or "Disconnect" in msg), msg
        assert srv.count() == 3
        assert 0.35 < elapsed < 3.0  # backoff 0.1 + 0.3 s
        # through get_batch: an error, each coalesced run tried 3 times at most
        srv.clear_counts()
        starts = np.arange(0, 990_000, 99_000)
        t0 = time.perf_counter()
        with pytest.raises(BigWigReadError, match="after 3 tries"):
            remote.get_batch("chr1", starts, starts + 500)
        assert 1 <= srv.count() <= 3 * len(starts)
        assert time.perf_counter() - t0 < 5.0
    # at open
    srv.clear_counts()
    with pytest.raises(BigWigReadError, match="after 3 tries"):
        BigWigFile(url)
    assert srv.count() == 3


def test_read_timeout_is_retried_then_fails(bw_files, srv):
    raw = Path(bw_files["pybigwig_bedgraph"].path).read_bytes()
    src = bwio.RemoteSource(srv.url("pybigwig_bedgraph.bw"), read_timeout=0.3, backoff=(0.05,))
    try:
        srv.stall_next(1, seconds=1.0)
        assert src.pread(70_000, 100, "data block") == raw[70_000:70_100]
        srv.stall_next(10, seconds=1.0)
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError, match="after 3 tries.*[Tt]imeout") as ei:
            src.pread(80_000, 100, "data block")
        assert isinstance(ei.value, BigWigReadError)
        assert time.perf_counter() - t0 < 2.5
    finally:
        src.close()


def test_truncated_remote_files(served, srv):
    _, _, full = served
    # a file cut short, served honestly: its index lies past the end
    url = srv.url("cut_mixed.bw")
    with pytest.raises(BigWigFormatError) as ei:
        BigWigFile(url)
    assert url in str(ei.value)
    # the server claims the full size but has fewer bytes: a short read
    srv.claimed_size["cut_mixed.bw"] = full
    srv.claimed_mode = "short"
    with pytest.raises(BigWigReadError, match="short read") as ei:   # the file changed under the server
        BigWigFile(url)
    assert url in str(ei.value)
    # ... or promises the bytes (Content-Length) and closes early: retried, then an error
    srv.clear_counts()
    srv.claimed_mode = "cut"
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="after 3 tries") as ei:
        BigWigFile(url)
    assert isinstance(ei.value, BigWigReadError)
    assert url in str(ei.value)
    assert srv.count() <= 5 and time.perf_counter() - t0 < 3.0
    # an empty file
    with pytest.raises(BigWigFormatError, match="empty"):
        BigWigFile(srv.url("empty.bw"))


def test_server_ignoring_range_requests(bw_files, srv):
    srv.ignore_range = True
    with pytest.warns(RuntimeWarning, match="ignores HTTP Range"):
        remote = BigWigCollection([srv.url("pybigwig_mixed.bw")])
    with remote, BigWigCollection([bw_files["pybigwig_mixed"].path]) as local:
        q = data_files.random_queries(bw_files["pybigwig_mixed"], np.random.default_rng(2), 1000, 30)
        _same(remote.get_batch(*q), local.get_batch(*q))
    assert srv.count() == 1  # the whole file once


# -- streaming -------------------------------------------------------------------------------------
def test_loader_config_streams_over_http(served, srv):
    from bwloader_core.config import LoaderConfig
    _, sdata, _ = served
    base = dict(reference_genome=sdata.fasta, regions=[["chr1", 0, 200_000], ["chr2", 10_000, 120_000]],
                sequence_length=600, window_size=10, batch_size=8, batches_per_epoch=4, seed=5, jitter=25,
                scaling={"track0": 2.0}, default_value=float("nan"), num_workers=2, queue_size=2,
                threads_per_worker=2)
    urls = [srv.url(f"stream/{Path(p).name}") for p in sdata.bigwig_paths]
    remote_cfg = LoaderConfig(bigwig_paths=urls, **base)
    local_cfg = LoaderConfig(bigwig_paths=list(sdata.bigwig_paths), **base)
    with remote_cfg.build() as r, local_cfg.build() as lo:
        r.set_epoch(1)
        lo.set_epoch(1)
        a, b = list(r), list(lo)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        _same(x.values, y.values)
        np.testing.assert_array_equal(x.starts, y.starts)
        assert list(x.track_names) == list(y.track_names) == sdata.track_names


def test_streamed_dataloader_over_http(served, srv):
    from bwloader_core.sampling import QueryBatchGenerator
    from bwloader_core.streamed import StreamedDataloader
    _, sdata, _ = served
    urls = [srv.url(f"stream/{Path(p).name}") for p in sdata.bigwig_paths]
    with BigWigCollection(urls) as coll, BigWigCollection(sdata.bigwig_paths) as local:
        gen = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=1000, batch_size=16,
                                  batches_per_epoch=6, seed=1)
        queries = list(gen)
        with StreamedDataloader(iter(queries), coll, num_workers=3, queue_size=2) as loader:
            batches = list(loader)
        assert [b.index for b in batches] == [q.index for q in queries]
        for b, q in zip(batches, queries):
            _same(b.values, local.get_batch(q.chromosomes, q.target_starts, q.target_ends, tracks=q.track_indices))


# -- S3 (optional: s3fs and moto[server]) ------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    mp = pytest.MonkeyPatch()
    for k, v in dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                     AWS_EC2_METADATA_DISABLED="true").items():
        mp.setenv(k, v)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    mp.undo()


def test_s3_through_s3fs(bw_files, s3_endpoint, monkeypatch):
    import s3fs
    so = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**so, skip_instance_cache=True)
    fs.mkdir("bwloader-test")
    names = ["pybigwig_mixed", "bigendian"]
    for n in names:
        fs.put_file(bw_files[n].path, f"bwloader-test/{n}.bw")
    monkeypatch.setitem(bwio.REMOTE_OPTIONS, "storage_options", {"s3": so})
    urls = [f"s3://bwloader-test/{n}.bw" for n in names]
    rng = np.random.default_rng(4)
    with BigWigCollection(urls) as remote, BigWigCollection([bw_files[n].path for n in names]) as local:
        assert all(f._source.n_requests <= 3 for f in remote.files)
        q = data_files.random_queries([bw_files[n] for n in names], rng, 1500, 40)
        _same(remote.get_batch(*q), local.get_batch(*q))
        _same(remote.get_batch(*q, window_size=500, zoom=True), local.get_batch(*q, window_size=500, zoom=True))
    with pytest.raises(FileNotFoundError, match="not found") as ei:
        BigWigFile("s3://bwloader-test/missing.bw")
    assert "s3://bwloader-test/missing.bw" in str(ei.value)

"""Thousands of tracks (issue #13): the descriptor pool and read errors.

- More files than the open-file limit (set low in a subprocess with `resource.setrlimit`): they
  open, threads read them at once through the compiled and the Python paths, descriptors are
  closed and reopened, and the values equal pyBigWig's.
- A soft limit below the hard one is raised (logged once); a lease pins its descriptors while
  other readers wait; a file replaced or removed while its descriptor was closed is an error.
- Failures to open or read are `BigWigReadError` (an `OSError` of the matching kind, naming the
  file), never `BigWigFormatError`: missing, permission, a directory, too many open files, a file
  truncated while open.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import data_files as df
from bwloader_core import BigWigCollection, BigWigFile, BigWigFormatError, BigWigReadError
from bwloader_core import io as bwio
from bwloader_core.batch_processor import BatchProcessor
from bwloader_core.device import Device
from bwloader_core.errors import read_error

pytest.importorskip("pyBigWig")
NAMES = ["pybigwig_bedgraph", "pybigwig_varstep", "pybigwig_fixedstep", "pybigwig_mixed", "bigendian",
         "uncompressed"]
ROOT = Path(__file__).resolve().parent.parent


def _links(directory: Path, bw_files, n: int):
    """n symlinks t00000.bw ... to the fixture files in turn: (paths, fixture of each)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths, src = [], []
    for i in range(n):
        f = bw_files[NAMES[i % len(NAMES)]]
        p = directory / f"t{i:05d}.bw"
        if not p.exists():
            p.symlink_to(f.path)
        paths.append(str(p))
        src.append(f)
    return paths, src


def _run(script: str, timeout=300) -> dict:
    """Run `script` in a fresh Python (the limit must be set before anything opens files); its last
    stdout line is JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=str(ROOT))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]), stderr=r.stderr)


# ------------------------------------------------------------------------------------ the pool
def test_more_files_than_the_hard_limit_in_a_subprocess(bw_files, tmp_path):
    """Hard limit 160 descriptors, 420 files: all open; four processors read at once (compiled and
    Python fetch, windowed and not); values equal pyBigWig's; descriptors were closed and reopened
    and never more than the pool's capacity were open."""
    paths, src = _links(tmp_path / "links", bw_files, 420)
    spec = {"paths": paths, "oracle": [f.oracle_path for f in src], "names": [f.path for f in src]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = _run(f"""
        import json, os, resource, threading
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))
        import numpy as np
        import data_files as df
        from bwloader_core import BigWigCollection, io as bwio
        from bwloader_core.batch_processor import BatchProcessor
        from bwloader_core.device import Device
        spec = json.load(open({str(tmp_path / "spec.json")!r}))
        coll = BigWigCollection(spec["paths"])
        cap = bwio.HANDLES.capacity()
        fds_after_open = len(os.listdir("/proc/self/fd"))
        rng = np.random.default_rng(3)
        chroms, starts, ends = [], [], []
        for i in range(6):
            c = ["chr1", "chr2"][i % 2]
            s = int(rng.integers(0, 40_000))
            chroms.append(c); starts.append(s); ends.append(s + 3000)
        starts, ends = np.array(starts), np.array(ends)
        # the oracle: pyBigWig on the 6 distinct files, one column per track
        import pyBigWig
        cache = {{}}
        want = np.zeros((6, 3000, len(spec["paths"])), np.float32)
        for t, o in enumerate(spec["oracle"]):
            if o not in cache:
                h = pyBigWig.open(o)
                col = np.zeros((6, 3000), np.float32)
                for i in range(6):
                    size = h.chroms(chroms[i])
                    if size:
                        v = np.asarray(h.values(chroms[i], int(starts[i]), min(int(ends[i]), size)), np.float32)
                        col[i, :len(v)] = np.nan_to_num(v)
                h.close()
                cache[o] = col
            want[:, :, t] = cache[o]
        errors, max_open = [], [0]
        def reader(native, window):
            try:
                p = BatchProcessor(coll, n_threads=2, device=Device.cpu(native_fetch=native))
                for _ in range(2):
                    got = p.process(chroms, starts, ends, window_size=window)
                    max_open[0] = max(max_open[0], bwio.HANDLES.n_open)
                    ref = want if window == 1 else want.astype(np.float64).reshape(6, 3000 // window, window, -1).mean(axis=2)
                    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
                p.close()
            except BaseException as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=reader, args=a) for a in ((True, 1), (False, 1), (True, 100), (False, 100))]
        for t in threads: t.start()
        for t in threads: t.join()
        print(json.dumps(dict(errors=errors, cap=cap, n_open=bwio.HANDLES.n_open, max_open=max_open[0],
                              reopens=bwio.HANDLES.reopens, evictions=bwio.HANDLES.evictions,
                              soft=resource.getrlimit(resource.RLIMIT_NOFILE)[0], fds_after_open=fds_after_open,
                              fds_now=len(os.listdir("/proc/self/fd")))))
    """)
    assert out["errors"] == [], out["errors"][:2]
    assert out["soft"] == 160
    assert 8 <= out["cap"] < 160
    assert out["max_open"] <= out["cap"] and out["n_open"] <= out["cap"]
    assert out["evictions"] > 0 and out["reopens"] > 0
    assert out["fds_now"] < 160


def test_soft_limit_raised_toward_the_hard_one_and_logged_once(bw_files, tmp_path):
    paths, _ = _links(tmp_path / "links", bw_files, 300)
    out = _run(f"""
        import json, logging, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 4096))
        logging.basicConfig(level=logging.INFO)
        from bwloader_core import BigWigCollection, io as bwio
        paths = {paths!r}
        a = BigWigCollection(paths[:200])
        b = BigWigCollection(paths[200:])
        v = a.get_batch("chr1", [0], [500])
        print(json.dumps(dict(soft=resource.getrlimit(resource.RLIMIT_NOFILE)[0], evictions=bwio.HANDLES.evictions,
                              n_open=bwio.HANDLES.n_open)))
    """)
    assert out["soft"] >= 300 + 64 and out["soft"] <= 4096
    assert out["evictions"] == 0 and out["n_open"] == 300      # all stay open: no reopen cost
    assert out["stderr"].count("raised the soft open-file limit") == 1, out["stderr"]


@pytest.fixture
def small_pool(monkeypatch):
    monkeypatch.setitem(bwio.LOCAL_OPTIONS, "max_open_files", 4)
    yield bwio.HANDLES


def test_threads_reading_through_a_pool_of_four(bw_files, tmp_path, small_pool):
    """40 files through 4 descriptors: three processors on threads at once, compiled and Python
    fetch, equal to pyBigWig; the pool never holds more than 4."""
    paths, src = _links(tmp_path / "links", bw_files, 40)
    ev0, re0 = small_pool.evictions, small_pool.reopens
    with BigWigCollection(paths) as coll:
        assert small_pool.n_open <= 4
        rng = np.random.default_rng(9)
        chroms, starts, ends = df.random_queries([bw_files[n] for n in NAMES], rng, 1500, 10)
        want = np.stack([np.nan_to_num(df.oracle_batch(f, chroms, starts, ends)) for f in src], axis=-1)
        errors, seen = [], []

        def reader(native):
            try:
                p = BatchProcessor(coll, n_threads=2, device=Device.cpu(native_fetch=native))
                for _ in range(3):
                    got = p.process(chroms, starts, ends)
                    seen.append(small_pool.n_open)
                    np.testing.assert_array_equal(got, want.astype(np.float32))
                p.close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(n,)) for n in (True, False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert max(seen) <= 4
    assert small_pool.evictions > ev0 and small_pool.reopens > re0


def test_a_lease_pins_its_descriptors_while_others_wait(bw_files, tmp_path, small_pool):
    paths, _ = _links(tmp_path / "links", bw_files, 6)
    srcs = [bwio.LocalSource(p) for p in paths]
    try:
        lease = bwio.Lease(srcs, [0, 1, 2, 2, 3])         # all 4 descriptors
        inodes = [os.fstat(int(fd)).st_ino for fd in lease.fds]
        got = []
        t = threading.Thread(target=lambda: got.append(srcs[5].pread(0, 4, "header")))
        t.start()
        time.sleep(0.3)
        assert t.is_alive() and not got                     # waits: nothing can be closed
        assert [os.fstat(int(fd)).st_ino for fd in lease.fds] == inodes
        lease.close()
        t.join(5)
        assert got == [Path(paths[5]).resolve().read_bytes()[:4]]
        assert small_pool.n_open <= 4
    finally:
        for s in srcs:
            s.close()


def test_a_file_replaced_or_removed_while_its_descriptor_was_closed(bw_files, tmp_path, small_pool):
    """The pool reopens by path: a different file there now (or none) is an error, not other bytes."""
    import shutil
    a, b = bw_files["pybigwig_bedgraph"], bw_files["pybigwig_varstep"]
    paths = []
    for i in range(6):
        p = tmp_path / f"f{i}.bw"
        shutil.copy(a.path, p)
        paths.append(str(p))
    with BigWigCollection(paths) as coll:
        shutil.copy(b.path, paths[0] + ".new")
        os.replace(paths[0] + ".new", paths[0])
        os.remove(paths[1])
        chrom = coll.files[0].chrom_names[0]
        for p in paths[2:]:                                  # push files 0 and 1 out of the pool
            coll.get_batch(chrom, [0], [100], tracks=[paths.index(p)])
        with pytest.raises(BigWigReadError, match=r"f0\.bw: was replaced since it was opened") as ei:
            coll.get_batch(chrom, [0], [5000], tracks=[0])
        assert ei.value.errno == errno.ESTALE
        with pytest.raises(FileNotFoundError, match=r"f1\.bw: cannot reopen"):
            coll.get_batch(chrom, [0], [5000], tracks=[1])


def test_fork_child_reads_through_the_inherited_pool(bw_files, tmp_path, small_pool):
    """A forked child (a DataLoader worker) reads the parent's collection, whose inflate threads did
    not come along: it makes its own and gives the same values."""
    import multiprocessing as mp
    paths, src = _links(tmp_path / "links", bw_files, 12)
    with BigWigCollection(paths) as coll:
        rng = np.random.default_rng(2)
        chroms, starts, ends = df.random_queries([bw_files[n] for n in NAMES], rng, 800, 6)
        want = coll.get_batch(chroms, starts, ends, window_size=8)
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        proc = ctx.Process(target=lambda: q.put(coll.get_batch(chroms, starts, ends, window_size=8)))
        proc.start()
        try:
            got = q.get(timeout=60)
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        assert proc.exitcode == 0
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------ read errors
def test_read_error_kinds():
    cases = [(errno.ENOENT, FileNotFoundError), (errno.EACCES, PermissionError), (errno.EISDIR, IsADirectoryError),
             (errno.ETIMEDOUT, TimeoutError), (errno.ECONNRESET, ConnectionError)]
    for code, kind in cases:
        e = read_error("/data/x.bw", "failed", code)
        assert isinstance(e, kind) and isinstance(e, BigWigReadError) and e.errno == code
        assert str(e) == "/data/x.bw: failed" and e.filename == "/data/x.bw" and e.path == "/data/x.bw"
        assert not isinstance(e, BigWigFormatError)
    e = read_error("/data/x.bw", "I/O error", errno.EIO)
    assert type(e) is BigWigReadError and isinstance(e, OSError) and e.errno == errno.EIO
    import pickle
    e2 = pickle.loads(pickle.dumps(read_error("u", "gone", kind="missing")))
    assert isinstance(e2, FileNotFoundError) and str(e2) == "u: gone"


def test_too_many_open_files_is_an_oserror_naming_the_file(bw_files):
    path = bw_files["pybigwig_bedgraph"].path
    out = _run(f"""
        import errno, json, os, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from bwloader_core import BigWigFile, BigWigReadError, BigWigFormatError
        held = []
        while True:                        # the rest of the process takes every descriptor
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        try:
            BigWigFile({path!r})
            print(json.dumps(dict(raised=None)))
        except OSError as e:
            print(json.dumps(dict(raised=type(e).__name__, read=isinstance(e, BigWigReadError),
                                  fmt=isinstance(e, BigWigFormatError), errno=e.errno, msg=str(e))))
    """)
    assert out["raised"] and out["read"] and not out["fmt"]
    assert out["errno"] == errno.EMFILE
    assert path in out["msg"] and "Too many open files" in out["msg"] and "ulimit" in out["msg"]


def test_permission_denied_is_a_permission_error(bw_files):
    """As root, in a child that gives up root (root reads files whatever their mode)."""
    import shutil
    d = tempfile.mkdtemp(prefix="bwl-perm-")
    try:
        os.chmod(d, 0o755)
        p = os.path.join(d, "locked.bw")
        shutil.copy(bw_files["pybigwig_bedgraph"].path, p)
        os.chmod(p, 0)
        drop = "os.setgid(65534); os.setuid(65534)" if os.geteuid() == 0 else "pass"
        out = _run(f"""
            import json, os
            from bwloader_core import BigWigCollection, BigWigReadError
            BigWigCollection([{bw_files["pybigwig_varstep"].path!r}]).close()   # every lazy import, as root
            {drop}
            try:
                BigWigCollection([{p!r}])
                print(json.dumps(dict(raised=None)))
            except PermissionError as e:
                print(json.dumps(dict(raised="PermissionError", read=isinstance(e, BigWigReadError), msg=str(e),
                                      errno=e.errno)))
        """)
        assert out["raised"] == "PermissionError" and out["read"], out
        assert p in out["msg"] and out["errno"] == errno.EACCES
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("window", [1, 128])
def test_truncated_while_open_is_a_read_error_on_every_path(bw_files, tmp_path, window):
    """Compiled fetch, Python fetch, fused windows: a file cut short under an open collection is an
    I/O error (EIO) naming the file, not a format error."""
    import shutil
    f = bw_files["pybigwig_bedgraph"]
    for native in (True, False):
        p = tmp_path / f"cut_{native}_{window}.bw"
        shutil.copy(f.path, p)
        with BigWigCollection([str(p)]) as coll:
            chrom = coll.files[0].chrom_names[0]
            size = coll.files[0].chrom_sizes[chrom]
            proc = BatchProcessor(coll, n_threads=2, device=Device.cpu(native_fetch=native))
            os.truncate(p, int(coll.files[0].block_offset[len(coll.files[0].block_offset) // 2]))
            with pytest.raises(BigWigReadError, match="truncated while open") as ei:
                proc.process([chrom], [0], [size - size % window], window_size=window)
            assert ei.value.errno == errno.EIO and str(p) in str(ei.value)
            assert not isinstance(ei.value, BigWigFormatError)
            proc.close()


def test_a_file_truncated_before_open_stays_a_format_error(bw_files, tmp_path):
    raw = Path(bw_files["pybigwig_bedgraph"].path).read_bytes()
    p = tmp_path / "short.bw"
    p.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(BigWigFormatError, match=r"short\.bw"):
        BigWigFile(str(p))


def test_skip_leaves_out_bad_files_but_not_an_io_failure(bw_files, tmp_path):
    """on_error='skip' skips a corrupt file, never an outage (here: no descriptor left)."""
    import shutil
    shutil.copy(bw_files["pybigwig_bedgraph"].path, tmp_path / "good.bw")
    (tmp_path / "bad.bw").write_bytes(b"not a bigwig" * 20)
    with BigWigCollection(str(tmp_path), on_error="skip") as coll:
        assert coll.n_tracks == 1 and [Path(p).name for p, _ in coll.skipped] == ["bad.bw"]
    out = _run(f"""
        import json, os, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from bwloader_core import BigWigCollection
        held = []
        while True:
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        try:
            BigWigCollection({str(tmp_path)!r}, on_error="skip")
            print(json.dumps(dict(raised=None)))
        except OSError as e:
            print(json.dumps(dict(raised=type(e).__name__, errno=e.errno)))
    """)
    assert out["raised"] and out["errno"] == errno.EMFILE

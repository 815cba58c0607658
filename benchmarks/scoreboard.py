#!/usr/bin/env python
"""The bwloader scoreboard: one run that measures every number the README shows.

    python benchmarks/scoreboard.py --out docs/scoreboard.md --plot docs/scoreboard.png   # make bench
    python benchmarks/scoreboard.py --quick            # short measurements, for a smoke test

Collection: benchmarks/datasets.py's generated one (about 200 Mb over three chromosomes, ~25-bp
bedGraph runs, ~10% gaps, 16 tracks, written by pyBigWig with zoom levels), generated once and cached
under benchmarks/out/data/.

Shapes (float32, default value 0):
  S1  3 tracks x 1000 bp, batch 256, window 1
  S2 16 tracks x 1000 bp, batch 128, window 1
  S3 16 tracks x 131,072 bp, batch 8, window 128 (mean) -> (8, 1024, 16)

Queries: per shape a few *pools* of random queries are drawn with datasets.BlockDisjointSampler: no
two queries of a pool touch the same data block of any file. A measurement runs pool after pool
(cycling when it runs out) and opens its reader afresh for every pool, so no reader can reuse a
decoded block: no cache decides the race. Every reader of a shape sees the same pools.

Each reader runs in its own subprocess (peak RSS = that process's VmHWM, imports included):
  bwloader    BigWigCollection(paths, cache_bytes=0).get_batch (inflate threads: all CPUs)
  stream      LoaderConfig(..., num_workers=2, cache_bytes=0).build() (no FASTA), iterated; its
              query generator is swapped for one over the same pools (ArrayPositions), timed from
              iter() to the last batch of each pool
  pyBigWig    a loop of values(chrom, start, end, numpy=True) per (query, track), NaN -> 0
              (S3: then the mean over each 128-bp window, what bwloader computes with default 0)
  pybigtools  a loop of values(chrom, start, end) per (query, track), likewise
  inflate     benchmarks/inflate_limit.py on exactly the batches the bwloader run did
  zoom        (S3) get_batch(..., zoom=True) and zoom=<finest level>, error against the exact mean

Also: opening 1000 bigWig files, the RSS of streaming S2 for a while, and a multi-epoch run over a
fixed set of regions with and without the decoded-block cache.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import cpu_model, load_module  # noqa: E402
ROOT = HERE.parent
WORK = HERE / "out" / "scoreboard"
PY = sys.executable

SHAPES = {
    "S1": dict(tracks=3, length=1000, window=1, batch=256),
    "S2": dict(tracks=16, length=1000, window=1, batch=128),
    "S3": dict(tracks=16, length=131072, window=128, batch=8),
}
READERS = ("bwloader", "stream", "pyBigWig", "pybigtools")
TARGETS = dict(S1=3.5, S2=3.5, S3=3.0)     # bwloader / faster peer (S3: / pyBigWig exact)
INFLATE_TARGET = 1.25
OPEN_TARGET_S = 2.0
RSS_TARGET_MB = 1024


# ==================================================================================================
# helpers shared by parent and workers
# ==================================================================================================
def datasets():
    return load_module("datasets", "datasets.py")


def proc_status():
    """VmRSS and VmHWM (peak) of this process, in MiB."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) / 1024
    return out


def load1():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def read_pools(path):
    """[(chroms list, starts, ends)] of the pools stored in `path`."""
    z = np.load(path, allow_pickle=False)
    chroms, starts, pool = z["chroms"], z["starts"], z["pool"]
    length = int(z["length"])
    out = []
    for p in range(int(pool.max()) + 1 if len(pool) else 0):
        k = pool == p
        s = starts[k].astype(np.int64)
        out.append((chroms[k].tolist(), s, s + length))
    return out


def batches_of(pools, batch):
    """Endless iterator of (pool index, chroms, starts, ends) batches, pool after pool."""
    while True:
        for p, (c, s, e) in enumerate(pools):
            for b in range(len(s) // batch):
                k = slice(b * batch, (b + 1) * batch)
                yield p, c[k], s[k], e[k]


# ==================================================================================================
# workers (each runs in its own process: python scoreboard.py --worker KIND --args JSON)
# ==================================================================================================
def _window_mean(out, window):
    if window == 1:
        return out
    B, L, T = out.shape
    return out.reshape(B, L // window, window, T).mean(axis=2, dtype=np.float64).astype(np.float32)


def _peer_run(kind, handles, chroms, starts, ends, window):
    B, L, T = len(starts), int(ends[0] - starts[0]), len(handles)
    out = np.empty((B, L, T), np.float32)
    for i, (c, s, e) in enumerate(zip(chroms, starts.tolist(), ends.tolist())):
        for t, bw in enumerate(handles):
            if kind == "pyBigWig":
                out[i, :, t] = bw.values(c, s, e, numpy=True)
            else:
                out[i, :, t] = bw.values(c, s, e)
    np.nan_to_num(out, copy=False)
    return _window_mean(out, window)


def _open_peer(kind, paths):
    if kind == "pyBigWig":
        import pyBigWig
        return [pyBigWig.open(p) for p in paths]
    import pybigtools
    return [pybigtools.open(p) for p in paths]


def _close_peer(handles):
    for h in handles:
        close = getattr(h, "close", None)
        if close is not None:
            close()


def worker_reader(a):
    """bwloader / pyBigWig / pybigtools: timed calls over the pools, reader reopened per pool."""
    kind, shape = a["kind"], SHAPES[a["shape"]]
    paths = a["paths"][:shape["tracks"]]
    pools = read_pools(a["pools"])
    B, w = shape["batch"], shape["window"]
    if kind == "bwloader":
        from bwloader_core import BigWigCollection
        from bwloader_core.batch_processor import STAGES

        def opener():
            return BigWigCollection(paths, cache_bytes=0)

        stages = dict.fromkeys(STAGES, 0.0)

        def run(h, c, s, e):
            return h.get_batch(c, s, e, window_size=w, reduce="mean")

        def closer(h):
            for k, v in h.timings.items():
                stages[k] = stages.get(k, 0.0) + v
            h.close()
    else:
        def opener():
            return _open_peer(kind, paths)

        def run(h, c, s, e):
            return _peer_run(kind, h, c, s, e, w)

        closer = _close_peer
        stages = None
    rss0 = proc_status()["VmRSS"]
    # warm-up: one batch of another pool's queries (JIT, thread pools), not timed
    h = opener()
    _, c, s, e = next(batches_of(pools[-1:], B))
    run(h, c, s, e)
    closer(h)
    if stages:
        stages = dict.fromkeys(stages, 0.0)
    elapsed, n_batches, per_batch, cur, h = 0.0, 0, [], None, None
    load = [load1()]
    for p, c, s, e in batches_of(pools, B):
        if p != cur:
            if h is not None:
                closer(h)
            h, cur = opener(), p
        t0 = time.perf_counter()
        run(h, c, s, e)
        dt = time.perf_counter() - t0
        elapsed += dt
        per_batch.append(dt)
        n_batches += 1
        if (elapsed >= a["duration"] and n_batches >= a.get("min_batches", 2)) or n_batches >= a.get("max_batches", 10**9):
            break
    closer(h)
    load.append(load1())
    st = proc_status()
    return dict(samples_per_s=n_batches * B / elapsed, batches=n_batches, seconds=elapsed,
                per_batch_s=per_batch, rss_start_mb=rss0, peak_rss_mb=st["VmHWM"], stages=stages, load=load)


def worker_stream(a):
    """LoaderConfig(...).build(), generator swapped for ArrayPositions over the pools."""
    from bwloader_core.config import LoaderConfig
    from bwloader_core.sampling import QueryBatchGenerator
    from bwloader_core.sampling.samplers import ArrayPositions

    shape = SHAPES[a["shape"]]
    paths = a["paths"][:shape["tracks"]]
    pools = read_pools(a["pools"])
    B, L, w = shape["batch"], shape["length"], shape["window"]
    rss0 = proc_status()["VmRSS"]
    cfg = LoaderConfig(bigwig_paths=paths, sequence_length=L, window_size=w, reduce="mean", batch_size=B,
                       num_workers=2, cache_bytes=0, seed=a.get("seed", 0))
    ds = cfg.build()
    coll = ds.collection

    def generator(chroms, starts):
        nb = len(starts) // B
        pos = ArrayPositions(coll.chrom_sizes, list(zip(chroms[:nb * B], (starts[:nb * B] + L // 2).tolist())), L,
                             shuffle=False)
        return QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=L, window_size=w,
                                   batch_size=B, positions=pos, seed=a.get("seed", 0), rank=0, world_size=1)

    shape_seen = None
    try:
        # warm-up epoch on the last pool (threads, JIT), not timed
        c, s, _ = pools[-1]
        ds.generator = generator(c[:2 * B], s[:2 * B])
        for b in ds:
            shape_seen = b.values.shape
        # epochs of up to 64 batches, taken in order from the pools one after the other (cycling): the
        # stream has no block cache, so a block shared by two pools is read twice like any other, and
        # short epochs would time thread start-up and the drain at the end of each epoch
        all_c = [x for c, s, _ in pools for x in c[:len(s) // B * B]]
        all_s = np.concatenate([s[:len(s) // B * B] for c, s, _ in pools])
        chunks = [(all_c[i:i + 64 * B], all_s[i:i + 64 * B]) for i in range(0, len(all_s), 64 * B)]
        elapsed, samples, epochs, load = 0.0, 0, 0, [load1()]
        while elapsed < a["duration"] or epochs < 1:
            c, s = chunks[epochs % len(chunks)]
            ds.generator = generator(c, s)
            t0 = time.perf_counter()
            n = 0
            for b in ds:
                n += b.batch_size
            elapsed += time.perf_counter() - t0
            samples += n
            epochs += 1
        load.append(load1())
    finally:
        ds.close()
    return dict(samples_per_s=samples / elapsed, batches=samples // B, seconds=elapsed, epochs=epochs,
                rss_start_mb=rss0, peak_rss_mb=proc_status()["VmHWM"], batch_shape=list(shape_seen), load=load)


def worker_inflate(a):
    """The inflate limit on exactly the batches the bwloader worker timed."""
    il = load_module("inflate_limit", "inflate_limit.py")
    shape = SHAPES[a["shape"]]
    paths = a["paths"][:shape["tracks"]]
    pools = read_pools(a["pools"])
    it = batches_of(pools, shape["batch"])
    batches = [next(it)[1:] for _ in range(a["n_batches"])]
    warm = next(batches_of(pools[-1:], shape["batch"]))[1:]
    r = il.inflate_limit(paths, batches, shape["window"], n_threads=os.cpu_count(), warmup=warm)
    r["peak_rss_mb"] = proc_status()["VmHWM"]
    return r


def worker_zoom(a):
    """S3 with zoom=True and zoom=<finest level>: samples/s and error against the exact mean."""
    from bwloader_core import BigWigCollection

    shape = SHAPES[a["shape"]]
    paths = a["paths"][:shape["tracks"]]
    pools = read_pools(a["pools"])
    B, w = shape["batch"], shape["window"]
    out = {}
    with BigWigCollection(paths) as coll:
        finest = [min((z.reduction_level for z in f.zoom_levels), default=0) for f in coll.files]
        levels = sorted({z.reduction_level for f in coll.files for z in f.zoom_levels})
    # zoom=<level> needs every track to have that level: group the tracks by their finest level
    groups = {}
    for t, lv in enumerate(finest):
        if lv:
            groups.setdefault(lv, []).append(t)
    modes = [("zoom=True", {True: list(range(len(paths)))})]
    if groups and min(groups) > w:
        modes.append(("finest level", groups))
    out["levels"] = levels
    out["finest"] = sorted(groups)

    def get(h, c, s, e, groups):
        if len(groups) == 1:
            z, tr = next(iter(groups.items()))
            if len(tr) == len(paths):
                return h.get_batch(c, s, e, window_size=w, zoom=z)
        res = np.empty((len(s), SHAPES[a["shape"]]["length"] // w, len(paths)), np.float32)
        for z, tr in groups.items():
            res[:, :, tr] = h.get_batch(c, s, e, window_size=w, zoom=z, tracks=tr)
        return res
    # in one process, chunks of 4 batches: exact get_batch on them, then each zoom mode on them
    acc = {label: dict(t=0.0, abs_sum=0.0, max_abs=0.0, max_rel=0.0, rel=[], zero_wrong=0, sum=0.0)
           for label, _ in modes}
    t_exact, n, cur, h = 0.0, 0, None, None
    abs_n = abs_exact = sum_exact = 0.0
    it = batches_of(pools, B)
    while not (t_exact >= a["duration"] / 2 and n >= 2):
        chunk = [next(it) for _ in range(4)]
        if chunk[0][0] != cur:
            if h is not None:
                h.close()
            h, cur = BigWigCollection(paths, cache_bytes=0), chunk[0][0]
            if n == 0:  # warm-up
                _, c, s, e = chunk[0]
                h.get_batch(c, s, e, window_size=w)
                for _, z in modes:
                    get(h, c, s, e, z)
        exacts = []
        for _, c, s, e in chunk:
            t0 = time.perf_counter()
            exacts.append(h.get_batch(c, s, e, window_size=w))
            t_exact += time.perf_counter() - t0
        gots = {}
        for label, z in modes:
            t0 = time.perf_counter()
            gots[label] = [get(h, c, s, e, z) for _, c, s, e in chunk]
            acc[label]["t"] += time.perf_counter() - t0
        for i, exact in enumerate(exacts):
            exact = exact.astype(np.float64)
            nz = exact != 0
            abs_n += exact.size
            abs_exact += float(np.abs(exact).sum())
            sum_exact += float(exact.sum())
            for label, _ in modes:
                r, got = acc[label], gots[label][i]
                d = np.abs(got.astype(np.float64) - exact)
                r["abs_sum"] += float(d.sum())
                r["max_abs"] = max(r["max_abs"], float(d.max()))
                if nz.any():
                    rel = d[nz] / np.abs(exact[nz])
                    r["max_rel"] = max(r["max_rel"], float(rel.max()))
                    r["rel"].append(rel.astype(np.float32))
                r["zero_wrong"] += int((d[~nz] > 0).sum())
                r["sum"] += float(got.sum())
        n += len(chunk)
    h.close()
    out["exact"] = dict(samples_per_s=n * B / t_exact, batches=n)
    for label, _ in modes:
        r = acc[label]
        rel = np.concatenate(r["rel"]) if r["rel"] else np.zeros(1)
        out[label] = dict(samples_per_s=n * B / r["t"], batches=n, mean_abs_err=r["abs_sum"] / abs_n,
                          mean_abs_exact=abs_exact / abs_n, max_abs_err=r["max_abs"], max_rel_err=r["max_rel"],
                          median_rel_err=float(np.median(rel)), p99_rel_err=float(np.percentile(rel, 99)),
                          zero_windows_nonzero=r["zero_wrong"],
                          total_rel_err=abs(r["sum"] - sum_exact) / abs(sum_exact) if sum_exact else 0.0)
    out["peak_rss_mb"] = proc_status()["VmHWM"]
    return out


def worker_open(a):
    """Time BigWigCollection(paths) over many files (index load), then close."""
    from bwloader_core import BigWigCollection
    paths = a["paths"]
    rss0 = proc_status()["VmRSS"]
    times = []
    for _ in range(a.get("repeats", 3)):
        t0 = time.perf_counter()
        coll = BigWigCollection(paths)
        times.append(time.perf_counter() - t0)
        rss_open = proc_status()["VmRSS"]
        n_blocks = int(sum(f.n_blocks for f in coll.files))
        coll.close()
    return dict(seconds=times, n_files=len(paths), n_blocks=n_blocks, rss_start_mb=rss0, rss_open_mb=rss_open,
                peak_rss_mb=proc_status()["VmHWM"])


def worker_stream_rss(a):
    """Stream S2 (random queries from the config's own sampler) for a while; RSS over time."""
    from bwloader_core.config import LoaderConfig
    shape = SHAPES["S2"]
    cfg = LoaderConfig(bigwig_paths=a["paths"][:shape["tracks"]], sequence_length=shape["length"],
                       batch_size=shape["batch"], num_workers=2, cache_bytes=0, batches_per_epoch=100_000,
                       seed=a.get("seed", 0))
    rss = []
    t0 = time.perf_counter()
    n = 0
    with cfg.build() as ds:
        for b in ds:
            n += 1
            if n % 5 == 0:
                rss.append((time.perf_counter() - t0, n, proc_status()["VmRSS"]))
            if time.perf_counter() - t0 >= a["duration"]:
                break
    dt = time.perf_counter() - t0
    return dict(batches=n, seconds=dt, samples_per_s=n * shape["batch"] / dt, rss=rss,
                peak_rss_mb=proc_status()["VmHWM"])


def worker_epochs(a):
    """A fixed set of regions (S1 shape) streamed for several epochs, with the given cache_bytes."""
    from bwloader_core.config import LoaderConfig
    from bwloader_core.sampling import QueryBatchGenerator
    from bwloader_core.sampling.samplers import ArrayPositions
    shape = SHAPES["S1"]
    B, L = shape["batch"], shape["length"]
    chroms, starts, _ = read_pools(a["pools"])[0]
    n = min(a["n_regions"], len(starts)) // B * B
    cfg = LoaderConfig(bigwig_paths=a["paths"][:shape["tracks"]], sequence_length=L, batch_size=B,
                       num_workers=2, cache_bytes=a["cache_bytes"], seed=0)
    rates = []
    with cfg.build() as ds:
        coll = ds.collection
        pos = ArrayPositions(coll.chrom_sizes, list(zip(chroms[:n], (starts[:n] + L // 2).tolist())), L,
                             shuffle=True)
        ds.generator = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=L, batch_size=B,
                                           positions=pos, seed=0, rank=0, world_size=1)
        # warm-up (numba kernels, thread pools) on queries outside the region set, with the cache off
        cap, coll.cache.capacity = coll.cache.capacity, 0
        c2, s2, e2 = read_pools(a["pools"])[-1]
        coll.get_batch(c2[-B:], s2[-B:], e2[-B:])
        coll.cache.capacity = cap
        for ep in range(a["epochs"]):
            ds.set_epoch(ep)
            t0 = time.perf_counter()
            m = sum(b.batch_size for b in ds)
            rates.append(m / (time.perf_counter() - t0))
        stats = coll.cache.stats()
    return dict(rates=rates, n_regions=n, cache=stats, peak_rss_mb=proc_status()["VmHWM"])


WORKERS = dict(bwloader=worker_reader, pyBigWig=worker_reader, pybigtools=worker_reader, stream=worker_stream,
               inflate=worker_inflate, zoom=worker_zoom, open=worker_open, stream_rss=worker_stream_rss,
               epochs=worker_epochs)


def worker_main(kind, args_path):
    a = json.loads(Path(args_path).read_text())
    a["kind"] = kind
    res = WORKERS[kind](a)
    Path(a["result"]).write_text(json.dumps(res))


# ==================================================================================================
# parent: data, pools, subprocesses, report
# ==================================================================================================
def spawn(kind, log, **a):
    WORK.mkdir(parents=True, exist_ok=True)
    tag = f"{kind}_{a.get('shape', '') or a.get('tag', '')}"
    a["result"] = str(WORK / f"{tag}.json")
    args_path = WORK / f"{tag}.args.json"
    args_path.write_text(json.dumps(a))
    Path(a["result"]).unlink(missing_ok=True)
    t0 = time.perf_counter()
    p = subprocess.run([PY, __file__, "--worker", kind, str(args_path)], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        log(f"  ! {tag} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
        return None
    res = json.loads(Path(a["result"]).read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


def draw_pools(paths, shape, n_pools, rng, log):
    ds = datasets()
    sh = SHAPES[shape]
    sampler = ds.BlockDisjointSampler(paths[:sh["tracks"]], sh["length"])
    chroms, starts, pool = [], [], []
    for p in range(n_pools):
        c, s, _ = sampler.sample(4096, rng)
        if len(s) < sh["batch"]:
            raise RuntimeError(f"{shape}: only {len(s)} block-disjoint queries fit, fewer than a batch")
        chroms += list(c)
        starts.append(s)
        pool.append(np.full(len(s), p))
    path = WORK / f"pools_{shape}.npz"
    np.savez(path, chroms=np.array(chroms), starts=np.concatenate(starts), pool=np.concatenate(pool),
             length=sh["length"])
    sizes = [int((np.concatenate(pool) == p).sum()) for p in range(n_pools)]
    log(f"  {shape}: {n_pools} pools of {sizes} block-disjoint queries")
    return str(path), sizes


def small_files(n=1000, log=print, root=None):
    """n small distinct bigWig files (3 chromosomes, 300 kb, ~25-bp runs), written by pyBigWig, cached."""
    d = Path(root or HERE / "out" / "data") / f"small{n}_v1"
    paths = [str(d / f"s{i:04d}.bw") for i in range(n)]
    if all(os.path.exists(p) for p in paths):
        return paths
    d.mkdir(parents=True, exist_ok=True)
    log(f"  writing {n} small bigWig files in {d} (once)")
    from concurrent.futures import ProcessPoolExecutor
    missing = [i for i, p in enumerate(paths) if not os.path.exists(p)]
    with ProcessPoolExecutor(min(2, os.cpu_count() or 1)) as ex:
        list(ex.map(_write_small, [paths[i] for i in missing], missing, chunksize=50))
    return paths


def _write_small(path, i):
    import pyBigWig
    ds = datasets()
    sizes = {"chr1": 150_000, "chr2": 100_000, "chr3": 50_000}
    tmp = path + f".tmp{os.getpid()}"
    bw = pyBigWig.open(tmp, "w")
    bw.addHeader(list(sizes.items()), maxZooms=10)
    for ci, (c, n) in enumerate(sizes.items()):
        s, e, v = ds.track_records(n, np.random.default_rng([1000, i, ci]))
        bw.addEntries([c] * len(s), s, ends=e, values=v.astype(np.float64))
    bw.close()
    os.replace(tmp, path)


def symlinks(paths, n=1000, root=None):
    d = Path(root or HERE / "out" / "data") / f"links{n}"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        q = d / f"l{i:04d}.bw"
        if not q.is_symlink():
            q.symlink_to(os.path.abspath(paths[i % len(paths)]))
        out.append(str(q))
    return out


def machine():
    model = cpu_model()
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            mem = f", {int(fh.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return f"nproc {nproc}, {model}{mem}"


def versions():
    from importlib.metadata import version
    out = {"Python": platform.python_version(), "NumPy": np.__version__}
    for label, dist in (("numba", "numba"), ("bwloader", "bwloader"), ("pyBigWig", "pyBigWig"),
                        ("pybigtools", "pybigtools"), ("deflate (libdeflate)", "deflate"), ("zlib-ng", "zlib-ng")):
        try:
            out[label] = version(dist)
        except Exception:
            out[label] = "-"
    return out


def fmt_rate(x):
    if x is None or x != x:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def yes(ok):
    return "yes" if ok else "**no**"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the Markdown report here (it is printed too)")
    ap.add_argument("--plot", help="write the samples/s plot (PNG) here")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of timed calls per reader and shape, split over the rounds (default 6)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of each reader per shape, in alternating order (this VM drifts by 10-20%% within "
                         "minutes; several short runs spread the drift over every reader)")
    ap.add_argument("--quick", action="store_true", help="about 1 s per measurement")
    ap.add_argument("--shapes", default="S1,S2,S3")
    ap.add_argument("--no-extras", action="store_true", help="only the shape table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", help="where generated data is cached (default benchmarks/out/data)")
    ap.add_argument("--wait-load", type=float, default=None, metavar="X",
                    help="first wait (up to 10 min) for the 1-min load average to drop below X")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "ARGS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(*args.worker)
        return 0

    t_start = time.perf_counter()
    duration = args.duration or (1.0 if args.quick else 6.0)
    rounds = max(1, args.rounds if not args.quick else 1)
    shapes = [s for s in args.shapes.split(",") if s]
    WORK.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    if args.wait_load is not None:
        deadline = time.monotonic() + 600
        while load1() >= args.wait_load and time.monotonic() < deadline:
            log(f"load average {load1():.2f} >= {args.wait_load}: waiting")
            time.sleep(15)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    log(f"machine: {machine()}; load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")

    ds = datasets()
    t0 = time.perf_counter()
    paths = ds.benchmark_collection(n_tracks=16, root=args.data_root)
    t_data = time.perf_counter() - t0
    log(f"collection ready ({t_data:.0f} s): {Path(paths[0]).parent}")
    rng = np.random.default_rng(args.seed)
    n_pools = dict(S1=3, S2=2, S3=1)
    pools = {s: draw_pools(paths, s, n_pools[s], rng, log) for s in shapes}
    if not args.no_extras and "S1" not in pools:
        pools["S1"] = draw_pools(paths, "S1", 1, rng, log)

    R: dict = {}
    for s in shapes:
        R[s] = {}
        runs: dict = {k: [] for k in READERS}
        for rnd in range(rounds):
            for kind in (READERS if rnd % 2 == 0 else READERS[::-1]):
                r = spawn(kind, log, shape=s, paths=paths, pools=pools[s][0], duration=duration / rounds,
                          seed=args.seed)
                if r:
                    runs[kind].append(r)
                    log(f"  {s} {kind:10s} round {rnd + 1}: {fmt_rate(r['samples_per_s']):>8} samples/s, peak RSS "
                        f"{r['peak_rss_mb']:.0f} MiB ({r['batches']} batches, {r['wall_s']:.1f} s)")
        for kind in READERS:
            R[s][kind] = combine_runs(runs[kind]) if len(runs[kind]) == rounds else None
        bw = R[s].get("bwloader")
        if bw:
            r = spawn("inflate", log, shape=s, paths=paths, pools=pools[s][0], n_batches=min(40, bw["batches"]))
            R[s]["inflate"] = r
            if r:
                n = r["batches"]
                log(f"  {s} inflate limit: full {r['full_s'] / n * 1e3:.1f} ms/batch, partial "
                    f"{r['partial_s'] / n * 1e3:.1f} ms/batch; get_batch {sum(r['loader_s']) / n * 1e3:.1f} ms/batch")
        if SHAPES[s]["window"] > 1:
            r = spawn("zoom", log, shape=s, paths=paths, pools=pools[s][0], duration=duration)
            R[s]["zoom"] = r
            if r:
                log(f"  {s} zoom (same process): " + ", ".join(f"{k} {fmt_rate(v['samples_per_s'])} samples/s"
                                               for k, v in r.items() if isinstance(v, dict)))

    extras = {}
    if not args.no_extras:
        t0 = time.perf_counter()
        small = small_files(1000, log, args.data_root)
        links = symlinks(paths, 1000, args.data_root)
        t_data += time.perf_counter() - t0
        extras["open_small"] = spawn("open", log, tag="small", paths=small)
        extras["open_links"] = spawn("open", log, tag="links", paths=links)
        for k in ("open_small", "open_links"):
            if extras[k]:
                log(f"  {k}: {min(extras[k]['seconds']):.2f} s for {extras[k]['n_files']} files")
        extras["stream_rss"] = spawn("stream_rss", log, tag="S2", paths=paths, duration=max(6.0, 5 * duration),
                                     seed=args.seed)
        if extras["stream_rss"]:
            r = extras["stream_rss"]
            log(f"  stream S2 RSS: {r['rss'][0][2] if r['rss'] else 0:.0f} -> {r['rss'][-1][2] if r['rss'] else 0:.0f} MiB, "
                f"peak {r['peak_rss_mb']:.0f} MiB over {r['batches']} batches")
        for cb in (0, 512 << 20):
            extras[f"epochs_{cb}"] = r = spawn("epochs", log, tag=f"cache{cb}", paths=paths, pools=pools["S1"][0],
                                               n_regions=2048, epochs=5, cache_bytes=cb)
            if r:
                log(f"  epochs cache_bytes={cb}: " + ", ".join(fmt_rate(x) for x in r["rates"]))
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    total_s = time.perf_counter() - t_start
    report = render(R, extras, shapes, duration, rounds, load_start, load_end, total_s, t_data, pools, paths)
    print()
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)
        log(f"wrote {args.out}")
    if args.plot:
        plot(R, shapes, args.plot, _loads(R, shapes) or [load_start[0]])
        log(f"wrote {args.plot}")
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


# ==================================================================================================
# report
# ==================================================================================================
def _shape_label(s):
    sh = SHAPES[s]
    w = f", window {sh['window']} mean" if sh["window"] > 1 else ""
    return f"{s}: {sh['tracks']} tracks x {sh['length']:,} bp{w}, batch {sh['batch']}"


def _rate(R, s, k):
    r = R.get(s, {}).get(k)
    return r["samples_per_s"] if r else float("nan")


def _peer(R, s):
    peers = [_rate(R, s, k) for k in ("pyBigWig", "pybigtools")]
    peers = [p for p in peers if p == p]
    return max(peers) if peers else float("nan")


def _loads(R, shapes):
    return [x for s in shapes for r in R.get(s, {}).values() if isinstance(r, dict) for x in r.get("load", [])]


def summary(R, extras, shapes):
    """The issue's targets, measured."""
    rows = []
    for s in shapes:
        bw = _rate(R, s, "bwloader")
        peer = _rate(R, s, "pyBigWig") if s == "S3" else _peer(R, s)
        if bw == bw and peer == peer and peer:
            what = "pyBigWig exact" if s == "S3" else "the faster of pyBigWig/pybigtools"
            rows.append((f"{s}: bwloader >= {TARGETS[s]:g}x {what}", f"{bw / peer:.2f}x", bw / peer >= TARGETS[s]))
    for s in ("S1", "S2"):
        il = R.get(s, {}).get("inflate")
        if il and s in shapes:
            ratio = sum(il["loader_s"]) / il["partial_s"]
            ratio_a = sum(il["loader_s"]) / il["full_s"]
            rows.append((f"{s}: loader time <= {INFLATE_TARGET}x the inflate limit",
                         f"{ratio:.2f}x partial-inflate limit ({ratio_a:.2f}x full libdeflate)", ratio <= INFLATE_TARGET))
    for k, what in (("open_small", "small distinct files"), ("open_links", "symlinks to the 16 big files")):
        r = extras.get(k)
        if r:
            t = min(r["seconds"])
            rows.append((f"open 1000 files < {OPEN_TARGET_S:g} s ({what})", f"{t:.2f} s", t < OPEN_TARGET_S))
    r = extras.get("stream_rss")
    if r and r["rss"]:
        rss = r["rss"]
        first, last = rss[min(len(rss) - 1, len(rss) // 4)], rss[-1]
        rows.append((f"peak RSS streaming S2 < {RSS_TARGET_MB / 1024:g} GB", f"{r['peak_rss_mb']:.0f} MiB",
                     r["peak_rss_mb"] < RSS_TARGET_MB))
        rows.append(("RSS flat while streaming", f"{first[2]:.0f} -> {last[2]:.0f} MiB over batches {first[1]}-{last[1]}",
                     _flat(first, last)))
    if not rows:
        return []
    out = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {a} | {b} | {yes(c)} |" for a, b, c in rows]
    return out + [""]


def _flat(first, last):
    return abs(last[2] - first[2]) < 0.05 * max(first[2], 1) + 20


def combine_runs(runs):
    """One result from a reader's rounds: samples/s = all samples / all timed seconds; counts and
    times summed, peaks maxed, the rounds' own rates kept in `round_rates`."""
    out = dict(runs[0])
    samples = sum(r["samples_per_s"] * r["seconds"] for r in runs)
    for k in ("batches", "seconds", "wall_s", "epochs"):
        if k in out:
            out[k] = sum(r[k] for r in runs)
    out["samples_per_s"] = samples / out["seconds"]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["rss_start_mb"] = min(r["rss_start_mb"] for r in runs)
    out["load"] = [x for r in runs for x in r.get("load", [])]
    if "per_batch_s" in out:
        out["per_batch_s"] = [x for r in runs for x in r["per_batch_s"]]
    if out.get("stages"):
        out["stages"] = {k: sum(r["stages"].get(k, 0.0) for r in runs) for k in out["stages"]}
    out["round_rates"] = [r["samples_per_s"] for r in runs]
    return out


def render(R, extras, shapes, duration, rounds, load_start, load_end, total_s, t_data, pools, paths):
    v = versions()
    L = []
    L.append("# bwloader scoreboard")
    L.append("")
    L.append("Generated by `make bench` (`benchmarks/scoreboard.py`); every number below comes from one run.")
    L.append("")
    L.append(f"- Machine: {machine()}. Load average (1/5/15 min) at start {load_start[0]:.2f} / {load_start[1]:.2f} / "
             f"{load_start[2]:.2f}, at end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} (the run itself "
             "keeps about 2 busy; a start value well above 0 means other work shared the CPUs).")
    L.append("- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".")
    L.append(f"- Collection: {len(paths)} tracks from `benchmarks/datasets.py` (200 Mb over 3 chromosomes, ~25-bp "
             "bedGraph runs, ~10% gaps, pyBigWig writer, zoom levels), cached under `benchmarks/out/data/`.")
    pool_txt = "; ".join(f"{s} {len(pools[s][1])} pool(s) of {'/'.join(map(str, pools[s][1]))}" for s in shapes)
    L.append(f"- Queries: random, block-disjoint within a pool (no two queries of a pool touch the same data block "
             f"of any file; every reader is reopened per pool, so no cache helps); {pool_txt} queries. Each reader "
             f"runs in its own process, {rounds} run(s) per shape in alternating order (forward, backward, ...), "
             f"{duration / rounds:g} s of timed calls each after one warm-up batch; samples/s = all samples / all "
             "timed seconds of its runs (the runs' own rates are listed below the table); warm page cache.")
    L.append(f"- Run time {total_s:.0f} s, of which {t_data:.0f} s making or finding the generated data (cached after the first run).")
    L.append("")

    loads = _loads(R, shapes)
    if loads:
        L.append(f"- 1-min load average seen by the timed measurements: {min(loads):.2f} to {max(loads):.2f}.")
        L.append("")
    L += summary(R, extras, shapes)

    # --- main table
    L.append("## Samples/s (higher is better)")
    L.append("")
    L.append("| shape | bwloader `get_batch` | full stream (`build()`, 2 workers) | pyBigWig loop | pybigtools loop "
             "| bwloader / faster peer | target |")
    L.append("|---|---:|---:|---:|---:|---:|---|")
    for s in shapes:
        bw = _rate(R, s, "bwloader")
        if s == "S3":
            peer, what = _rate(R, s, "pyBigWig"), "pyBigWig exact"
        else:
            peer, what = _peer(R, s), "faster peer"
        ratio = bw / peer if peer == peer and peer else float("nan")
        tgt = TARGETS[s]
        ratio_txt = f"{ratio:.2f}x" + (f" (vs {what})" if s == "S3" else "")
        L.append(f"| {_shape_label(s)} | {fmt_rate(bw)} | {fmt_rate(_rate(R, s, 'stream'))} | "
                 f"{fmt_rate(_rate(R, s, 'pyBigWig'))} | {fmt_rate(_rate(R, s, 'pybigtools'))} | {ratio_txt} | "
                 f">= {tgt:g}x: {yes(ratio >= tgt)} |")
    L.append("")
    L.append("Rates of the single runs (samples/s, in run order): " + "; ".join(
        f"{s} {k} " + " / ".join(fmt_rate(x) for x in R[s][k]["round_rates"])
        for s in shapes for k in READERS if R.get(s, {}).get(k) and "round_rates" in R[s][k]) + ".")
    L.append("")
    L.append("Stream output shapes: " + ", ".join(
        f"{s} {tuple(R[s]['stream']['batch_shape'])}" for s in shapes if R.get(s, {}).get("stream")) + ".")
    L.append("")

    # --- RSS
    L.append("## Peak RSS per reader process (MiB, VmHWM; Python + imports included)")
    L.append("")
    L.append("| shape | bwloader `get_batch` | full stream | pyBigWig | pybigtools |")
    L.append("|---|---:|---:|---:|---:|")
    for s in shapes:
        cells = []
        for k in READERS:
            r = R.get(s, {}).get(k)
            cells.append(f"{r['peak_rss_mb']:.0f}" if r else "-")
        L.append(f"| {s} | " + " | ".join(cells) + " |")
    L.append("")

    # --- inflate limit
    L.append("## Loader time against the inflate limit")
    L.append("")
    L.append("The inflate limit: the time to merely inflate exactly the blocks each batch needed, with bwloader's "
             "own compiled inflater on the same chunks and thread count, from compressed bytes already in memory: "
             "(a) every block whole with libdeflate, (b) the partial inflate bwloader uses (zlib-ng stopping after "
             "the last item a query needs; libdeflate for blocks needed past 80%). Measured in one process "
             "(`benchmarks/inflate_limit.py`) that also times `get_batch` on the same batches, alternating in chunks "
             f"of 8 batches, so both see the same machine conditions. Target: loader time <= {INFLATE_TARGET}x the limit on S1 and S2.")
    L.append("")
    L.append("| shape | blocks / batch | loader ms / batch | (a) full inflate ms | (b) partial inflate ms | "
             "loader / (a) | loader / (b) | target |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for s in shapes:
        il = R.get(s, {}).get("inflate")
        if not il:
            continue
        n = il["batches"]
        lt = sum(il["loader_s"]) / n * 1e3
        fa, fb = il["full_s"] / n * 1e3, il["partial_s"] / n * 1e3
        tgt = f"<= {INFLATE_TARGET}x: {yes(lt / fb <= INFLATE_TARGET)}" if s in ("S1", "S2") else "-"
        L.append(f"| {s} | {il['blocks'] / n:.0f} | {lt:.1f} | {fa:.1f} | {fb:.1f} | {lt / fa:.2f}x | {lt / fb:.2f}x | {tgt} |")
    L.append("")
    L.append("Where the loader's time goes (ms per batch, `coll.timings` over the same batches; *other* = `get_batch` "
             "wall time not in a stage; `read+inflate` includes the preads):")
    L.append("")
    stages = ("plan", "read+inflate", "decode", "search", "fill")
    L.append("| shape | " + " | ".join(stages) + " | other | total |")
    L.append("|---|" + "---:|" * (len(stages) + 2))
    for s in shapes:
        il = R.get(s, {}).get("inflate")
        if not (il and il.get("stages")):
            continue
        n = il["batches"]
        total = sum(il["loader_s"]) / n * 1e3
        per = {k: il["stages"].get(k, 0.0) / n * 1e3 for k in stages}
        L.append(f"| {s} | " + " | ".join(f"{per[k]:.1f}" for k in stages) +
                 f" | {total - sum(per.values()):.1f} | {total:.1f} |")
    L.append("")

    # --- zoom
    for s in shapes:
        z = R.get(s, {}).get("zoom")
        if not z:
            continue
        L.append(f"## {s} from zoom levels (`get_batch(..., zoom=...)`)")
        L.append("")
        L.append(f"Zoom levels in the files (bases per record): {', '.join(f'{x:,}' for x in z['levels'])}. "
                 f"`zoom=True` picks the coarsest level <= the {SHAPES[s]['window']}-bp window; none fits, so it "
                 "reads the data exactly. *finest level*: each file's finest level "
                 f"({' or '.join(f'{x:,}' for x in z.get('finest', []))} bases; `zoom=<level>` needs every track to "
                 "have that level, so one `get_batch(..., tracks=...)` call per group of tracks), which spreads each "
                 "record evenly over the windows it covers: an approximation. Errors are against the exact window "
                 "means of the same batches.")
        L.append("")
        L.append("| mode | samples/s | vs exact `get_batch` (same process, same batches) | mean abs error "
                 "(mean abs value) | max relative error (windows with exact mean != 0) | median / 99th percentile "
                 "relative error | relative error of the batch totals |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        ex = z["exact"]["samples_per_s"]
        L.append(f"| exact (`zoom=False`) | {fmt_rate(ex)} | 1.00x | 0 | 0 | 0 / 0 | 0 |")
        for k, r in z.items():
            if not isinstance(r, dict) or k == "exact":
                continue
            L.append(f"| `{k}` | {fmt_rate(r['samples_per_s'])} | {r['samples_per_s'] / ex:.2f}x | "
                     f"{r['mean_abs_err']:.3g} ({r['mean_abs_exact']:.3g}) | {r['max_rel_err']:.3g} | "
                     f"{r['median_rel_err']:.2g} / {r['p99_rel_err']:.2g} | {r['total_rel_err']:.2g} |")
        L.append("")

    # --- extras
    if extras:
        L.append("## Opening files, memory over time, epochs")
        L.append("")
        L.append("| measurement | result | target |")
        L.append("|---|---|---|")
        for k, what in (("open_small", "1000 small distinct files (3 chromosomes, 300 kb, written by pyBigWig)"),
                        ("open_links", "1000 symlinks to the 16 collection files (2,651 blocks each: real-size "
                                       "indexes, page-cached)")):
            r = extras.get(k)
            if r:
                t = min(r["seconds"])
                L.append(f"| open {what}: `BigWigCollection(paths)` | {t:.2f} s (best of {len(r['seconds'])}; "
                         f"{r['n_blocks']:,} blocks indexed; RSS {r['rss_start_mb']:.0f} -> {r['rss_open_mb']:.0f} MiB) "
                         f"| < {OPEN_TARGET_S:g} s: {yes(t < OPEN_TARGET_S)} |")
        r = extras.get("stream_rss")
        if r and r["rss"]:
            rss = r["rss"]
            first, last = rss[min(len(rss) - 1, len(rss) // 4)], rss[-1]
            marks = [rss[min(len(rss) - 1, i * len(rss) // 4)] for i in range(4)] + [rss[-1]]
            series = ", ".join(f"{m:.0f} @ {b}" for _, b, m in marks)
            L.append(f"| stream S2 for {r['seconds']:.0f} s ({r['batches']} batches, {fmt_rate(r['samples_per_s'])} "
                     f"samples/s, the config's own random queries) | peak RSS {r['peak_rss_mb']:.0f} MiB; RSS MiB @ batch: "
                     f"{series} | < {RSS_TARGET_MB} MiB: {yes(r['peak_rss_mb'] < RSS_TARGET_MB)}; flat after the "
                     f"first quarter (within 5% + 20 MiB): {yes(_flat(first, last))} |")
        for cb, label in ((0, "cache_bytes=0"), (512 << 20, "cache_bytes=512 MiB")):
            r = extras.get(f"epochs_{cb}")
            if r:
                rates = r["rates"]
                c = r["cache"]
                extra = (f"; cache {c['bytes'] / 2**20:.0f} MiB in {c['blocks']} blocks, hit rate {c['hit_rate']:.0%}"
                         if cb else "")
                L.append(f"| {r['n_regions']} fixed regions x 1000 bp, 3 tracks, batch 256, {len(rates)} epochs, stream, "
                         f"{label} | epoch 1: {fmt_rate(rates[0])} samples/s; epochs 2-{len(rates)}: "
                         f"{fmt_rate(float(np.median(rates[1:])))} (median; "
                         f"{', '.join(fmt_rate(x) for x in rates[1:])}){extra} | - |")
        L.append("")
    return "\n".join(L) + "\n"


def plot(R, shapes, path, loads):
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("bwloader get_batch", "bwloader", "#1f77b4"), ("bwloader stream", "stream", "#6baed6"),
              ("pyBigWig", "pyBigWig", "#d62728"), ("pybigtools", "pybigtools", "#ff7f0e")]
    fig, ax = plt.subplots(figsize=(8.5, 4.6), dpi=120)
    width = 0.8 / (len(series) + 1)
    x = np.arange(len(shapes))
    for i, (label, key, color) in enumerate(series):
        ys = [_rate(R, s, key) for s in shapes]
        bars = ax.bar(x + (i - len(series) / 2) * width, ys, width, label=label, color=color)
        for b, y in zip(bars, ys):
            if y == y:
                ax.text(b.get_x() + b.get_width() / 2, y * 1.05, fmt_rate(y), ha="center", va="bottom", fontsize=7,
                        rotation=90)
    # zoom bars (S3)
    zx, zy = [], []
    for j, s in enumerate(shapes):
        z = R.get(s, {}).get("zoom")
        if z:
            if isinstance(z.get("finest level"), dict):
                zx.append(j + (len(series) - len(series) / 2) * width)
                zy.append(z["finest level"]["samples_per_s"])
                zlabel = "bwloader from zoom levels (finest, approx.)"
    if zx:
        bars = ax.bar(zx, zy, width, label=zlabel, color="#9ecae1", hatch="//", edgecolor="#1f77b4")
        for b, y in zip(bars, zy):
            ax.text(b.get_x() + b.get_width() / 2, y * 1.05, fmt_rate(y), ha="center", va="bottom", fontsize=7,
                    rotation=90)
    # inflate limit (partial), as samples/s
    first = True
    for j, s in enumerate(shapes):
        il = R.get(s, {}).get("inflate")
        if il:
            y = il["batches"] * SHAPES[s]["batch"] / il["partial_s"]
            ax.hlines(y, j - 0.45, j + 0.45, colors="k", linestyles="--", linewidth=1,
                      label="inflate limit (samples/s if a batch cost only its inflate)" if first else None)
            first = False
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([_shape_label(s).replace(": ", "\n", 1).replace(", batch", "\nbatch") for s in shapes],
                       fontsize=8)
    ax.set_ylabel("samples / s (log scale)")
    ymin, ymax = ax.get_ylim()
    ax.set_ylim(ymin, ymax * 3)
    ax.set_title(f"bwloader vs pyBigWig / pybigtools, samples/s per reader (one process each)\n{machine()}; "
                 f"load average {min(loads):.1f}-{max(loads):.1f} during the measurements", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.grid(axis="y", which="both", alpha=0.25)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

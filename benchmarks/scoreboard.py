#!/usr/bin/env python
"""The bwloader scoreboard, step 1 of 2: measure every number the README shows and write them, with
what was measured on what, to one JSON file. Step 2, `benchmarks/scoreboard_render.py`, turns that
JSON into docs/scoreboard.md and docs/scoreboard.png (`make bench` runs both).

    python benchmarks/scoreboard.py --json benchmarks/out/scoreboard.json         # make bench, step 1
    python benchmarks/scoreboard.py --quick                                        # short measurements
    python benchmarks/scoreboard.py --quick --shapes S1 --no-extras --genome-mb 2 \
        --data-root /tmp/sb --work /tmp/sb/work --json /tmp/sb/results.json        # a dry run

Collection: benchmarks/datasets.py's generated one (by default about 200 Mb over three chromosomes,
bedGraph runs with gaps, 16 tracks, written by pyBigWig with zoom levels), generated once and cached
under benchmarks/out/data/ (or --data-root). What it is exactly goes into the JSON.

Shapes (float32, default value 0): see SHAPES (S1, S2: window 1; S3: a wide window mean).

Queries: per shape a few *pools* of random queries are drawn with datasets.BlockDisjointSampler: no
two queries of a pool touch the same data block of any file. A measurement runs pool after pool
(cycling when it runs out) and opens its reader afresh for every pool, so no reader can reuse a
decoded block: no cache decides the race. Every reader of a shape sees the same pools.

Each reader runs in its own subprocess (peak RSS = that process's VmHWM, imports included):
  bwloader    BigWigCollection(paths, cache_bytes=0).get_batch (inflate threads: all CPUs)
  stream      LoaderConfig(..., num_workers=STREAM_WORKERS, cache_bytes=0).build() (no FASTA),
              iterated; its query generator is swapped for one over the same pools (ArrayPositions),
              timed from iter() to the last batch of each pool
  pyBigWig    a loop of values(chrom, start, end, numpy=True) per (query, track), NaN -> 0
              (S3: then the mean over each window, what bwloader computes with default 0)
  pybigtools  a loop of values(chrom, start, end) per (query, track), likewise
  inflate     benchmarks/inflate_limit.py on exactly the batches the bwloader run did
  zoom        (S3) get_batch(..., zoom=True) and zoom=<finest level>, error against the exact mean

Also: opening many bigWig files, the RSS of streaming S2 for a while, and a multi-epoch run over a
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
WORK = HERE / "out" / "scoreboard"        # pools and worker arguments (--work)
PY = sys.executable
RESULTS_FORMAT = 1                        # bump when the JSON layout changes (the renderer checks it)

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
STREAM_WORKERS = 2          # worker threads of the `stream` reader
INFLATE_CHUNK = 8           # batches per alternation between get_batch and the inflate-only runs
N_SMALL_FILES = 1000        # files opened at once (small distinct files; symlinks to the collection)
SMALL_CHROM_SIZES = {"chr1": 150_000, "chr2": 100_000, "chr3": 50_000}
EPOCHS = dict(n_regions=2048, epochs=5, cache_bytes=[0, 512 << 20])


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
                       num_workers=STREAM_WORKERS, cache_bytes=0, seed=a.get("seed", 0))
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
    r = il.inflate_limit(paths, batches, shape["window"], n_threads=os.cpu_count(), warmup=warm,
                         chunk=INFLATE_CHUNK)
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
                       batch_size=shape["batch"], num_workers=STREAM_WORKERS, cache_bytes=0, batches_per_epoch=100_000,
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
                       num_workers=STREAM_WORKERS, cache_bytes=a["cache_bytes"], seed=0)
    rates = []
    with cfg.build() as ds:
        coll = ds.collection
        pos = ArrayPositions(coll.chrom_sizes, list(zip(chroms[:n], (starts[:n] + L // 2).tolist())), L,
                             shuffle=True)
        ds.generator = QueryBatchGenerator(coll.chrom_sizes, coll.track_names, sequence_length=L, batch_size=B,
                                           positions=pos, seed=0, rank=0, world_size=1)
        # warm-up (numba kernels, thread pools) on queries outside the region set: twice, so that
        # with a cache both its miss and its hit paths are compiled; then the cache is emptied
        # (its arena too: the first epoch pays for fresh memory, as a real one does)
        c2, s2, e2 = read_pools(a["pools"])[-1]
        for _ in range(2):
            coll.get_batch(c2[-B:], s2[-B:], e2[-B:])
        coll.cache.clear()
        coll.cache.hits = coll.cache.misses = coll.cache.refused = 0
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


def small_files(n=N_SMALL_FILES, log=print, root=None):
    """n small distinct bigWig files (SMALL_CHROM_SIZES, bedGraph runs), written by pyBigWig, cached."""
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
    sizes = SMALL_CHROM_SIZES
    tmp = path + f".tmp{os.getpid()}"
    bw = pyBigWig.open(tmp, "w")
    bw.addHeader(list(sizes.items()), maxZooms=10)
    for ci, (c, n) in enumerate(sizes.items()):
        s, e, v = ds.track_records(n, np.random.default_rng([1000, i, ci]))
        bw.addEntries([c] * len(s), s, ends=e, values=v.astype(np.float64))
    bw.close()
    os.replace(tmp, path)


def symlinks(paths, n=N_SMALL_FILES, root=None):
    d = Path(root or HERE / "out" / "data") / f"links{n}"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        q = d / f"l{i:04d}.bw"
        if not q.is_symlink():
            q.symlink_to(os.path.abspath(paths[i % len(paths)]))
        out.append(str(q))
    return out


def machine() -> dict:
    """nproc, CPU model and RAM of this machine."""
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = None
    try:
        with open("/proc/meminfo") as fh:
            ram = int(fh.readline().split()[1]) / 2**20
    except OSError:
        pass
    return dict(nproc=nproc, cpu=cpu_model(), ram_gib=ram)


def collection_info(paths, genome_mb, run_bp, gap_fraction) -> dict:
    """What the generated collection is, read back from its files (for the report's prose)."""
    from bwloader_core import BigWigFile
    blocks, zooms, sizes = [], [], {}
    for p in paths:
        with BigWigFile(p) as f:
            blocks.append(int(f.n_blocks))
            zooms.append(len(f.zoom_levels))
            sizes = dict(f.chrom_sizes)
    return dict(n_tracks=len(paths), chrom_sizes=sizes, genome_mb=genome_mb, run_bp=run_bp,
                gap_fraction=gap_fraction, writer="pyBigWig", blocks_per_file=blocks, zoom_levels=zooms,
                folder=_shown_path(Path(paths[0]).parent))


def _shown_path(p: Path) -> str:
    """`p` relative to the checkout when inside it (the report names no home folders)."""
    p = p.resolve()
    return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p)


def partial_max_fraction():
    """bwloader's partial-inflate cut-off (blocks needed past it are inflated whole), or None."""
    import importlib
    for mod in ("bwloader_core.decode.cpu", "bwloader_core.stages.fetch"):
        try:
            value = getattr(importlib.import_module(mod), "PARTIAL_MAX_FRACTION", None)
        except ImportError:
            continue
        if value is not None:
            return float(value)
    return None


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


def main(argv=None):
    global WORK
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=str(WORK.parent / "scoreboard.json"),
                    help="write the results here (default benchmarks/out/scoreboard.json); render them with "
                         "benchmarks/scoreboard_render.py")
    ap.add_argument("--work", help="folder for the query pools and worker arguments (default benchmarks/out/scoreboard)")
    ap.add_argument("--genome-mb", type=float, default=200, help="size of the generated collection (default 200)")
    ap.add_argument("--tracks", type=int, default=None,
                    help="tracks of the generated collection (default: the most any chosen shape needs)")
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

    if args.work:
        WORK = Path(args.work)
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
    m = machine()
    log(f"machine: nproc {m['nproc']}, {m['cpu']}; load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")

    ds = datasets()
    t0 = time.perf_counter()
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}; choose from {list(SHAPES)}")
    n_tracks = args.tracks or max(SHAPES[s]["tracks"] for s in shapes + ([] if args.no_extras else ["S1", "S2"]))
    run_bp, gap_fraction = 25, 0.10
    paths = ds.benchmark_collection(n_tracks=n_tracks, genome_mb=args.genome_mb, run_bp=run_bp,
                                    gap_fraction=gap_fraction, root=args.data_root)
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
        small = small_files(N_SMALL_FILES, log, args.data_root)
        links = symlinks(paths, N_SMALL_FILES, args.data_root)
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
        for cb in EPOCHS["cache_bytes"]:
            extras[f"epochs_{cb}"] = r = spawn("epochs", log, tag=f"cache{cb}", paths=paths, pools=pools["S1"][0],
                                               n_regions=EPOCHS["n_regions"], epochs=EPOCHS["epochs"], cache_bytes=cb)
            if r:
                log(f"  epochs cache_bytes={cb}: " + ", ".join(fmt_rate(x) for x in r["rates"]))
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    meta = dict(
        format=RESULTS_FORMAT, machine=m, versions=versions(), load_start=list(load_start), load_end=list(load_end),
        duration_s=duration, rounds=rounds, total_s=time.perf_counter() - t_start, data_s=t_data,
        shapes={s: SHAPES[s] for s in shapes}, readers=list(READERS), stream_workers=STREAM_WORKERS,
        targets=dict(speedup={s: TARGETS[s] for s in shapes}, inflate=INFLATE_TARGET, open_s=OPEN_TARGET_S,
                     rss_mb=RSS_TARGET_MB),
        collection=collection_info(paths, args.genome_mb, run_bp, gap_fraction),
        pools={s: pools[s][1] for s in shapes},
        inflate=dict(chunk=INFLATE_CHUNK, partial_max_fraction=partial_max_fraction()),
        small_files=dict(n=N_SMALL_FILES, chrom_sizes=SMALL_CHROM_SIZES, writer="pyBigWig"),
        links=dict(n=N_SMALL_FILES, targets=len(paths)),
        epochs=dict(EPOCHS, shape="S1", **{k: SHAPES["S1"][k] for k in ("tracks", "length", "batch")}),
    )
    results = dict(meta=meta, shapes=R, extras=extras)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    log(f"wrote {out}; render it with: python benchmarks/scoreboard_render.py {out} --out docs/scoreboard.md "
        "--plot docs/scoreboard.png")
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())

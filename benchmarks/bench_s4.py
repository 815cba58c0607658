#!/usr/bin/env python
"""S4: thousands of tracks (issue #13). Writes JSON and markdown; the scoreboard can include them.

    python benchmarks/bench_s4.py                      # 3,000 tracks, 4 measured batches
    python benchmarks/bench_s4.py --quick              # fewer batches, smaller pyBigWig sample
    python benchmarks/bench_s4.py --out benchmarks/out/s4

The shape: 3,000 tracks x 196,608 bp, window 128 (mean, default 0), batch 4 -> (4, 1536, 3000)
float32. The tracks are **symbolic links** to the 16 files of the benchmark collection
(`datasets.benchmark_collection(16)`, 200 Mb genome, ~45 MB each): track t is file t % 16. Every
link is opened, indexed and read as its own file (no sharing between links), but the OS page
cache holds only 16 distinct files, so reads come from memory as for any warm collection.

Each part runs in its own fresh process (RSS and peak RSS are that process's):
- open: `BigWigCollection` of 3,000 links: seconds, RSS added, the index's bytes; and 10,000
  links under `ulimit -n 1024` (soft and hard), then one S4-shaped batch over all of them;
- memory: S4 batches through `get_batch` alone: peak RSS (VmHWM) including the open files;
- speed: S4 batches through `get_batch` alternating with the inflate floor of the same batch
  (`inflate_limit.py`: the same blocks inflated from memory with the fetcher's inflater, threads and
  partial inflate, nothing else); each timed twice, the faster kept; plus `zoom=True` with its
  error against the exact means (the files' finest zoom levels are 384-400 bp, coarser than the
  128-bp windows, so it reads exactly);
- pyBigWig: the same queries on a sample of the tracks, per (query, track) `values()` then the
  128-bp mean (NaN -> 0), and `stats(type="sum", nBins=1536, exact=True) / 128`; the faster one,
  per (query, track), scaled to 3,000 tracks, is the loop bwloader is compared with (checked
  equal to bwloader's values on the sample);
- DataLoader: PyTorch `DataLoader(num_workers=4, fork)` over a LoaderConfig of the 3,000 links:
  RSS, PSS and USS of the parent and its workers (PSS splits shared pages: the index is mapped
  once, not copied per worker).
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

SHAPE = dict(tracks=3000, length=196_608, window=128, batch=4)
MANY = 10_000
LINK_ROOT = HERE / "out" / "links"


# ------------------------------------------------------------------------------------ helpers
def _status(field: str) -> float:
    """MiB of a /proc/self/status field (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak():
    """Start VmHWM (peak RSS) again from the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _smaps(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                k, _, rest = line.partition(":")
                if k in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    out[k] = int(rest.split()[0]) / 1024
    except OSError:
        return {}
    out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def links(n: int) -> list[str]:
    """n symbolic links to the 16 benchmark files (made once under benchmarks/out/links/)."""
    ds = load_module("datasets", "datasets.py")
    src = ds.benchmark_collection(16)
    d = LINK_ROOT / f"tracks{n}"
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = d / f"t{i:05d}.bw"
        if not p.is_symlink():
            p.symlink_to(src[i % 16])
        paths.append(str(p))
    return paths


def queries(n_batches: int, seed: int = 0):
    """Batches of 4 block-disjoint 196,608-bp queries over the 16 files."""
    ds = load_module("datasets", "datasets.py")
    sampler = ds.BlockDisjointSampler(ds.benchmark_collection(16), SHAPE["length"])
    chroms, starts, ends = sampler.sample(SHAPE["batch"] * n_batches, np.random.default_rng(seed))
    B = SHAPE["batch"]
    return [(chroms[i * B:(i + 1) * B], starts[i * B:(i + 1) * B], ends[i * B:(i + 1) * B])
            for i in range(len(starts) // B)]


def spawn(part: str, args, **kw) -> dict:
    """Run one part in a fresh Python; its last stdout line is JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--kw", json.dumps(kw)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if r.returncode != 0:
        raise RuntimeError(f"part {part} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["part_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"  {part}: done in {out['part_seconds']:.0f} s", flush=True)
    return out


# ------------------------------------------------------------------------------------ parts (child processes)
def part_open(n: int, limit: int | None = None, batch: bool = False) -> dict:
    if limit:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    import bwloader_core.batch_processor  # noqa: F401 - imports (numba, ...) before the baseline
    from bwloader_core import BigWigCollection
    from bwloader_core import io as bwio
    paths = links(n)
    r0 = _status("VmRSS")
    t0 = time.perf_counter()
    coll = BigWigCollection(paths)
    dt = time.perf_counter() - t0
    r1 = _status("VmRSS")
    out = dict(tracks=n, limit=limit, open_s=dt, rss_before_mib=r0, rss_after_mib=r1, rss_added_mib=r1 - r0,
               peak_open_mib=_status("VmHWM"), index_mib=coll.index.nbytes / 2**20, blocks=coll.index.n_blocks,
               pool_capacity=bwio.HANDLES.capacity(), open_descriptors=bwio.HANDLES.n_open,
               soft_limit_after=_soft_limit())
    if batch:
        chroms, starts, ends = queries(1)[0]
        t0 = time.perf_counter()
        v = coll.get_batch(chroms, starts, ends, window_size=SHAPE["window"])
        out.update(batch_s=time.perf_counter() - t0, batch_shape=list(v.shape), evictions=bwio.HANDLES.evictions,
                   reopens=bwio.HANDLES.reopens, open_descriptors_after_batch=bwio.HANDLES.n_open,
                   peak_batch_mib=_status("VmHWM"))
    coll.close()
    return out


def _soft_limit():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def part_memory(n_batches: int) -> dict:
    from bwloader_core import BigWigCollection
    coll = BigWigCollection(links(SHAPE["tracks"]))
    after_open = _status("VmRSS")
    open_peak = _status("VmHWM")
    _reset_peak()
    times = []
    for chroms, starts, ends in queries(n_batches + 1, seed=3):
        t0 = time.perf_counter()
        coll.get_batch(chroms, starts, ends, window_size=SHAPE["window"])
        times.append(time.perf_counter() - t0)
    return dict(rss_after_open_mib=after_open, peak_open_mib=open_peak, peak_batches_mib=_status("VmHWM"),
                rss_end_mib=_status("VmRSS"), batch_s=times, output_mib=SHAPE["batch"] * SHAPE["length"]
                // SHAPE["window"] * SHAPE["tracks"] * 4 / 2**20, fused=coll._processor.batches_fused,
                groups=coll._processor.groups_run)


def part_speed(n_batches: int) -> dict:
    il = load_module("inflate_limit", "inflate_limit.py")
    from bwloader_core import BigWigCollection
    from bwloader_core.batch_processor import BatchProcessor
    n_threads = os.cpu_count() or 1
    coll = BigWigCollection(links(SHAPE["tracks"]), n_threads=n_threads)
    planner = BatchProcessor(coll, n_threads=1)
    timer = il.InflateTimer(n_threads)
    batches = queries(n_batches + 1, seed=1)
    w = SHAPE["window"]
    coll.get_batch(*batches[0], window_size=w)                  # warm-up (compiled kernels, page cache)
    rows = []
    for chroms, starts, ends in batches[1:]:
        loader = []
        for _ in range(2):
            t0 = time.perf_counter()
            exact = coll.get_batch(chroms, starts, ends, window_size=w)
            loader.append(time.perf_counter() - t0)
        blocks, n_blocks, nbytes = il.batch_blocks(coll, planner, chroms, starts, ends, w)
        floors = [timer.time_batch(blocks) for _ in range(2)]
        del blocks
        zoom = {}
        for z in (True,):
            t0 = time.perf_counter()
            v = coll.get_batch(chroms, starts, ends, window_size=w, zoom=z)
            dt = time.perf_counter() - t0
            err = np.abs(v.astype(np.float64) - exact)
            zoom[str(z)] = dict(s=dt, max_abs_err=float(err.max()), mean_abs_err=float(err.mean()),
                                rel_err=float(err.sum() / max(np.abs(exact).sum(), 1e-300)))
        rows.append(dict(loader_s=min(loader), floor_partial_s=min(f[1] for f in floors),
                         floor_full_s=min(f[0] for f in floors), blocks=n_blocks, compressed_mib=nbytes / 2**20,
                         inflated_mib=floors[0][3] / 2**20, zoom=zoom))
    timer.close()
    planner.close()
    coll.close()
    return dict(batches=rows, n_threads=n_threads)


def part_pybigwig(n_tracks: int) -> dict:
    import pyBigWig
    from bwloader_core import BigWigCollection
    paths = links(SHAPE["tracks"])[:n_tracks]
    batches = queries(2, seed=1)[1:]
    L, w = SHAPE["length"], SHAPE["window"]
    nw = L // w
    handles = [pyBigWig.open(p) for p in paths]
    res = {}
    for how in ("values", "stats"):
        t0 = time.perf_counter()
        pairs = 0
        for chroms, starts, ends in batches:
            out = np.zeros((len(starts), nw, n_tracks), np.float32)
            for i, (c, s, e) in enumerate(zip(chroms, starts.tolist(), ends.tolist())):
                for t, bw in enumerate(handles):
                    if how == "values":
                        v = np.nan_to_num(bw.values(c, s, e, numpy=True))
                        out[i, :, t] = v.reshape(nw, w).mean(axis=1)
                    else:
                        v = np.array(bw.stats(c, s, e, type="sum", nBins=nw, exact=True), np.float64)
                        out[i, :, t] = np.nan_to_num(v) / w
                    pairs += 1
            res[how] = out
        res[how + "_s_per_pair"] = (time.perf_counter() - t0) / pairs
    for h in handles:
        h.close()
    with BigWigCollection(paths) as coll:
        chroms, starts, ends = batches[0]
        ours = coll.get_batch(chroms, starts, ends, window_size=w)
    diffs = {how: float(np.abs(res[how].astype(np.float64) - ours).max()) for how in ("values", "stats")}
    return dict(tracks_sampled=n_tracks, values_s_per_pair=res["values_s_per_pair"],
                stats_s_per_pair=res["stats_s_per_pair"], max_abs_diff_vs_bwloader=diffs,
                max_abs_value=float(np.abs(ours).max()))


def part_dataloader(n_batches: int, workers: int = 4) -> dict:
    import torch  # noqa: F401
    from torch.utils.data import DataLoader
    from bwloader_core import LoaderConfig
    from bwloader_core.torch import TorchBigWigDataset
    cfg = LoaderConfig(bigwig_paths=links(SHAPE["tracks"]), sequence_length=SHAPE["length"],
                       window_size=SHAPE["window"], batch_size=SHAPE["batch"], batches_per_epoch=n_batches,
                       num_workers=1, seed=0)
    ds = TorchBigWigDataset.from_config(cfg)
    ds.set_epoch(0)
    parent_open = _smaps(os.getpid())
    loader = DataLoader(ds, batch_size=None, num_workers=workers, multiprocessing_context="fork")
    seen, t0, snap = 0, time.perf_counter(), None
    it = iter(loader)
    for _ in it:
        seen += 1
        if seen == n_batches - workers:          # every worker busy with its next batch
            pids = [p.pid for p in getattr(it, "_workers", [])]
            snap = {"parent": _smaps(os.getpid()), **{f"worker{i}": _smaps(pid) for i, pid in enumerate(pids)}}
    dt = time.perf_counter() - t0
    if snap is None:
        snap = {"parent": _smaps(os.getpid())}
    total = {k: sum(v.get(k, 0) for v in snap.values()) for k in ("Rss", "Pss", "Uss")}
    ds.close()
    return dict(workers=workers, batches=seen, seconds=dt, parent_after_open=parent_open, processes=snap,
                total_mib=total)


# ------------------------------------------------------------------------------------ driver
def render(r: dict) -> str:
    s, m, sp, pb, o3, o10 = r["speed"], r["memory"], r["speed_summary"], r["pybigwig"], r["open"], r["open_many"]
    lines = [
        "### S4: 3,000 tracks x 196,608 bp, window 128 (mean), batch 4 -> (4, 1536, 3000) float32",
        "",
        f"{r['machine']['cpu']}, {r['machine']['cores']} cores, load before: {r['machine']['load_before']}, "
        f"after: {r['machine']['load_after']}. Tracks are symbolic links to the 16 benchmark files "
        "(track t = file t % 16); each link is opened and read as its own file.",
        "",
        "| | value | target |",
        "|---|---|---|",
        f"| bwloader get_batch | {sp['samples_per_s']:.2f} samples/s ({sp['loader_s_per_batch']:.2f} s/batch) | |",
        f"| inflate floor (same blocks, {s['n_threads']} threads, partial inflate) | "
        f"{sp['floor_s_per_batch']:.2f} s/batch; loader / floor **{sp['vs_floor']:.2f}x** | <= 1.3x |",
        f"| pyBigWig loop ({sp['pybigwig_method']}, {pb['tracks_sampled']} tracks sampled, scaled to 3,000) | "
        f"{sp['pybigwig_samples_per_s']:.3f} samples/s; bwloader **{sp['vs_pybigwig']:.1f}x** | >= 4x |",
        f"| zoom=True (finest zoom levels 384-400 bp > 128: read exactly) | {sp['zoom_true_samples_per_s']:.2f} "
        f"samples/s, max abs error {sp['zoom_true_max_abs_err']:.3g}, relative {sp['zoom_true_rel_err']:.2%} | |",
        f"| open 3,000 links | {o3['open_s']:.2f} s, +{o3['rss_added_mib']:.0f} MiB RSS "
        f"(index {o3['index_mib']:.0f} MiB, {o3['blocks']:,} blocks) | < 1.5 s, < 300 MiB |",
        f"| peak RSS of S4 batches (3,000 files open) | {m['peak_batches_mib']:.0f} MiB (RSS after open "
        f"{m['rss_after_open_mib']:.0f} MiB, output {m['output_mib']:.0f} MiB) | < 1 GiB |",
        f"| open 10,000 links under `ulimit -n 1024` | {o10['open_s']:.2f} s, +{o10['rss_added_mib']:.0f} MiB RSS, "
        f"{o10['open_descriptors']} descriptors held (pool {o10['pool_capacity']}); one S4-shaped batch over "
        f"10,000 tracks {o10.get('batch_s', float('nan')):.1f} s, {o10.get('reopens', 0):,} reopens | |",
    ]
    dl = r.get("dataloader")
    if dl and "total_mib" in dl:
        t = dl["total_mib"]
        lines.append(f"| DataLoader, {dl['workers']} fork workers (parent + workers) | RSS {t['Rss']:.0f} MiB, "
                     f"PSS {t['Pss']:.0f} MiB, USS {t['Uss']:.0f} MiB | index shared |")
    elif dl:
        lines.append(f"| DataLoader | not measured: {dl.get('skipped')} | |")
    lines.append("")
    return "\n".join(lines)


def summarize(r: dict) -> dict:
    rows = r["speed"]["batches"]
    B = SHAPE["batch"]
    loader = float(np.mean([x["loader_s"] for x in rows]))
    floor = float(np.mean([x["floor_partial_s"] for x in rows]))
    pb = r["pybigwig"]
    method = "values" if pb["values_s_per_pair"] <= pb["stats_s_per_pair"] else "stats"
    per_pair = min(pb["values_s_per_pair"], pb["stats_s_per_pair"])
    pyb_batch = per_pair * SHAPE["tracks"] * B
    zt = [x["zoom"]["True"] for x in rows]
    return dict(samples_per_s=B / loader, loader_s_per_batch=loader, floor_s_per_batch=floor,
                vs_floor=loader / floor, pybigwig_method=method, pybigwig_s_per_batch=pyb_batch,
                pybigwig_samples_per_s=B / pyb_batch, vs_pybigwig=pyb_batch / loader,
                zoom_true_samples_per_s=B / np.mean([z["s"] for z in zt]),
                zoom_true_max_abs_err=max(z["max_abs_err"] for z in zt),
                zoom_true_rel_err=float(np.mean([z["rel_err"] for z in zt])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "out" / "s4"), help="writes OUT.json and OUT.md")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--pybigwig-tracks", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="2 batches, 32 pyBigWig tracks")
    ap.add_argument("--no-dataloader", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--kw", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.part:
        kw = json.loads(args.kw)
        print(json.dumps(globals()[f"part_{args.part}"](**kw), default=float))
        return
    if args.quick:
        args.batches, args.pybigwig_tracks = 2, 32
    print(f"S4 benchmark ({SHAPE}); preparing {MANY:,} links to the 16 benchmark files", flush=True)
    links(MANY)
    r = dict(shape=SHAPE, machine=dict(cpu=cpu_model(), cores=os.cpu_count(), python=platform.python_version(),
                                       load_before=_load()))
    r["open"] = spawn("open", args, n=SHAPE["tracks"])
    r["open_many"] = spawn("open", args, n=MANY, limit=1024, batch=True)
    r["memory"] = spawn("memory", args, n_batches=args.batches)
    r["speed"] = spawn("speed", args, n_batches=args.batches)
    r["pybigwig"] = spawn("pybigwig", args, n_tracks=args.pybigwig_tracks)
    if args.no_dataloader:
        r["dataloader"] = dict(skipped="--no-dataloader")
    else:
        try:
            import torch  # noqa: F401
            r["dataloader"] = spawn("dataloader", args, n_batches=12)
        except ImportError:
            r["dataloader"] = dict(skipped="torch is not installed")
    r["machine"]["load_after"] = _load()
    r["speed_summary"] = summarize(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=1, default=float))
    md = render(r)
    out.with_suffix(".md").write_text(md)
    print(md)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()

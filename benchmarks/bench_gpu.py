#!/usr/bin/env python
"""GPU benchmark: samples/s of backend='cuda' (nvCOMP), 'cuda' hybrid (CPU inflate, one upload) and
the CPU backend on every core, on the same queries, alternating round by round; bigwig-loader too
when it is installed.

Shapes (as the scoreboard's): S1 3 tracks x 1,000 bp; S2 16 tracks x 1,000 bp; S3 16 tracks x
131,072 bp, 128-bp means. Batches of 256, 1,024 and 4,096. Queries are random and block-disjoint
within a batch where the genome allows (`datasets.BlockDisjointSampler`). Timings wait for the GPU
(each batch ends with a stream synchronisation). Writes JSON and a markdown table.

    python benchmarks/bench_gpu.py --out gpu_bench.json --md gpu_bench.md
    python benchmarks/bench_gpu.py --dry-run          # tiny, runs here without a GPU (simulator)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SHAPES = {"S1": dict(tracks=3, length=1000, window=1), "S2": dict(tracks=16, length=1000, window=1),
          "S3": dict(tracks=16, length=131072, window=128)}
TARGETS = {"S1@4096 samples/s": 100_000, "cuda / cpu": 2.0, "cuda / bigwig-loader": 5.0}


def _readers(paths, n_threads, dry_run):
    from bwloader_core import BigWigCollection
    from bwloader_core.device import Device, cuda_unavailable_reason, nvcomp_unavailable_reason
    readers = {"cpu": BigWigCollection(paths, n_threads=n_threads)}
    why = cuda_unavailable_reason()
    if why:
        print(f"no GPU reader: {why}", flush=True)
        return readers, {"cuda": why}
    notes = {}
    if nvcomp_unavailable_reason() is None or dry_run:
        readers["cuda"] = BigWigCollection(paths, n_threads=n_threads, backend=Device.cuda(inflater="nvcomp"))
    else:
        notes["cuda"] = nvcomp_unavailable_reason()
    readers["hybrid"] = BigWigCollection(paths, n_threads=n_threads, backend=Device.cuda(inflater="cpu"))
    return readers, notes


def _bigwig_loader(paths):
    """bigwig-loader's own reader, when installed; None (with why) otherwise."""
    try:
        from bigwig_loader.collection import BigWigCollection as BLCollection
    except Exception as exc:  # noqa: BLE001 - any import failure: not measured, reason recorded
        return None, f"not importable ({type(exc).__name__}: {exc})"
    try:
        return BLCollection(paths, first_n_files=None), None
    except Exception as exc:  # noqa: BLE001
        return None, f"could not open the files ({type(exc).__name__}: {exc})"


def _run_bigwig_loader(coll, chroms, starts, ends, window):
    import cupy
    out = coll.get_batch(chroms, starts, ends, window_size=window) if window > 1 else \
        coll.get_batch(chroms, starts, ends)
    cupy.cuda.get_current_stream().synchronize()
    return out


def _sync(x):
    if hasattr(x, "device") and not isinstance(x, np.ndarray):
        import cupy
        cupy.cuda.get_current_stream().synchronize()


def run(args):
    import datasets
    from bwloader_core.device import Device  # noqa: F401 (import cost outside the timings)
    paths = datasets.benchmark_collection(n_tracks=16, genome_mb=args.genome_mb, verbose=True)
    n_threads = args.threads or os.cpu_count() or 1
    readers, notes = _readers(paths, n_threads, args.dry_run)
    bl, bl_why = (None, "dry run") if args.dry_run else _bigwig_loader(paths)
    if bl_why:
        notes["bigwig-loader"] = bl_why
    rng = np.random.default_rng(args.seed)
    results = []
    try:
        for shape_name in args.shapes:
            shape = SHAPES[shape_name]
            sub = {k: v for k, v in readers.items()}
            sampler = datasets.BlockDisjointSampler(paths[:shape["tracks"]], shape["length"])
            tracks = list(range(shape["tracks"]))
            for batch in args.batches:
                queries = []
                for _ in range(args.rounds + 1):
                    c, s, e = sampler.sample(batch, rng)
                    if len(s) < batch:                  # the genome ran out of free blocks: top up at random
                        extra = batch - len(s)
                        ci = rng.choice(sampler.names, extra)
                        st = (rng.random(extra) * np.array([sampler.chrom_sizes[x] - shape["length"]
                                                             for x in ci])).astype(np.int64)
                        c, s = list(c) + list(ci), np.concatenate([s, st])
                        e = s + shape["length"]
                    queries.append((c, s, e))
                times = {k: [] for k in sub}
                if bl is not None:
                    times["bigwig-loader"] = []
                for r, (c, s, e) in enumerate(queries):
                    for name, coll in sub.items():
                        t0 = time.perf_counter()
                        out = coll.get_batch(c, s, e, window_size=shape["window"], tracks=tracks)
                        _sync(out)
                        if r:                           # round 0 warms up (compiles, allocates)
                            times[name].append(time.perf_counter() - t0)
                        del out
                    if bl is not None:
                        t0 = time.perf_counter()
                        _run_bigwig_loader(bl, c, s, e, shape["window"])
                        if r:
                            times["bigwig-loader"].append(time.perf_counter() - t0)
                row = {"shape": shape_name, "batch": batch, **shape}
                for name, ts in times.items():
                    row[name] = batch * len(ts) / sum(ts) if ts else None
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for coll in readers.values():
            coll.close()
    return dict(results=results, notes=notes, threads=n_threads, genome_mb=args.genome_mb, device=_device_name(),
                targets=_targets(results))


def _device_name():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:  # noqa: BLE001
        return "no GPU"


def _targets(results):
    out = {}
    s1 = [r for r in results if r["shape"] == "S1" and r["batch"] == 4096 and r.get("cuda")]
    if s1:
        out["S1@4096 samples/s"] = dict(value=s1[0]["cuda"], target=TARGETS["S1@4096 samples/s"],
                                        met=s1[0]["cuda"] >= TARGETS["S1@4096 samples/s"])
    ratios = [r["cuda"] / r["cpu"] for r in results if r.get("cuda") and r.get("cpu")]
    if ratios:
        out["cuda / cpu"] = dict(value=min(ratios), target=2.0, met=min(ratios) >= 2.0, note="lowest over shapes")
    bl = [r["cuda"] / r["bigwig-loader"] for r in results if r.get("cuda") and r.get("bigwig-loader")]
    if bl:
        out["cuda / bigwig-loader"] = dict(value=min(bl), target=5.0, met=min(bl) >= 5.0, note="lowest over shapes")
    return out


def render(report) -> str:
    cols = ["cuda", "hybrid", "cpu", "bigwig-loader"]
    lines = [f"GPU benchmark on {report['device']}, CPU backend on {report['threads']} threads, "
             f"{report['genome_mb']:g} Mb genome; samples/s (higher is better).", "",
             "| shape | batch | " + " | ".join(cols) + " | cuda / cpu |", "|---|---:|" + "---:|" * (len(cols) + 1)]
    for r in report["results"]:
        cells = [f"{r[c]:,.0f}" if r.get(c) else "-" for c in cols]
        ratio = f"{r['cuda'] / r['cpu']:.1f}x" if r.get("cuda") and r.get("cpu") else "-"
        lines.append(f"| {r['shape']} | {r['batch']:,} | " + " | ".join(cells) + f" | {ratio} |")
    if report["targets"]:
        lines += ["", "| target | measured | goal | met |", "|---|---:|---:|---|"]
        for k, t in report["targets"].items():
            lines.append(f"| {k} | {t['value']:,.1f} | {t['target']:,} | {'yes' if t['met'] else 'no'} |")
    for k, why in report["notes"].items():
        lines.append(f"\n- {k}: {why}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--batches", nargs="+", type=int, default=[256, 1024, 4096])
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per shape and batch (after one warm-up)")
    ap.add_argument("--genome-mb", type=float, default=200)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON report")
    ap.add_argument("--md", default=None, help="markdown table")
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes under numba's CUDA simulator: checks the script end to end without a GPU")
    args = ap.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
        args.shapes, args.batches, args.rounds, args.genome_mb = ["S1"], [4], 1, 2
        SHAPES["S1"]["length"] = 60
    report = run(args)
    text = render(report)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()

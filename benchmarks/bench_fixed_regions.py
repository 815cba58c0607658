#!/usr/bin/env python
"""Fixed regions: bwloader (compressed, transcoded, warm cache) against GenVarLoader and pyBigWig.

    python benchmarks/bench_fixed_regions.py                        # full run (issue #15's section)
    python benchmarks/bench_fixed_regions.py --quick                # small genome, short timings
    python benchmarks/bench_fixed_regions.py --md docs/fixed_regions.md --json out.json

GenVarLoader (``pip install -e '.[bench]'``) writes the tracks over a BED of regions into its own
uncompressed store once, then serves only those regions. `bwloader transcode` writes standard
uncompressed bigWig files that serve any position. This script measures both sides of that
trade-off on the benchmark collection (benchmarks/datasets.py: 16 pyBigWig-written tracks over
200 Mb, generated once):

- write step: GVL `write` (3 and 16 tracks) against `bwloader transcode` of the same files, time and
  disk size;
- S1 (3 tracks) and S2 (16 tracks): 1,000 bp, batches of 256 regions drawn at random from
  20,000 fixed regions; every reader gets the same batches, readers alternate round by round
  (forward, then backward order):
    gvl parallel=False / True   ``ds[idx]`` on the GVL store (raw: its own (B, samples, 1, L) layout)
    compressed                  ``BigWigCollection(originals, cache_bytes=0).get_batch``
    transcoded                  the same on the transcoded files
    transcoded, BTL             the same with ``layout="BTL"``: (B, tracks, L), GVL's layout
    warm cache                  on the originals with ``cache_bytes`` set, after one untimed pass
                                over all regions (that pass is timed and reported apart)
    pyBigWig                    a ``values(numpy=True)`` loop per (region, track), NaN -> 0
    transcoded, random          random positions anywhere in the genome (GVL cannot serve these)
- S3: 16 tracks x 131,072 bp, window 128 (mean), batch 8, random positions: compressed, transcoded,
  pyBigWig.

Before timing, it checks that every reader returns the same values for the same regions and
tracks. GVL's ``ds[idx]`` returns (regions, samples, tracks, length), regions in the input BED's
order and samples in *lexicographic* order of their names (``ds.samples``); a (B, L, T) array like
ours is ``np.moveaxis(out[:, :, 0, :], 1, 2)[..., order]`` with ``order`` mapping ``ds.samples``
to track positions. Reshaping instead of moving the axis scrambles the values (what "wrong order"
looked like), and names like track10/track2 sort differently from the file order. Alternatively,
``ds[idx[:, None], names[None, :]]`` picks samples by name in the order given.

Outputs JSON (--json, default benchmarks/out/fixed_regions/fixed_regions.json) and a Markdown
table (--md, printed too).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_common import cpu_model, load_module  # noqa: E402

WORK = HERE / "out" / "fixed_regions"
SHAPES = {"S1": dict(tracks=3, length=1000, batch=256), "S2": dict(tracks=16, length=1000, batch=256)}
S3 = dict(tracks=16, length=131_072, window=128, batch=8)


def log(msg, t0=[time.perf_counter()]):  # noqa: B006 (the start time, once)
    print(f"[{time.perf_counter() - t0[0]:7.1f} s] {msg}", flush=True)


def dir_bytes(d) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def fixed_regions(chrom_sizes: dict, n: int, length: int, rng):
    """n regions of `length` bp, uniform over the genome (chromosome by size)."""
    names = [c for c, s in chrom_sizes.items() if s > length]
    room = np.array([chrom_sizes[c] - length for c in names], np.float64)
    ci = rng.choice(len(names), n, p=room / room.sum())
    starts = (rng.random(n) * room[ci]).astype(np.int64)
    return np.array(names, dtype=object)[ci], starts


def fmt(x: float) -> str:
    return "n/a" if x != x else (f"{x:,.0f}" if x >= 100 else f"{x:,.1f}")


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 10e6 else f"{n / 1e6:,.1f} MB"


# ------------------------------------------------------------------------------------- readers
class PyBigWigLoop:
    """values(numpy=True) per (region, track), NaN -> 0; optional window mean (default 0)."""

    def __init__(self, paths, window=1):
        import pyBigWig
        self.handles = [pyBigWig.open(p) for p in paths]
        self.window = window

    def __call__(self, chroms, starts, ends):
        L = int(ends[0] - starts[0])
        out = np.empty((len(starts), L, len(self.handles)), np.float32)
        for j, h in enumerate(self.handles):
            for i, (c, s, e) in enumerate(zip(chroms, starts.tolist(), ends.tolist())):
                out[i, :, j] = h.values(c, s, e, numpy=True)
        np.nan_to_num(out, copy=False, nan=0.0)
        if self.window > 1:
            out = out.reshape(len(starts), L // self.window, self.window, -1).mean(axis=2)
        return out

    def close(self):
        for h in self.handles:
            h.close()


def gvl_to_ours(out, order):
    """GVL's (B, samples, 1, L) -> (B, L, tracks) in our track order."""
    return np.moveaxis(out[:, :, 0, :], 1, 2)[..., order]


# ------------------------------------------------------------------------------------- timing
def run_rounds(readers: dict, duration: float, rounds: int, batch_size: int, label: str):
    """Alternate `readers` (name -> fn(k) running batch k) round by round on the same batches.
    Returns name -> dict(samples_per_s, batches, seconds, round_rates)."""
    names = list(readers)
    res = {n: dict(samples=0, seconds=0.0, batches=0, round_rates=[]) for n in names}
    per_round = duration / rounds
    stride = 10_000
    for rnd in range(rounds):
        order = names if rnd % 2 == 0 else names[::-1]
        for n in order:
            fn = readers[n]
            k0 = rnd * stride
            fn(k0)                                   # one untimed warm-up batch (JIT, buffers)
            k, t0 = k0 + 1, time.perf_counter()
            while True:
                fn(k)
                k += 1
                el = time.perf_counter() - t0
                if el >= per_round:
                    break
            nb = k - k0 - 1
            r = res[n]
            r["samples"] += nb * batch_size
            r["seconds"] += el
            r["batches"] += nb
            r["round_rates"].append(nb * batch_size / el)
            log(f"  {label} {n:24s} round {rnd + 1}: {fmt(nb * batch_size / el):>9} samples/s ({nb} batches)")
    for r in res.values():
        r["samples_per_s"] = r["samples"] / r["seconds"]
    return res


# ---------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--genome-mb", type=float, default=200.0, help="benchmark collection size (default 200)")
    ap.add_argument("--regions", type=int, default=20_000, help="fixed regions (default 20,000)")
    ap.add_argument("--duration", type=float, default=6.0, help="timed seconds per reader and shape, over all rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache-gib", type=float, default=8.0, help="cache_bytes of the warm-cache reader (GiB)")
    ap.add_argument("--shapes", default="S1,S2,S3")
    ap.add_argument("--quick", action="store_true", help="20 Mb genome, 2,000 regions, 1 s per reader, 2 rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", help="where generated data is cached (default benchmarks/out/data)")
    ap.add_argument("--work", default=str(WORK), help="GVL stores and transcoded files go here")
    ap.add_argument("--json", help="JSON results (default WORK/fixed_regions.json)")
    ap.add_argument("--md", help="also write the Markdown report here")
    args = ap.parse_args(argv)
    if args.quick:
        args.genome_mb, args.regions, args.duration, args.rounds = 20.0, 2_000, 1.0, 2
    shapes = [s for s in args.shapes.split(",") if s]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    try:
        import genvarloader as gvl
    except ImportError:
        sys.exit("this benchmark needs GenVarLoader: pip install -e '.[bench]'")
    import warnings

    import polars as pl
    from loguru import logger
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="genvarloader")
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    import bwloader_core
    from bwloader_core import BigWigCollection
    from bwloader_core.transcode import transcode

    ds_mod = load_module("datasets", "datasets.py")
    t = time.perf_counter()
    paths = ds_mod.benchmark_collection(n_tracks=16, genome_mb=args.genome_mb, root=args.data_root)
    t_data = time.perf_counter() - t
    stems = [Path(p).stem for p in paths]
    log(f"machine: {platform.node()} {cpu_model()} x{os.cpu_count()}; load {os.getloadavg()[0]:.2f}; "
        f"collection {Path(paths[0]).parent} ({t_data:.0f} s)")
    with BigWigCollection(paths) as c:
        chrom_sizes = dict(c.chrom_sizes)
    rng = np.random.default_rng(args.seed)
    L = SHAPES["S1"]["length"]
    r_chroms, r_starts = fixed_regions(chrom_sizes, args.regions, L, rng)
    r_ends = r_starts + L
    bed = pl.DataFrame({"chrom": r_chroms.tolist(), "chromStart": r_starts, "chromEnd": r_ends})

    R = dict(config=dict(genome_mb=args.genome_mb, regions=args.regions, length=L, duration=args.duration,
                         rounds=args.rounds, cache_gib=args.cache_gib, seed=args.seed, tracks=stems),
             machine=dict(cpu=cpu_model(), cpus=os.cpu_count(), load_start=os.getloadavg()),
             versions=dict(bwloader=bwloader_core.__version__, genvarloader=gvl.__version__,
                           numpy=np.__version__, python=platform.python_version()),
             write={}, shapes={}, checks={})
    try:
        import pyBigWig
        R["versions"]["pyBigWig"] = pyBigWig.__version__ if hasattr(pyBigWig, "__version__") else "?"
    except ImportError:
        pass

    # ---- write steps: GVL stores and transcoded files, per shape
    stores, tdirs = {}, {}
    for s in [x for x in ("S1", "S2") if x in shapes or (x == "S2" and "S3" in shapes)]:
        n = SHAPES[s]["tracks"]
        store, tdir = work / f"gvl_{s}", work / f"transcoded_{n}"
        t = time.perf_counter()
        gvl.write(store, bed, tracks=gvl.BigWigs("signal", dict(zip(stems[:n], paths[:n]))), overwrite=True)
        gvl_s = time.perf_counter() - t
        t = time.perf_counter()
        res = transcode(paths[:n], tdir, force=True, progress=False)
        tc_s = time.perf_counter() - t
        stores[s], tdirs[s] = store, [r.output for r in res]
        R["write"][s] = dict(tracks=n, gvl_s=gvl_s, gvl_bytes=dir_bytes(store), transcode_s=tc_s,
                             transcode_bytes=sum(r.output_bytes for r in res),
                             source_bytes=sum(r.source_bytes for r in res))
        w = R["write"][s]
        log(f"{s} write: GVL {gvl_s:.1f} s, {mb(w['gvl_bytes'])}; transcode {tc_s:.1f} s, "
            f"{mb(w['transcode_bytes'])} (compressed {mb(w['source_bytes'])})")

    # the files just written are still being written back to disk: wait for that, so that no
    # reader's timing shares the CPUs with the kernel's writeback
    t = time.perf_counter()
    os.sync()
    log(f"sync after the write steps: {time.perf_counter() - t:.1f} s")

    cache_bytes = int(args.cache_gib * (1 << 30))
    for s in [x for x in ("S1", "S2") if x in shapes]:
        sh = SHAPES[s]
        n, B = sh["tracks"], sh["batch"]
        brng = np.random.default_rng([args.seed, n])
        # random positions anywhere (new ones every batch)
        rand_chroms, rand_starts = fixed_regions(chrom_sizes, 4096 * B, L, brng)

        # batch k: B distinct regions, the same for every reader, drawn before any timing (a draw
        # without replacement costs about as much as a fast reader's batch)
        pool_rng = np.random.default_rng([args.seed, n, 1])
        idx_pool = np.stack([pool_rng.choice(args.regions, B, replace=False) for _ in range(4096)])

        def batch_idx(k):
            return idx_pool[k % len(idx_pool)]

        ds = gvl.Dataset.open(stores[s]).with_len(L)
        order = [stems.index(x) for x in ds.samples]      # GVL's sample order -> our track index
        comp = BigWigCollection(paths[:n], cache_bytes=0)
        trans = BigWigCollection(tdirs[s], cache_bytes=0)
        warm = BigWigCollection(paths[:n], cache_bytes=cache_bytes)
        pbw = PyBigWigLoop(paths[:n])
        gvl_p = {p: ds.with_settings(parallel=p) for p in (False, True)}

        def q(k):
            i = batch_idx(k)
            return r_chroms[i].tolist(), r_starts[i], r_ends[i]

        def rq(k):
            j = (k % 4096) * B
            return rand_chroms[j:j + B].tolist(), rand_starts[j:j + B], rand_starts[j:j + B] + L

        # ---- the same values from every reader
        for k in range(3):
            i = batch_idx(100_000 + k)
            cq = q(100_000 + k)
            ref = comp.get_batch(*cq)
            checks = {
                "gvl": np.array_equal(gvl_to_ours(gvl_p[True][i], order), ref),
                "gvl_parallel_false": np.array_equal(gvl_to_ours(gvl_p[False][i], order), ref),
                "transcoded": np.array_equal(trans.get_batch(*cq), ref),
                "transcoded_btl": np.array_equal(trans.get_batch(*cq, layout="BTL"), ref.transpose(0, 2, 1)),
                "warm_cache": np.array_equal(warm.get_batch(*cq), ref),
                "pyBigWig": np.array_equal(pbw(*cq), ref),
                "transcoded_random": np.array_equal(trans.get_batch(*rq(k)), comp.get_batch(*rq(k))),
            }
            for name, ok in checks.items():
                R["checks"].setdefault(f"{s}_{name}", True)
                R["checks"][f"{s}_{name}"] &= bool(ok)
        bad = [k for k, v in R["checks"].items() if k.startswith(s) and not v]
        log(f"{s} values equal across readers: {'yes' if not bad else 'NO: ' + ', '.join(bad)}")
        if bad:
            sys.exit(f"readers disagree on {s}: {bad}")

        # ---- warm the cache with one pass over every region (the first epoch with the cache)
        t = time.perf_counter()
        for a in range(0, args.regions, B):
            j = np.arange(a, min(a + B, args.regions))
            warm.get_batch(r_chroms[j].tolist(), r_starts[j], r_ends[j])
        warm_pass_s = time.perf_counter() - t
        log(f"{s} warm-up pass over {args.regions:,} regions with the cache: {warm_pass_s:.1f} s "
            f"({args.regions / warm_pass_s:,.0f} samples/s); cache holds {warm.cache.nbytes / 2**20:,.0f} MiB, "
            f"hit rate in that pass {warm.cache.stats()['hit_rate']:.0%}")

        # ---- and the transcoded files once (transcode leaves them out of the page cache; read
        # through our maps they come back in 2 MiB pages): every reader is timed page-cache warm
        t = time.perf_counter()
        for a in range(0, args.regions, B):
            j = np.arange(a, min(a + B, args.regions))
            trans.get_batch(r_chroms[j].tolist(), r_starts[j], r_ends[j])
        trans_pass_s = time.perf_counter() - t
        log(f"{s} first pass over {args.regions:,} regions of the transcoded files (from disk): {trans_pass_s:.1f} s")

        readers = {
            "gvl parallel=False": lambda k: gvl_p[False][batch_idx(k)],
            "gvl parallel=True": lambda k: gvl_p[True][batch_idx(k)],
            "compressed": lambda k: comp.get_batch(*q(k)),
            "transcoded": lambda k: trans.get_batch(*q(k)),
            "transcoded, BTL": lambda k: trans.get_batch(*q(k), layout="BTL"),
            "warm cache": lambda k: warm.get_batch(*q(k)),
            "pyBigWig": lambda k: pbw(*q(k)),
            "transcoded, random": lambda k: trans.get_batch(*rq(k)),
        }
        res = run_rounds(readers, args.duration, args.rounds, B, s)
        res["warm cache"]["first_pass_s"] = warm_pass_s
        res["warm cache"]["first_pass_samples_per_s"] = args.regions / warm_pass_s
        res["transcoded"]["first_pass_s"] = trans_pass_s
        R["shapes"][s] = res
        for c in (comp, trans, warm):
            c.close()
        pbw.close()

    if "S3" in shapes:
        n, Ls, w, B = S3["tracks"], S3["length"], S3["window"], S3["batch"]
        srng = np.random.default_rng([args.seed, 3])
        sc, ss = fixed_regions(chrom_sizes, 4096 * B, Ls, srng)
        tpaths = tdirs.get("S2") or [r.output for r in transcode(paths[:n], work / "transcoded_16", force=True,
                                                                 progress=False)]
        comp, trans, pbw = BigWigCollection(paths[:n], cache_bytes=0), BigWigCollection(tpaths, cache_bytes=0), \
            PyBigWigLoop(paths[:n], window=w)

        def q3(k):
            j = (k % 4096) * B
            return sc[j:j + B].tolist(), ss[j:j + B], ss[j:j + B] + Ls

        ref = comp.get_batch(*q3(0), window_size=w)
        R["checks"]["S3_transcoded"] = bool(np.array_equal(trans.get_batch(*q3(0), window_size=w), ref))
        R["checks"]["S3_pyBigWig_close"] = bool(np.allclose(pbw(*q3(0)), ref, rtol=1e-5, atol=1e-6))
        log(f"S3 checks: {R['checks']['S3_transcoded']=}, {R['checks']['S3_pyBigWig_close']=}")
        readers = {"compressed": lambda k: comp.get_batch(*q3(k), window_size=w),
                   "transcoded": lambda k: trans.get_batch(*q3(k), window_size=w),
                   "pyBigWig": lambda k: pbw(*q3(k))}
        R["shapes"]["S3"] = run_rounds(readers, args.duration, args.rounds, B, "S3")
        for c in (comp, trans):
            c.close()
        pbw.close()

    R["machine"]["load_end"] = os.getloadavg()
    out_json = Path(args.json) if args.json else work / "fixed_regions.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(R, indent=1, default=float))
    report = render(R)
    print()
    print(report)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(report)
    log(f"wrote {out_json}" + (f" and {args.md}" if args.md else ""))
    s1 = R["shapes"].get("S1")
    if s1:
        log("for bwloader_core/transcode.py MEASURED_READ_SPEED: "
            f"MeasuredSpeed(compressed={s1['compressed']['samples_per_s']:.0f}, "
            f"transcoded={s1['transcoded']['samples_per_s']:.0f}, setup=\"S1: 3 benchmark tracks, 1,000 bp, batch "
            f"256, get_batch, cache_bytes=0\", source=\"benchmarks/bench_fixed_regions.py, {cpu_model()} "
            f"x{os.cpu_count()}\")")
    return 0


def render(R) -> str:
    cfg, W, S = R["config"], R["write"], R["shapes"]
    cols = [s for s in ("S1", "S2") if s in S or s in W]
    head = [f"{s} ({SHAPES[s]['tracks']} tracks)" for s in cols]
    L = ["# Fixed regions: bwloader against GenVarLoader", "",
         f"- `benchmarks/bench_fixed_regions.py`: collection of {cfg['genome_mb']:g} Mb "
         f"(benchmarks/datasets.py), {cfg['regions']:,} fixed regions of {cfg['length']:,} bp, batches of "
         f"256 random regions; readers alternate over {cfg['rounds']} rounds on the same batches, "
         f"{cfg['duration']:g} s timed per reader and shape; warm page cache.",
         f"- Machine: {R['machine']['cpu']} x{R['machine']['cpus']}, load average at start "
         f"{R['machine']['load_start'][0]:.2f}, at end {R['machine'].get('load_end', [float('nan')])[0]:.2f}.",
         "- Versions: " + ", ".join(f"{k} {v}" for k, v in R["versions"].items()) + ".",
         "- Values checked equal across readers: " +
         ("all" if all(R["checks"].values()) else
          "**not all**: " + ", ".join(k for k, v in R["checks"].items() if not v)) + ".", "",
         "| | " + " | ".join(head) + " |", "|---|" + "---|" * len(cols)]

    def row(label, fn):
        L.append(f"| {label} | " + " | ".join(fn(s) for s in cols) + " |")

    def rate(s, k):
        r = S.get(s, {}).get(k)
        return r["samples_per_s"] if r else float("nan")

    row("GVL write (serves only these regions)",
        lambda s: f"{W[s]['gvl_s']:.1f} s, {mb(W[s]['gvl_bytes'])}" if s in W else "")
    row("bwloader transcode (serves any position)",
        lambda s: f"{W[s]['transcode_s']:.1f} s, {mb(W[s]['transcode_bytes'])} "
                  f"(compressed {mb(W[s]['source_bytes'])})" if s in W else "")
    for k, label in (("gvl parallel=False", "GVL `ds[idx]`, parallel=False"),
                     ("gvl parallel=True", "GVL `ds[idx]`, parallel=True"),
                     ("compressed", "bwloader `get_batch`, compressed, `cache_bytes=0`"),
                     ("transcoded", "bwloader `get_batch`, transcoded"),
                     ("transcoded, BTL", "bwloader `get_batch(layout=\"BTL\")`, transcoded: (B, T, L) like GVL's"),
                     ("warm cache", "bwloader, compressed, warm cache"),
                     ("pyBigWig", "pyBigWig `values()` loop"),
                     ("transcoded, random", "bwloader, transcoded, random positions anywhere")):
        row(label + ", samples/s", lambda s, k=k: fmt(rate(s, k)))

    def best_gvl(s):
        return max(rate(s, "gvl parallel=False"), rate(s, "gvl parallel=True"))
    row("transcoded / best GVL", lambda s: f"{rate(s, 'transcoded') / best_gvl(s):.2f}x")
    row("transcoded (B, T, L) / best GVL", lambda s: f"{rate(s, 'transcoded, BTL') / best_gvl(s):.2f}x")
    row("warm cache / best GVL", lambda s: f"{rate(s, 'warm cache') / best_gvl(s):.2f}x")
    row("first pass with the cache, samples/s",
        lambda s: fmt(S[s]["warm cache"].get("first_pass_samples_per_s", float("nan"))) if s in S else "")
    if "S3" in S:
        r3 = S["S3"]
        L += ["", f"S3 ({S3['tracks']} tracks x {S3['length']:,} bp, window {S3['window']} mean, batch {S3['batch']}, "
                  "random positions), samples/s: " +
              ", ".join(f"{k} {fmt(v['samples_per_s'])}" for k, v in r3.items()) +
              (f"; transcoded / compressed {r3['transcoded']['samples_per_s'] / r3['compressed']['samples_per_s']:.2f}x"
               if "transcoded" in r3 and "compressed" in r3 else "")]
    L += ["", "Round rates (samples/s): " + "; ".join(
        f"{s} {k}: " + "/".join(fmt(x) for x in v["round_rates"]) for s in S for k, v in S[s].items())]
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())

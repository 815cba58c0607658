#!/usr/bin/env python
"""Soak test: stream many batches through LoaderConfig(...).build() and watch memory and fds.

    python scripts/soak.py --batches 100000 [--every 500] [--csv soak_out/soak.csv] [--png docs/soak.png]

Writes a generated demo collection (bwloader_core.demo.write_demo_collection: bigWigs + FASTA) into
a temporary folder, then iterates epochs of the dataset until `--batches` batches have been consumed
(a new StreamedDataloader per epoch, as in training), sampling every `--every` batches:
RSS (VmRSS from /proc/self/status), open file descriptors (/proc/self/fd), live threads and
throughput, into a CSV. The CSV needs nothing but the standard library; the plot (RSS and fds over
batches) needs matplotlib and is skipped without it.

Reported: RSS growth after warm-up, ((mean RSS of the last 10 % of samples) - (RSS at the end of
warm-up)) / (RSS at the end of warm-up), with the target < 5 %; fd and thread counts first/last/max.
Exit status 1 when the growth exceeds --max-growth or fds grow.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_collection(directory: Path, n_tracks: int, seed: int):
    from bwloader_core.demo import write_demo_collection
    return write_demo_collection(directory, n_tracks=n_tracks, seed=seed)


def soak(args) -> dict:
    from bwloader_core import LoaderConfig

    tmp = tempfile.TemporaryDirectory(prefix="bwsoak-") if args.data is None else None
    data_dir = Path(args.data or tmp.name)
    t0 = time.perf_counter()
    info = make_collection(data_dir, args.tracks, args.seed)
    print(f"collection: {len(info['paths'])} tracks, {sum(info['chrom_sizes'].values()):,} bp "
          f"({info['writer']} writer), {time.perf_counter() - t0:.1f} s", flush=True)
    cfg = LoaderConfig(bigwig_paths=info["paths"], reference_genome=None if args.no_fasta else info["fasta"],
                       sequence_length=args.length, batch_size=args.batch_size, window_size=args.window,
                       batches_per_epoch=args.epoch_batches, num_workers=args.workers, seed=args.seed,
                       jitter=args.jitter, reverse_complement=True, cache_bytes=args.cache_bytes)
    csv_path = Path(args.csv)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["batches", "seconds", "rss_kib", "fds", "threads", "batches_per_s", "epoch"]
    rows = []
    ds = cfg.build()
    n, epoch = 0, 0
    t_start = time.perf_counter()
    t_last, n_last = t_start, 0
    checksum = 0.0

    def sample():
        nonlocal t_last, n_last
        now = time.perf_counter()
        rate = (n - n_last) / max(now - t_last, 1e-9)
        t_last, n_last = now, n
        row = dict(batches=n, seconds=round(now - t_start, 2), rss_kib=rss_kib(), fds=open_fds(),
                   threads=threading.active_count(), batches_per_s=round(rate, 1), epoch=epoch)
        rows.append(row)
        with open(csv_path, "a", newline="") as fh:
            csv.DictWriter(fh, fields).writerow(row)
        if args.verbose and len(rows) % args.print_every == 0:
            print(f"  {n:8d} batches  {row['seconds']:8.1f} s  RSS {row['rss_kib'] / 1024:7.1f} MiB  "
                  f"fds {row['fds']}  threads {row['threads']}  {rate:7.0f} batches/s", flush=True)

    with open(csv_path, "w", newline="") as fh:
        csv.DictWriter(fh, fields).writeheader()
    fds_before = open_fds()
    sample()
    try:
        while n < args.batches:
            ds.set_epoch(epoch)
            for batch in ds:
                n += 1
                checksum += float(batch.values[0, 0, 0])   # touch the data
                if n % args.every == 0:
                    sample()
                if n >= args.batches:
                    break
            epoch += 1
    finally:
        ds.close()
    gc.collect()
    time.sleep(0.2)
    n_final = n
    sample()
    elapsed = time.perf_counter() - t_start
    if tmp is not None:
        tmp.cleanup()

    result = summarize(rows, args, fds_before, n_final, elapsed, epoch, csv_path)
    if args.png:
        result["png"] = plot(rows, Path(args.png), result)
    return result


def summarize(rows, args, fds_before, n_final, elapsed, epoch, csv_path) -> dict:
    samples = rows[1:-1] or rows           # exclude the pre-start and post-close samples
    warm = max(1, int(len(samples) * args.warmup))
    rss_warm = samples[min(warm, len(samples) - 1)]["rss_kib"]
    tail = samples[-max(1, len(samples) // 10):]
    rss_tail = sum(r["rss_kib"] for r in tail) / len(tail)
    growth = (rss_tail - rss_warm) / rss_warm
    result = dict(
        batches=n_final, seconds=round(elapsed, 1), batches_per_s=round(n_final / elapsed, 1),
        epochs=epoch, batch_size=args.batch_size, length=args.length, tracks=args.tracks, window=args.window,
        workers=args.workers, sequences=not args.no_fasta, samples=len(rows),
        rss_start_mib=round(rows[0]["rss_kib"] / 1024, 1), rss_after_warmup_mib=round(rss_warm / 1024, 1),
        rss_last10pct_mean_mib=round(rss_tail / 1024, 1), rss_max_mib=round(max(r["rss_kib"] for r in rows) / 1024, 1),
        rss_growth_after_warmup_pct=round(100 * growth, 2),
        fds_before=fds_before, fds_during_min=min(r["fds"] for r in samples),
        fds_during_max=max(r["fds"] for r in samples), fds_after_close=rows[-1]["fds"],
        threads_during_max=max(r["threads"] for r in samples), threads_after_close=rows[-1]["threads"],
        warmup_fraction=args.warmup, csv=str(csv_path),
    )
    return result


def from_csv(args) -> dict:
    """Summary and plot of an existing CSV (e.g. of a run that was stopped early)."""
    with open(args.from_csv) as fh:
        rows = [{k: (float(v) if k in ("seconds", "batches_per_s") else int(v)) for k, v in r.items()}
                for r in csv.DictReader(fh)]
    last = rows[-1]
    result = summarize(rows + [last], args, rows[0]["fds"], last["batches"], last["seconds"], last["epoch"],
                       args.from_csv)
    result["stopped_early"] = True
    if args.png:
        result["png"] = plot(rows, Path(args.png), result)
    return result


def plot(rows, png: Path, result) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (the CSV is written)")
        return None
    x = [r["batches"] for r in rows]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    a1.plot(x, [r["rss_kib"] / 1024 for r in rows], lw=1.2, color="tab:blue")
    a1.axhline(result["rss_after_warmup_mib"], color="grey", ls="--", lw=0.8, label="RSS after warm-up")
    a1.set_ylabel("RSS (MiB)")
    a1.set_ylim(bottom=0)
    a1.legend(loc="lower right")
    a1.set_title(f"soak: {result['batches']:,} batches of {result['batch_size']} x {result['length']} bp x "
                 f"{result['tracks']} tracks; RSS growth after warm-up {result['rss_growth_after_warmup_pct']:+.2f} %")
    a2.plot(x, [r["fds"] for r in rows], lw=1.2, color="tab:orange", label="open fds")
    a2.plot(x, [r["threads"] for r in rows], lw=1.2, color="tab:green", label="threads")
    a2.set_ylabel("count")
    a2.set_xlabel("batches consumed")
    a2.set_ylim(bottom=0)
    a2.legend(loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return str(png)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=500, help="sample every K batches")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--tracks", type=int, default=4)
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--jitter", type=int, default=50)
    ap.add_argument("--cache-bytes", type=int, default=0)
    ap.add_argument("--epoch-batches", type=int, default=5_000, help="batches per epoch (a new loader each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-fasta", action="store_true", help="values only (no one-hot sequences)")
    ap.add_argument("--data", default=None, help="folder for the demo collection (default: a temp dir)")
    ap.add_argument("--csv", default="soak_out/soak.csv")
    ap.add_argument("--png", default="docs/soak.png", help="'' for no plot")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of samples counted as warm-up")
    ap.add_argument("--max-growth", type=float, default=5.0, help="percent")
    ap.add_argument("--print-every", type=int, default=20, help="print every N samples")
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("-q", dest="verbose", action="store_false")
    ap.add_argument("--from-csv", default=None, help="only summarise and plot this CSV")
    args = ap.parse_args(argv)
    result = from_csv(args) if args.from_csv else soak(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    bad = result["rss_growth_after_warmup_pct"] > args.max_growth or result["fds_after_close"] > result["fds_before"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

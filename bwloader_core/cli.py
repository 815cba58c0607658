"""The `bwloader` command: info, demo-data, bench, serve, transcode."""
from __future__ import annotations

import argparse
from pathlib import Path
import os
import subprocess
import sys

import numpy as np

from . import __version__


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _print_info(path: str, max_blocks: int | None, n_chroms_shown: int, out, transcode_info: bool = True) -> None:
    from .format import BigWigFile

    with BigWigFile(path) as f:
        w = out.write
        w(f"{f.path}\n")
        w(f"  size:               {f.file_size:,} bytes ({_human_bytes(f.file_size)})\n")
        w(f"  version:            {f.version}\n")
        w(f"  endianness:         {'little' if f.byteorder == '<' else 'big'}-endian\n")
        if f.compressed:
            w(f"  compression:        zlib (uncompressBufSize {f.uncompress_buf_size:,})\n")
        else:
            w("  compression:        none (uncompressBufSize 0): blocks are read without inflating\n")
        if transcode_info:
            from .transcode import estimate_transcode, speed_note, transcode_note
            w(f"  transcoding:        {transcode_note(estimate_transcode(f))}\n")
            gain = speed_note() if f.compressed else None
            if gain:
                w(f"                      {gain}\n")
        names = f.chrom_names
        total = sum(f.chrom_sizes.values())
        w(f"  chromosomes:        {len(names):,} ({total:,} bp)\n")
        for n in names[:n_chroms_shown]:
            w(f"    {n}\t{f.chrom_sizes[n]:,}\n")
        if len(names) > n_chroms_shown:
            w(f"    ... {len(names) - n_chroms_shown:,} more\n")
        if f.zoom_levels:
            reds = ", ".join(f"{z.reduction_level:,}" for z in f.zoom_levels)
            w(f"  zoom levels:        {len(f.zoom_levels)} (reduction levels: {reds})\n")
        else:
            w("  zoom levels:        0\n")
        s = f.summary
        if s is None:
            w("  total summary:      none (totalSummaryOffset 0)\n")
        else:
            mean = s.sum_data / s.bases_covered if s.bases_covered else float("nan")
            w(f"  total summary:      bases covered {s.bases_covered:,}, min {s.min_val:.6g}, "
              f"max {s.max_val:.6g}, mean {mean:.6g}, sum {s.sum_data:.6g}\n")
        n = f.n_blocks
        if n:
            sizes = np.asarray(f.block_size)
            kind = "compressed bytes" if f.compressed else "bytes"
            w(f"  data blocks:        {n:,}; {kind} per block min {int(sizes.min()):,}, "
              f"median {int(np.median(sizes)):,}, max {int(sizes.max()):,}, total {int(sizes.sum()):,}\n")
            counts = f.section_type_counts(max_blocks=max_blocks)
            sampled = n if max_blocks is None or n <= max_blocks else max_blocks
            note = "all blocks" if sampled == n else f"{sampled:,} of {n:,} blocks, evenly spread"
            parts = ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"
            w(f"  section types:      {parts} ({note})\n")
        else:
            w("  data blocks:        0 (the file holds no data)\n")


def cmd_info(args) -> int:
    import io

    max_blocks = None if args.max_blocks <= 0 else args.max_blocks
    status = 0
    first = True
    for path in args.files:
        buf = io.StringIO()
        try:
            _print_info(path, max_blocks, args.chroms, buf, transcode_info=not args.no_transcode_estimate)
            err = None
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:      # BigWigFormatError is a ValueError and names the file
            if isinstance(exc, OSError) and exc.filename is not None:
                err = f"{exc.filename}: {exc.strerror or exc}"
            else:
                err = str(exc) if path in str(exc) else f"{path}: {exc}"
        text = buf.getvalue()
        if text:                                   # what was learnt before an error is still shown
            sys.stdout.write(("" if first else "\n") + text)
            first = False
        sys.stdout.flush()
        if err is not None:
            print(f"error: {err}", file=sys.stderr, flush=True)
            status = 1
    return status


def cmd_demo_data(args) -> int:
    from .demo import write_demo_collection

    info = write_demo_collection(args.directory, n_tracks=args.tracks, seed=args.seed, writer=args.writer)
    sizes = info["chrom_sizes"]
    print(f"wrote {len(info['paths'])} bigWig tracks ({info['writer']} writer) over "
          f"{len(sizes)} chromosomes ({sum(sizes.values()):,} bp) to {args.directory}:")
    for p in info["paths"]:
        print(f"  {p}\t{os.path.getsize(p):,} bytes")
    print(f"  {info['fasta']}\t{os.path.getsize(info['fasta']):,} bytes (+ .fai)")
    print("open it with: BigWigCollection(" + repr(str(args.directory)) + ")")
    return 0


def cmd_transcode(args) -> int:
    from .transcode import transcode

    if args.jobs is not None and args.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    try:
        results = transcode(args.sources, args.out, force=args.force, n_jobs=args.jobs, progress=not args.quiet,
                            keep_going=args.keep_going, check_space=not args.no_space_check)
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    ok = [r for r in results if r.ok]
    for r in results:
        if not r.ok:
            print(f"error: {r.error}", file=sys.stderr)
            continue
        notes = []
        if not r.was_compressed:
            notes.append("source already uncompressed")
        if r.source_byteorder == ">":
            notes.append("big-endian source, written little-endian")
        note = f" ({'; '.join(notes)})" if notes else ""
        print(f"{r.source} -> {r.output}: {_human_bytes(r.source_bytes)} -> {_human_bytes(r.output_bytes)} "
              f"(x{r.ratio:.2f}), {r.seconds:.1f} s{note}")
    if len(ok) > 1:
        before, after = sum(r.source_bytes for r in ok), sum(r.output_bytes for r in ok)
        print(f"{len(ok)} files: {_human_bytes(before)} -> {_human_bytes(after)} (x{after / max(before, 1):.2f})")
    return 0 if len(ok) == len(results) else 1


def cmd_bench(args) -> int:
    print("The benchmark lives in benchmarks/bench_get_batch.py of the source checkout.\n"
          "Run it with `make bench` (full run, generates ~200 Mb x 16 tracks of test data once), or\n"
          "  python benchmarks/bench_get_batch.py --data DIR --quick\n"
          "to benchmark an existing folder of bigWig files (for example `bwloader demo-data demo_data`).")
    return 0


def dashboard_script() -> Path | None:
    """The served page of the installed dashboard (bwloader_app/dashboard.py), or None when the
    `bwloader_app` package is missing."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("bwloader_app.dashboard")
    except ImportError:
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


def cmd_serve(args) -> int:
    script = dashboard_script()
    if script is None:
        print("error: the dashboard (package bwloader_app) is not installed; reinstall bwloader", file=sys.stderr)
        return 2
    try:
        import panel  # noqa: F401
    except ImportError:
        print("error: the dashboard needs Panel: pip install 'bwloader[app]'", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.data:
        root = Path(args.data).expanduser().resolve()
        if not root.is_dir():
            print(f"error: --data {args.data}: no such folder", file=sys.stderr)
            return 2
        env["BWLOADER_DATA"] = str(root)
    elif not env.get("BWLOADER_DATA"):
        from .demo import default_demo_dir, ensure_demo_collection
        root = default_demo_dir()
        if not (root / "demo_collection.json").is_file():
            print(f"writing the demo collection to {root} (once)", flush=True)
        env["BWLOADER_DATA"] = str(ensure_demo_collection(root))
    print(f"data root: {env['BWLOADER_DATA']}", flush=True)
    env.setdefault("BOKEH_RESOURCES", "server")    # Panel's and Bokeh's code from this server, not a CDN
    cmd = [sys.executable, "-m", "panel", "serve", str(script), "--address", args.address, "--port", str(args.port)]
    if args.address not in ("127.0.0.1", "localhost", "::1"):
        cmd += ["--allow-websocket-origin", "*"]
        print(f"warning: serving on {args.address}: anyone who can reach this machine can open the dashboard",
              file=sys.stderr)
    if args.show:
        cmd.append("--show")
    print(f"bwloader dashboard: http://{args.address}:{args.port}/dashboard", flush=True)
    if os.name == "posix":          # become the server: signals (Ctrl-C, SIGTERM) reach it directly
        os.execve(sys.executable, cmd, env)
    return subprocess.call(cmd, env=env)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bwloader",
                                description="Fast bigWig loading for deep-learning training.")
    p.add_argument("--version", action="version", version=f"bwloader {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    pi = sub.add_parser("info", help="describe bigWig files (header, chromosomes, zoom levels, blocks)")
    pi.add_argument("files", nargs="+", metavar="FILE")
    pi.add_argument("--max-blocks", type=int, default=1000,
                    help="decode at most this many blocks (evenly spread) to count section types; "
                         "0 decodes all (default 1000)")
    pi.add_argument("--chroms", type=int, default=5, help="chromosomes to list (default 5)")
    pi.add_argument("--no-transcode-estimate", action="store_true",
                    help="skip estimating what `bwloader transcode` would write (it inflates up to 64 blocks)")
    pi.set_defaults(func=cmd_info)

    pd = sub.add_parser("demo-data", help="write a small demo collection (bigWigs + FASTA) into DIR")
    pd.add_argument("directory", metavar="DIR")
    pd.add_argument("--tracks", type=int, default=8, help="number of tracks (default 8)")
    pd.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    pd.add_argument("--writer", choices=("auto", "pybigwig", "bwloader"), default="auto",
                    help="bigWig writer: pyBigWig when installed (auto), or bwloader's own")
    pd.set_defaults(func=cmd_demo_data)

    pt = sub.add_parser("transcode", help="write uncompressed copies of bigWig files (read without inflating)",
                        description="Write each SRC (a file, URL or directory of *.bw) to DIR under the same name "
                                    "as a standard bigWig with raw (uncompressed) data and zoom blocks: the same "
                                    "records, zoom levels and summary, readable by every bigWig reader, larger on "
                                    "disk and faster to read. Big-endian sources are written little-endian. "
                                    "Outputs are written atomically (temporary file, fsync, rename).")
    pt.add_argument("sources", nargs="+", metavar="SRC")
    pt.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (created if needed)")
    pt.add_argument("--force", "-f", action="store_true", help="overwrite existing outputs")
    pt.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                    help="files transcoded at once (default: CPUs, at most 8)")
    pt.add_argument("--keep-going", "-k", action="store_true",
                    help="go on with the other files when one fails (exit status 1 at the end)")
    pt.add_argument("--no-space-check", action="store_true", help="do not refuse when free space looks too small")
    pt.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pt.set_defaults(func=cmd_transcode)

    pb = sub.add_parser("bench", help="how to run the benchmark against pyBigWig and pybigtools")
    pb.set_defaults(func=cmd_bench)

    ps = sub.add_parser("serve", help="serve the dashboard (Panel) on localhost")
    ps.add_argument("--data", metavar="DIR",
                    help="data root with bigWig folders (default: $BWLOADER_DATA, else the demo collection, "
                         "written once into $XDG_CACHE_HOME/bwloader/demo_data, i.e. ~/.cache/bwloader/demo_data)")
    ps.add_argument("--port", type=int, default=5006)
    ps.add_argument("--address", default="127.0.0.1", help="address to bind (default: localhost only)")
    ps.add_argument("--show", action="store_true", help="open a browser")
    ps.set_defaults(func=cmd_serve)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo-data" and args.tracks < 1:
        parser.error("--tracks must be at least 1")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:        # `bwloader info ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

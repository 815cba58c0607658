"""The `bwloader` console script (run for real, in a subprocess) and the demo collection."""
from __future__ import annotations

import filecmp
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bwloader_core import BigWigCollection, BigWigFile
from bwloader_core.demo import write_demo_collection

DEMO_TRACKS = 6          # covers every kind: ChIP histone, TF, ATAC and both RNA strands


def _bwloader_cmd():
    exe = Path(sys.executable).parent / "bwloader"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("bwloader")
    if found:
        return [found]
    return [sys.executable, "-m", "bwloader_core.cli"]


def run_cli(*args, cwd=None):
    return subprocess.run(_bwloader_cmd() + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo") / "data"
    r = run_cli("demo-data", d, "--tracks", DEMO_TRACKS)
    assert r.returncode == 0, r.stderr
    return d


def test_demo_data_output_and_files(demo_dir):
    names = sorted(p.name for p in demo_dir.iterdir())
    bws = [n for n in names if n.endswith(".bw")]
    assert len(bws) == DEMO_TRACKS
    assert "H3K27ac_rep1.bw" in bws and "ATAC_rep1.bw" in bws
    # only the promised files, no temporaries left behind
    assert set(names) - set(bws) == {"genome.fa", "genome.fa.fai", "demo_collection.json"}


def test_demo_data_is_deterministic(demo_dir, tmp_path):
    again = tmp_path / "again"
    r = run_cli("demo-data", again, "--tracks", DEMO_TRACKS)
    assert r.returncode == 0, r.stderr
    assert "wrote 6 bigWig tracks" in r.stdout and "genome.fa" in r.stdout
    a, b = sorted(demo_dir.iterdir()), sorted(again.iterdir())
    assert [p.name for p in a] == [p.name for p in b]
    for x, y in zip(a, b):
        assert filecmp.cmp(x, y, shallow=False), f"{x.name} differs between two runs"


def test_demo_fasta_matches_bigwigs(demo_dir):
    pyfaidx = pytest.importorskip("pyfaidx")
    coll = BigWigCollection(demo_dir)
    try:
        fa = pyfaidx.Fasta(str(demo_dir / "genome.fa"))
        assert {k: len(v) for k, v in fa.items()} == coll.chrom_sizes
        seq = str(fa["chr1"][:])
        assert seq.startswith("N" * 1000)                     # telomere gap
        lower = sum(c.islower() for c in seq[:200_000])
        assert 0.1 * 200_000 < lower < 0.6 * 200_000          # soft-masked repeats
        assert set(seq) <= set("ACGTacgtN")
        fa.close()
        # signal: every track has data; ChIP-like tracks cover most bases, RNA only exons
        starts = np.arange(100_000, 1_900_000, 30_000)
        vals = coll.get_batch("chr1", starts, starts + 10_000, default_value=np.nan)
        covered = np.isfinite(vals).mean(axis=(0, 1))
        by_name = dict(zip(coll.track_names, covered))
        assert 0.7 < by_name["H3K27ac_rep1"] < 0.97
        assert by_name["RNA_plus_rep1"] < 0.2
        assert all(c > 0 for c in covered)
        assert np.nanmax(vals) > 10 * np.nanmedian(vals)       # peaks over background
    finally:
        coll.close()


def test_demo_own_writer_matches_pybigwig_writer(tmp_path):
    sizes = {"chr1": 120_000, "chr2": 80_000, "chrM": 16_569}
    a = write_demo_collection(tmp_path / "a", n_tracks=5, chrom_sizes=sizes, seed=3, writer="bwloader")
    b = write_demo_collection(tmp_path / "b", n_tracks=5, chrom_sizes=sizes, seed=3, writer="bwloader")
    assert a["writer"] == "bwloader"
    for x, y in zip(a["paths"] + [a["fasta"]], b["paths"] + [b["fasta"]]):
        assert filecmp.cmp(x, y, shallow=False)
    try:
        import pyBigWig  # noqa: F401
    except ImportError:
        return
    c = write_demo_collection(tmp_path / "c", n_tracks=5, chrom_sizes=sizes, seed=3, writer="pybigwig")
    rng = np.random.default_rng(0)
    chroms = rng.choice(["chr1", "chr2", "chrM"], 40)
    st = rng.integers(0, 15_000, 40)
    with BigWigCollection(a["paths"]) as ca, BigWigCollection(c["paths"]) as cc:
        assert np.array_equal(ca.get_batch(chroms, st, st + 1500), cc.get_batch(chroms, st, st + 1500))


def test_info_on_demo_data(demo_dir):
    files = sorted(demo_dir.glob("*.bw"))
    r = run_cli("info", *files[:2])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    for f in files[:2]:
        assert str(f) in out
    for text in ("version:            4", "little-endian", "zlib (uncompressBufSize 32,768)",
                 "chromosomes:        5 (5,016,569 bp)", "chr1\t2,000,000", "zoom levels:",
                 "reduction levels", "total summary:      bases covered", "section types:      bedGraph",
                 "data blocks:", "median"):
        assert text in out, text
    assert out.count("data blocks:") == 2


def test_info_bad_files_continue_and_exit_1(demo_dir, tmp_path):
    good = demo_dir / "CTCF_rep1.bw"
    trunc = tmp_path / "truncated.bw"
    trunc.write_bytes(good.read_bytes()[:3000])
    text = tmp_path / "notes.bw"
    text.write_text("track type=bedGraph\nchr1 0 10 1.0\n")
    bigbed = tmp_path / "peaks.bb"
    bigbed.write_bytes(struct.pack("<I", 0x8789F2EB) + b"\0" * 60)
    missing = tmp_path / "missing.bw"
    r = run_cli("info", trunc, good, text, bigbed, missing)
    assert r.returncode == 1
    assert str(good) in r.stdout and "section types" in r.stdout       # the good file is still described
    err = r.stderr.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert str(trunc) in err[0] and "truncated" in err[0]
    assert str(text) in err[1] and "not a bigWig" in err[1]
    assert str(bigbed) in err[2] and "bigBed" in err[2]
    assert str(missing) in err[3]
    assert "Traceback" not in r.stderr


def test_info_big_endian_uncompressed(tmp_path):
    from bwloader_core.format.writer import write_bigwig
    p = tmp_path / "be.bw"
    write_bigwig(p, {"chrA": 5000, "chrB": 300}, {"chrA": ([0, 100], [50, 200], [1.5, 2.5])},
                 byteorder=">", compress=False, version=1)
    r = run_cli("info", p, "--max-blocks", "0")
    assert r.returncode == 0, r.stderr
    assert "big-endian" in r.stdout
    assert "none (uncompressBufSize 0)" in r.stdout
    assert "total summary:      none" in r.stdout
    assert "version:            1" in r.stdout
    assert "bedGraph 1 (all blocks)" in r.stdout


def test_info_many_chromosomes_listing(tmp_path):
    from bwloader_core.format.writer import write_bigwig
    sizes = {f"scaffold_{i}": 1000 + i for i in range(40)}
    p = tmp_path / "many.bw"
    write_bigwig(p, sizes, {"scaffold_3": ([0], [10], [1.0])}, block_size=4)
    r = run_cli("info", p, "--chroms", "3")
    assert r.returncode == 0, r.stderr
    assert "chromosomes:        40" in r.stdout
    assert "... 37 more" in r.stdout
    with BigWigFile(p) as f:
        for name in f.chrom_names[:3]:
            assert name in r.stdout


def test_serve_starts_the_dashboard_on_localhost(tmp_path):
    pytest.importorskip("panel")
    import socket
    import urllib.request
    data = tmp_path / "data"
    assert run_cli("demo-data", data / "demo", "--tracks", "2").returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(_bwloader_cmd() + ["serve", "--data", str(data), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=20) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_serve_bench_and_usage():
    r = run_cli("bench")
    assert r.returncode == 0 and "make bench" in r.stdout
    r = run_cli()
    assert r.returncode == 2 and "demo-data" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and "bwloader" in r.stdout
    r = run_cli("demo-data", "x", "--tracks", "0")
    assert r.returncode == 2 and "--tracks" in r.stderr


def test_demo_data_into_unwritable_place_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_cli("demo-data", blocker / "sub")
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_demo_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_demo_collection(tmp_path, n_tracks=0)
    with pytest.raises(ValueError):
        write_demo_collection(tmp_path, chrom_sizes={"chr 1": 100})
    with pytest.raises(ValueError):
        write_demo_collection(tmp_path, writer="nope")
    assert not any(tmp_path.iterdir())


"""The scoreboard in two steps: `benchmarks/scoreboard.py` measures into JSON, and
`benchmarks/scoreboard_render.py` turns the JSON into Markdown and a PNG. The renderer is tested on a
small hand-made results file (every figure of the text comes from it); the measuring runs once for
real on a tiny collection (slow)."""
from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _renderer():
    spec = importlib.util.spec_from_file_location("bwloader_scoreboard_render", REPO / "benchmarks" / "scoreboard_render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _reader(rate, rss, rounds=(1.0,)):
    return dict(samples_per_s=rate, batches=10, seconds=1.0, peak_rss_mb=rss, rss_start_mb=rss / 2,
                load=[0.5, 0.7], round_rates=[rate * f for f in rounds])


def small_results() -> dict:
    """A results file as scoreboard.py writes it: S1 (window 1) and S3 (a window mean, zoom), extras."""
    meta = dict(
        format=1, machine=dict(nproc=3, cpu="Test CPU 9000", ram_gib=7.0),
        versions={"Python": "3.99", "bwloader": "9.9.9"},
        load_start=[0.11, 0.22, 0.33], load_end=[0.44, 0.55, 0.66], duration_s=4.0, rounds=2, total_s=123.0,
        data_s=45.0,
        shapes={"S1": dict(tracks=3, length=1000, window=1, batch=256),
                "S3": dict(tracks=5, length=4096, window=64, batch=8)},
        readers=["bwloader", "stream", "pyBigWig", "pybigtools"], stream_workers=3,
        targets=dict(speedup={"S1": 3.5, "S3": 2.5}, inflate=1.3, open_s=1.5, rss_mb=900),
        collection=dict(n_tracks=5, chrom_sizes={"chrA": 7_000_000, "chrB": 5_000_000}, genome_mb=12, run_bp=33,
                        gap_fraction=0.07, writer="pyBigWig", blocks_per_file=[111, 113], zoom_levels=[4, 4],
                        folder="benchmarks/out/data/x"),
        pools={"S1": [300, 301], "S3": [40]},
        inflate=dict(chunk=6, partial_max_fraction=0.7),
        small_files=dict(n=77, chrom_sizes={"c1": 40_000, "c2": 20_000}, writer="pyBigWig"),
        links=dict(n=77, targets=5),
        epochs=dict(n_regions=512, epochs=4, cache_bytes=[0, 64 << 20], shape="S1", tracks=3, length=1000, batch=256),
    )
    inflate = dict(batches=4, loader_s=[0.01] * 4, full_s=0.05, partial_s=0.032, blocks=400,
                   stages={"plan": 0.001, "read+inflate": 0.03, "decode": 0.001, "search": 0.002, "fill": 0.004})
    shapes = {
        "S1": dict(bwloader=_reader(5000.0, 200, (0.9, 1.1)), stream=dict(_reader(4000.0, 220), batch_shape=[256, 1000, 3]),
                   pyBigWig=_reader(1000.0, 40), pybigtools=_reader(1250.0, 60), inflate=inflate),
        "S3": dict(bwloader=_reader(900.0, 300), stream=dict(_reader(800.0, 320), batch_shape=[8, 64, 5]),
                   pyBigWig=_reader(300.0, 50), pybigtools=_reader(200.0, 70),
                   zoom=dict(levels=[40, 160, 640], finest=[40],
                             exact=dict(samples_per_s=900.0),
                             **{"zoom=True": dict(samples_per_s=1800.0, mean_abs_err=0.01, mean_abs_exact=1.0,
                                                  max_rel_err=0.2, median_rel_err=0.01, p99_rel_err=0.1,
                                                  total_rel_err=0.001)})),
    }
    extras = dict(
        open_small=dict(seconds=[0.3, 0.2], n_files=77, n_blocks=1234, rss_start_mb=50, rss_open_mb=60),
        open_links=dict(seconds=[1.0], n_files=77, n_blocks=8000, rss_start_mb=50, rss_open_mb=90),
        stream_rss=dict(seconds=30, batches=100, samples_per_s=500.0, peak_rss_mb=400,
                        rss=[(1, 5, 300.0), (2, 10, 310.0), (3, 15, 312.0), (4, 20, 311.0)]),
        **{"epochs_0": dict(rates=[100.0, 110.0, 120.0, 130.0], n_regions=512, cache={}),
           f"epochs_{64 << 20}": dict(rates=[100.0, 400.0, 420.0, 410.0], n_regions=512,
                                      cache=dict(bytes=32 << 20, blocks=900, hit_rate=0.95))},
    )
    return dict(meta=meta, shapes=shapes, extras=extras)


def test_render_reads_every_figure_from_the_results(tmp_path):
    sr = _renderer()
    res = small_results()
    md = sr.render(res)
    for text in ("nproc 3, Test CPU 9000, 7 GiB RAM", "at start 0.11 / 0.22 / 0.33", "Python 3.99",
                 "5 tracks from `benchmarks/datasets.py` (12 Mb over 2 chromosomes, ~33-bp bedGraph runs, ~7% gaps",
                 "4 zoom levels, 111-113 data blocks per file", "S1 2 pool(s) of 300/301",
                 "2 run(s) per shape", "2 s of timed calls each", "Run time 123 s, of which 45 s",
                 "| S1: bwloader >= 3.5x the faster of pyBigWig/pybigtools | 4.00x | yes |",   # 5000 / 1250
                 "| S3: bwloader >= 2.5x pyBigWig exact | 3.00x | yes |",                     # 900 / 300
                 "full stream (`build()`, 3 workers)", "needed past 70% of their span", "chunks of 6 batches",
                 "Target: loader time <= 1.3x the limit on S1.", "1.25x partial-inflate limit",  # 0.04 / 0.032
                 "open 77 files < 1.5 s (small distinct files) | 0.20 s | yes",
                 "77 small distinct files (2 chromosomes, 60 kb", "77 symlinks to the 5 collection files (111-113 blocks",
                 "peak RSS streaming S2 < 900 MiB | 400 MiB | yes", "the coarsest level <= the 64-bp window: here the 40-base level",
                 "512 fixed regions x 1,000 bp, 3 tracks, batch 256, 4 epochs, stream, cache_bytes=64 MiB",
                 "hit rate 95%", "S1 bwloader 4,500 / 5,500"):
        assert text in md, text
    # the prose follows the results: change what was measured on, and the text changes with it
    other = copy.deepcopy(res)
    m = other["meta"]
    m["collection"].update(run_bp=50, gap_fraction=0.2)
    m["inflate"].update(chunk=4, partial_max_fraction=0.5)
    m.update(stream_workers=5)
    m["small_files"]["n"] = 10
    md2 = sr.render(other)
    for text in ("~50-bp bedGraph runs, ~20% gaps", "past 50% of their span", "chunks of 4 batches",
                 "full stream (`build()`, 5 workers)", "10 small distinct files"):
        assert text in md2 and text not in md, text
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scoreboard_render.py"), str(path),
                        "--out", str(tmp_path / "sb.md"), "--plot", str(tmp_path / "sb.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sb.md").read_text() == md
    assert (tmp_path / "sb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_refuses_another_results_format(tmp_path):
    res = small_results()
    res["meta"]["format"] = 99
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scoreboard_render.py"), str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "format 99" in r.stderr


@pytest.mark.slow
def test_measure_dry_run_on_a_tiny_collection(tmp_path):
    """scoreboard.py for real, on S1 only over a small generated collection, then rendered."""
    pytest.importorskip("pyBigWig")
    pytest.importorskip("pybigtools")
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scoreboard.py"), "--quick", "--shapes", "S1",
                        "--no-extras", "--genome-mb", "40", "--duration", "0.3", "--data-root", str(tmp_path / "data"),
                        "--work", str(tmp_path / "work"), "--json", str(out)],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    s1 = res["shapes"]["S1"]
    for reader in ("bwloader", "stream", "pyBigWig", "pybigtools"):
        assert s1[reader]["samples_per_s"] > 0 and s1[reader]["batches"] >= 2, reader
    assert s1["stream"]["batch_shape"] == [256, 1000, 3]
    assert s1["inflate"]["batches"] >= 1 and s1["inflate"]["partial_s"] > 0
    col = res["meta"]["collection"]
    assert col["n_tracks"] == 3 and sum(col["chrom_sizes"].values()) == 40_000_000
    md = _renderer().render(res)
    assert f"{s1['bwloader']['samples_per_s']:,.0f}" in md and "## Targets" in md

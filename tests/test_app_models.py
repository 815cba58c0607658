"""The dashboard's models (bwloader_app: data_root, state, stream, sweep, plot_data) without a browser:
real demo files in a temporary data root."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("param")

from bwloader_app.data_root import PathOutsideRootError, confine  # noqa: E402
from bwloader_app.plot_data import dna_view, minmax_decimate, sample_view  # noqa: E402
from bwloader_app.state import DashboardState  # noqa: E402
from bwloader_core import LoaderConfig  # noqa: E402
from bwloader_core.demo import write_demo_collection  # noqa: E402

# Panel 1.9 deprecates Widget.name / button_type in favour of label / color (2.0); the app keeps the
# spelling that Panel 1.4 (the lowest supported) understands.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

CHROMS = {"chr1": 300_000, "chr2": 200_000, "chrM": 16_569}
TRACKS = ["H3K27ac_rep1", "H3K4me3_rep1", "CTCF_rep1", "ATAC_rep1"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """<root>/demo: 4 demo tracks + genome.fa; <outside>: a bigWig and a FASTA outside the root."""
    base = tmp_path_factory.mktemp("dash")
    root = base / "root"
    write_demo_collection(root / "demo", n_tracks=4, chrom_sizes=CHROMS, seed=1)
    outside = base / "outside"
    outside.mkdir()
    shutil.copy(root / "demo" / "CTCF_rep1.bw", outside / "secret.bw")
    shutil.copy(root / "demo" / "genome.fa", outside / "other.fa")
    (root / "link_out").symlink_to(outside, target_is_directory=True)            # a folder pointing out
    (root / "demo" / "sneaky.bw").symlink_to(outside / "secret.bw")               # a file pointing out
    (root / "other.fa").symlink_to(outside / "other.fa")
    return root


@pytest.fixture
def state(data_root):
    s = DashboardState(data_root)
    s.config.batch_size = 8
    yield s
    s.close()


def _threads(prefix="bwloader"):
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def _poll_until(state, cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state.poll()
        if cond():
            return True
        time.sleep(0.05)
    state.poll()
    return cond()


# -- collection and data root ---------------------------------------------------------------------
def test_browser_finds_folder_tracks_fasta_and_summaries(state, data_root):
    b = state.browser
    assert b.folders == ["demo"]                       # link_out is a symlink: not walked
    assert b.folder == "demo"
    assert sorted(b.tracks) == sorted(TRACKS)          # sneaky.bw (pointing out) is not a track
    assert "sneaky.bw" in b.message
    assert b.fasta == "demo/genome.fa"
    assert len(b.summaries) == 4
    s0 = b.summaries[0]
    assert s0["chromosomes"] == 3 and s0["bases"] == sum(CHROMS.values()) and s0["zoom_levels"] > 0
    assert s0["size_bytes"] == os.path.getsize(data_root / "demo" / s0["file"])
    assert list(state.param.chromosomes.objects) == list(CHROMS)
    cfg = state.config
    assert [Path(p).name for p in cfg.bigwig_paths] == [f"{t}.bw" for t in b.tracks]
    assert cfg.reference_genome == str((data_root / "demo" / "genome.fa").resolve())


def test_file_summary_says_compressed_and_what_transcoding_gains(data_root, tmp_path):
    """The file table's "blocks stored" and "transcoding" columns: a compressed demo track gets the
    estimated size and the measured speed ratio; its transcoded copy is raw and read in place."""
    from bwloader_app.data_root import file_summary
    from bwloader_core.transcode import transcode
    src = data_root / "demo" / "CTCF_rep1.bw"
    s = file_summary(src)
    assert s["compressed"] and not s["in_place"]
    assert s["transcoded_bytes"] > s["size_bytes"] and "x the disk" in s["transcode_note"]
    assert "faster" in s["transcode_note"]
    (out,) = transcode([str(src)], tmp_path, progress=False)
    t = file_summary(out.output)
    assert not t["compressed"] and t["in_place"] and t["transcode_note"] == ""


def test_confine_refuses_dotdot_absolute_and_symlinks(data_root):
    root = data_root.resolve()
    assert confine(root, "demo") == root / "demo"
    assert confine(root, str(root / "demo" / "genome.fa")) == root / "demo" / "genome.fa"
    assert confine(root, "demo/../demo") == root / "demo"
    for bad in ("..", "../outside", "demo/../../outside", "/etc", "/etc/passwd", "link_out", "link_out/secret.bw",
                "demo/sneaky.bw", "other.fa"):
        with pytest.raises(PathOutsideRootError, match="outside the data root"):
            confine(root, bad)


@pytest.mark.parametrize("folder", ["..", "../outside", "/etc", "link_out", str(Path("/tmp"))])
def test_folder_outside_root_is_refused_with_a_message(state, folder):
    before = (state.browser.folder, list(state.browser.tracks), list(state.config.bigwig_paths))
    state.browser.folder = folder
    assert "outside the data root" in state.browser.message
    assert (state.browser.folder, list(state.browser.tracks), list(state.config.bigwig_paths)) == before


def test_fasta_outside_root_is_refused(state):
    state.browser.fasta = "other.fa"                   # a symlink pointing out
    assert "outside the data root" in state.browser.message
    assert state.browser.fasta == "demo/genome.fa"
    state.browser.fasta = ""
    assert state.config.reference_genome is None


def test_missing_folder_is_a_message_not_an_exception(state):
    state.browser.folder = "nope"
    assert "no such folder" in state.browser.message
    assert state.browser.folder == "demo"


# -- query widgets -> config -> YAML ----------------------------------------------------------------
def test_widgets_drive_the_config_and_yaml(state):
    state.config.sequence_length = 2000
    state.config.window_size = 10
    state.browser.tracks = ["CTCF_rep1", "ATAC_rep1"]
    state.chromosomes = ["chr2"]
    state.tracks_per_batch = 1
    cfg = state.config
    assert [Path(p).stem for p in cfg.bigwig_paths] == ["CTCF_rep1", "ATAC_rep1"]
    assert cfg.regions == [["chr2", 0, CHROMS["chr2"]]]
    assert cfg.tracks == 1
    y = LoaderConfig.from_yaml(state.yaml_text)
    assert (y.sequence_length, y.window_size, y.batch_size, y.tracks) == (2000, 10, 8, 1)
    assert y.regions == [["chr2", 0, CHROMS["chr2"]]]
    state.chromosomes = list(CHROMS)                  # all picked: no region restriction
    assert state.config.regions is None
    state.tracks_per_batch = 0
    assert state.config.tracks is None


def test_backend_offers_cuda_only_with_a_gpu(state):
    from bwloader_core.device import cuda_unavailable_reason
    offered = state.config.param.backend.objects
    assert ("cuda" in offered) == (cuda_unavailable_reason() is None)
    assert {"cpu", "auto"} <= set(offered)
    assert "cuda" in LoaderConfig.param.backend.objects      # the class itself is untouched


def test_bed_upload_sets_regions_and_bad_bed_is_a_message(state):
    assert state.load_bed(b"# comment\nchr1\t1000\t50000\nchr1\t40000\t60000\nchrUn\t1\t5\n", "peaks.bed")
    assert state.config.regions == [["chr1", 1000, 60000]]
    assert "peaks.bed" in state.regions_summary and state.bed_error == ""
    state.step()
    assert state.stream.wait(60)
    state.poll()
    b = state.stream.batch
    assert b is not None and set(b.chromosomes.tolist()) == {"chr1"}
    assert not state.load_bed(b"chr1\tx\t10\n", "bad.bed")
    assert state.bed_error.startswith("bad.bed:") and "integers" in state.bed_error
    assert state.config.regions == [["chr1", 1000, 60000]]      # unchanged
    state.chromosomes = ["chrM"]                                 # picking chromosomes drops the BED
    assert state.config.regions == [["chrM", 0, CHROMS["chrM"]]] and state.bed_name == ""


# -- YAML export / import -----------------------------------------------------------------------
def test_exported_yaml_builds_the_same_batches(state, tmp_path):
    state.config.param.update(sequence_length=500, window_size=5, seed=7, reverse_complement=True, jitter=20)
    state.chromosomes = ["chr1", "chr2"]
    path = tmp_path / "loader.yaml"
    path.write_text(state.to_yaml())
    cfg = LoaderConfig.from_yaml(str(path))
    state.step()
    assert state.stream.wait(60)
    state.poll()
    shown = state.stream.batch
    with cfg.build() as ds:
        first = next(iter(ds))
    assert first.values.shape == (8, 100, 4) and first.sequences.shape == (8, 500, 4)
    np.testing.assert_array_equal(first.starts, shown.starts)
    np.testing.assert_array_equal(first.values, shown.values)


def test_yaml_upload_restores_the_dashboard(state, data_root):
    other = DashboardState(data_root)
    try:
        other.browser.tracks = ["ATAC_rep1", "H3K27ac_rep1"]
        other.chromosomes = ["chrM"]
        other.tracks_per_batch = 1
        other.config.param.update(batch_size=3, sequence_length=300, dtype="float16", num_workers=1)
        text = other.to_yaml()
    finally:
        other.close()
    assert state.load_yaml(text, "loader.yaml"), state.upload_error
    assert state.upload_error == "" and "loader.yaml" in state.notice
    assert state.browser.tracks == ["ATAC_rep1", "H3K27ac_rep1"]
    assert state.chromosomes == ["chrM"] and state.tracks_per_batch == 1
    c = state.config
    assert (c.batch_size, c.sequence_length, c.dtype, c.num_workers, c.tracks) == (3, 300, "float16", 1, 1)
    assert state.to_yaml() == text
    # a config without files keeps the current files
    assert state.load_yaml("batch_size: 5\n", "small.yaml")
    assert state.config.batch_size == 5 and state.config.sequence_length == 1000
    assert state.browser.tracks == ["ATAC_rep1", "H3K27ac_rep1"]


@pytest.mark.parametrize("text, expect", [
    ("batch_size: [\n", "not valid YAML"),
    ("batch_sze: 3\n", "did you mean 'batch_size'"),
    ("batch_size: -1\n", "bad value for 'batch_size'"),
    ("batch_size: true\n", "expected a number"),
    ("- just\n- a list\n", "expected a mapping"),
    ("format_version: 99\n", "format_version"),
    ("bigwig_paths: [/etc/passwd]\n", "outside the data root"),
    ("bigwig_paths: [../outside/secret.bw]\n", "outside the data root"),
    ("bigwig_paths: [link_out/secret.bw]\n", "outside the data root"),
    ("reference_genome: /etc/hostname\n", "outside the data root"),
    ("regions: ../../x.bed\n", "outside the data root"),
    ("sequence_length: 1001\nwindow_size: 10\n", "multiple of window_size"),
])
def test_invalid_yaml_upload_is_a_readable_message(state, text, expect):
    before = state.to_yaml()
    assert not state.load_yaml(text.encode(), "bad.yaml")
    assert expect in state.upload_error
    assert state.upload_error.startswith("bad.yaml")
    assert "Traceback" not in state.upload_error
    assert state.to_yaml() == before                          # nothing applied


def test_cuda_upload_refused_without_a_gpu(state):
    if "cuda" in state.config.param.backend.objects:
        pytest.skip("a GPU is usable here")
    assert not state.load_yaml("backend: cuda\n", "gpu.yaml")
    assert "not usable on this machine" in state.upload_error


# -- streaming ------------------------------------------------------------------------------------
def test_step_produces_one_batch(state):
    state.config.param.update(sequence_length=400, batch_size=4)
    state.step()
    assert state.stream.wait(60)
    state.poll()
    st = state.stream
    assert st.error == "" and st.status == "paused"
    b = st.batch
    assert b.values.shape == (4, 400, 4) and b.sequences.shape == (4, 400, 4)
    assert (st.epoch, st.index, st.batches) == (0, 1, 1)
    assert set(b.timings) >= {"plan", "read+inflate", "decode", "search", "fill", "sequence", "queue_wait"}
    assert st.samples_per_s > 0 and st.mb_per_s > 0
    assert set(st.stage_ms) >= {"plan", "read+inflate", "fill"}
    v = state.sample_view()
    assert v["coordinates"].startswith(f"{b.chromosomes[0]}:") and len(v["curves"]) == 4
    assert v["dna"]["kind"] == "strip"
    state.sample = 3
    assert state.sample_view()["index"] == 3
    state.step()
    assert state.stream.wait(60)
    state.poll()
    assert (st.index, st.batches, st.batch.index) == (2, 2, 1)
    assert _threads("bwloader-worker") == []                  # each run closes its loader


def test_start_streams_until_pause_and_closes_the_loader(state):
    state.config.param.update(sequence_length=200, batch_size=4, num_workers=2)
    state.stream.redraw_interval = 0.0
    state.start()
    assert _poll_until(state, lambda: state.stream.batches >= 5)
    assert state.stream.status == "running"
    assert state.stream.history
    state.pause()
    assert state.stream.wait(30)
    state.poll()
    assert state.stream.status == "paused"
    n = state.stream.index
    assert n >= 5 and _threads("bwloader-") == []
    state.step()                                                # resumes where it stopped
    assert state.stream.wait(60)
    state.poll()
    assert state.stream.batch.index == n


def test_config_change_while_running_restarts_on_the_new_config(state):
    state.config.param.update(sequence_length=200, batch_size=4)
    state.stream.redraw_interval = 0.0
    state.start()
    assert _poll_until(state, lambda: state.stream.batches >= 2)
    state.config.batch_size = 2                                 # invalidates: restart from batch 0
    assert _poll_until(state, lambda: state.stream.batch is not None and state.stream.batch.batch_size == 2)
    state.pause()
    assert state.stream.wait(30)


def test_bad_config_is_an_error_message(state):
    state.config.param.update(sequence_length=1000, window_size=3)   # not a multiple
    state.step()
    assert state.stream.wait(30)
    state.poll()
    assert state.stream.status == "error"
    assert "multiple of window_size" in state.stream.error and "Traceback" not in state.stream.error
    state.config.window_size = 4
    assert state.stream.error == "" and state.stream.status == "idle"


def test_close_stops_every_thread(data_root):
    s = DashboardState(data_root)
    s.config.batch_size = 4
    s.start()
    assert _poll_until(s, lambda: s.stream.batches >= 1)
    s.close()
    assert _threads("bwloader-") == []
    s.close()                                                   # twice is fine


# -- sweep ----------------------------------------------------------------------------------------
def test_sweep_measures_batch_sizes_times_workers_and_the_baseline(state):
    pytest.importorskip("pyBigWig")
    sw = state.sweep
    sw.param.update(batch_sizes=[4, 8], worker_counts=[1, 2], batches_per_point=2, baseline_queries=8)
    t0 = time.perf_counter()
    state.run_sweep()
    assert sw.running
    assert _poll_until(state, lambda: not sw.running, timeout=60)
    assert time.perf_counter() - t0 < 20
    assert sw.progress == 100 and "done" in sw.message
    ours = [r for r in sw.results if r["kind"] == "bwloader"]
    assert sorted((r["batch_size"], r["workers"]) for r in ours) == [(4, 1), (4, 2), (8, 1), (8, 2)]
    assert all(r["samples_per_s"] > 0 and r["mb_per_s"] > 0 for r in ours)
    base = [r for r in sw.results if r["kind"] == "pyBigWig loop"]
    assert len(base) == 1 and base[0]["samples_per_s"] > 0


def test_pybigwig_baseline_matches_the_loader(state):
    pytest.importorskip("pyBigWig")
    from bwloader_app.sweep import pybigwig_loop
    state.config.param.update(sequence_length=300, window_size=3, batch_size=4, reference_genome=None)
    with state.config.build() as ds:
        qb = ds.generator.batch(0, 0)
        batch = next(iter(ds))
    ref, _ = pybigwig_loop(ds.collection.paths, qb.chromosomes, qb.target_starts, qb.target_ends, 3, "mean", 0.0)
    np.testing.assert_allclose(batch.values, ref, rtol=1e-5, atol=1e-6)


# -- drawing helpers ------------------------------------------------------------------------------
def test_minmax_decimation_keeps_extremes_and_bounds_the_points():
    rng = np.random.default_rng(0)
    x = np.arange(150_000)
    y = rng.normal(size=x.size).astype(np.float32)
    y[77_777] = 50.0
    y[123_456] = -60.0
    y[1000:1100] = np.nan
    xs, ys = minmax_decimate(x, y, 2000)
    assert len(xs) == len(ys) == 2000
    assert np.nanmax(ys) == 50.0 and np.nanmin(ys) == -60.0
    assert np.all(np.diff(xs) >= 0)
    xs2, ys2 = minmax_decimate(x[:500], y[:500], 2000)
    np.testing.assert_array_equal(ys2, y[:500])


def test_dna_view_letters_strip_and_reverse_complement():
    codes = np.array([0, 1, 2, 3, 3, 0])                       # ACGTTA
    oh = np.eye(4, dtype=np.float32)[codes]
    oh = np.vstack([oh, np.zeros((1, 4), np.float32)])         # + N
    assert dna_view(oh, 10, 17, rc=False)["letters"] == "ACGTTAN"
    rc = oh[::-1, ::-1]                                         # what the loader hands out for a - sample
    assert dna_view(rc, 10, 17, rc=True)["letters"] == "ACGTTAN"
    long = np.eye(4, dtype=np.float32)[np.arange(10_000) % 4]
    strip = dna_view(long, 0, 10_000, rc=False, max_cols=500)
    assert strip["kind"] == "strip" and strip["strip"].shape == (4, 500)
    np.testing.assert_allclose(strip["strip"].sum(axis=0), 1.0, rtol=1e-6)


def test_sample_view_undoes_the_reverse_complement(state):
    state.config.param.update(sequence_length=100, batch_size=16, reverse_complement=True, seed=3)
    state.step()
    assert state.stream.wait(60)
    state.poll()
    b = state.stream.batch
    i = int(np.flatnonzero(b.reverse_complement)[0])
    v = sample_view(b, i)
    assert v["strand"] == "-"
    name = b.track_names[0]
    np.testing.assert_array_equal(v["curves"][name][1], b.values[i, ::-1, 0])
    with state.config.build() as ds:                            # forward-strand truth from the collection
        fwd = ds.collection.get_batch([b.chromosomes[i]], [b.starts[i]], [b.ends[i]])
    np.testing.assert_array_equal(v["curves"][name][1], fwd[0, :, 0])


# -- views build without a browser ---------------------------------------------------------------
def test_views_build_and_render_to_bokeh(state):
    pytest.importorskip("panel")
    from bwloader_app import Dashboard
    d = Dashboard(state)
    root = d.__panel__().get_root()
    assert root is not None
    state.config.batch_size = 2
    state.step()
    assert state.stream.wait(60)
    state.poll()
    assert len(d.batches.tracks_pane.objects) == 5              # 4 tracks + the DNA strip
    assert "Sample" in d.batches.coords.object
    d.close()


def test_uploads_are_size_limited(state):
    from bwloader_app.state import MAX_BED_BYTES, MAX_YAML_BYTES
    before = state.config.to_yaml()
    assert not state.load_yaml(b"a: 1\n" * (MAX_YAML_BYTES // 5 + 1), "big.yaml")
    assert "larger than" in state.upload_error and "big.yaml" in state.upload_error
    assert state.config.to_yaml() == before
    assert not state.load_bed(b"chr1\t0\t10\n" * (MAX_BED_BYTES // 10 + 1), "big.bed")
    assert "larger than" in state.bed_error


def test_live_figure_follows_the_stream_and_stays_after_pause(state):
    """Start, Pause, Start again: the big samples/s figure is the history's last point while
    running, keeps it (status paused) after Pause, and comes from the new run after Start."""
    state.config.param.update(sequence_length=200, batch_size=4, num_workers=2)
    st = state.stream
    st.redraw_interval = 0.2
    for _ in range(2):
        state.start()
        assert _poll_until(state, lambda: len(st.history) >= 4, timeout=60)
        assert st.samples_per_s == pytest.approx(st.history[-1][1], rel=1e-9)
        state.pause()
        assert st.wait(30)
        state.poll()
        state.poll()
        assert st.status == "paused"
        last = st.history[-1][1]
        assert abs(st.samples_per_s - last) <= 0.25 * last, (st.samples_per_s, last)
        frozen = (st.samples_per_s, st.mb_per_s)
        time.sleep(0.3)
        state.poll()
        assert (st.samples_per_s, st.mb_per_s) == frozen            # paused: the figure stays
    assert st.unknown_fraction is not None and 0.0 <= st.unknown_fraction <= 0.5


# -- a data root as users have them: several folders, a broken file, a FASTA of another assembly --
@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory):
    """lab_a: 2 tracks + its genome.fa + bad_bw.bw (not a bigWig); lab_a2: the same assembly, no
    FASTA; lab_b: another assembly (chr1 shorter), no FASTA; refs/toy.fa: chr1 and chr2 of 2,000 bp."""
    root = tmp_path_factory.mktemp("mixed")
    sizes_a = {"chr1": 300_000, "chr2": 200_000}
    write_demo_collection(root / "lab_a", n_tracks=2, chrom_sizes=sizes_a, seed=5)
    (root / "lab_a" / "bad_bw.bw").write_bytes(b"<html>not a bigWig: a download that failed</html>\n" * 4)
    write_demo_collection(root / "lab_a2", n_tracks=2, chrom_sizes=sizes_a, seed=6)
    (root / "lab_a2" / "genome.fa").unlink()
    (root / "lab_a2" / "genome.fa.fai").unlink()
    write_demo_collection(root / "lab_b", n_tracks=2, chrom_sizes={"chr1": 250_000, "chr2": 200_000}, seed=7)
    (root / "lab_b" / "genome.fa").unlink()
    (root / "lab_b" / "genome.fa.fai").unlink()
    (root / "refs").mkdir()
    with open(root / "refs" / "toy.fa", "w") as fh:
        for c in ("chr1", "chr2"):
            fh.write(f">{c}\n" + "ACGTTGCA" * 250 + "\n")
    return root


@pytest.fixture
def mixed(mixed_root):
    s = DashboardState(mixed_root)
    s.config.param.update(batch_size=4, sequence_length=500)
    yield s
    s.close()


def test_unreadable_file_is_listed_with_its_reason_and_not_selectable(mixed):
    b = mixed.browser
    assert b.folders == ["lab_a", "lab_a2", "lab_b"] and b.folder == "lab_a"
    assert sorted(b.param.tracks.objects) == sorted(b.tracks) and "bad_bw" not in b.param.tracks.objects
    assert [u["file"] for u in b.unreadable] == ["bad_bw.bw"] and "not a bigWig" in b.unreadable[0]["reason"]
    assert "not readable, left out: bad_bw.bw" in b.message
    assert not any("bad_bw" in p for p in mixed.config.bigwig_paths)
    mixed.step()
    assert mixed.stream.wait(60)
    mixed.poll()
    assert mixed.stream.error == "" and mixed.stream.batch.values.shape == (4, 500, 2)


def test_folder_change_resets_the_fasta_unless_pinned_and_fitting(mixed):
    b = mixed.browser
    assert b.fasta == "lab_a/genome.fa"
    b.folder = "lab_b"                                       # no FASTA of its own: none
    assert b.fasta == "" and mixed.config.reference_genome is None
    b.folder = "lab_a"                                       # exactly one of its own: that one
    assert b.fasta == "lab_a/genome.fa"
    b.fasta_pinned = True
    b.folder = "lab_a2"                                      # same assembly: the pinned FASTA stays
    assert b.fasta == "lab_a/genome.fa" and mixed.config.reference_genome.endswith("lab_a/genome.fa")
    b.folder = "lab_b"                                       # chr1 differs: it does not fit, so none
    assert b.fasta == ""


def test_mismatched_fasta_is_flagged_at_once_and_allow_size_mismatch_runs(mixed):
    mixed.browser.fasta = "refs/toy.fa"
    assert mixed.files_check_level == "error"
    msg = mixed.files_check
    assert "chr1: 300,000 bp in" in msg and "2,000 bp in" in msg and "toy.fa" in msg and "allow_size_mismatch" in msg
    mixed.step()
    assert mixed.stream.wait(60)
    mixed.poll()
    assert mixed.stream.status == "error" and "chromosome sizes differ" in mixed.stream.error
    mixed.config.allow_size_mismatch = True
    assert mixed.files_check_level == "warning" and "4,000 of 500,000 bp" in mixed.files_check
    mixed.step()
    assert mixed.stream.wait(60)
    mixed.poll()
    b = mixed.stream.batch
    assert mixed.stream.error == "" and (b.ends <= 2_000).all() and b.stats["unknown_fraction"] == 0.0
    assert "allow_size_mismatch: true" in mixed.yaml_text


def test_every_setting_has_its_doc_as_a_tooltip(state):
    """help(LoaderConfig) and the dashboard say the same about every setting."""
    import panel as pn
    from bwloader_app import Dashboard
    from bwloader_app.util import knob_names
    d = Dashboard(state)
    shown = set()
    for w in d.__panel__().select(pn.widgets.Widget):
        shown.add(getattr(w, "description", None) or "")
        if isinstance(w, pn.widgets.TooltipIcon):
            shown.add(str(w.value))
    help_text = LoaderConfig.__doc__
    for name in knob_names():
        doc = LoaderConfig.param[name].doc
        assert doc and len(doc) > 15, name
        assert any(doc in t for t in shown), name                  # a tooltip on the page
        assert name in help_text and doc.split()[0] in help_text, name
    d.close()


def test_many_tracks_draw_a_few_curves_picked_by_name(tmp_path):
    """A folder of 300 tracks: the file table pages, a batch draws the first 8 curves, the picker
    draws others, and the per-batch view work stays small (no 300-curve plot)."""
    pytest.importorskip("panel")
    from bwloader_app import Dashboard
    from bwloader_app.state import MAX_PLOTTED_TRACKS
    root = tmp_path / "root"
    write_demo_collection(root / "base", n_tracks=2, chrom_sizes=CHROMS, seed=2)
    many = root / "many"
    many.mkdir()
    files = sorted((root / "base").glob("*.bw"))
    for i in range(300):
        (many / f"t{i:03d}.bw").symlink_to(files[i % len(files)])
    s = DashboardState(root)
    try:
        s.browser.folder = "many"
        assert len(s.browser.tracks) == 300
        s.config.param.update(batch_size=2, sequence_length=2000)
        d = Dashboard(s)
        d.__panel__().get_root()
        assert d.collection.summary.pagination == "local" and len(d.collection.summary.value) == 300
        s.step()
        assert s.stream.wait(120)
        s.poll()
        assert s.stream.error == "" and s.stream.batch.values.shape[-1] == 300
        assert s.plot_tracks == [f"t{i:03d}" for i in range(MAX_PLOTTED_TRACKS)]
        assert len(d.batches.tracks_pane.objects) == MAX_PLOTTED_TRACKS          # no FASTA here: no DNA strip
        assert "drawing 8 of 300 tracks" in d.batches.coords.object
        s.plot_tracks = ["t299", "t150"]
        v = s.sample_view()
        assert list(v["curves"]) == ["t150", "t299"]                           # in the batch's order
        np.testing.assert_array_equal(v["curves"]["t299"][1], s.stream.batch.values[0, :, 299])
        assert len(d.batches.tracks_pane.objects) == 2
        d.close()
    finally:
        s.close()

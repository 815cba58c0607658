"""The dashboard in a real browser: `panel serve app/dashboard.py` on demo data made in a temporary
folder, driven by headless Chromium through Playwright (pytest-playwright's `browser` fixture).

The tests run in file order on one page (a page load costs seconds): check that no request leaves
localhost, look, change a widget, step, stream, download and upload YAML, try a path outside the
data root, sweep, and end the session.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("playwright")
pytest.importorskip("panel")

REPO = Path(__file__).resolve().parent.parent
CHROMS = {"chr1": 400_000, "chr2": 250_000, "chrM": 16_569}
TIMEOUT_MS = 45_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(root, base):
    """`panel serve app/dashboard.py` on the data root `root`; yields its url, log and process."""
    port = _free_port()
    log_path = base / "server.log"
    log = open(log_path, "w")
    env = dict(os.environ, BWLOADER_DATA=str(root), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "panel", "serve", str(REPO / "app" / "dashboard.py"), "--port", str(port),
           "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
           "--check-unused-sessions", "500", "--unused-session-lifetime", "500"]
    proc = subprocess.Popen(cmd, cwd=str(base), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/dashboard"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"panel serve exited ({proc.returncode}):\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"panel serve did not answer:\n{log_path.read_text()}") from None
                time.sleep(0.3)
        yield dict(url=url, root=root, log=log_path, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `panel serve app/dashboard.py` on a fresh demo collection; killed at the end."""
    from bwloader_core.demo import write_demo_collection
    base = tmp_path_factory.mktemp("dashboard")
    root = base / "data"
    write_demo_collection(root, n_tracks=4, chrom_sizes=CHROMS, seed=2)
    yield from _serve(root, base)


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server["url"], timeout=90_000)
    pg.get_by_role("button", name="Step").wait_for(timeout=90_000)
    pg.js_errors = errors
    yield pg
    context.close()


def _canvas_count(page) -> int:
    return page.evaluate("""() => { let n = 0;
        const walk = (r) => r.querySelectorAll('*').forEach(e => {
            if (e.tagName === 'CANVAS') n++; if (e.shadowRoot) walk(e.shadowRoot); });
        walk(document); return n; }""")


def _text_of(page, css_class: str) -> str:
    """All text under the first element with `css_class`, shadow roots included (Bokeh widgets)."""
    return page.evaluate("""(cls) => { let found = null;
        const walk = (r) => r.querySelectorAll('*').forEach(e => {
            if (!found && e.classList && e.classList.contains(cls)) found = e;
            if (!found && e.shadowRoot) walk(e.shadowRoot); });
        walk(document); if (!found) return '';
        const text = (n) => (n.shadowRoot ? text(n.shadowRoot) : '') +
            Array.from(n.childNodes).map(c => c.nodeType === 3 ? c.textContent : (c.nodeType === 1 ? text(c) : '')).join(' ');
        return text(found).replace(/\\s+/g, ' ').trim(); }""", css_class)


def _html_around(page, text: str) -> str:
    """The class names of the shadow hosts above the element that shows `text`."""
    return page.evaluate("""(t) => { let out = '';
        const walk = (r, hosts) => r.querySelectorAll('*').forEach(e => {
            if (e.childNodes && Array.from(e.childNodes).some(c => c.nodeType === 3 && c.textContent.includes(t)))
                out += hosts.join(' ') + ' ' + (e.className || '');
            if (e.shadowRoot) walk(e.shadowRoot, hosts.concat([String(e.className || '')])); });
        walk(document, []); return out; }""", text)


def _indicator(page, css_class: str) -> float:
    return float(_text_of(page, css_class).split()[-1].replace(",", ""))


def _status(page) -> str:
    return page.get_by_text("batches received:").first.inner_text()


def _wait_text(page, text, timeout=TIMEOUT_MS):
    page.get_by_text(text).first.wait_for(timeout=timeout)


def _is_local(url: str, origin: str) -> bool:
    """A request the page makes to its own server (blob: URLs made from its own data included)."""
    return url.startswith((origin + "/", "data:", f"blob:{origin}/")) or url in (origin, "about:blank")


# ------------------------------------------------------------------------------------------------
def test_nothing_leaves_localhost(browser, server):
    """Every request of a page load and a Step goes to the dashboard's own server and succeeds:
    no CDN scripts or styles, no web fonts (a cluster node has no internet)."""
    origin = server["url"].rsplit("/", 1)[0]
    ctx = browser.new_context(viewport={"width": 1500, "height": 1300})
    ctx.set_default_timeout(TIMEOUT_MS)
    pg = ctx.new_page()
    requests, failed, bad_status = [], [], []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    pg.on("response", lambda r: bad_status.append(f"{r.url}: {r.status}") if r.status >= 400 else None)
    try:
        pg.goto(server["url"], timeout=90_000)
        pg.get_by_role("button", name="Step").wait_for(timeout=90_000)
        pg.get_by_role("button", name="Step").click()
        _wait_text(pg, "batches received: 1")
        pg.wait_for_timeout(1500)                       # late requests (plots, fonts) included
        outside = [u for u in requests if not _is_local(u, origin)]
        assert len(requests) > 10                       # the page, its scripts and styles were seen
        assert outside == [], "\n".join(outside)
        assert failed == [] and bad_status == [], (failed, bad_status)
    finally:
        ctx.close()


def test_page_shows_the_collection(page, server):
    _wait_text(page, str(server["root"].resolve()))
    for track in ("H3K27ac_rep1", "H3K4me3_rep1", "CTCF_rep1", "ATAC_rep1"):
        assert page.get_by_text(track).count() >= 1
    _wait_text(page, "reference_genome:")                       # the YAML preview
    assert page.get_by_role("textbox", name="Reference FASTA (empty: none)").input_value() == "genome.fa"
    assert page.js_errors == []


def test_version_backend_placeholders_and_selected_radio_choice(page):
    from bwloader_core import __version__
    _wait_text(page, f"bwloader {__version__} · backend in use: cpu")
    for text in ("automatic: the whole window", "automatic: CPUs / workers",
                 "automatic: region length / (sequence length x batch size)"):
        box = page.get_by_placeholder(text)
        assert box.count() == 1 and box.input_value() == "", text
    # every radio group (reduce, dtype, N handling, backend): the selected button stands out
    groups = page.evaluate("""() => { const out = [];
        const walk = (r) => r.querySelectorAll('*').forEach(e => {
            if (e.classList && e.classList.contains('bk-btn-group')) {
                const btns = Array.from(e.querySelectorAll('button'));
                if (btns.length > 1) out.push(btns.map(b => [b.textContent.trim(), b.classList.contains('bk-active'),
                                                          getComputedStyle(b).backgroundColor, getComputedStyle(b).color]));
            }
            if (e.shadowRoot) walk(e.shadowRoot); });
        walk(document); return out; }""")
    labels = {b[0] for g in groups for b in g}
    assert {"mean", "float32", "zeros", "cpu"} <= labels, labels
    for g in groups:
        active = [b for b in g if b[1]]
        assert len(active) == 1, g
        others = [b for b in g if not b[1]]
        assert all((b[2], b[3]) != (active[0][2], active[0][3]) for b in others), g   # colours differ
        assert active[0][2] not in ("rgba(0, 0, 0, 0)", "transparent"), g           # filled, not outlined


def test_changing_a_widget_changes_the_exported_config(page):
    box = page.get_by_role("textbox", name="Batch size", exact=True)
    box.fill("6")
    box.press("Enter")
    _wait_text(page, "batch_size: 6")
    seq = page.get_by_role("textbox", name="Sequence length", exact=True)
    seq.fill("600")
    seq.press("Enter")
    _wait_text(page, "sequence_length: 600")


def test_step_shows_a_batch_with_plots(page):
    before = _canvas_count(page)
    page.get_by_role("button", name="Step").click()
    _wait_text(page, "batches received: 1")
    coords = page.get_by_text("Sample 0:").first
    coords.wait_for()
    text = coords.inner_text()
    assert "chr" in text and "strand" in text and "600 bins" in text
    deadline = time.monotonic() + 45
    while _canvas_count(page) < before + 5 and time.monotonic() < deadline:     # 4 tracks + DNA + heat map
        page.wait_for_timeout(300)
    assert _canvas_count(page) >= before + 5
    for track in ("H3K27ac_rep1", "ATAC_rep1"):
        assert page.get_by_text(track).count() >= 2                # the widget list and a plot title


def test_start_streams_and_pause_stops(page):
    page.get_by_role("button", name="Start").click()
    _wait_text(page, "running")
    deadline = time.monotonic() + 45
    n = 1
    while time.monotonic() < deadline:
        status = _status(page)
        n = int(status.split("batches received:")[1].split("·")[0])
        if n >= 4:
            break
        page.wait_for_timeout(300)
    assert n >= 4, status
    page.get_by_role("button", name="Pause").click()
    _wait_text(page, "paused · batches received")
    assert "samples/s" in _text_of(page, "bw-sps")
    assert _indicator(page, "bw-sps") > 0 and _indicator(page, "bw-mbps") > 0
    assert _indicator(page, "bw-batches") >= 4
    frozen = _status(page)
    page.wait_for_timeout(1500)
    assert _status(page) == frozen                               # paused: nothing arrives


def test_download_yaml_loads_in_training(page, tmp_path):
    from bwloader_core import LoaderConfig
    with page.expect_download() as info:
        page.get_by_role("button", name="Download loader.yaml").click()
    path = tmp_path / "loader.yaml"
    info.value.save_as(path)
    cfg = LoaderConfig.from_yaml(str(path))
    assert (cfg.batch_size, cfg.sequence_length) == (6, 600)
    assert len(cfg.bigwig_paths) == 4 and all(Path(p).exists() for p in cfg.bigwig_paths)
    with cfg.build() as ds:
        batch = next(iter(ds))
    assert batch.values.shape == (6, 600, 4) and batch.sequences.shape == (6, 600, 4)
    _wait_text(page, 'cfg = LoaderConfig.from_yaml("loader.yaml")')


def test_upload_yaml_restores_and_invalid_yaml_is_an_alert(page):
    upload = page.locator("input[type=file][accept='.yaml,.yml']")
    upload.set_input_files(files=[dict(name="broken.yaml", mimeType="text/yaml", buffer=b"batch_sze: 3\n")])
    _wait_text(page, "broken.yaml: unknown key 'batch_sze'; did you mean 'batch_size'?")
    assert "alert-danger" in _html_around(page, "broken.yaml: unknown key")
    assert "Traceback" not in page.content()
    upload.set_input_files(files=[dict(name="small.yaml", mimeType="text/yaml",
                                       buffer=b"batch_size: 3\nsequence_length: 300\n")])
    _wait_text(page, "restored the dashboard from small.yaml")
    assert page.get_by_role("textbox", name="Batch size", exact=True).input_value() == "3"
    assert page.get_by_role("textbox", name="Sequence length", exact=True).input_value() == "300"
    assert page.get_by_text("broken.yaml: unknown key").count() == 0          # the alert is gone


def test_folder_outside_the_data_root_is_refused(page):
    folder = page.get_by_role("textbox", name="Folder of bigWig files (under the data root)")
    for bad in ("../", "/etc"):
        folder.fill(bad)
        folder.press("Enter")
        _wait_text(page, f"refused: {bad} is outside the data root")
        deadline = time.monotonic() + 20
        while folder.input_value() != "." and time.monotonic() < deadline:   # the model puts it back
            page.wait_for_timeout(200)
        assert folder.input_value() == "."
    page.get_by_role("button", name="Step").click()              # still works on the demo tracks
    _wait_text(page, "300 bins")


def test_sweep_plots_samples_per_second(page):
    page.get_by_role("textbox", name="Batch sizes").fill("[4, 8]")
    page.get_by_role("textbox", name="Batch sizes").press("Enter")
    page.get_by_role("textbox", name="Worker counts").fill("[1, 2]")
    page.get_by_role("textbox", name="Worker counts").press("Enter")
    n = page.get_by_role("textbox", name="Batches per point")
    n.fill("2")
    n.press("Enter")
    before = _canvas_count(page)
    page.get_by_role("button", name="Run sweep").click()
    _wait_text(page, "sweep done", timeout=120_000)
    deadline = time.monotonic() + 30
    while _canvas_count(page) <= before and time.monotonic() < deadline:
        page.wait_for_timeout(300)
    assert _canvas_count(page) > before
    assert page.get_by_text("pyBigWig loop").count() >= 1 or "no baseline" in page.content()


def test_closing_the_page_stops_the_session_loader(page, server):
    page.get_by_role("button", name="Start").click()
    _wait_text(page, "running")
    page.context.close()
    deadline = time.monotonic() + 90     # a loaded 2-CPU machine can take a while to see the socket close
    while "loader stopped" not in server["log"].read_text() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "loader stopped" in server["log"].read_text()
    assert server["proc"].poll() is None                         # the server itself keeps running


def test_two_sessions_have_their_own_loaders(browser, server):
    """Closing one browser session stops its loader only; the other session keeps streaming."""
    pages = []
    for _ in range(2):
        ctx = browser.new_context(viewport={"width": 1500, "height": 1300})
        ctx.set_default_timeout(TIMEOUT_MS)
        pg = ctx.new_page()
        pg.goto(server["url"], timeout=90_000)
        pg.get_by_role("button", name="Step").wait_for(timeout=90_000)
        pages.append(pg)
    for pg in pages:
        pg.get_by_role("button", name="Start").click()
        _wait_text(pg, "running")
    stopped_before = server["log"].read_text().count("loader stopped")
    pages[0].context.close()
    deadline = time.monotonic() + 90
    while server["log"].read_text().count("loader stopped") <= stopped_before and time.monotonic() < deadline:
        time.sleep(0.3)
    assert server["log"].read_text().count("loader stopped") == stopped_before + 1

    def received(pg):
        status = _status(pg)
        return int(status.split("batches received:")[1].split("·")[0]) if "batches received:" in status else 0

    first = received(pages[1])
    deadline = time.monotonic() + 45
    while received(pages[1]) <= first and time.monotonic() < deadline:
        pages[1].wait_for_timeout(300)
    assert received(pages[1]) > first and "running" in _status(pages[1])
    pages[1].context.close()


# ------------------------------------------------------------------------------------------------
# a data root as users have them: several folders, a broken file, a FASTA of another assembly
@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory):
    from bwloader_core.demo import write_demo_collection
    base = tmp_path_factory.mktemp("mixed_dashboard")
    root = base / "data"
    write_demo_collection(root / "lab_a", n_tracks=2, chrom_sizes={"chr1": 300_000, "chr2": 200_000}, seed=5)
    (root / "lab_a" / "bad_bw.bw").write_bytes(b"<html>not a bigWig: a download that failed</html>\n" * 4)
    write_demo_collection(root / "lab_b", n_tracks=3, chrom_sizes={"chr1": 250_000, "chr2": 200_000}, seed=7)
    (root / "lab_b" / "genome.fa").unlink()
    (root / "lab_b" / "genome.fa.fai").unlink()
    (root / "refs").mkdir()
    with open(root / "refs" / "toy.fa", "w") as fh:
        for c in ("chr1", "chr2"):
            fh.write(f">{c}\n" + "ACGTTGCA" * 250 + "\n")
    yield from _serve(root, base)


def _track_options(page) -> list[str]:
    return page.evaluate("""() => { const out = [];
        const walk = (r) => r.querySelectorAll('*').forEach(e => {
            if (e.tagName === 'OPTION') out.push(e.textContent.trim()); if (e.shadowRoot) walk(e.shadowRoot); });
        walk(document); return out; }""")


def test_broken_file_and_mismatched_fasta_show_messages_and_start_runs_on_what_reads(browser, mixed_server):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1300})
    ctx.set_default_timeout(TIMEOUT_MS)
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(mixed_server["url"], timeout=90_000)
        pg.get_by_role("button", name="Step").wait_for(timeout=90_000)
        # the broken file: listed with its reason, not a track
        _wait_text(pg, "not readable, left out: bad_bw.bw")
        assert "alert-warning" in _html_around(pg, "not readable, left out")
        options = _track_options(pg)
        assert "H3K27ac_rep1" in options and not any("bad_bw" in o for o in options)
        fasta = pg.get_by_role("textbox", name="Reference FASTA (empty: none)")
        assert fasta.input_value() == "lab_a/genome.fa"
        # a FASTA of another assembly: flagged at once, and Start fails with the same message
        fasta.fill("refs/toy.fa")
        fasta.press("Enter")
        _wait_text(pg, "chromosome sizes differ between the files")
        assert "alert-danger" in _html_around(pg, "chromosome sizes differ")
        assert pg.get_by_text("chr1: 300,000 bp in").count() >= 1
        pg.get_by_role("button", name="Step").click()
        _wait_text(pg, "error")
        # allowed: the message says how much genome is left, and Start streams on the readable tracks
        pg.locator("div.bk-Checkbox", has_text="Allow size mismatch").locator("input").check()
        _wait_text(pg, "sampling only where every source has coordinates")
        _wait_text(pg, "allow_size_mismatch: true")
        pg.get_by_role("button", name="Start").click()
        _wait_text(pg, "running")
        deadline = time.monotonic() + 45
        n = 0
        while time.monotonic() < deadline and n < 3:
            status = _status(pg)
            n = int(status.split("batches received:")[1].split("·")[0]) if "batches received:" in status else 0
            pg.wait_for_timeout(300)
        assert n >= 3 and "N in sequences: 0.0%" in _status(pg)
        pg.get_by_role("button", name="Pause").click()
        _wait_text(pg, "paused · batches received")
        pg.get_by_text("paused: the last figures of the run").first.wait_for()
        # another folder: its own FASTA, here none
        folder = pg.get_by_role("textbox", name="Folder of bigWig files (under the data root)")
        folder.fill("lab_b")
        folder.press("Enter")
        deadline = time.monotonic() + 30
        while fasta.input_value() != "" and time.monotonic() < deadline:
            pg.wait_for_timeout(200)
        assert fasta.input_value() == ""
        assert "CTCF_rep1" in _track_options(pg)                          # lab_b's third track
        assert errors == []
    finally:
        ctx.close()

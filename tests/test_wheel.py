"""The wheel as a user gets it: built from the sources, installed with its `app` extra into a fresh
virtual environment in a temporary folder (outside the checkout), then used there:

- `bwloader serve --data DIR` serves the dashboard on DIR;
- `bwloader serve` (no data) writes the demo collection into $XDG_CACHE_HOME/bwloader and serves it;
- in Jupyter, `from bwloader_app import Dashboard` then `Dashboard(...)` shows the dashboard inline.

Slow: building and installing take a minute or two (pip's cache makes the install offline-fast).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# what a build needs from the checkout; everything else (.venv, .git, data, outputs) stays behind
SKIP = {".venv", ".git", "build", "dist", "demo_data", "out", "__pycache__", ".pytest_cache", ".hypothesis"}


def _run(cmd, timeout, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv outside the checkout with the built wheel and its [app] extra (+ a Jupyter kernel)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src], timeout=600)
    wheels = list(dist.glob("bwloader-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = base / "venv"
    _run([sys.executable, "-m", "venv", env_dir], timeout=300)
    py = env_dir / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "--no-compile", f"{wheels[0]}[app]", "nbclient", "nbformat", "ipykernel"],
         timeout=900)
    work = base / "work"                        # the current folder of every command: not the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BWLOADER_DATA", "VIRTUAL_ENV")}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(base / "home"),
               XDG_CACHE_HOME=str(base / "cache"), PYTHONNOUSERSITE="1")
    (base / "home").mkdir()
    yield dict(base=base, py=py, bin=env_dir / "bin", work=work, env=env, wheel=wheels[0])


def test_wheel_holds_core_and_app_and_runs_from_site_packages(venv):
    import zipfile
    names = zipfile.ZipFile(venv["wheel"]).namelist()
    for module in ("bwloader_core/__init__.py", "bwloader_app/__init__.py", "bwloader_app/dashboard.py",
                   "bwloader_app/views.py", "bwloader_app/state.py"):
        assert module in names, module
    r = _run([venv["py"], "-c", "import bwloader_app, bwloader_core; print(bwloader_app.__file__); "
                                "print(bwloader_core.__file__)"], timeout=120, cwd=venv["work"], env=venv["env"])
    for line in r.stdout.split():
        assert line.startswith(str(venv["base"] / "venv")), line       # not the checkout


@pytest.fixture
def data(venv):
    d = venv["base"] / "data"
    if not d.exists():
        _run([venv["bin"] / "bwloader", "demo-data", d / "lab" / "set1", "--tracks", "2"], timeout=300,
             cwd=venv["work"], env=venv["env"])
    return d


def _serve(venv, args, log_path):
    port = _free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([str(venv["bin"] / "bwloader"), "serve", "--port", str(port), *args], cwd=venv["work"],
                            env=venv["env"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/dashboard"
    deadline = time.monotonic() + 240               # the demo collection is written first
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"bwloader serve exited ({proc.returncode}):\n{Path(log_path).read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                assert r.status == 200
                break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from {url}:\n{Path(log_path).read_text()}") from None
            time.sleep(0.5)
    return proc, url, log


def _stop(proc, log):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    log.close()


def _page_shows(request, url, texts):
    """Chromium opens the page and finds `texts` (without Chromium only the server log is checked)."""
    try:
        browser = request.getfixturevalue("browser")
    except (pytest.skip.Exception, pytest.FixtureLookupError):
        return
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(90_000)
        page.goto(url)
        page.get_by_role("button", name="Step").wait_for()
        for t in texts:
            page.get_by_text(t).first.wait_for()
    finally:
        ctx.close()


def _log_ok(path):
    text = Path(path).read_text()
    assert "Error running application handler" not in text and "Traceback" not in text, text[-3000:]
    return text


def test_serve_with_data(venv, data, request):
    log_path = venv["base"] / "serve_data.log"
    proc, url, log = _serve(venv, ["--data", str(data)], log_path)
    try:
        _page_shows(request, url, ["H3K27ac_rep1", "H3K4me3_rep1", "lab/set1"])
        text = _log_ok(log_path)
        assert f"data root: {data.resolve()}" in text
    finally:
        _stop(proc, log)


def test_serve_without_data_uses_the_demo_in_the_cache_folder(venv, request):
    cache = Path(venv["env"]["XDG_CACHE_HOME"]) / "bwloader" / "demo_data"
    assert not cache.exists()
    log_path = venv["base"] / "serve_demo.log"
    proc, url, log = _serve(venv, [], log_path)
    try:
        info = json.loads((cache / "demo_collection.json").read_text())
        assert len(info["tracks"]) == 8 and (cache / "genome.fa").is_file()
        _page_shows(request, url, [info["tracks"][0].removesuffix(".bw"), str(cache)])
        text = _log_ok(log_path)
        assert f"data root: {cache}" in text
    finally:
        _stop(proc, log)
    assert not any(p.name.startswith(".demo_data") for p in cache.parent.iterdir())   # no half-written copies
    assert not list(venv["work"].iterdir())                                         # nothing written where it ran


def test_jupyter_one_import_shows_the_dashboard(venv, data):
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {}, "outputs": [],
                     "source": "from bwloader_app import Dashboard\n"
                               f"dashboard = Dashboard(data_root={str(data)!r})\n"
                               "dashboard"},
                    {"cell_type": "code", "execution_count": None, "id": "c2", "metadata": {}, "outputs": [],
                     "source": "import bwloader_app\nprint(bwloader_app.__file__)\n"
                               "print(dashboard.state.browser.tracks)\ndashboard.close()"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = venv["work"] / "try.ipynb"
    path.write_text(json.dumps(nb))
    script = ("import sys, nbformat, nbclient\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "nbclient.NotebookClient(nb, timeout=300, kernel_name='python3').execute()\n"
              "nbformat.write(nb, sys.argv[1])\n")
    try:
        _run([venv["py"], "-c", script, path], timeout=600, cwd=venv["work"], env=venv["env"])
        out = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
    first, second = out["cells"][0]["outputs"], out["cells"][1]["outputs"]
    assert not [o for c in out["cells"] for o in c["outputs"] if o["output_type"] == "error"]
    shown = [o for o in first if o["output_type"] in ("execute_result", "display_data")]
    mimes = {m for o in shown for m in o["data"]}
    assert "application/vnd.holoviews_exec.v0+json" in mimes, mimes     # a live Panel view, not a repr
    assert any("application/javascript" in o["data"] for o in shown)   # Panel's code for the page, inline
    text = "".join("".join(o.get("text", "")) for o in second)          # a str or a list of lines
    assert text.startswith(str(venv["base"] / "venv")) and "H3K27ac_rep1" in text

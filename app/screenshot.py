"""Take docs/dashboard.png: the dashboard streaming on the demo collection, in headless Chromium.

    python app/screenshot.py [--out docs/dashboard.png] [--chromium /usr/bin/chromium]

Starts `panel serve app/dashboard.py` on a free port (data: $BWLOADER_DATA, else a demo collection
written into a temporary folder), runs a small sweep, starts streaming, and takes the picture while
batches flow. The server is stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"panel serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("panel serve did not answer")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "dashboard.png"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=2500)
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = os.environ.get("BWLOADER_DATA")
        if not root:
            from bwloader_core.demo import write_demo_collection
            root = str(Path(tmp) / "demo_data")
            write_demo_collection(root)
        port = _free_port()
        url = f"http://127.0.0.1:{port}/dashboard"
        proc = subprocess.Popen([sys.executable, "-m", "panel", "serve", str(REPO / "app" / "dashboard.py"),
                                 "--port", str(port), "--address", "127.0.0.1"],
                                env=dict(os.environ, BWLOADER_DATA=root), cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_http(url, proc)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.set_default_timeout(90_000)
                page.goto(url)
                page.get_by_role("button", name="Step").wait_for()
                box = page.get_by_role("textbox", name="Sequence length", exact=True)
                box.fill("20000")
                box.press("Enter")
                box = page.get_by_role("textbox", name="Window size", exact=True)
                box.fill("10")
                box.press("Enter")
                page.get_by_text("window_size: 10").first.wait_for()
                page.get_by_role("button", name="Run sweep").click()
                page.get_by_text("sweep done").first.wait_for(timeout=120_000)
                page.get_by_role("button", name="Start").click()
                page.get_by_text("running").first.wait_for()
                page.get_by_text("batches received: 1").first.wait_for()
                page.wait_for_timeout(15_000)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.out)
                page.get_by_role("button", name="Pause").click()
                browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

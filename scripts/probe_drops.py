"""Probe for lost drops (docs/testing.md, "Lost drops": fixed by ui/upload_fix.py; comment
out its install() in app.py to see the loss again): replace image A, then image B ``--delay``
seconds later (while the run that A's upload started is beginning), and count the tries
whose B never reached B's uploader.

    .venv/bin/python scripts/probe_drops.py                 # 6 tries, B 0.3 s after A
    .venv/bin/python scripts/probe_drops.py --delay 1.5 --tries 5
    .venv/bin/python scripts/probe_drops.py --clear-b       # empty B's uploader before each try

It starts its own server (the warm-up launcher, on a free port) and drives Debian's chromium
at 1280x720 through Playwright. Images: the bundled audit sample's 64 px images, copied under
short names (the uploader shortens long names, which would hide them from the check).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
UPLOADER = '[data-testid="stFileUploader"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen:
    env = dict(os.environ, LPIPS_EXPLAIN_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "lpips_explain.ui.serve", "--server.port",
                             str(port), "--server.headless", "true", "--server.address",
                             "127.0.0.1"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(180):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
            return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit("the server did not answer its health check within 180 s")


def uploader_text(page, index: int) -> str:
    return page.locator(UPLOADER).nth(index).inner_text().replace("\n", " ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay", type=float, default=0.3, help="seconds between A and B")
    ap.add_argument("--tries", type=int, default=6)
    ap.add_argument("--settle", type=float, default=15.0,
                    help="seconds to wait after B before reading the uploaders")
    ap.add_argument("--clear-b", action="store_true",
                    help="remove B's file (and wait) before each try: B is then a first upload")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for i, src in enumerate(sorted((REPO / "assets" / "audit_sample" / "images")
                                       .glob("*.png"))[:12]):
            images.append(Path(tmp) / f"d{i}.png")
            shutil.copy(src, images[-1])
        port = free_port()
        server = start_server(port)
        lost = 0
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
                page.wait_for_selector("text=Ready", timeout=300_000)
                inputs = page.locator(f"{UPLOADER} input[type=file]")
                for t in range(args.tries):
                    a, b = images[(2 * t) % len(images)], images[(2 * t + 1) % len(images)]
                    chips = page.locator(UPLOADER).nth(1).locator('[data-testid="stFileChip"]')
                    if args.clear_b and chips.count():
                        chips.first.locator('button[aria-label^="Remove"]').click()
                        page.wait_for_timeout(6000)
                    first = chips.count() == 0  # B's uploader holds no file
                    inputs.nth(0).set_input_files(str(a))
                    page.wait_for_timeout(int(args.delay * 1000))
                    inputs.nth(1).set_input_files(str(b))
                    page.wait_for_timeout(int(args.settle * 1000))
                    got = b.name in uploader_text(page, 1) and a.name in uploader_text(page, 0)
                    lost += not got
                    print(f"try {t + 1}: A {a.name}, B {b.name} "
                          f"({'into an empty uploader' if first else 'replacing a file'}): "
                          f"{'kept' if got else 'LOST'}; B's uploader shows "
                          f"{uploader_text(page, 1)[:40]!r}", flush=True)
                browser.close()
        finally:
            server.terminate()
        print(f"lost {lost} of {args.tries} (B {args.delay} s after A)")


if __name__ == "__main__":
    main()

"""The app path against the CLI path on one pair, side by side in one run.

A fresh server is started the way scripts/run_app.sh starts it (``python -m
lpips_explain.ui.serve``: the engine warms up while the server starts) and driven in
Debian's chromium at 1280x720 with Playwright, as a person would:

1. **First visitor**: the page is opened as soon as the server answers its health check;
   seconds until the sample pair's distance is shown and until the run state says "Ready"
   (and the seconds the run state itself gives: the page's script on the server).
2. **A dropped pair** (default: a 600x400 photograph made from a bundled original and a
   JPEG-compressed, slightly blurred copy of it; or ``--a``/``--b``): A and then B are put
   into the page's own file inputs; seconds from B's upload to the new distance, to the
   complete verdict card (its repair headline and equivalents, "computing" gone) and to
   "Ready", and each part's time as the run state reports it (polled every 0.1 s).
3. **A second visitor**: a new page on the sample pair, whose parts are stored: the same
   seconds, now only drawing.
   With ``--later N``, N more 600x400 pairs (other bundled originals) are then dropped into
   the first page one after the other, as a person going through pairs does: A's upload
   starts a run of its own, which B's upload has to stop; the same seconds from B's upload.
4. **The CLI**: ``lpips-explain explain A B --out DIR`` on the same pair, in a fresh process
   (imports and the network included), its wall time and the parts' times it records.

5. **Under load** (``--sessions 16 --concurrency 8``, instead of 1-3): that many browser
   sessions, each uploading a different pair, that many at a time; each shown distance is
   checked against the Explainer's, and the server's peak resident memory (VmHWM) is read.

    python benchmarks/bench_app.py [--net alex] [--a A.png --b B.png] [--json OUT.json]
    python benchmarks/bench_app.py --photo 1920x1280 --photo 4000x3000 --no-cli
    python benchmarks/bench_app.py --later 3 --no-cli
    python benchmarks/bench_app.py --sessions 16 --concurrency 8

The published trunk must be installed (``lpips-explain weights install``). Times are
wall-clock seconds on this machine; the machine's load (1-minute average) is printed
before and after. The app computes the attribution map on request (when its view is
opened), so its "Ready" covers the other parts; the CLI computes everything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
POLL_S = 0.1
STATE_RE = re.compile(r"(schedule|autorenew|check_circle|error|remove_circle_outline|touch_app)"
                      r"\s*([a-z][a-z ]*?)(?:\s*\(on request\))?\s*(?=·|$)")
DISTANCE_RE = re.compile(r"distance = (\d+\.\d{6})")
LATER = ("coffee", "astronaut", "rocket")  # the originals of the later drops (--later)
READY_RE = re.compile(r"Ready in (\d+(?:\.\d+)?) s")  # as the page renders it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().decode().strip() == "ok"
    except OSError:
        return False


def make_pair(folder: Path, original: str = "chelsea") -> tuple[Path, Path]:
    """A 600x400 photograph (a bundled original) and a JPEG q30, Gaussian-blurred (0.8 px)
    copy of it."""
    from PIL import Image, ImageFilter

    im = Image.open(ROOT / "assets" / "originals" / f"{original}.png").convert("RGB")
    a = im.resize((600, 400), Image.Resampling.LANCZOS)
    a_path, b_path = folder / f"photo_{original}_a.png", folder / f"photo_{original}_b.png"
    tmp = folder / "b.jpg"
    a.save(a_path)
    a.filter(ImageFilter.GaussianBlur(0.8)).save(tmp, quality=30)
    Image.open(tmp).convert("RGB").save(b_path)
    return a_path, b_path


def make_photo(folder: Path, width: int, height: int) -> tuple[Path, Path]:
    """A ``width`` x ``height`` photograph as a camera writes it (JPEG q92, with sensor-like
    noise) and a blurred (1.2 px), JPEG q60 copy of it."""
    import numpy as np
    from PIL import Image, ImageFilter
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 6, (height, width, 3))
    a = Image.fromarray(np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255)
                        .astype(np.uint8))
    a_path, b_path = folder / f"photo_{width}x{height}_a.jpg", folder / f"photo_{width}x{height}_b.jpg"
    a.save(a_path, quality=92)
    a.filter(ImageFilter.GaussianBlur(1.2)).save(b_path, quality=60)
    return a_path, b_path


def run_state(page) -> dict[str, str]:
    """{part: icon name} read off the run state line at the top of the page."""
    box = page.locator(".st-key-run_state")
    text = box.first.inner_text() if box.count() else ""
    parts = text.partition("—")[2]
    return {name.strip(): icon for icon, name in STATE_RE.findall(parts.replace("\n", " "))}


def distance_shown(page) -> str | None:
    found = DISTANCE_RE.search(page.inner_text("body"))
    return found.group(1) if found else None


def ready(page) -> bool:
    box = page.locator(".st-key-run_state")
    return bool(box.count()) and box.first.inner_text().lstrip().startswith("Ready")


def watch(page, t0: float, *, before: str | None, timeout: float = 300.0,
          expect: str | None = None) -> dict[str, float]:
    """Seconds from t0 to: a distance other than ``before`` (or, given ``expect``, that
    distance: A's upload may show an intermediate pair first), the complete card, each part
    done, and Ready."""
    marks: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        now = time.perf_counter() - t0
        d = distance_shown(page)
        if "distance" not in marks and d is not None and d != before and d == (expect or d):
            marks["distance"] = now
        states = run_state(page)
        for part, icon in states.items():
            if icon == "check_circle" and f"part: {part}" not in marks and "distance" in marks:
                marks[f"part: {part}"] = now
        body = page.inner_text("body")
        if ("card complete" not in marks and "distance" in marks
                and states.get("repair") == "check_circle"
                and states.get("equivalents") == "check_circle"
                and "Repair: computing" not in body
                and "Equivalent distortions: computing" not in body):
            marks["card complete"] = now
        if "distance" in marks and ready(page):
            marks["ready"] = now
            # the server's own count: the page's script from its start to "Ready"
            said = READY_RE.search(page.locator(".st-key-run_state").first.inner_text())
            if said:
                marks["script run (server)"] = float(said.group(1))
            return marks
        time.sleep(POLL_S)
    raise SystemExit(f"the page was not ready within {timeout:.0f} s: {marks}")


def load() -> float:
    return os.getloadavg()[0]


def start_server(tmp: Path, env: dict) -> tuple[subprocess.Popen, int, float]:
    """The server as scripts/run_app.sh starts it; (process, port, seconds to healthy)."""
    port = free_port()
    log = (tmp / "server.log").open("wb")
    t0 = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "lpips_explain.ui.serve", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    while not healthy(f"http://127.0.0.1:{port}"):
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {(tmp / 'server.log').read_text()}")
        time.sleep(POLL_S)
    return server, port, time.perf_counter() - t0


def peak_rss(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def upload(page, a: Path, b: Path) -> float:
    """A into the page's first file input, then B into the second; the time B was given."""
    inputs = page.locator('[data-testid="stFileUploader"] input[type=file]')
    inputs.nth(0).set_input_files(str(a))
    page.wait_for_timeout(1000)
    t0 = time.perf_counter()
    inputs.nth(1).set_input_files(str(b))
    return t0


def session(url: str, pair: tuple[Path, Path], expected: float) -> tuple[bool, float]:
    """One browser session: open the page, wait for the sample, upload ``pair``; (the
    distance shown equals ``expected`` and no exception, seconds to Ready)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url, wait_until="domcontentloaded", timeout=120_000)
        watch(page, time.perf_counter(), before=None, timeout=900)
        sample = distance_shown(page)
        t0 = upload(page, *pair)
        marks = watch(page, t0, before=sample, timeout=900)
        shown = distance_shown(page)
        bad = page.locator('[data-testid="stException"]').count()
        browser.close()
    right = shown is not None and abs(float(shown) - expected) <= 1.5e-6 and not bad
    return right, marks["ready"]


def under_load(args: argparse.Namespace, tmp: Path, env: dict) -> int:
    """``--sessions`` browser sessions, ``--concurrency`` at a time, each a different pair."""
    from concurrent.futures import ProcessPoolExecutor

    from PIL import Image, ImageFilter

    from lpips_explain import Explainer

    originals = sorted((ROOT / "assets" / "originals").glob("*.png"))
    pairs = []
    for i in range(args.sessions):
        im = Image.open(originals[i % len(originals)]).convert("RGB")
        a, b = tmp / f"s{i}_a.png", tmp / f"s{i}_b.png"
        im.save(a)
        im.filter(ImageFilter.GaussianBlur(0.5 + 0.25 * i)).save(b)
        pairs.append((a, b))
    ex = Explainer(args.net)
    expected = [ex.distance(a, b) for a, b in pairs]
    server, port, _ = start_server(tmp, env)
    url = f"http://127.0.0.1:{port}/?net={args.net}"

    t0 = time.perf_counter()
    try:
        # One process per session (Playwright's sync API does not share threads).
        import multiprocessing

        with ProcessPoolExecutor(args.concurrency,
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(session, [url] * args.sessions,
                                    [pairs[i] for i in range(args.sessions)], expected))
        peak = peak_rss(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    right = sum(ok for ok, _ in results)
    waits = sorted(t for _, t in results)
    print(f"{args.sessions} sessions, {args.concurrency} at a time, {args.net}: "
          f"{right}/{args.sessions} right; server peak RSS {peak:.2f} GB; "
          f"Ready after {waits[0]:.1f}-{waits[-1]:.1f} s (median {waits[len(waits) // 2]:.1f}); "
          f"all done in {time.perf_counter() - t0:.0f} s; load {load():.2f}")
    if args.json:
        args.json.write_text(json.dumps({"sessions": args.sessions, "right": right,
                                         "peak_rss_gb": peak, "ready_s": waits}, indent=1))
    return 0 if right == args.sessions else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="alex")
    ap.add_argument("--a", type=Path)
    ap.add_argument("--b", type=Path)
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--sessions", type=int, default=0,
                    help="run the load test instead: this many browser sessions")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--photo", action="append", default=[], metavar="WxH",
                    help="also drop a photograph of this size (make_photo) after the pair, "
                         "in the same page; repeatable, e.g. --photo 1920x1280 --photo 4000x3000")
    ap.add_argument("--later", type=int, default=0, metavar="N",
                    help="then drop N more 600x400 pairs (other bundled originals, up to 3) "
                         "into the same page, one after the other: a person going through "
                         "pairs (A's upload starts a run that B's must stop)")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI's explain")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from lpips_explain import Explainer

    tmp = Path(tempfile.mkdtemp(prefix="bench_app_"))
    env = {**os.environ, "LPIPS_EXPLAIN_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if args.sessions:
        return under_load(args, tmp, env)
    a, b = (args.a, args.b) if args.a and args.b else make_pair(tmp)
    print(f"pair: {a} | {b}; load before: {load():.2f}")
    server, port, health = start_server(tmp, env)
    url = f"http://127.0.0.1:{port}/?net={args.net}"
    out: dict[str, dict[str, float]] = {"server": {"health": health}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            t0 = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            out["first visitor (sample pair)"] = watch(page, t0, before=None)
            sample = distance_shown(page)
            t0 = upload(page, a, b)
            out["dropped pair"] = watch(page, t0, before=sample)
            page.screenshot(path=str(tmp / "app_ready.png"))
            # A second visitor: the sample's parts are stored, the page only draws them.
            other = browser.new_page(viewport={"width": 1280, "height": 720})
            t0 = time.perf_counter()
            other.goto(url, wait_until="domcontentloaded", timeout=120_000)
            out["second visitor (sample pair)"] = watch(other, t0, before=None)
            other.close()
            # the distances each later drop must show: one network for all of them
            reference = Explainer(args.net) if args.later or args.photo else None
            for original in LATER[: args.later]:
                pair = make_pair(tmp, original)
                expect = f"{reference.distance(*pair):.6f}"
                t0 = upload(page, *pair)
                out[f"later drop ({original}, 600x400)"] = watch(page, t0, before=None,
                                                                  expect=expect)
            for size in args.photo:
                w, h = (int(v) for v in size.lower().split("x"))
                photo = make_photo(tmp, w, h)
                expect = f"{reference.distance(*photo):.6f}"
                t0 = upload(page, *photo)
                out[f"dropped {w}x{h} photograph"] = watch(page, t0, before=None,
                                                           timeout=1800, expect=expect)
                page.screenshot(path=str(tmp / f"app_ready_{w}x{h}.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    if args.no_cli:
        return report(out, args, tmp)
    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "lpips_explain", "explain", str(a), str(b),
                          "--net", args.net, "--out", str(tmp / "cli"), "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if cli.returncode != 0:
        raise SystemExit(f"the CLI failed: {cli.stderr[-2000:]}")
    parts = json.loads((tmp / "cli" / "explanation.json").read_text()).get("timings_ms", {})
    out["CLI explain"] = {"wall": wall, **{f"part: {k}": v / 1000 for k, v in parts.items()}}
    return report(out, args, tmp)


def report(out: dict[str, dict[str, float]], args: argparse.Namespace, tmp: Path) -> int:
    print(f"load after: {load():.2f}; screenshots: {tmp}/app_ready*.png\n")
    for what, marks in out.items():
        print(what)
        for k, v in marks.items():
            print(f"  {k:<28} {v:6.2f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

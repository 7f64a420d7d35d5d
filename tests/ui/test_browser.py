"""End to end: the real Streamlit server, driven in Debian's chromium with Playwright.

Uploads go through the page's own file inputs; the distance the page shows is checked
against the CLI on the same files. At 1280x720 the answer (the distance, the verdict
sentence, a map) must be on the first screen; presentation mode hides the sidebar; a copied
address reopens the same sample with the same numbers; the HTML report stays under 3 MB.
Under CI (CI=true) these tests run, never skip.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, smooth_image, to_uint8, write_png

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"
ENV = {"LPIPS_EXPLAIN_BACKBONE_WEIGHTS": "random", "LPIPS_EXPLAIN_OFFLINE": "1",
       "PYTHONUNBUFFERED": "1"}
HEALTH_WAIT_S = 90.0
RESULT_WAIT_S = 300.0  # a full explanation on 2 shared CPUs, with a second session competing
STABLE_S = 3.0  # a result counts once the run is over and it has not changed for this long
POLL_S = 0.5
CAPTION_RE = re.compile(r"^\s*distance = (\d+\.\d{6})\s*$", re.MULTILINE)
BANNER_RE = re.compile(r"not a perceptual metric", re.IGNORECASE)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _env() -> dict[str, str]:
    return {**os.environ, **ENV}


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path

    def tail(self, n: int = 60) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            return f"(server log unreadable: {exc})"
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"--- server ({state}) log tail ---\n" + "\n".join(lines[-n:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().decode().strip() == "ok"
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        if _in_ci():
            pytest.fail(f"{CHROMIUM} is missing: under CI the browser test must run "
                        f"(apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium to run this test)")
    return CHROMIUM


# One server and one chromium for all the browser files (they run on one xdist worker, see
# tests/conftest.py): each file's module-scoped fixtures hand out the same ones, started by the
# first file that asks and stopped when the session ends. Every test opens its own browser
# context, so no test sees another's session.
_SHARED: dict[str, Any] = {}


def _start_server(log: Path) -> Server:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # Started as scripts/run_app.sh starts it: the engine warms up while the server starts.
    cmd = [sys.executable, "-m", "lpips_explain.ui.serve",
           "--server.headless", "true", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    srv = Server(url, proc, log)
    try:
        deadline = time.monotonic() + HEALTH_WAIT_S
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"the Streamlit server exited early\n{srv.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{url}/_stcore/health not ok after {HEALTH_WAIT_S:.0f} s\n"
                            f"{srv.tail()}")
            time.sleep(POLL_S)
    except BaseException:
        _stop(proc)
        raise
    return srv


@pytest.fixture(scope="module")
def server(chromium_path: Path, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Server:
    srv = _SHARED.get("server")
    if srv is None or srv.proc.poll() is not None:  # the first file, or the last one died
        srv = _start_server(tmp_path_factory.mktemp("server") / "streamlit.log")
        _SHARED["server"] = srv
        request.config.add_cleanup(lambda: _stop(srv.proc))
    return srv


@pytest.fixture(scope="module")
def browser(chromium_path: Path, request: pytest.FixtureRequest) -> Any:
    from playwright.sync_api import sync_playwright  # a missing package fails loudly

    b = _SHARED.get("browser")
    if b is None or not b.is_connected():
        p = sync_playwright().start()
        try:
            b = p.chromium.launch(executable_path=str(chromium_path), headless=True,
                                  args=CHROMIUM_ARGS)
        except BaseException:
            p.stop()
            raise
        _SHARED["browser"] = b

        def close(b: Any = b, p: Any = p) -> None:
            try:
                b.close()
            finally:
                p.stop()

        request.config.add_cleanup(close)
    return b


# --- the images and the CLI's numbers ------------------------------------------------------------


@dataclass(frozen=True)
class ImagePair:
    a: Path
    b: Path
    cli_distance: float


def _noisy(img: torch.Tensor, seed: int, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (img + sigma * torch.randn(img.shape, generator=g)).clamp(0, 1)


def _blurred(img: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None, :]) / 256.0
    weight = k.expand(3, 1, 5, 5).contiguous()
    padded = torch.nn.functional.pad(img, (2, 2, 2, 2), mode="replicate")
    return torch.nn.functional.conv2d(padded, weight, groups=3).clamp(0, 1)


def _cli_command(a: Path, b: Path) -> list[str]:
    return [sys.executable, "-m", "lpips_explain", "distance", str(a), str(b), "--json"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImagePair]:
    """Three small pairs (96x96, smooth vs noisy or blurred) and the CLI's distance for each."""
    folder = tmp_path_factory.mktemp("pairs")
    specs = {
        "main": (smooth_image(96, 96, 11), lambda t: _noisy(t, 5, 0.10)),
        "s1": (smooth_image(96, 96, 21), lambda t: _blurred(_noisy(t, 6, 0.05))),
        "s2": (smooth_image(96, 96, 31), lambda t: _noisy(t, 7, 0.20)),
    }
    files = {}
    for name, (ref, distort) in specs.items():
        a = write_png(folder / f"{name}_ref.png", to_uint8(ref))
        b = write_png(folder / f"{name}_dist.png", to_uint8(distort(ref)))
        files[name] = (a, b)
    # The three CLI runs side by side (each loads torch: a few seconds).
    procs = {name: subprocess.Popen(_cli_command(a, b), cwd=REPO, env=_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (a, b) in files.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=RESULT_WAIT_S)
        assert proc.returncode == 0, (
            f"CLI {' '.join(_cli_command(*files[name]))} exited {proc.returncode}\n{stderr[-3000:]}")
        result = json.loads(stdout)
        assert result["backbone"]["weights"] == "random" and not result["backbone"]["perceptual"]
        out[name] = ImagePair(*files[name], float(result["distance"]))
    values = [f"{p.cli_distance:.6f}" for p in out.values()]
    assert len(set(values)) == len(values), f"the test pairs should differ in distance: {values}"
    return out


# --- reading the page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PageState:
    caption: str | None  # the 6-decimal distance of the "distance = ..." caption
    script: str | None  # stApp's data-test-script-state: initial, running, notRunning, ...
    status_widgets: int  # the "Running..." widget (absent when idle)
    charts: int  # stPlotlyChart elements
    charts_drawn: int  # ... of them holding a plotly svg
    exceptions: int  # stException boxes
    errors: tuple[str, ...]  # st.error texts

    @property
    def idle(self) -> bool:
        return self.script in (None, "notRunning") and self.status_widgets == 0


def _read(page: Any) -> PageState:
    body = page.inner_text("body")
    captions = CAPTION_RE.findall(body)
    app = page.locator('[data-testid="stApp"]')
    script = app.first.get_attribute("data-test-script-state") if app.count() else None
    charts = page.locator('[data-testid="stPlotlyChart"]')
    drawn = sum(1 for i in range(charts.count())
                if charts.nth(i).locator(".main-svg").count() > 0)
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    return PageState(captions[0] if captions else None, script,
                     page.locator('[data-testid="stStatusWidget"]').count(), charts.count(),
                     drawn, page.locator('[data-testid="stException"]').count(),
                     tuple(e.strip()[:300] for e in errors))


def _describe(page: Any, server: Server, what: str, state: PageState | None = None) -> str:
    state = state or _read(page)
    shot = ARTIFACTS / f"browser_failure_{re.sub(r'[^a-z0-9]+', '_', what.lower())[:40]}.png"
    try:
        _full_page_screenshot(page, [shot])
    except Exception as exc:  # the message matters more than the picture
        shot = Path(f"(screenshot failed: {exc})")
    return f"{what}\npage state: {state}\nscreenshot: {shot}\n{server.tail()}"


def _wait_result(page: Any, server: Server, *, other_than: str | None = None,
                 timeout: float = RESULT_WAIT_S) -> PageState:
    """Wait until the page shows a distance caption (other than `other_than`), the script is
    no longer running, and the value has stayed put for STABLE_S seconds."""
    deadline = time.monotonic() + timeout
    settled: str | None = None  # the caption seen ready since `since`
    since = 0.0
    state: PageState | None = None
    while time.monotonic() < deadline:
        state = _read(page)
        assert not state.exceptions and not state.errors, _describe(
            page, server, "the app shows an exception or an error", state)
        if state.caption is not None and state.caption != other_than and state.idle:
            if state.caption != settled:
                settled, since = state.caption, time.monotonic()
            elif time.monotonic() - since >= STABLE_S:
                return state
        else:
            settled = None
        time.sleep(POLL_S)
    raise AssertionError(_describe(
        page, server, f"no settled distance caption (other than {other_than}) within "
                      f"{timeout:.0f} s", state))


def _wait_charts(page: Any, server: Server, n: int = 3, timeout: float = 60.0) -> PageState:
    deadline = time.monotonic() + timeout
    while True:
        state = _read(page)
        if state.charts_drawn >= n:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(_describe(
                page, server, f"fewer than {n} plotly charts drawn within {timeout:.0f} s",
                state))
        time.sleep(POLL_S)


def _file_input(page: Any, key: str, index: int) -> Any:
    """The file input of the uploader with `key` (Streamlit tags the widget's container with
    st-key-<key>); the index-th uploader on the page if the key class is not there."""
    keyed = page.locator(f".st-key-{key} input[type=file]")
    if keyed.count() == 1:
        return keyed
    return page.locator('[data-testid="stFileUploader"] input[type=file]').nth(index)


def _uploader(page: Any, key: str, index: int) -> Any:
    keyed = page.locator(f".st-key-{key}")
    if keyed.count() == 1:
        return keyed
    return page.locator('[data-testid="stFileUploader"]').nth(index)


def _set_file(page: Any, server: Server, key: str, index: int, path: Path) -> None:
    try:
        _file_input(page, key, index).set_input_files(str(path), timeout=30_000)
    except Exception as exc:
        raise AssertionError(_describe(page, server, f"setting {path.name} into {key} "
                                                     f"failed: {exc}")) from exc


def _wait_listed(page: Any, server: Server, key: str, index: int, path: Path) -> None:
    """Wait until the uploader lists the file (the upload reached the server)."""
    try:
        _uploader(page, key, index).get_by_text(path.name).first.wait_for(
            state="visible", timeout=60_000)
    except Exception as exc:
        raise AssertionError(_describe(page, server, f"{key} does not list {path.name}: "
                                                     f"{exc}")) from exc


def _wait_idle(page: Any, server: Server, timeout: float = 180.0) -> None:
    """Wait until the script run triggered by the last upload has finished: an uploader
    re-rendered mid-run can drop a file handed to it (a person would wait for the page too)."""
    deadline = time.monotonic() + timeout
    while not _read(page).idle:
        if time.monotonic() > deadline:
            raise AssertionError(_describe(page, server, "the app never became idle"))
        time.sleep(POLL_S)


def wait_text(page: Any, server: Server, pattern: re.Pattern | str, page_name: str,
              timeout: float = RESULT_WAIT_S) -> re.Match | str:
    """Wait until ``pattern`` (a regex or plain text) is on the page and the app is idle;
    fail at once on an exception or error element (``page_name`` names the page in the
    failure message)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _read(page)
        assert not state.exceptions and not state.errors, _describe(
            page, server, f"the {page_name} page shows an exception or an error", state)
        body = page.inner_text("body")
        found = pattern.search(body) if isinstance(pattern, re.Pattern) else (
            pattern if pattern in body else None)
        if found and state.idle:
            return found
        time.sleep(POLL_S)
    raise AssertionError(_describe(page, server, f"no {pattern!r} on the page within "
                                                 f"{timeout:.0f} s"))


def _upload_pair(page: Any, server: Server, pair: ImagePair) -> None:
    """A into the first uploader, and once the page lists it and is idle, B into the second."""
    for key, index, path in (("upload_a", 0, pair.a), ("upload_b", 1, pair.b)):
        _set_file(page, server, key, index, path)
        _wait_listed(page, server, key, index, path)
        _wait_idle(page, server)


def _open(page: Any, server: Server) -> PageState:
    page.goto(server.url, wait_until="domcontentloaded", timeout=60_000)
    return _wait_result(page, server)


def _same_distance(shown: str | None, expected: float) -> bool:
    return shown is not None and (shown == f"{expected:.6f}"
                                  or abs(float(shown) - expected) <= 1e-6 + 1e-12)


def _full_page_screenshot(page: Any, paths: list[Path]) -> None:
    """Streamlit scrolls inside stMain, so grow the viewport to the content first."""
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return Math.max(m ? m.scrollHeight : 0, document.body.scrollHeight); }")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": int(min(max(height, 800), 16000))})
    page.wait_for_timeout(1500)  # let plotly relayout to the new size
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


# --- the tests -----------------------------------------------------------------------------------


FIRST_SCREEN = {"width": 1280, "height": 720}
HTML_LIMIT = 3_000_000


def _box(locator: Any) -> dict | None:
    return locator.first.bounding_box() if locator.count() else None


def _in_first_screen(page: Any, locator: Any) -> bool:
    """Fully inside the 1280x720 viewport with the page not scrolled."""
    box = _box(locator)
    scrolled = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return (m ? m.scrollTop : 0) + window.scrollY; }")
    return (box is not None and scrolled == 0 and box["y"] >= 0 and box["height"] > 0
            and box["y"] + box["height"] <= FIRST_SCREEN["height"]
            and box["x"] + box["width"] <= FIRST_SCREEN["width"])


def test_first_screen_upload_and_lean_report(server: Server, browser: Any,
                                             pairs: dict[str, ImagePair],
                                             tmp_path: Path) -> None:
    pair = pairs["main"]
    context = browser.new_context(viewport=FIRST_SCREEN, accept_downloads=True)
    try:
        page = context.new_page()
        sample = _open(page, server)
        body = page.inner_text("body")
        assert BANNER_RE.search(body), _describe(
            page, server, "no 'not a perceptual metric' banner with the random trunk")
        # The answer on the first screen: the distance, the verdict sentence, the map.
        distance = page.locator(".lx-distance")
        verdict = page.locator(".lx-verdict")
        # the map's colour bar and caption sit under the map: on screen means the map is too
        card_map = page.locator(".lx-mapbar").filter(has_text="Where the distance is")
        for name, loc in (("distance", distance), ("verdict sentence", verdict),
                          ("distance map", card_map)):
            assert _in_first_screen(page, loc), _describe(
                page, server, f"the {name} is not on the first 1280x720 screen: {_box(loc)}")
        assert distance.first.inner_text().strip() == f"{float(sample.caption):.4f}"
        for key in ("upload_a", "upload_b"):  # the drop zone is on the first screen too
            zone = page.locator(f".st-key-{key}")
            assert _in_first_screen(page, zone), _describe(
                page, server, f"the {key} drop zone is not on the first screen: {_box(zone)}")
        page.screenshot(path=str(ARTIFACTS / "browser_first_screen.png"))
        assert not _same_distance(sample.caption, pair.cli_distance), (
            f"the test pair's distance {pair.cli_distance:.6f} equals the sample's "
            f"{sample.caption}: pick another test pair")

        _upload_pair(page, server, pair)
        state = _wait_result(page, server, other_than=sample.caption)
        assert _same_distance(state.caption, pair.cli_distance), _describe(
            page, server, f"page shows distance = {state.caption}, the CLI "
                          f"{pair.cli_distance:.6f} ({pair.cli_distance!r})", state)
        state = _wait_charts(page, server, 3)
        assert state.exceptions == 0 and not state.errors, _describe(
            page, server, "the app shows an exception or an error", state)

        # The HTML report, as downloaded: one offline file under 3 MB with the same number.
        button = page.locator(".st-key-download_html button")
        with page.expect_download(timeout=120_000) as info:
            button.click()
        report = tmp_path / "report.html"
        info.value.save_as(report)
        size = report.stat().st_size
        assert 10_000 < size < HTML_LIMIT, f"the HTML report has {size:,} bytes"
        assert f"{pair.cli_distance:.4f}" in report.read_text(encoding="utf-8")
        assert state.caption == _read(page).caption  # nothing reran behind our back

        # Going through pairs: replacing A runs at once (a new distance, no Compare click).
        other = pairs["s1"]
        _set_file(page, server, "upload_a", 0, other.a)
        _wait_listed(page, server, "upload_a", 0, other.a)
        # The run starts a moment after the upload is listed: wait for a new, settled
        # distance (a replacement that did not run would time out here).
        replaced = _wait_result(page, server, other_than=state.caption)
        assert not _same_distance(replaced.caption, float(state.caption)), _describe(
            page, server, "replacing A alone did not run at once")
        # No drop lost during a rerun: B dropped 0.3 s after A, while the run that A's
        # upload started is beginning, four times in a row without waiting for the page
        # (before ui/upload_fix.py, about one such B in four never reached its uploader).
        for name in ("s2", "s1", "main", "s2"):
            both = pairs[name]
            _set_file(page, server, "upload_a", 0, both.a)
            page.wait_for_timeout(300)
            _set_file(page, server, "upload_b", 1, both.b)
            for key, index, path in (("upload_a", 0, both.a), ("upload_b", 1, both.b)):
                _wait_listed(page, server, key, index, path)
        last = pairs["s2"]
        state = _wait_result(page, server, other_than=replaced.caption)
        deadline = time.monotonic() + RESULT_WAIT_S
        while not _same_distance(state.caption, last.cli_distance) and (
                time.monotonic() < deadline):  # it settled on an earlier pair: wait on
            state = _wait_result(page, server, other_than=state.caption)
        assert _same_distance(state.caption, last.cli_distance), _describe(
            page, server, f"after four pairs dropped mid-run the page shows distance = "
                          f"{state.caption}, the CLI {last.cli_distance:.6f} for the last", state)

        _full_page_screenshot(page, [ARTIFACTS / "browser_explain.png",
                                     tmp_path / "browser_explain.png"])
        assert (ARTIFACTS / "browser_explain.png").stat().st_size > 10_000
    finally:
        context.close()


def _wait_idle_shown(page: Any, server: Server, selector: str) -> None:
    """Wait until the run is over and ``selector`` is shown (presentation mode has no
    distance caption to wait for)."""
    deadline = time.monotonic() + RESULT_WAIT_S
    while time.monotonic() < deadline:
        state = _read(page)
        assert not state.exceptions and not state.errors, _describe(
            page, server, "the app shows an exception or an error", state)
        body = page.inner_text("body")
        # Presentation mode drops the run-state line once ready: nothing may still compute.
        busy = any(w in body for w in ("Computing", "Starting", "computing..."))
        if state.idle and page.locator(selector).count() and not busy:
            return
        time.sleep(POLL_S)
    raise AssertionError(_describe(page, server, f"{selector} never settled"))


def _choose(page: Any, server: Server, key: str, option: re.Pattern, typed: str) -> None:
    """Pick an option of the selectbox ``key`` as a person would: open it, type ``typed``
    (the list draws only the options in view; typing filters it), click the option. A list
    that did not open (the page was busy) is opened again."""
    box = page.locator(f".st-key-{key} input").first
    for _ in range(3):
        _wait_idle(page, server)
        box.click()
        page.keyboard.type(typed)
        choice = page.get_by_role("option", name=option).first
        try:
            choice.wait_for(state="visible", timeout=5_000)
        except Exception:
            box.press("Escape")
            continue
        choice.click()
        return
    raise AssertionError(_describe(page, server, f"the {key} list never offered {option}"))


def test_presentation_mode_and_a_copied_link(server: Server, browser: Any) -> None:
    contexts = []
    try:
        # ?present=1: no sidebar, the verdict on the first screen.
        ctx = browser.new_context(viewport=FIRST_SCREEN)
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto(f"{server.url}/?present=1", wait_until="domcontentloaded", timeout=60_000)
        _wait_idle_shown(page, server, ".lx-distance")
        sidebar = page.locator('[data-testid="stSidebar"]')
        assert sidebar.count() == 0 or not sidebar.first.is_visible(), _describe(
            page, server, "?present=1 still shows the sidebar")
        assert _in_first_screen(page, page.locator(".lx-distance"))
        # The whole verdict card (repair thumbnail included) above the fold at 1280x720.
        card_bottom = page.evaluate(
            "() => { let e = document.querySelector('.lx-distance');"
            " while (e && getComputedStyle(e).borderTopStyle === 'none') e = e.parentElement;"
            " return e ? e.getBoundingClientRect().bottom : null; }")
        assert card_bottom is not None and card_bottom <= FIRST_SCREEN["height"], _describe(
            page, server, f"the card is cut at the fold (its bottom at {card_bottom} px)")
        body = page.inner_text("body")
        assert not CAPTION_RE.search(body)  # captions hidden
        # The card and the large swipe view only: no engineering panel, no run-state line.
        assert "Compare A and B" in body
        for panel in ("Layer by layer", "Top channels", "What changes the distance",
                      "Downloads", "Glossary", "Ready"):
            assert panel not in body, _describe(page, server, f"{panel!r} in presentation")
        assert page.locator(".lx-trunk-line").count() == 1  # the trunk's state, one line
        page.screenshot(path=str(ARTIFACTS / "browser_present.png"))

        # Choose another sample, copy the address, open it elsewhere: same sample, same numbers.
        ctx = browser.new_context(viewport=FIRST_SCREEN)
        contexts.append(ctx)
        page = ctx.new_page()
        first = _open(page, server)
        _choose(page, server, "sample_pair", re.compile(r"^Coffee: Gaussian blur"),
                "Coffee: Gaussian")
        chosen = _wait_result(page, server, other_than=first.caption)
        url = page.url
        assert "sample=coffee_blur" in url, url
        ctx = browser.new_context(viewport=FIRST_SCREEN)
        contexts.append(ctx)
        again = ctx.new_page()
        again.goto(url, wait_until="domcontentloaded", timeout=60_000)
        reopened = _wait_result(again, server)
        assert reopened.caption == chosen.caption, _describe(
            again, server, f"the copied link shows {reopened.caption}, the page it was copied "
                           f"from {chosen.caption}")
        shown = again.locator(".st-key-sample_pair input").first.input_value()
        assert shown.startswith("Coffee: Gaussian blur"), shown
    finally:
        for ctx in contexts:
            ctx.close()


def test_two_sessions_keep_their_own_results(server: Server, browser: Any,
                                             pairs: dict[str, ImagePair]) -> None:
    sessions = {name: browser.new_context(viewport={"width": 1400, "height": 1000})
                for name in ("s1", "s2")}
    try:
        pages = {name: ctx.new_page() for name, ctx in sessions.items()}
        for page in pages.values():
            page.goto(server.url, wait_until="domcontentloaded", timeout=60_000)
        samples = {name: _wait_result(page, server) for name, page in pages.items()}
        # Interleave the sessions (A, A, then B, B) so that both compute at the same time;
        # within a session, B follows once A is listed, as a person would do it.
        for key, index in (("upload_a", 0), ("upload_b", 1)):
            for name, page in pages.items():
                path = pairs[name].a if index == 0 else pairs[name].b
                _set_file(page, server, key, index, path)
            for name, page in pages.items():
                path = pairs[name].a if index == 0 else pairs[name].b
                _wait_listed(page, server, key, index, path)
            if index == 0:
                for page in pages.values():
                    _wait_idle(page, server)

        shown = {name: _wait_result(page, server, other_than=samples[name].caption).caption
                 for name, page in pages.items()}
        # Read both once more after both settled: a late result must not land in the other.
        for name, page in pages.items():
            state = _read(page)
            assert state.caption == shown[name] and state.idle, _describe(
                page, server, f"session {name} changed after settling: {shown[name]} -> "
                              f"{state.caption}", state)
            assert _same_distance(state.caption, pairs[name].cli_distance), _describe(
                page, server, f"session {name} shows distance = {state.caption}, the CLI for "
                              f"its pair {pairs[name].cli_distance:.6f}; all pairs: "
                              f"{[f'{p.cli_distance:.6f}' for p in pairs.values()]}",
                state)
            other = "s2" if name == "s1" else "s1"
            body = page.inner_text("body")
            assert pairs[other].a.name not in body and pairs[other].b.name not in body, \
                _describe(page, server, f"session {name} shows session {other}'s file names",
                          state)
        assert shown["s1"] != shown["s2"]
    finally:
        for ctx in sessions.values():
            ctx.close()

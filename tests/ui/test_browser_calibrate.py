"""End to end in Debian's chromium: the Calibrate page trains the lin heads on the bundled
sample (synthetic judgments) with the default recipe (chosen from the data), and shows the
same held-out scores as the CLI on the same files. Reuses the server, browser and page helpers of test_browser.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import REPO
from test_browser import (  # noqa: F401 - fixtures are used by name
    ARTIFACTS,
    POLL_S,
    RESULT_WAIT_S,
    Server,
    _describe,
    _env,
    _full_page_screenshot,
    _read,
    _wait_charts,
    browser,
    chromium_path,
    server,
    wait_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

SCORES = re.compile(r"held-out 2AFC before = ([\d.]+), after = ([\d.]+)")
SAMPLE = REPO / "assets" / "judgments" / "synthetic_judgments.csv"


def _wait_text(page: Any, server: Server,  # noqa: F811 - the fixture name, as a parameter
               pattern: re.Pattern | str) -> re.Match | str:
    return wait_text(page, server, pattern, "Calibrate")


def _set_number(page: Any, server: Server, label: str, value: str) -> None:  # noqa: F811
    """Type ``value`` into a number input and wait until the app has taken it: a rerun that
    re-renders the inputs while typing can drop a keystroke, so the value is read back after
    the app is idle (an input the server did not take is re-rendered with its old value)."""
    box = page.get_by_label(label)
    for _ in range(5):
        box.fill(value)
        box.press("Enter")
        time.sleep(2 * POLL_S)
        _wait_text(page, server, "Train the heads")
        if box.input_value() == value:
            return
    raise AssertionError(_describe(page, server, f"{label!r} did not take {value!r}"))


def test_calibrate_page_trains_like_the_cli(server: Server, browser: Any,  # noqa: F811
                                            tmp_path) -> None:
    cli = subprocess.run([sys.executable, "-m", "lpips_explain", "calibrate", str(SAMPLE),
                          "--out", str(tmp_path / "cal"), "--backbone-weights", "random",
                          "--json", "--quiet"], cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=RESULT_WAIT_S)
    assert cli.returncode == 0, cli.stderr[-3000:]
    expected = json.loads(cli.stdout)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/Calibrate", wait_until="domcontentloaded", timeout=60_000)
        _wait_text(page, server, "36 of 36 judged triplets readable")
        assert "SYNTHETIC judgments" in page.inner_text("body")
        page.get_by_role("button", name="Train the heads").click()
        found = _wait_text(page, server, SCORES)
        shown = (found.group(1), found.group(2))
        assert shown == (f"{expected['before']['val_2afc']:.3f}",
                         f"{expected['after']['val_2afc']:.3f}"), _describe(
            page, server, f"the page shows {shown}, the CLI {expected['before']['val_2afc']}, "
                          f"{expected['after']['val_2afc']}")
        state = _wait_charts(page, server, 3)  # curves, weights, domain gap
        assert state.exceptions == 0 and not state.errors
        body = page.inner_text("body")
        for heading in ("Before and after", "Per-layer weight changes", "The heads",
                        "Domain gap"):
            assert heading in body, _describe(page, server, f"no {heading!r} section")
        _full_page_screenshot(page, [ARTIFACTS / "browser_calibrate.png"])
    finally:
        context.close()


def test_cancel_keeps_the_best_heads_so_far(server: Server, browser: Any) -> None:  # noqa: F811
    """Cancel during a long training stops it after the current step and keeps the best heads
    so far (by held-out 2AFC), as the CLI and the API do; the page shows them."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/Calibrate", wait_until="domcontentloaded", timeout=60_000)
        _wait_text(page, server, "36 of 36 judged triplets readable")
        page.get_by_text("Training settings (defaults: chosen from the data)").click()
        for label, value in (("Epochs at the base rate", "5000"),
                             ("Early stopping patience (0: never)", "0")):
            _set_number(page, server, label, value)
        page.get_by_role("button", name="Train the heads").click()
        live = page.get_by_text(re.compile(r"Live: epoch [2-9]\d* of \d{4,} ")).first
        live.wait_for(timeout=RESULT_WAIT_S * 1000)
        total = int(re.search(r"of (\d+)", live.text_content())[1])  # an SVG title
        page.get_by_role("button", name="Cancel").click()
        found = _wait_text(page, server, re.compile(
            r"Training cancelled after epoch (\d+); the (?:heads of epoch (\d+)|starting heads)"))
        stopped, best = int(found.group(1)), int(found.group(2) or 0)
        assert 2 <= stopped < total and 0 <= best <= stopped, (found.group(0), total)
        _wait_text(page, server, SCORES)
        body = page.inner_text("body")
        assert "Before and after" in body and f"{best} of {stopped + 1}" in body, _describe(
            page, server, "the kept heads are not shown after Cancel")
        page.screenshot(path=str(ARTIFACTS / "browser_calibrate_cancel.png"))
    finally:
        context.close()

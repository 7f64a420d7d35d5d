"""End to end in Debian's chromium: the Calibrate page trains the lin heads on the bundled
sample (synthetic judgments) with the official recipe, and shows the same held-out scores
as the CLI on the same files. Reuses the server, browser and page helpers of test_browser.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
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

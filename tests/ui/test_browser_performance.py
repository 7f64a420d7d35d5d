"""The Performance page in the real server and Debian's chromium: its plots are drawn.

Reuses the server and browser of tests/ui/test_browser.py (one of each for all browser files).
"""

from __future__ import annotations

from typing import Any

import pytest
import test_browser
from test_browser import Server, _describe, _read, _wait_charts

# The fixtures of test_browser.py, under their names here (pytest finds them by name).
chromium_path = test_browser.chromium_path
server = test_browser.server
browser = test_browser.browser

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_performance_page_draws_its_plots(server: Server, browser: Any):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server.url}/Performance", wait_until="domcontentloaded")
        state = _wait_charts(page, server, n=3, timeout=180.0)
        assert not state.exceptions and not state.errors, _describe(page, server, "errors", state)
        text = page.inner_text("body")
        assert "Latency per candidate" in text and "Peak memory" in text, _describe(
            page, server, "plot titles missing", _read(page))
        assert "Fidelity against exact" in text
    finally:
        page.close()

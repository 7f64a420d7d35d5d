"""End to end in Debian's chromium: the Audit page audits the bundled sample pairs, and its
"Open on the Explain page" button hands the selected row to the Explain page, which shows
the same distance. Reuses the server, browser and page helpers of test_browser.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
import test_browser
from test_browser import (
    ARTIFACTS,
    Server,
    _describe,
    _full_page_screenshot,
    _wait_charts,
    _wait_result,
    wait_text,
)

# The fixtures of test_browser.py, under their names here (pytest finds them by name).
chromium_path = test_browser.chromium_path
server = test_browser.server
browser = test_browser.browser

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

ROW_CAPTION = re.compile(r"distance = (\d+\.\d{6}); PSNR")
COUNTS = "36 rows: 36 scored, 0 failed."


def _wait_text(page: Any, server: Server, pattern: re.Pattern | str) -> re.Match | str:
    return wait_text(page, server, pattern, "Audit")


def test_audit_page_opens_a_row_on_the_explain_page(server: Server, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/Audit", wait_until="domcontentloaded", timeout=60_000)
        _wait_text(page, server, COUNTS)
        _wait_charts(page, server, 2)  # the disagreement plot and the row's layers
        assert page.locator('[data-testid="stDataFrame"]').count() >= 1
        row = _wait_text(page, server, ROW_CAPTION)
        audited = row.group(1)
        _full_page_screenshot(page, [ARTIFACTS / "browser_audit.png"])

        page.get_by_role("button", name="Open on the Explain page").click()
        state = _wait_result(page, server)
        assert state.caption == audited, _describe(
            page, server, f"the Explain page shows distance = {state.caption}, the Audit "
                          f"page's row said {audited}", state)
        assert "/Audit" not in page.url
        assert "uploaded earlier" in page.inner_text("body")
    finally:
        context.close()

"""AppTest of the Performance page: stored profile plots, the modes table, a live profile, and the
approximate label when the sidebar's precision is not exact."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, run_state
from streamlit.testing.v1 import AppTest

from lpips_explain.core import modes
from lpips_explain.core.profiling import size_inversions
from lpips_explain.ui import keys, performance

TIMEOUT = 300
pytestmark = [pytest.mark.app, pytest.mark.usefixtures("random_trunk_env")]


def page() -> AppTest:
    return AppTest.from_file(str(REPO / "pages" / "4_Performance.py"), default_timeout=TIMEOUT)


def charts(at: AppTest) -> list:
    return [e for e in at.get("plotly_chart")]


def _stored_copy(tmp_path, monkeypatch, *, invert: bool) -> dict:
    """The stored profile's rows, written to a file the page reads instead: sizes whose
    times do not grow left out (``invert=False``), or the largest fp32 size made faster
    than the one below it (``invert=True``)."""
    stored = performance.stored_profile()
    assert stored is not None, f"{performance.STORED} is missing (lpips-explain profile --json)"
    rows = stored["rows"]
    if invert:
        fp32 = sorted((r for r in rows if r["precision"] == "fp32"), key=lambda r: r["size"])
        fp32[-1]["latency_ms"] = 0.9 * fp32[-2]["latency_ms"]
        assert size_inversions(rows)
    else:
        while (bad := size_inversions(rows)):
            rows = [r for r in rows if r["size"] < max(i["large"] for i in bad)]
        assert rows
    data = {**stored, "rows": rows}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(performance, "STORED", path)
    return data


def test_stored_profile_is_plotted_with_its_machine(tmp_path, monkeypatch):
    stored = _stored_copy(tmp_path, monkeypatch, invert=False)
    at = page().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    figs = [json.loads(c.proto.spec) for c in charts(at)]
    titles = [f["layout"]["title"]["text"] for f in figs]
    assert any(t.startswith("Latency per candidate") for t in titles)
    assert any(t.startswith("Peak memory") for t in titles)
    assert any(t.startswith("Fidelity against exact") for t in titles) == bool(stored["fidelity"])
    # The plotted points are the stored numbers (per-image latency of the first series).
    lat = next(f for f in figs if f["layout"]["title"]["text"].startswith("Latency"))
    first = lat["data"][0]
    rows = [r for r in stored["rows"] if f"{r['net']} {r['precision']}" in first["name"]]
    want = sorted((r["size"], r["batch_ms"] / r["batch"]) for r in rows
                  if r["device"] == "cpu")
    assert list(first["x"]) == [s for s, _ in want]
    assert list(first["y"]) == pytest.approx([v for _, v in want], rel=1e-9)
    caption = next(c.value for c in at.caption if stored["machine"]["cpu"] in c.value)
    assert "measured" in caption and "load" in caption  # when, and under what load
    assert not any("do not grow" in w.value for w in at.warning)


def test_stored_profile_whose_times_do_not_grow_is_refused(tmp_path, monkeypatch):
    stored = _stored_copy(tmp_path, monkeypatch, invert=True)
    at = page().run()
    assert not at.exception and not at.error
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts(at)]
    assert not any(t.startswith("Latency per candidate") for t in titles)  # not drawn
    warning = next(w.value for w in at.warning if "Not shown" in w.value)
    big = max(r["size"] for r in stored["rows"])
    assert f"fp32, a pair: {big} px took" in warning
    assert stored["machine"]["cpu"] in warning and "load" in warning


def test_live_profile_runs_and_is_labelled():
    at = page().run()
    parts = ("modes", "stored profile", "live profile")
    assert ":gray[:material/remove_circle_outline: live profile]" in run_state(at, *parts)
    at.multiselect(key=performance.LIVE_PRECISIONS).set_value(["fp32"])
    at.multiselect(key=performance.LIVE_SIZES).set_value([48])
    at.button(key=performance.RUN_BUTTON).click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    live = at.session_state[performance.LIVE]
    assert [(r["size"], r["precision"], r["exact"]) for r in live["rows"]] == [(48, "fp32", True)]
    assert live["rows"][0]["latency_ms"] > 0
    assert any("live profile on this server" in c.value for c in at.caption)
    state = run_state(at, *parts)
    assert state.startswith("**Ready**") and ":green[:material/check_circle: live profile]" in state


def test_approximate_precision_is_labelled_on_the_page():
    if modes.available_modes("cpu")["bf16"]:
        pytest.skip(modes.available_modes("cpu")["bf16"])
    at = page()
    at.session_state[keys.PRECISION] = "bf16"
    at.run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    assert any("Approximate (bf16)" in w.value for w in at.warning)

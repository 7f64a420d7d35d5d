"""The Diagnostics page's renderers: input anomalies, live self-checks, weights, robust scoring."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from lpips_explain import notices
from lpips_explain.analyses.robust import FALLBACKS, demo_pairs
from lpips_explain.core.trunks import TRUNKS
from lpips_explain.core.weights import BACKBONE_ENV, imagenet_cache_path
from lpips_explain.ui import keys
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.render import plain
from lpips_explain.ui.state import persistent

FALLBACK_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM"}


@panel("the input report")
def anomalies_panel(rows: list[dict], warnings: tuple[str, ...]) -> None:
    st.subheader("Input anomalies")
    table = pd.DataFrame([{**r, "warnings": " ".join(r["warnings"]) or "none"} for r in rows])
    st.dataframe(table, hide_index=True, key="diag_input_table")
    flagged = [w for r in rows for w in r["warnings"]]
    if flagged:
        for w in flagged:
            st.warning(w, icon="⚠️")
    else:
        st.success("No anomalies: both images decoded as RGB, finite, non-constant and compared "
                   "at their own size." if not any(r["resized_or_cropped"] for r in rows)
                   else "No anomalies besides the size alignment noted in the table.")
    other = [w for w in notices.without(warnings, notices.RANDOM_TRUNK, notices.IMAGE,
                                         notices.ALIGNMENT) if w not in flagged]
    for w in other:
        st.info(w)


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3g}" if math.isfinite(v) else str(v)


@panel("the self-checks")
def checks_panel(checks: list[Any]) -> None:
    st.subheader("Self-checks (run live on this pair)")
    passed = sum(c.passed for c in checks)
    msg = f"{passed} of {len(checks)} self-checks passed."
    (st.success if passed == len(checks) else st.error)(msg)
    for c in checks:
        icon = ":green[:material/check_circle:] pass" if c.passed else ":red[:material/cancel:] FAIL"
        st.markdown(f"{icon} **{c.name}** (measured {_fmt(c.value)}, tolerance "
                    f"{_fmt(c.tolerance)})  \n{c.detail}")


@panel("the weights check")
def weights_panel(explainer: Any) -> None:
    st.subheader("Weights")
    info = explainer.weights_info
    (st.success if info.perceptual else st.warning)(
        f"Trunk: {info.source}. " + ("A perceptual metric." if info.perceptual else
                                     "Not a perceptual metric (random trunk)."))
    st.markdown(f"Lin heads: `{explainer.model.lin_file}` (version {explainer.version}); the "
                f"'lin weights' self-check above compares them with the file.")
    rows = []
    for net in TRUNKS:
        path = imagenet_cache_path(net)
        rows.append({"trunk": net, "ImageNet weights file": str(path),
                     "cached here": "yes" if path.is_file() else "no"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="diag_weights_table")
    st.caption(f"Missing files can be placed at these paths (the folder follows TORCH_HOME), or "
               f"named with {BACKBONE_ENV}=/path/to/file.pth.")


def robust_heading() -> None:
    st.subheader("Robust scoring demo")
    st.caption("The current pair plus built-in problem cases (too small, corrupt, empty, "
               "constant, NaN). LPIPS either scores a pair or refuses it with a reason; a "
               "different metric is reported beside it, never in its place.")


def fallback_picker() -> str:
    return persistent(st.radio, "Metric reported beside LPIPS", list(FALLBACKS),
                      key=keys.DIAG_FALLBACK, default=FALLBACKS[0], choices=FALLBACKS,
                      horizontal=True, format_func=FALLBACK_LABELS.__getitem__)


def demo_cases(pair: Any) -> list[tuple[str, Any, Any]]:
    """The engine's demo cases for the current pair, whose first case (the pair itself) is
    named as the person knows it: the sample's title or the uploaded files' names."""
    cases = demo_pairs(pair.a.data, pair.b.data)
    if pair.origin == "upload":
        label = f"the current pair: {pair.a.name} vs {pair.b.name}"
    else:
        label = f"the current pair ({pair.origin.removeprefix('sample: ')}): A vs B"
    return [(label, pair.a.source(), pair.b.source()), *cases[1:]]


def _readable(message: str | None) -> str:
    # Cases built in memory have no file name: the engine calls them "<bytes>".
    return (message or "").replace(" (<bytes>)", "")


def _fallback_note(item: Any, value: float | None) -> str:
    if item.fallback_error:
        # An image that cannot be decoded stops both metrics: say it once.
        return ("the same reason" if item.fallback_error == item.refused
                else _readable(item.fallback_error))
    return "infinite (identical images)" if value is not None and math.isinf(value) else ""


@panel("the robust scores")
def robust_panel(report: Any) -> None:
    name = FALLBACK_LABELS.get(report.fallback_name, report.fallback_name)
    c1, c2, c3 = st.columns(3)
    c1.metric("Pairs", len(report.items))
    c2.metric("LPIPS scored", report.successes)
    c3.metric("LPIPS refused", report.refusals)
    rows = []
    for it in report.items:
        fb = it.fallback
        rows.append({
            "pair": plain(it.label),
            # None where LPIPS refused: never filled in from the other metric.
            "LPIPS": it.lpips,
            "LPIPS status": "scored" if it.lpips is not None else "refused",
            f"{name}: a different metric": (None if fb is None or not math.isfinite(fb)
                                            else fb),
            "LPIPS refused because": plain(_readable(it.refused)),
            f"{name} note": plain(_fallback_note(it, fb)),
        })
    # A static table: long refusal messages wrap instead of being clipped.
    table = pd.DataFrame(rows)
    other = "{:.2f}" if report.fallback_name == "psnr" else "{:.4f}"
    st.table(table.style.format({"LPIPS": "{:.4f}", f"{name}: a different metric": other},
                                na_rep="none"), hide_index=True)
    st.info(report.note)

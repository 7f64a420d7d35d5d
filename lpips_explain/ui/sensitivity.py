"""The Sensitivity page's controls, the engine calls behind it, and its renderers.

Roles come from the result: the page's breakdown part (an Explanation) says which image is
the reference and which one is explained (perturbed); nothing here works that out again."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from lpips_explain.analyses.pair.perturbations import PERTURBATIONS
from lpips_explain.analyses.pair.sensitivity import Sweep, sensitivity
from lpips_explain.analyses.pair.summary import perturbation_words
from lpips_explain.output import figures as plots
from lpips_explain.ui import keys
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.state import persistent
from lpips_explain.ui.widgets import chart, note, plain, table, term

DEFAULT_TRANSFORMS = ("gaussian_blur", "gaussian_noise", "jpeg", "brightness")
DEFAULT_POINTS = 7


# --- controls --------------------------------------------------------------------------------


def _default_range(name: str) -> tuple[float, float]:
    p = PERTURBATIONS[name]
    lo, hi = sorted((float(p.identity), float(p.far_end())))
    return lo, hi


def sweep_controls(target: str = "B") -> tuple[list[str], dict[str, tuple[float, float]], int]:
    """Transforms (multiselect), one range slider per transform, and the number of points."""
    chosen = persistent(st.multiselect, f"Perturbations of {target}", list(PERTURBATIONS),
                        key=keys.SENS_TRANSFORMS, default=list(DEFAULT_TRANSFORMS),
                        format_func=lambda n: PERTURBATIONS[n].label)
    points = int(persistent(st.slider, "Points per sweep", 2, 21, key=keys.SENS_POINTS,
                            default=DEFAULT_POINTS))
    ranges: dict[str, tuple[float, float]] = {}
    cols = st.columns(2)
    for i, name in enumerate(chosen):
        p = PERTURBATIONS[name]
        lo, hi = float(p.range[0]), float(p.range[1])
        step = 1.0 if p.integer else round((hi - lo) / 100, 6)
        value = persistent(cols[i % 2].slider, f"{p.label} ({p.unit})", lo, hi, step=step,
                           key=keys.SENS_RANGE_PREFIX + name, default=_default_range(name),
                           help=f"{p.description} No change at {p.identity:g}.")
        ranges[name] = (float(value[0]), float(value[1]))
    return chosen, ranges, points


# --- computations (called through resources.cached) ----------------------------------------------


def sweep_range(explainer: Any, expl: Any, name: str, lo: float, hi: float,
                points: int) -> Sweep:
    """LPIPS, PSNR and SSIM of the reference against the explained image perturbed over
    [lo, hi] (roles read off ``expl``, the page's breakdown of the pair)."""
    sens = sensitivity(explainer.fast, expl.reference, expl.explained, transforms=(),
                       sweep=[name], ranges={name: (lo, hi)}, sweep_points=points,
                       seed=explainer.seed, geometric=False)
    return sens.sweeps[0]


def default_sensitivity(explainer: Any, expl: Any, transforms: list[str], *,
                        progress: Any = None) -> Any:
    """The engine's sensitivity at default strengths, with the geometric table (LPIPS and,
    on the same trunk, ST-LPIPS, or the reason it is missing), no sweeps."""
    second, reason = explainer.geometry_second()
    return sensitivity(explainer.fast, expl.reference, expl.explained, transforms=transforms,
                       sweep=(), seed=explainer.seed, progress=progress, second=second,
                       second_reason=reason, second_cache=explainer.feature_cache)


def colorspaces(explainer: Any, prep: Any) -> list[Any]:
    """The pair rendered in RGB, LAB, HSV and YUV and scored by LPIPS (symmetric in A and B)."""
    return explainer.colorspace_dependence(prep.tensors[0], prep.tensors[1])


# --- renderers -----------------------------------------------------------------------------------


@panel("the distance")
def distance_header(sens: Any, explained: str) -> None:
    col_d, col_m = st.columns([1, 2])
    with col_d:
        st.metric("LPIPS distance", f"{sens.base_distance:.4f}",
                  help=f"d(reference, {explained}) before any perturbation.")
        note(f"distance = {sens.base_distance:.6f}")
    item = sens.largest  # the one answer every page gives (the longest bar of the chart)
    if item is not None:
        col_m.metric(f"Moves the distance most (of the changes tried on {explained})",
                     perturbation_words(item.transform, item.strength),
                     f"{item.change:+.4f} (to {item.distance:.4f})",
                     delta_color="off", delta_arrow="off")


@panel("the sweeps")
def sweeps_panel(sweeps: list[Sweep], explained: str, reference: str) -> None:
    st.subheader("Sweeps: LPIPS beside PSNR and SSIM", help=f"{term('PSNR')} {term('SSIM')}")
    if not sweeps:
        st.info("Choose at least one perturbation above.")
        return
    # Small multiples (one panel per metric): two sweeps side by side.
    for i in range(0, len(sweeps), 2):
        cols = st.columns(2)
        for col, sw in zip(cols, sweeps[i:i + 2], strict=False):
            chart(plots.sweep_figure(sw), f"sens_sweep_{sw.transform}", container=col)
    note(f"Every marker is a real evaluation of {explained} perturbed at that strength; "
         f"PSNR has a gap where the perturbed image equals {reference} exactly (infinite "
         f"PSNR).")
    rows = [{"perturbation": sw.label, "strength": float(s), "unit": sw.unit, "LPIPS": float(d),
             "PSNR (dB)": None if np.isnan(ps) else float(ps), "SSIM": float(ss)}
            for sw in sweeps
            for s, d, ps, ss in zip(sw.strengths, sw.distances, sw.psnr, sw.ssim, strict=True)]
    with st.expander("The numbers"):
        table(rows, "sens_sweep_table",
              formats={"LPIPS": "%.4f", "PSNR (dB)": "%.2f", "SSIM": "%.4f"})


def geometric_rows(sens: Any, explained: str) -> list[dict]:
    """The geometric table's rows: LPIPS and, side by side, ST-LPIPS on the same trunk
    (when it ran), then PSNR and SSIM."""
    sec = sens.geometric_second
    rows = []
    for k, it in enumerate(sens.geometric):
        row: dict[str, Any] = {f"perturbation of {explained}": it.label,
                               "strength": it.strength, "unit": it.unit,
                               "LPIPS": it.distance, "LPIPS change": it.change}
        if sec is not None and sec.ok:
            row[f"ST-LPIPS ({sec.net})"] = sec.distances[k]
            row["ST-LPIPS change"] = sec.change(k)
        row.update({"PSNR (dB)": it.psnr, "SSIM": it.ssim})
        rows.append(row)
    return rows


def geometric_table(sens: Any, explained: str, key: str, container: Any = None) -> None:
    """The geometric table (LPIPS beside ST-LPIPS), the comparison sentence when the numbers
    support one, else why ST-LPIPS is missing."""
    where = container or st
    sec = sens.geometric_second
    formats = {"LPIPS": "%.4f", "LPIPS change": "%+.4f", "ST-LPIPS change": "%+.4f",
               "PSNR (dB)": "%.2f", "SSIM": "%.4f"}
    if sec is not None and sec.ok:
        formats[f"ST-LPIPS ({sec.net})"] = "%.4f"
    table(geometric_rows(sens, explained), key, container=where, formats=formats)
    if sec is None:
        return
    if not sec.ok:
        note(f"LPIPS alone: ST-LPIPS was not computed. {sec.reason}", where)
        return
    sentence = sens.geometric_comparison(explained)
    if sentence:
        where.markdown(sentence)
    note(f"ST-LPIPS (Ghildyal and Liu 2022) is LPIPS on an anti-aliased, shift-tolerant "
         f"{sec.net} trunk; each metric on its own scale (ST-LPIPS({explained} as given) = "
         f"{sec.base_distance:.4f}, LPIPS = {sens.base_distance:.4f}).", where)


@panel("the geometric sensitivity")
def geometric_panel(sens: Any, explained: str) -> None:
    st.subheader("Default strengths and geometric sensitivity")
    chart(plots.sensitivity_bars(sens, explained=explained), "sens_bars")
    st.markdown(f"**Rotation, shift and zoom of {explained}: LPIPS beside ST-LPIPS**")
    geometric_table(sens, explained, "sens_geometric_table")


@panel("the colour spaces")
def colorspace_panel(rows: list[Any]) -> None:
    st.subheader("Colour-space dependence")
    note("LPIPS was trained on sRGB. Here the same pair is converted to another colour "
         "space and its channels are fed to LPIPS as if they were R, G and B, which is "
         "what happens when non-RGB arrays reach the metric by mistake.")
    # A static table: the descriptions wrap instead of being clipped.
    frame = pd.DataFrame([{"space": r.space.upper(), "LPIPS": r.distance,
                           "change vs RGB": r.change, "what LPIPS sees": plain(r.description)}
                          for r in rows])
    st.table(frame.style.format({"LPIPS": "{:.4f}", "change vs RGB": "{:+.4f}"}),
             hide_index=True)
    cols = st.columns(len(rows))
    for col, r in zip(cols, rows, strict=True):
        col.image(r.image_a, caption=f"A as {r.space.upper()}", width="stretch")
        col.image(r.image_b, caption=f"B as {r.space.upper()} (d = {r.distance:.4f})",
                  width="stretch")

"""Charts of an explanation's numbers: the layer waterfall, the sensitivity bars and
sweeps, the repair curve, the triplet's margins."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lpips_explain.analyses.pair.perturbations import strength_text
from lpips_explain.analyses.pair.repair import Repair
from lpips_explain.analyses.pair.sensitivity import Sensitivity, SensitivityItem
from lpips_explain.core.decompose import Decomposition
from lpips_explain.output.figures.common import (
    BELOW_LEGEND,
    finite_list,
    fmt,
    legend_entry,
    set_caption,
)
from lpips_explain.output.imaging import (
    size_text,
)
from lpips_explain.output.palette import (
    CANDIDATE_A,
    CANDIDATE_B,
    DISTANCE,
    DISTANCE_TOTAL,
    FAVOUR_A,
    FAVOUR_B,
    GUIDE,
    LOWERS,
    NEUTRAL,
    PSNR_COLOR,
    RAISES,
    SSIM_COLOR,
)

# --------------------------------------------------------------------------- plotly


def layer_waterfall(dec: Decomposition) -> go.Figure:
    """A waterfall of per-layer distances that ends in a total bar equal to the distance."""
    names = [lay.name for lay in dec.layers]
    dists = [float(lay.distance) for lay in dec.layers]
    custom = [[lay.share * 100, size_text(lay.resolution),
               f"tap {lay.index + 1} of {len(dec.layers)}"] for lay in dec.layers]
    custom.append([100.0 if dec.distance > 0 else 0.0, f"{size_text(dec.size)} (image)",
                   "all layers"])
    fig = go.Figure(go.Waterfall(
        x=[*names, "total"], y=[*dists, float(dec.distance)],
        measure=["relative"] * len(names) + ["total"],
        text=[f"{d:.4f}" for d in [*dists, dec.distance]], textposition="outside",
        customdata=custom,
        hovertemplate=("%{x}: %{y:.6f}<br>share %{customdata[0]:.1f}%<br>"
                       "resolution %{customdata[1]}<br>%{customdata[2]}<extra></extra>"),
        connector={"line": {"color": GUIDE, "dash": "dot"}},
        increasing={"marker": {"color": DISTANCE}}, totals={"marker": {"color": DISTANCE_TOTAL}},
        decreasing={"marker": {"color": LOWERS}},
    ))
    fig.update_layout(
        title=(f"Per-layer terms add up exactly to the distance {dec.distance:.4f} "
               f"(LPIPS {dec.net}, v{dec.version})"),
        xaxis_title="layer (shallow to deep)", yaxis_title="LPIPS distance", showlegend=False,
        height=380, margin={"t": 50, "b": 40})
    fig.update_yaxes(rangemode="tozero")
    return fig


def sensitivity_rows(sens: Sensitivity) -> list[tuple[str, SensitivityItem]]:
    rows = [("default", it) for it in sens.items]
    rows += [("geometric", it) for it in sens.geometric]
    return rows


def sensitivity_bars(sens: Sensitivity, *, explained: str = "B") -> go.Figure:
    """Horizontal bars of the change in distance for each perturbation of the explained image:
    red raises the distance, blue lowers it; rows of the geometric table are hatched.

    A geometric-table row that repeats a default-strength row (same transform and strength)
    is drawn once.
    """
    seen = {(it.transform, float(it.strength)) for g, it in sensitivity_rows(sens)
            if g != "geometric"}
    rows = [(g, it) for g, it in sensitivity_rows(sens)
            if g != "geometric" or (it.transform, float(it.strength)) not in seen]
    labels: list[str] = []
    for _group, it in rows:
        lab = f"{it.label}, {strength_text(it.unit, it.strength)}"
        while lab in labels:
            lab += " "
        labels.append(lab)
    changes = [float(it.change) for _, it in rows]
    colors = [RAISES if ch >= 0 else LOWERS for ch in changes]
    patterns = ["/" if group == "geometric" else "" for group, _ in rows]
    custom = [[float(it.distance), fmt(it.psnr, ".2f"), fmt(it.ssim, ".4f"), group]
              for group, it in rows]
    fig = go.Figure(go.Bar(
        x=changes, y=labels, orientation="h", marker_color=colors,
        marker_pattern={"shape": patterns, "fgcolor": "#ffffff", "fillmode": "overlay"},
        customdata=custom, showlegend=False,
        hovertemplate=("%{y}<br>change %{x:+.4f}<br>distance %{customdata[0]:.4f}<br>"
                       "PSNR %{customdata[1]} dB, SSIM %{customdata[2]}<br>"
                       "%{customdata[3]}<extra></extra>"),
    ))
    legend_entry(fig, "raises the distance", RAISES, kind="bar")
    legend_entry(fig, "lowers the distance", LOWERS, kind="bar")
    if any(patterns):
        legend_entry(fig, "rotation or shift (geometric)", "#888888", kind="bar", pattern="/")
    fig.update_yaxes(autorange="reversed", title=None, automargin=True)
    fig.update_xaxes(title=f"change in LPIPS distance vs unperturbed {explained}", zeroline=True,
                     zerolinecolor="#444")
    from lpips_explain.analyses.pair.summary import perturbation_words

    most = sens.largest  # the one answer every page gives (the longest bar here)
    # The legend sits between the title and the bars: below them it ran into the x axis's
    # title.
    fig.update_layout(
        title=(f"Perturbing {explained}: change in distance from the base "
               f"{sens.base_distance:.4f}"
               + (f" (moves it most: {perturbation_words(most.transform, most.strength)})"
                  if most is not None else "")),
        height=max(320, 26 * len(rows) + 190), margin={"l": 10, "t": 100, "b": 60},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "xanchor": "left",
                "x": 0}, barmode="overlay")
    return fig


def sweep_figure(sweep: Any) -> go.Figure:
    """Small multiples sharing the strength axis: LPIPS, PSNR and SSIM, each with its own
    y axis (no twin axes); every marker is a real evaluation."""
    x = [float(s) for s in np.asarray(sweep.strengths, dtype=np.float64)]
    unit = f" ({sweep.unit})" if sweep.unit else ""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        row_heights=[0.46, 0.27, 0.27])
    for row, (name, values, color) in enumerate((
            ("LPIPS distance", sweep.distances, DISTANCE),
            ("PSNR (dB)", sweep.psnr, PSNR_COLOR),
            ("SSIM", sweep.ssim, SSIM_COLOR)), start=1):
        fig.add_trace(go.Scatter(x=x, y=finite_list(values), name=name, mode="lines+markers",
                                 line_shape="linear", line={"color": color, "width": 2.5},
                                 marker={"size": 7},
                                 hovertemplate=f"strength %{{x:g}}: {name} %{{y:.4g}}"
                                               "<extra></extra>"),
                      row=row, col=1)
        fig.update_yaxes(title={"text": name, "font": {"color": color, "size": 12}},
                         nticks=4, row=row, col=1)
    fig.update_xaxes(title={"text": f"strength{unit}"}, row=3, col=1)
    fig.update_layout(title=f"{sweep.label}: LPIPS, PSNR and SSIM against strength",
                      showlegend=False, height=460, margin={"t": 50, "b": 40})
    return fig


def repair_curve(rep: Repair, *, repaired: str = "B", source: str = "A",
                 threshold: float | None = None, threshold_label: str = "",
                 mark_area: float | None = None, mark_label: str = "",
                 threshold_color: str = DISTANCE_TOTAL) -> go.Figure:
    """Remaining distance against the fraction of area repaired, every point a real evaluation.

    ``repaired`` names the image whose patches are replaced, ``source`` the one they come from.
    ``threshold`` draws a horizontal line (e.g. the rival's distance in a triplet) and
    ``mark_area`` a vertical one (e.g. where the decision flips); ``threshold_color`` follows
    the palette (e.g. the rival candidate's colour). Every line is named in the
    legend below the chart, never by a label on the chart, so no label can cover another.
    """
    area = np.asarray(rep.curve_area, dtype=np.float64)
    dist = np.asarray(rep.curve_distance, dtype=np.float64)
    steps = np.asarray(rep.curve_steps)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=area, y=dist, mode="lines+markers", line_shape="linear",
        name=f"d after repairing {repaired} (each marker evaluated)",
        line={"color": DISTANCE}, marker={"size": 6}, customdata=steps,
        hovertemplate=("%{customdata} patches, %{x:.1%} of the area: "
                       "d = %{y:.4f}<extra></extra>")))
    # The same test as the repair's non_monotonic flag: plot and flag always agree.
    rises = rep.rise_steps()
    if rises:
        xs: list[float | None] = []
        ys: list[float | None] = []
        for j in rises:
            xs += [float(area[j - 1]), float(area[j]), None]
            ys += [float(dist[j - 1]), float(dist[j]), None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line_shape="linear",
                                 name="distance rises (non-monotonic)",
                                 line={"color": RAISES, "width": 4}, hoverinfo="skip"))
    base = float(rep.base_distance)
    fig.add_hline(y=base / 2, line={"dash": "dash", "color": GUIDE})
    legend_entry(fig, f"half the distance ({base / 2:.4f})", GUIDE, dash="dash")
    half = rep.half_area
    if half is not None and math.isfinite(float(half)):
        fig.add_vline(x=float(half), line={"dash": "dot", "color": GUIDE})
        legend_entry(fig, f"half of it lies in {100 * float(half):.1f}% of the area", GUIDE,
                      dash="dot")
    if threshold is not None:
        fig.add_hline(y=float(threshold), line={"dash": "dashdot", "color": threshold_color})
        legend_entry(fig, f"{threshold_label or 'threshold'} ({float(threshold):.4f})",
                      threshold_color, dash="dashdot")
    if mark_area is not None:
        fig.add_vline(x=float(mark_area), line={"color": DISTANCE_TOTAL, "width": 2})
        legend_entry(fig, f"{mark_label or 'marked'} at {100 * float(mark_area):.1f}% of the "
                      f"area", DISTANCE_TOTAL)
    grid = rep.grid
    grid_txt = f" (a grid of {grid[1]} by {grid[0]})" if grid is not None else ""
    order = rep.order_label
    caption = (f"Repair: {repaired}'s {rep.patch} px patches{grid_txt} are replaced by "
               f"{source}'s in this order: {order}; each marker is a real evaluation, lines "
               f"only join them.{' The curve is not monotonic (red).' if rep.non_monotonic else ''}")
    lines = textwrap.wrap(str(rep.headline), 95) or [""]
    fig.update_layout(title={"text": "<br>".join(lines), "font": {"size": 14}},
                      xaxis_title="fraction of the area repaired",
                      yaxis_title="remaining LPIPS distance", height=420 + 18 * len(lines),
                      legend=BELOW_LEGEND, margin={"b": 120, "t": 30 + 20 * len(lines)})
    fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%")
    fig.update_yaxes(rangemode="tozero")
    set_caption(fig, caption)
    return fig


def triplet_margin_chart(tri: Any) -> go.Figure:
    """Per-layer margins d(REF, B) - d(REF, A): purple bars favour A, orange bars favour B."""
    layers = list(tri.layers)
    names = [lay.name for lay in layers] + ["total"]
    margins = [float(lay.margin) for lay in layers] + [float(tri.margin)]
    colors = [FAVOUR_A if m > 0 else FAVOUR_B if m < 0 else NEUTRAL for m in margins]
    favours = ["A" if m > 0 else "B" if m < 0 else "neither" for m in margins]
    fig = go.Figure(go.Bar(
        x=names, y=margins, marker_color=colors, showlegend=False,
        marker_pattern={"shape": [""] * len(layers) + ["/"], "fgcolor": "#ffffff",
                        "fillmode": "overlay"}, customdata=favours,
        text=[f"{m:+.4f}" for m in margins], textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: margin %{y:+.5f}, favours %{customdata}<extra></extra>"))
    legend_entry(fig, "favours A (A closer in this layer)", CANDIDATE_A, kind="bar")
    legend_entry(fig, "favours B", CANDIDATE_B, kind="bar")
    verdict = {"a": "A is closer", "b": "B is closer", "tie": "a tie"}.get(tri.closer, tri.closer)
    fig.add_hline(y=0, line={"color": "#444", "width": 1})
    top = max((abs(m) for m in margins), default=0.0) or 1.0
    fig.update_yaxes(range=[min(0.0, min(margins)) - 0.18 * top,
                            max(0.0, max(margins)) + 0.18 * top])
    fig.update_layout(
        title=f"Per-layer margins d(REF, B) - d(REF, A): total {tri.margin:+.4f} ({verdict})",
        xaxis_title="layer (shallow to deep; the hatched bar is the total)",
        yaxis_title="margin", height=400, legend=BELOW_LEGEND, margin={"b": 110, "t": 50})
    return fig

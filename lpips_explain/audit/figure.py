"""The disagreement plot: LPIPS against SSIM, PSNR or the human judgment, one point per row.

Drawn in audit.html and on the app's Audit page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from lpips_explain.audit.summary import as_floats, row_rank_gaps

__all__ = ["AXES", "disagreement_figure"]

# The disagreement plot's x axis per kind: what LPIPS is set against.
AXES: dict[str, dict[str, str]] = {
    "pairs": {"ssim": "SSIM", "psnr": "PSNR (dB)"},
    "triplets": {"judge": "human judgment (share preferring p1)",
                 "ssim": "SSIM margin (ssim0 - ssim1)", "psnr": "PSNR margin (psnr0 - psnr1)"},
}
_AGREE_COLOURS = {"agrees": "#1b7837", "disagrees": "#c51b7d", "undecided": "#999999"}


def disagreement_figure(kind: str, data: Mapping[str, Sequence[Any]], x: str | None = None,
                        *, highlight: Sequence[str] = ()) -> go.Figure:
    """LPIPS against SSIM, PSNR or the human judgment, one point per scored row.

    Pairs: y is the LPIPS distance, colour the rank gap to the x metric (red: LPIPS finds
    the pair more different than the pixel metric does, blue: less). Triplets: y is the
    LPIPS margin d1 - d0 (positive: p0 closer), colour whether LPIPS agrees with the judges.
    """
    x = x or ("ssim" if kind == "pairs" else "judge")
    if x not in AXES[kind]:
        raise ValueError(f"x must be one of {', '.join(AXES[kind])} for {kind}, got {x!r}")
    ok = [i for i, s in enumerate(data["status"]) if s == "ok"]
    fig = go.Figure()
    points = _pair_points if kind == "pairs" else _triplet_points
    xs_all, ys_all, title = points(fig, data, x, ok)
    marked = [i for i in ok if data["id"][i] in set(highlight)]
    if marked:
        fig.add_trace(go.Scattergl(
            x=[float(xs_all[i]) for i in marked], y=[float(ys_all[i]) for i in marked],
            mode="markers", name="selected", text=[data["id"][i] for i in marked],
            marker={"symbol": "circle-open", "size": 16, "color": "#000", "line": {"width": 2}},
            hovertemplate="%{text} (selected)<extra></extra>"))
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=460,
                      template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def _pair_points(fig: go.Figure, data: Mapping[str, Sequence[Any]], x: str,
                 ok: list[int]) -> tuple[np.ndarray, np.ndarray, str]:
    """The scored pairs, coloured by their rank gap; their x and y values, and the title."""
    kind = "pairs"
    xs_all, ys_all = as_floats(data[x]), as_floats(data["distance"])
    gaps = row_rank_gaps(kind, data, x)
    fig.add_trace(go.Scattergl(
        x=[float(xs_all[i]) for i in ok], y=[float(ys_all[i]) for i in ok], mode="markers",
        text=[data["id"][i] for i in ok], name="rows",
        marker={"color": [0.0 if gaps[i] is None else gaps[i] for i in ok],
                "colorscale": "RdBu_r", "cmin": -1,
                "cmax": 1, "size": 8, "line": {"width": 0.6, "color": "#555"},
                "colorbar": {"title": {"text": f"rank gap<br>LPIPS - {x.upper()}"}}},
        hovertemplate=f"%{{text}}<br>{AXES[kind][x]}: %{{x:.4g}}<br>LPIPS: %{{y:.4f}}"
                      "<br>rank gap: %{marker.color:.2f}<extra></extra>"))
    fig.update_layout(xaxis_title=AXES[kind][x], yaxis_title="LPIPS distance")
    title = (f"LPIPS against {AXES[kind][x]}: colour is the rank gap (red: LPIPS ranks "
             f"the pair as more different than {x.upper()} does)")
    return xs_all, ys_all, title


def _triplet_points(fig: go.Figure, data: Mapping[str, Sequence[Any]], x: str,
                    ok: list[int]) -> tuple[np.ndarray, np.ndarray, str]:
    """The scored triplets, one trace per agreement with the judges; their x and y values,
    and the title."""
    kind = "triplets"
    xs_all = (as_floats(data["judge"]) if x == "judge"
              else as_floats(data[f"{x}0"]) - as_floats(data[f"{x}1"]))
    ys_all = as_floats(data["d1"]) - as_floats(data["d0"])
    groups: dict[str, list[int]] = {"agrees": [], "disagrees": [], "undecided": []}
    for i in ok:
        a = data["agree"][i]
        groups["agrees" if a is True else "disagrees" if a is False else "undecided"].append(i)
    for name, rows in groups.items():
        if not rows:
            continue
        fig.add_trace(go.Scattergl(
            x=[float(xs_all[i]) for i in rows], y=[float(ys_all[i]) for i in rows],
            mode="markers", name=f"LPIPS {name} with the judges ({len(rows)})",
            text=[data["id"][i] for i in rows],
            marker={"color": _AGREE_COLOURS[name], "size": 7},
            hovertemplate=f"%{{text}}<br>{AXES[kind][x]}: %{{x:.4g}}<br>"
                          "LPIPS margin d1 - d0: %{y:.4f}<extra></extra>"))
    fig.add_hline(y=0, line={"color": "#888", "width": 1})
    if x == "judge":
        fig.add_vline(x=0.5, line={"color": "#888", "width": 1, "dash": "dot"})
    fig.update_layout(xaxis_title=AXES[kind][x],
                      yaxis_title="LPIPS margin d1 - d0 (> 0: p0 closer)")
    title = (f"LPIPS margin against {AXES[kind][x]}, coloured by agreement with the "
             f"judges' majority")
    return xs_all, ys_all, title

"""What every figure shares: colour bars, captions kept in the layout, legend entries,
number formats."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go

from lpips_explain.output.imaging import (
    colour_bar_rgb,
)


def colour_bar_scale(**kw: Any) -> list[list[Any]]:
    rgb = colour_bar_rgb(**kw)
    last = len(rgb) - 1
    return [[i / last, f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(rgb.tolist())]


def finite_list(values: Any) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(float(v)) else None
            for v in np.asarray(values, dtype=np.float64).ravel()]


def fmt(x: float | None, spec: str = ".4f") -> str:
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    return format(float(x), spec)


def set_caption(fig: go.Figure, caption: str | None) -> None:
    """Keep the figure's one caption with it; the app or the report shows it under the chart."""
    if caption:
        fig.layout.meta = {"caption": caption}


def caption_of(fig: go.Figure) -> str:
    meta = fig.layout.meta
    return str(meta.get("caption", "")) if isinstance(meta, dict) else ""


def legend_entry(fig: go.Figure, name: str, color: str, *, kind: str = "line",
                  dash: str | None = None, pattern: str = "") -> None:
    """A legend entry that draws nothing (for shapes and per-bar colours)."""
    if kind == "bar":
        fig.add_trace(go.Bar(x=[None], y=[None], name=name, marker_color=color,
                             marker_pattern={"shape": pattern, "fgcolor": "#ffffff",
                                             "fillmode": "overlay"},
                             showlegend=True, hoverinfo="skip"))
    else:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name,
                                 line={"color": color, "dash": dash}, showlegend=True,
                                 hoverinfo="skip"))


BELOW_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0}


def colour_bar_spec(title: str, ticks: dict[float, str] | None, **extra: Any) -> dict[str, Any]:
    bar: dict[str, Any] = {"title": {"text": title, "side": "right"}, "thickness": 14,
                           "exponentformat": "e", "len": 1.0, "lenmode": "fraction",
                           "x": 1.0, "xanchor": "left", "xpad": 6, "outlinewidth": 0, **extra}
    if ticks:
        bar.update(tickmode="array", tickvals=list(ticks), ticktext=list(ticks.values()))
    return bar

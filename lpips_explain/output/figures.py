"""Interactive figures (plotly) for explanations, and the image helpers shared with static ones.

Every builder returns a ``go.Figure`` and touches no global plotting state. Maps are drawn
with row 0 at the top, exactly as the image they explain.
Attribution, Sensitivity and Repair results are used by duck typing only.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lpips_explain.core.decompose import UPSAMPLING, Decomposition, LayerBreakdown
from lpips_explain.errors import InputError, lookup

__all__ = [
    "ATTRIBUTION_VIEWS",
    "CHANNEL_VIEWS",
    "as_uint8_image",
    "attribution_figure",
    "channel_grid",
    "colorize",
    "comparison_figure",
    "explained_images",
    "heatmap_overlay",
    "layer_waterfall",
    "png_bytes",
    "png_data_uri",
    "repair_curve",
    "sensitivity_bars",
    "spatial_map_figure",
    "sweep_figure",
    "triplet_margin_chart",
]

ATTRIBUTION_VIEWS: dict[str, str] = {
    "signed": "signed (red raises the distance, blue lowers it)",
    "magnitude": "magnitude (how much each pixel matters, either way)",
    "positive": "positive part (only what raises the distance)",
}
CHANNEL_VIEWS: dict[str, str] = {
    "diff": "diff_map",
    "activation_a": "activation_a",
    "activation_b": "activation_b",
}
FAVOUR_A = "#1f77b4"
FAVOUR_B = "#ff7f0e"
NEUTRAL = "#9e9e9e"
RISE = "#d62728"
_PLOTLY_DIVERGING = "RdBu_r"
# Plotly's Inferno with its first stop nudged off #000004: Streamlit's chart theming draws
# that exact colour as lavender, which makes the lowest values look higher than they are.
_INFERNO = [[i / 9, c] for i, c in enumerate(
    ["#07041a", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06",
     "#f7d13d", "#fcffa4"])]
MPL_SEQUENTIAL = "inferno"
_MPL_DIVERGING = "RdBu_r"


# --------------------------------------------------------------------------- helpers


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an HxWx3 (or HxW) uint8 array as PNG bytes."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise InputError(f"png_bytes takes a uint8 array, got dtype {arr.dtype}.")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    """An inline ``data:image/png;base64,...`` URI for a uint8 image (no external file)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def colorize(heat: np.ndarray, *, symmetric: bool = False, cmap: str | None = None) -> np.ndarray:
    """Colour-map an HxW array to HxWx3 uint8 (min..max, or -m..m centred at 0 if symmetric)."""
    import matplotlib

    h = np.asarray(heat, dtype=np.float64)
    if h.ndim != 2:
        raise InputError(f"colorize takes an HxW map, got shape {h.shape}.")
    finite = h[np.isfinite(h)]
    if symmetric:
        m = float(np.abs(finite).max()) if finite.size else 0.0
        lo, hi = -m, m
    else:
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
    span = hi - lo
    norm = (h - lo) / span if span > 0 else np.full_like(h, 0.5 if symmetric else 0.0)
    norm = np.nan_to_num(np.clip(norm, 0.0, 1.0), nan=0.0)
    name = cmap or (_MPL_DIVERGING if symmetric else MPL_SEQUENTIAL)
    rgba = matplotlib.colormaps[name](norm)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def as_uint8_image(image: Any) -> np.ndarray:
    """An HxWx3 uint8 array from such an array or a 1x3xHxW / 3xHxW tensor in [0, 1]."""
    if hasattr(image, "detach"):  # a torch tensor in [0, 1]
        from lpips_explain.intake.tensors import to_uint8

        return to_uint8(image)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"Expected an HxWx3 uint8 image, got shape {arr.shape} and dtype "
                         f"{arr.dtype}; convert tensors with images.to_uint8.")
    return arr


def _finite_list(values: Any) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(float(v)) else None
            for v in np.asarray(values, dtype=np.float64).ravel()]


def _fmt(x: float | None, spec: str = ".4f") -> str:
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    return format(float(x), spec)


def explained_images(expl: Any) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(reference uint8, explained uint8, reference label, explained label) of an Explanation.

    The explained image is B unless the roles were swapped, in which case maps refer to A.
    """
    return (as_uint8_image(expl.reference), as_uint8_image(expl.explained),
            expl.reference_name, expl.explained_name)


def _caption_annotation(fig: go.Figure, caption: str | None, width: int = 90) -> None:
    if not caption:
        return
    lines = textwrap.wrap(caption, width)
    # yshift keeps the caption below the x-axis tick labels and the axis title.
    has_title = bool(fig.layout.xaxis.title.text)
    shift = 72 if has_title else 40
    fig.add_annotation(text="<br>".join(lines), showarrow=False,
                       xref="paper", yref="paper", x=0, y=0, yshift=-shift, xanchor="left",
                       yanchor="top", align="left", font={"size": 11, "color": "#555"})
    fig.update_layout(margin={"b": shift + 20 + 15 * len(lines)})
    fig.layout.meta = {"caption": caption}


# --------------------------------------------------------------------------- plotly


def layer_waterfall(dec: Decomposition) -> go.Figure:
    """A waterfall of per-layer distances that ends in a total bar equal to the distance."""
    names = [lay.name for lay in dec.layers]
    dists = [float(lay.distance) for lay in dec.layers]
    custom = [[lay.share * 100, f"{lay.resolution[1]}x{lay.resolution[0]}",
               f"tap {lay.index + 1} of {len(dec.layers)}"] for lay in dec.layers]
    custom.append([100.0 if dec.distance > 0 else 0.0, f"{dec.size[1]}x{dec.size[0]} (image)",
                   "all layers"])
    fig = go.Figure(go.Waterfall(
        x=[*names, "total"], y=[*dists, float(dec.distance)],
        measure=["relative"] * len(names) + ["total"],
        text=[f"{d:.4f}" for d in [*dists, dec.distance]], textposition="outside",
        customdata=custom,
        hovertemplate=("%{x}: %{y:.6f}<br>share %{customdata[0]:.1f}%<br>"
                       "resolution %{customdata[1]}<br>%{customdata[2]}<extra></extra>"),
        connector={"line": {"color": "#888", "dash": "dot"}},
        increasing={"marker": {"color": FAVOUR_A}}, totals={"marker": {"color": "#444"}},
        decreasing={"marker": {"color": RISE}},
    ))
    fig.update_layout(
        title=(f"Per-layer terms add up exactly to the distance {dec.distance:.4f} "
               f"(LPIPS {dec.net}, v{dec.version})"),
        xaxis_title="layer", yaxis_title="LPIPS distance", showlegend=False, height=420)
    return fig


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, *, title: str,
                    caption: str | None = None, colorscale: str = "Inferno",
                    opacity: float = 0.55, symmetric: bool = False,
                    colorbar_title: str = "value") -> go.Figure:
    """The photo with the map over it, row 0 at the top as in the image, equal aspect."""
    img = as_uint8_image(image)
    z = np.asarray(heat, dtype=np.float64)
    if z.ndim != 2:
        raise InputError(f"heatmap_overlay takes an HxW map, got shape {z.shape}.")
    big_h, big_w = img.shape[:2]
    h, w = z.shape
    # A map coarser than the image (a layer's own grid) is stretched over the whole image:
    # cell centres sit where the cells fall in image pixel coordinates, nothing is resampled.
    xs = (np.arange(w) + 0.5) * (big_w / w) - 0.5
    ys = (np.arange(h) + 0.5) * (big_h / h) - 0.5
    heat_kw: dict[str, Any] = {"colorscale": _INFERNO if colorscale == "Inferno" else colorscale}
    if symmetric:
        # A few extreme pixels would wash the rest of a signed map out to white: the colour
        # scale stops at the 99.5th percentile of |value| (hover still shows true values).
        finite = np.abs(z[np.isfinite(z)])
        m = float(np.percentile(finite, 99.5)) if finite.size else 0.0
        if m <= 0 and finite.size:
            m = float(finite.max())
        m = m if m > 0 else 1.0
        heat_kw = {"colorscale": _PLOTLY_DIVERGING if colorscale == "Inferno" else colorscale,
                   "zmid": 0.0, "zmin": -m, "zmax": m}
    fig = go.Figure()
    fig.add_trace(go.Image(source=png_data_uri(img), x0=0, y0=0, dx=1, dy=1, name="image",
                           hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=z, x=xs, y=ys, opacity=opacity, name="map",
                             colorbar={"title": {"text": colorbar_title}, "thickness": 14,
                                       "exponentformat": "e", "len": 0.8},
                             hovertemplate="x %{x:.0f}, y %{y:.0f}: %{z:.4g}<extra></extra>",
                             **heat_kw))
    fig.update_xaxes(range=[-0.5, big_w - 0.5], showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x",
                     scaleratio=1, constrain="domain")
    fig.update_layout(title=title, height=480, margin={"l": 10, "r": 10, "t": 60})
    _caption_annotation(fig, caption)
    return fig


def spatial_map_figure(dec: Decomposition, image_uint8: np.ndarray, *,
                       layer: int | str | None = None, upsample: str = "bilinear") -> go.Figure:
    """The spatial distance map (one layer or all summed) over the image it explains."""
    lookup("upsampling", upsample, UPSAMPLING)
    heat = dec.spatial_map(layer, upsample)  # type: ignore[arg-type]
    if layer is None:
        which, target = "all layers summed", dec.distance
        versus = f"the distance {dec.distance:.4f}"
    else:
        lay = dec.layer(layer)
        which, target = f"layer {lay.name} ({lay.resolution[0]}x{lay.resolution[1]})", lay.distance
        versus = f"the layer's distance {lay.distance:.4f} (total {dec.distance:.4f})"
    mean = float(np.mean(heat))
    if abs(mean - target) <= 1e-9 * max(1.0, abs(target)):
        agree = "equal"
    else:
        agree = f"off by {100 * (mean - target) / target:+.2g}%" if target else "not equal"
    caption = (f"Map: spatial LPIPS distance, {which}. Upsampling: {upsample}, "
               f"{UPSAMPLING[upsample]}. Map mean {mean:.4f} vs {versus}: {agree}.")
    return heatmap_overlay(image_uint8, heat, title=f"Where the distance is: {which}",
                           caption=caption, colorbar_title="distance")


def channel_grid(layer: LayerBreakdown, *, which: str = "diff", cols: int = 5) -> go.Figure:
    """Small multiples of the layer's top channels' maps (diff, activation_a or activation_b)."""
    attr = lookup("channel view", which, CHANNEL_VIEWS)
    chans = list(layer.top_channels)
    if not chans:
        fig = go.Figure()
        fig.add_annotation(text=f"No channels kept for {layer.name} (top_k = 0).",
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        fig.update_layout(title=f"{layer.name}: top channels", height=200)
        return fig
    ncols = max(1, min(cols, len(chans)))
    nrows = -(-len(chans) // ncols)
    titles = [f"ch {c.index}<br>w={c.weight:.3g}, {100 * c.share:.1f}%" for c in chans]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles,
                        horizontal_spacing=0.03, vertical_spacing=0.12)
    for i, c in enumerate(chans):
        r, col = divmod(i, ncols)
        fig.add_trace(go.Heatmap(z=np.asarray(getattr(c, attr), dtype=np.float64),
                                 colorscale=_INFERNO if which == "diff" else _PLOTLY_DIVERGING,
                                 showscale=False, name=f"ch {c.index}",
                                 hovertemplate=(f"ch {c.index}<br>row %{{y}}, col %{{x}}: "
                                                "%{z:.4g}<extra></extra>"),
                                 **({} if which == "diff" else {"zmid": 0.0})),
                      row=r + 1, col=col + 1)
        k = r * ncols + col + 1
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if k == 1 else k}",
                         constrain="domain", row=r + 1, col=col + 1)
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_yaxes(showticklabels=False)
    what = {"diff": "squared feature difference (unweighted)",
            "activation_a": "normalised activation of A",
            "activation_b": "normalised activation of B"}[which]
    fig.update_layout(
        title=(f"{layer.name}: top {len(chans)} channels by contribution, {what}, at "
               f"{layer.resolution[0]}x{layer.resolution[1]}"),
        height=240 * nrows + 100, showlegend=False, margin={"t": 110})
    fig.update_annotations(font_size=11)  # subplot titles: keep them inside their column
    return fig


def attribution_figure(attr: Any, image_uint8: np.ndarray, *, view: str = "signed",
                       name: str | None = None) -> go.Figure:
    """An attribution map over the attributed image, with completeness and vanishing notices.

    ``name`` is how the attributed image is called on screen (default: its role, A or B).
    """
    lookup("attribution view", view, ATTRIBUTION_VIEWS)
    heat = np.asarray(getattr(attr, view), dtype=np.float64)
    label = str(attr.method).replace("_", " ")
    title = f"{label.capitalize()} attribution, {view}"
    if getattr(attr, "completeness_gap", None) is not None:
        rel = getattr(attr, "relative_gap", None)
        title += (f"<br><sub>sum {attr.total:.4f} vs distance {attr.distance:.4f}: "
                  f"completeness gap {attr.completeness_gap:.2e}"
                  f"{'' if rel is None else f' ({100 * rel:.2f}%)'}</sub>")
    target = name or str(getattr(attr, "target", "b")).upper()
    params = getattr(attr, "params", None) or {}
    ptxt = ", ".join(f"{k}={v}" for k, v in params.items())
    what = (f"the regions of {target} as seen by layer {params.get('layer', '')}, "
            f"upsampled bilinearly to the image" if attr.method == "layer_gradcam" else
            f"{target}'s pixels, at image resolution, no upsampling")
    caption = (f"Map: {ATTRIBUTION_VIEWS[view]} attribution to the distance of {what} "
               f"({attr.method}{f'; {ptxt}' if ptxt else ''})."
               f"{' Colour scale clipped at the 99.5th percentile of |value|.' if view == 'signed' else ''}")
    notes = [str(n) for n in getattr(attr, "notes", ()) or ()]
    if view != "signed":  # the sign note explains negative values, which this view has none of
        notes = [n for n in notes if not n.startswith("Positive values")]
    if notes:
        caption += " " + " ".join(notes)
    fig = heatmap_overlay(image_uint8, heat, title=title, caption=caption,
                          symmetric=view == "signed", colorbar_title="attribution")
    if getattr(attr, "vanishing", False):
        fig.add_annotation(
            text=("Gradients vanish here: LPIPS is quadratic in the feature difference, so at "
                  "(near-)identical images the map is (nearly) blank."),
            showarrow=False, xref="paper", yref="paper", x=0.5, y=1.0, yanchor="bottom",
            bgcolor="#fff3cd", bordercolor="#c9a227", font={"size": 12})
    return fig


def sensitivity_rows(sens: Any) -> list[tuple[str, Any]]:
    rows = [("default", it) for it in sens.items]
    rows += [("geometric", it) for it in sens.geometric]
    return rows


def sensitivity_bars(sens: Any, *, explained: str = "B") -> go.Figure:
    """Horizontal bars of the change in distance for each perturbation of the explained image.

    A geometric-table row that repeats a default-strength row (same transform and strength)
    is drawn once.
    """
    seen = {(it.transform, float(it.strength)) for g, it in sensitivity_rows(sens)
            if g != "geometric"}
    rows = [(g, it) for g, it in sensitivity_rows(sens)
            if g != "geometric" or (it.transform, float(it.strength)) not in seen]
    labels: list[str] = []
    for group, it in rows:
        lab = f"{it.label} ({it.strength:g} {it.unit})".replace(" )", ")")
        if group == "geometric":
            lab += " [geometric table]"
        while lab in labels:
            lab += " "
        labels.append(lab)
    changes = [float(it.change) for _, it in rows]
    colors = [("#8c564b" if group == "geometric" else FAVOUR_A) if ch >= 0 else RISE
              for (group, _), ch in zip(rows, changes, strict=True)]
    custom = [[float(it.distance), _fmt(it.psnr, ".2f"), _fmt(it.ssim, ".4f"), group]
              for group, it in rows]
    fig = go.Figure(go.Bar(
        x=changes, y=labels, orientation="h", marker_color=colors, customdata=custom,
        hovertemplate=("%{y}<br>change %{x:+.4f}<br>distance %{customdata[0]:.4f}<br>"
                       "PSNR %{customdata[1]} dB, SSIM %{customdata[2]}<br>"
                       "%{customdata[3]}<extra></extra>"),
    ))
    fig.update_yaxes(autorange="reversed", title=None)
    fig.update_xaxes(title=f"change in LPIPS distance vs unperturbed {explained}", zeroline=True,
                     zerolinecolor="#444")
    most = getattr(sens, "most_sensitive", None)
    fig.update_layout(
        title=(f"Perturbing {explained}: change in distance from the base "
               f"{sens.base_distance:.4f}"
               f"{f' (most sensitive: {most})' if most else ''}"),
        height=max(300, 26 * len(rows) + 120), showlegend=False, margin={"l": 10})
    return fig


def sweep_figure(sweep: Any) -> go.Figure:
    """LPIPS against perturbation strength, beside PSNR and SSIM on their own axes."""
    x = [float(s) for s in np.asarray(sweep.strengths, dtype=np.float64)]
    unit = f" ({sweep.unit})" if sweep.unit else ""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=_finite_list(sweep.distances), name="LPIPS",
                             mode="lines+markers", line_shape="linear",
                             line={"color": RISE, "width": 3}, yaxis="y"))
    fig.add_trace(go.Scatter(x=x, y=_finite_list(sweep.psnr), name="PSNR (dB)",
                             mode="lines+markers", line_shape="linear",
                             line={"color": FAVOUR_A, "dash": "dash"}, yaxis="y2"))
    fig.add_trace(go.Scatter(x=x, y=_finite_list(sweep.ssim), name="SSIM",
                             mode="lines+markers", line_shape="linear",
                             line={"color": "#2ca02c", "dash": "dot"}, yaxis="y3"))
    fig.update_layout(
        title=f"{sweep.label}: LPIPS, PSNR and SSIM against strength",
        xaxis={"title": {"text": f"strength{unit}"}, "domain": [0.0, 0.84]},
        yaxis={"title": {"text": "LPIPS distance", "font": {"color": RISE}}},
        yaxis2={"title": {"text": "PSNR (dB; gaps where infinite)",
                          "font": {"color": FAVOUR_A}},
                "overlaying": "y", "side": "right", "anchor": "x", "showgrid": False},
        yaxis3={"title": {"text": "SSIM", "font": {"color": "#2ca02c"}}, "overlaying": "y",
                "side": "right", "anchor": "free", "position": 0.96, "showgrid": False},
        legend={"orientation": "h", "y": -0.2}, height=420)
    return fig


def repair_curve(rep: Any, *, repaired: str = "B", source: str = "A",
                 threshold: float | None = None, threshold_label: str = "",
                 mark_area: float | None = None, mark_label: str = "") -> go.Figure:
    """Remaining distance against the fraction of area repaired, every point a real evaluation.

    ``repaired`` names the image whose patches are replaced, ``source`` the one they come from.
    ``threshold`` draws a horizontal line (e.g. the rival's distance in a triplet) and
    ``mark_area`` a vertical one (e.g. where the decision flips).
    """
    area = np.asarray(rep.curve_area, dtype=np.float64)
    dist = np.asarray(rep.curve_distance, dtype=np.float64)
    steps = np.asarray(rep.curve_steps)
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=area, y=dist, mode="lines+markers", line_shape="linear", name="evaluated",
        line={"color": FAVOUR_A}, marker={"size": 6}, customdata=steps,
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
                                 line={"color": RISE, "width": 4}, hoverinfo="skip"))
    base = float(rep.base_distance)
    fig.add_hline(y=base / 2, line={"dash": "dash", "color": "#666"},
                  annotation_text=f"half the distance ({base / 2:.4f})",
                  annotation_position="top right")
    half = getattr(rep, "half_area", None)
    if half is not None and math.isfinite(float(half)):
        fig.add_vline(x=float(half), line={"dash": "dot", "color": "#666"},
                      annotation_text=f"{100 * float(half):.1f}% of the area",
                      annotation_position="top left")
    if threshold is not None:
        fig.add_hline(y=float(threshold), line={"dash": "dot", "color": FAVOUR_B},
                      annotation_text=threshold_label or f"{threshold:.4f}",
                      annotation_position="bottom right")
    if mark_area is not None:
        fig.add_vline(x=float(mark_area), line={"color": FAVOUR_B},
                      annotation_text=mark_label or f"{100 * float(mark_area):.1f}%",
                      annotation_position="bottom left")
    grid = getattr(rep, "grid", None)
    grid_txt = f", a {grid[0]}x{grid[1]} grid" if grid is not None else ""
    order = getattr(rep, "order_label", "single-patch gain")
    caption = (f"Repair: {repaired}'s {rep.patch} px patches{grid_txt} are replaced by "
               f"{source}'s in this order: {order}; each marker is a real evaluation, lines "
               f"only join them.{' The curve is not monotonic (red).' if rep.non_monotonic else ''}")
    fig.update_layout(title=str(rep.headline), xaxis_title="fraction of the area repaired",
                      yaxis_title="remaining LPIPS distance", height=420,
                      legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%")
    _caption_annotation(fig, caption)
    return fig


def triplet_margin_chart(tri: Any) -> go.Figure:
    """Per-layer margins d(REF, B) - d(REF, A), coloured by the candidate each layer favours."""
    layers = list(tri.layers)
    names = [lay.name for lay in layers] + ["total"]
    margins = [float(lay.margin) for lay in layers] + [float(tri.margin)]
    colors = [FAVOUR_A if m > 0 else FAVOUR_B if m < 0 else NEUTRAL for m in margins]
    favours = ["A" if m > 0 else "B" if m < 0 else "neither" for m in margins]
    fig = go.Figure(go.Bar(
        x=names, y=margins, marker_color=colors,
        marker_pattern_shape=[""] * len(layers) + ["/"], customdata=favours,
        text=[f"{m:+.4f}" for m in margins], textposition="outside",
        hovertemplate="%{x}: margin %{y:+.5f}, favours %{customdata}<extra></extra>"))
    verdict = {"a": "A is closer", "b": "B is closer", "tie": "a tie"}.get(tri.closer, tri.closer)
    fig.add_hline(y=0, line={"color": "#444", "width": 1})
    fig.update_layout(
        title=(f"Per-layer margins d(REF, B) - d(REF, A): total {tri.margin:+.4f} ({verdict}); "
               f"blue favours A, orange favours B"),
        xaxis_title="layer", yaxis_title="margin", showlegend=False, height=420)
    return fig


def comparison_figure(a_uint8: np.ndarray, b_uint8: np.ndarray) -> go.Figure:
    """A and B side by side, plus a panel whose slider flicks between A and B (works offline)."""
    a, b = as_uint8_image(a_uint8), as_uint8_image(b_uint8)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("A", "B", "flick A / B"),
                        horizontal_spacing=0.02)
    uris = {"A": png_data_uri(a), "B": png_data_uri(b)}
    fig.add_trace(go.Image(source=uris["A"], name="A", hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Image(source=uris["B"], name="B", hoverinfo="skip"), row=1, col=2)
    fig.add_trace(go.Image(source=uris["A"], name="flick A", hoverinfo="skip", visible=True),
                  row=1, col=3)
    fig.add_trace(go.Image(source=uris["B"], name="flick B", hoverinfo="skip", visible=False),
                  row=1, col=3)
    for k in (1, 2, 3):
        fig.update_yaxes(scaleanchor=f"x{'' if k == 1 else k}", autorange="reversed",
                         showticklabels=False, row=1, col=k)
        fig.update_xaxes(showticklabels=False, constrain="domain", row=1, col=k)
    steps = [
        {"label": "A", "method": "restyle", "args": [{"visible": [True, True, True, False]}]},
        {"label": "B", "method": "restyle", "args": [{"visible": [True, True, False, True]}]},
    ]
    fig.update_layout(
        title="A and B side by side; drag the slider to flick the right panel between them",
        sliders=[{"active": 0, "steps": steps, "currentvalue": {"prefix": "showing "},
                  "x": 0.68, "len": 0.32, "pad": {"t": 10}}],
        height=420, showlegend=False, margin={"l": 10, "r": 10})
    return fig



"""Interactive figures (plotly) for explanations.

Every builder returns a ``go.Figure`` and touches no global plotting state. Maps are drawn
with row 0 at the top, exactly as the image they explain. A figure's caption (which map,
which layer, which upsampling) is kept in ``fig.layout.meta["caption"]`` and shown once by
whoever displays the figure (the app under the chart, the HTML report as its figcaption).

The colours are :mod:`~lpips_explain.output.palette`'s; the image helpers (PNG, data URIs,
colourising a map over a grey photo) are :mod:`~lpips_explain.output.imaging`'s.

Sizes are written width x height everywhere.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lpips_explain.analyses.attribution.result import Attribution
from lpips_explain.analyses.pair.map_scale import MapScale, hottest_window, map_scale
from lpips_explain.analyses.pair.perturbations import strength_text
from lpips_explain.analyses.pair.repair import Repair
from lpips_explain.analyses.pair.sensitivity import Sensitivity, SensitivityItem
from lpips_explain.core.decompose import UPSAMPLING, Decomposition, LayerBreakdown
from lpips_explain.errors import InputError, lookup
from lpips_explain.output.imaging import (
    as_uint8_image,
    colour_bar_rgb,
    default_cmap,
    downsample_image,
    downsample_map,
    jpeg_data_uri,
    map_limits,
    overlay_image,
    png_data_uri,
    shared_limit,
    size_text,
)
from lpips_explain.output.palette import (
    AMOUNT,
    BOX_DARK,
    BOX_LIGHT,
    CANDIDATE_A,
    CANDIDATE_B,
    DISTANCE,
    DISTANCE_TOTAL,
    FAVOUR_A,
    FAVOUR_B,
    GUIDE,
    INFERNO,
    LOWERS,
    NEUTRAL,
    PSNR_COLOR,
    RAISES,
    SSIM_COLOR,
)

__all__ = [
    "ATTRIBUTION_VIEWS",
    "CHANNEL_VIEWS",
    "attribution_figure",
    "caption_of",
    "channel_grid",
    "comparison_figure",
    "heatmap_overlay",
    "layer_waterfall",
    "maps_side_by_side",
    "margin_map",
    "margin_map_figure",
    "method_label",
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


def _colour_bar_scale(**kw: Any) -> list[list[Any]]:
    rgb = colour_bar_rgb(**kw)
    last = len(rgb) - 1
    return [[i / last, f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(rgb.tolist())]



def _finite_list(values: Any) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(float(v)) else None
            for v in np.asarray(values, dtype=np.float64).ravel()]


def _fmt(x: float | None, spec: str = ".4f") -> str:
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    return format(float(x), spec)




def _set_caption(fig: go.Figure, caption: str | None) -> None:
    """Keep the figure's one caption with it; the app or the report shows it under the chart."""
    if caption:
        fig.layout.meta = {"caption": caption}


def caption_of(fig: go.Figure) -> str:
    meta = fig.layout.meta
    return str(meta.get("caption", "")) if isinstance(meta, dict) else ""


def _legend_entry(fig: go.Figure, name: str, color: str, *, kind: str = "line",
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


_BELOW_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0}


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



def _colour_bar(title: str, ticks: dict[float, str] | None, **extra: Any) -> dict[str, Any]:
    bar: dict[str, Any] = {"title": {"text": title, "side": "right"}, "thickness": 14,
                           "exponentformat": "e", "len": 1.0, "lenmode": "fraction",
                           "x": 1.0, "xanchor": "left", "xpad": 6, "outlinewidth": 0, **extra}
    if ticks:
        bar.update(tickmode="array", tickvals=list(ticks), ticktext=list(ticks.values()))
    return bar


def _map_traces(img: np.ndarray, z: np.ndarray, *, symmetric: bool, cmap: str,
                opacity: float, lo: float, hi: float, name: str, jpeg: bool,
                colour_bar: dict[str, Any] | None, shared: bool = False) -> list[Any]:
    """The traces of one map over its photo: the overlay drawn once as an image (the very
    pixels of :func:`overlay_image`), a transparent heatmap that answers hover with the true
    values, and (if ``colour_bar``) a trace that only carries the colour bar, or (if
    ``shared``) one that ties the map to the figure's shared colour axis and its bar."""
    big_h, big_w = img.shape[:2]
    h, w = z.shape
    # A map coarser than the image (a layer's own grid) is stretched over the whole image:
    # cell centres sit where the cells fall in image pixel coordinates, nothing is resampled.
    xs = (np.arange(w) + 0.5) * (big_w / w) - 0.5
    ys = (np.arange(h) + 0.5) * (big_h / h) - 0.5
    top = hi if symmetric or lo == 0.0 else None
    composite = overlay_image(img, z, opacity=opacity, symmetric=symmetric, cmap=cmap,
                              zmax=top)
    photo = jpeg_data_uri(composite) if jpeg else png_data_uri(composite)
    clear = [[0.0, "rgba(0,0,0,0)"], [1.0, "rgba(0,0,0,0)"]]
    heat_kw: dict[str, Any] = {"zmin": lo, "zmax": hi}
    if symmetric:
        heat_kw["zmid"] = 0.0
    traces: list[Any] = [
        go.Image(source=photo, x0=0, y0=0, dx=1, dy=1, name=name, hoverinfo="skip"),
        go.Heatmap(z=z.astype(np.float32) if jpeg else z, x=xs, y=ys, colorscale=clear,
                   showscale=False, opacity=float(opacity), name=name,
                   hovertemplate="x %{x:.0f}, y %{y:.0f}: %{z:.4g}<extra></extra>", **heat_kw),
    ]
    if colour_bar is not None:
        traces.append(go.Scatter(
            x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
            marker={"color": [lo], "cmin": lo, "cmax": hi, "showscale": True,
                    "colorscale": _colour_bar_scale(symmetric=symmetric, cmap=cmap,
                                                    opacity=opacity),
                    "colorbar": colour_bar}))
    elif shared:
        traces.append(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False,
                                 hoverinfo="skip",
                                 marker={"color": [lo], "coloraxis": "coloraxis"}))
    return traces


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, *, title: str | None,
                    caption: str | None = None, colorscale: str = AMOUNT,
                    opacity: float = 0.8, symmetric: bool = False,
                    colorbar_title: str = "value", zmax: float | None = None,
                    display_width: int | None = None, max_side: int | None = None,
                    colorbar_ticks: dict[float, str] | None = None,
                    box: tuple[float, float, float, float] | None = None) -> go.Figure:
    """The photo in grey with the map over it, row 0 at the top as in the image, equal aspect.

    The map fades in with its value (:func:`fade_alpha`) up to ``opacity``; ``colorscale``
    is :data:`AMOUNT` (yellow to dark red), a matplotlib name, or "candidates" (PuOr) for a
    signed map (RdBu otherwise). ``zmax`` fixes the colour scale (0..zmax, or -zmax..zmax if
    ``symmetric``), e.g. one scale for several maps or per trunk; signed maps otherwise stop
    at the 99.5th percentile of |value| (hover shows true values). ``display_width`` draws the
    image at that many pixels with the colour bar right beside it; ``max_side`` shrinks image
    and map (area filter) first, e.g. for a lean report. ``box`` (x0, y0, x1, y1 as fractions
    of the width and height) outlines a region, e.g. the hottest window.
    """
    img = downsample_image(image, max_side)
    z = np.asarray(heat, dtype=np.float64)
    if z.ndim != 2:
        raise InputError(f"heatmap_overlay takes an HxW map, got shape {z.shape}.")
    if max_side is not None and max(z.shape) > max(img.shape[:2]):
        z = downsample_map(z, max(img.shape[:2]))
    big_h, big_w = img.shape[:2]
    lo, hi = map_limits(z, symmetric, zmax)
    cmap = default_cmap(symmetric, colorscale)
    bar = _colour_bar(colorbar_title, colorbar_ticks, y=0.5, yanchor="middle")
    fig = go.Figure(_map_traces(img, z, symmetric=symmetric, cmap=cmap, opacity=opacity,
                                lo=lo, hi=hi, name="map", jpeg=max_side is not None,
                                colour_bar=bar))
    fig.update_xaxes(range=[-0.5, big_w - 0.5], showgrid=False, zeroline=False,
                     constrain="domain", showticklabels=False, ticks="", showline=False)
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x",
                     scaleratio=1, constrain="domain", showticklabels=False, ticks="",
                     showline=False)
    if box is not None:
        x0, y0, x1, y1 = (box[0] * big_w - 0.5, box[1] * big_h - 0.5, box[2] * big_w - 0.5,
                          box[3] * big_h - 0.5)
        for colour, width in ((BOX_DARK, 4), (BOX_LIGHT, 1.5)):
            fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, xref="x", yref="y",
                          line={"color": colour, "width": width}, layer="above")
    top = 56 if title and "<br>" in title else 34 if title else 6
    if display_width is None:
        fig.update_layout(title=title, height=480, margin={"l": 10, "r": 10, "t": top + 20})
    else:
        right = 96 if colorbar_ticks else 84
        width = int(display_width)
        height = round(width * big_h / big_w)
        fig.update_layout(title=title, width=width + 4 + right, height=height + top + 6,
                          margin={"l": 4, "r": right, "t": top, "b": 6}, autosize=False)
    fig.update_layout(showlegend=False, plot_bgcolor="#ffffff")
    _set_caption(fig, caption)
    return fig


def spatial_map_figure(dec: Decomposition, image_uint8: np.ndarray, *,
                       layer: int | str | None = None, upsample: str = "bilinear",
                       opacity: float = 0.8, display_width: int | None = None,
                       zmax: float | None = None, max_side: int | None = None,
                       title: bool = True, name: str | None = None,
                       scale: MapScale | None = None) -> go.Figure:
    """The spatial distance map (one layer or all summed) over the image it explains
    (``name``: how that image is called on screen, e.g. "B").

    ``scale`` (see :func:`lpips_explain.analyses.pair.map_scale.scale_for`) is the colour scale:
    fixed per trunk, version and layer so pairs compare, or the pair's own maximum; without
    it, the pair's own maximum. ``zmax`` instead shares one scale between maps side by side.
    """
    lookup("upsampling", upsample, UPSAMPLING)
    heat = dec.spatial_map(layer, upsample)  # type: ignore[arg-type]
    if layer is None:
        which, target = "all layers summed", dec.distance
        versus = f"the distance {dec.distance:.4f}"
    else:
        lay = dec.layer(layer)
        which, target = f"layer {lay.name} ({size_text(lay.resolution)})", lay.distance
        versus = f"the layer's distance {lay.distance:.4f} (total {dec.distance:.4f})"
    mean = float(np.mean(heat))
    if abs(mean - target) <= 1e-9 * max(1.0, abs(target)):
        agree = "equal"
    else:
        agree = f"off by {100 * (mean - target) / target:+.2g}%" if target else "not equal"
    if zmax is not None:
        top, scale_text = float(zmax), f"one scale shared with the other map, 0 to {zmax:.3g}"
    else:
        scale = scale or map_scale(heat, dec.net, dec.version,
                                   None if layer is None else dec.layer(layer).name,
                                   perceptual=False, reason="")
        top, scale_text = scale.limit, scale.label
    over = f" over {name}" if name else ""
    hot = hottest_window(heat)
    caption = (f"Map: spatial LPIPS distance{over}, {which}. Upsampling: "
               f"{UPSAMPLING[upsample]}. Map mean {mean:.4f} vs {versus}: {agree}. "
               f"Colour: {scale_text}; the photo in grey shows through where the distance "
               f"is small, dark red marks the most. The box: the window of a quarter of the "
               f"width and height holding the most distance, {hot.share:.0%} of the map's "
               f"total on {hot.area:.0%} of the area."
               + (" Shown downsampled." if max_side is not None and max(heat.shape) > max_side
                  else ""))
    return heatmap_overlay(image_uint8, heat,
                           title=f"Where the distance is: {which}" if title else None,
                           caption=caption, colorbar_title="distance", opacity=opacity,
                           zmax=top, display_width=display_width, max_side=max_side,
                           box=hot.edges)


def maps_side_by_side(images: list[np.ndarray], maps: list[np.ndarray], titles: list[str], *,
                      symmetric: bool = False, colorscale: str = AMOUNT,
                      colorbar_title: str = "value", each_width: int = 300,
                      opacity: float = 0.8, zmax: float | None = None,
                      caption: str | None = None,
                      colorbar_ticks: dict[float, str] | None = None) -> go.Figure:
    """Several maps over their images (in grey) in one figure, on ONE colour scale with one
    colour bar (0 to the larger maximum, or +-the 99.5th percentile of |value| if signed;
    ``zmax`` fixes it), each image drawn ``each_width`` pixels wide, row 0 at the top."""
    if not images or len(images) != len(maps) or len(maps) != len(titles):
        raise InputError("maps_side_by_side needs as many images, maps and titles.")
    imgs = [as_uint8_image(im) for im in images]
    zs = [np.asarray(m, dtype=np.float64) for m in maps]
    m = float(zmax) if zmax is not None else shared_limit(*zs, symmetric=symmetric)
    lo, hi = (-m, m) if symmetric else (0.0, m)
    n, gap, right, top = len(imgs), 16, (96 if colorbar_ticks else 84), 30
    area = n * each_width + (n - 1) * gap
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles,
                        horizontal_spacing=gap / area if n > 1 else 0.0)
    cmap = default_cmap(symmetric, colorscale)
    bar = _colour_bar(colorbar_title, colorbar_ticks)
    for k, (img, z) in enumerate(zip(imgs, zs, strict=True), start=1):
        big_w = img.shape[1]
        for trace in _map_traces(img, z, symmetric=symmetric, cmap=cmap, opacity=opacity,
                                 lo=lo, hi=hi, name=titles[k - 1], jpeg=False,
                                 colour_bar=None, shared=True):
            fig.add_trace(trace, row=1, col=k)
        fig.update_xaxes(range=[-0.5, big_w - 0.5], row=1, col=k)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if k == 1 else k}",
                         scaleratio=1, row=1, col=k)
    for axes in (fig.update_xaxes, fig.update_yaxes):
        axes(showticklabels=False, showgrid=False, zeroline=False, ticks="", showline=False,
             constrain="domain")
    h0, w0 = imgs[0].shape[:2]
    height = round(each_width * h0 / w0)
    # ONE colour axis for every map: the same limits drew every composite, one bar shows them.
    axis = {"colorscale": _colour_bar_scale(symmetric=symmetric, cmap=cmap, opacity=opacity),
            "cmin": lo, "cmax": hi, "colorbar": bar, "showscale": True}
    fig.update_layout(coloraxis=axis, width=area + 4 + right, height=height + top + 6,
                      margin={"l": 4, "r": right, "t": top, "b": 6}, autosize=False,
                      showlegend=False, plot_bgcolor="#ffffff")
    fig.update_annotations(font_size=12)
    _set_caption(fig, caption)
    return fig


def margin_map(dec_a: Decomposition, dec_b: Decomposition) -> np.ndarray:
    """Per position, d(REF, B) - d(REF, A) from the mean-preserving summed maps: positive
    where B is farther from the reference (B loses there), negative where A is. Its mean is
    exactly the margin."""
    return dec_b.spatial_map(None, "mean_preserving") - dec_a.spatial_map(None, "mean_preserving")


def margin_map_figure(tri: Any, image_uint8: np.ndarray, *, opacity: float = 0.8,
                      display_width: int | None = None, max_side: int | None = None,
                      title: bool = True) -> go.Figure:
    """Where A loses and where B loses: the per-position margin over the reference."""
    z = margin_map(tri.decomposition_a, tri.decomposition_b)
    m = shared_limit(z, symmetric=True)
    caption = (f"Map: per-position margin d(REF, B) - d(REF, A), all layers summed, "
               f"mean-preserving upsampling (its mean, {float(np.mean(z)):+.4f}, is the margin "
               f"{tri.margin:+.4f}), over REF. Purple: B is farther from REF there (B loses "
               f"there); orange: A is farther (A loses there). Colour scale clipped at the "
               f"99.5th percentile of |value|.")
    return heatmap_overlay(image_uint8, z, title="Where A loses and where B loses" if title
                           else None, caption=caption, colorscale="candidates", opacity=opacity,
                           symmetric=True, zmax=m, display_width=display_width,
                           max_side=max_side, colorbar_title="margin",
                           colorbar_ticks={-m: "A loses", 0.0: "even", m: "B loses"})


def channel_grid(layer: LayerBreakdown, *, which: str = "diff", cols: int = 5,
                 max_side: int | None = None) -> go.Figure:
    """Small multiples of the layer's top channels' maps (diff, activation_a or activation_b),
    on one shared colour scale with its colour bar (``max_side``: averaged down, single
    precision, for a lean report)."""
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
    titles = [f"ch {c.index}<br>{100 * c.share:.1f}% of layer, w {c.weight:.2g}" for c in chans]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles,
                        horizontal_spacing=0.03, vertical_spacing=0.14)
    maps = [np.asarray(getattr(c, attr), dtype=np.float64) for c in chans]
    if max_side is not None:
        maps = [downsample_map(m, max_side).astype(np.float32) for m in maps]
    top = shared_limit(*maps)
    for i, (c, z) in enumerate(zip(chans, maps, strict=True)):
        r, col = divmod(i, ncols)
        fig.add_trace(go.Heatmap(z=z, coloraxis="coloraxis", name=f"ch {c.index}",
                                 hovertemplate=(f"ch {c.index}<br>row %{{y}}, col %{{x}}: "
                                                "%{z:.4g}<extra></extra>")),
                      row=r + 1, col=col + 1)
        k = r * ncols + col + 1
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{'' if k == 1 else k}",
                         constrain="domain", row=r + 1, col=col + 1)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain",
                     ticks="", showline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="",
                     showline=False)
    what = {"diff": "squared feature difference (before the lin weight)",
            "activation_a": "normalised activation of A",
            "activation_b": "normalised activation of B"}[which]
    fig.update_layout(
        title=(f"{layer.name}: top {len(chans)} channels by contribution, {what}, "
               f"{size_text(layer.resolution)} each"),
        coloraxis={"colorscale": INFERNO, "cmin": 0.0 if which == "diff" else None,
                   "cmax": top, "colorbar": {"title": {"text": "value", "side": "right"},
                                             "thickness": 12, "exponentformat": "e"}},
        height=170 * nrows + 110, showlegend=False, margin={"t": 100, "l": 10, "r": 10, "b": 10})
    fig.update_annotations(font_size=11)  # subplot titles: keep them inside their column
    return fig


def method_label(method: str) -> str:
    """A method's name for people ("Layer Grad-CAM"), from the attribution registry."""
    from lpips_explain.analyses.attribution import METHODS

    spec = METHODS.get(method)
    return spec.label if spec is not None else method.replace("_", " ").capitalize()


def attribution_settings_text(method: str, params: dict) -> str:
    """What a method did, in words (its raw parameters stay in the JSON): e.g. "16 points
    along the path from the reference, added until the sum was within 1% of the distance"."""
    p = params or {}
    if method == "integrated_gradients" and "steps" in p:
        text = f"{p['steps']} points along the straight path from the reference"
        if p.get("adaptive") and p.get("target_gap") is not None:
            tried = p.get("steps_tried") or []
            text += (f", doubled ({', '.join(str(t) for t in tried)}) until the map's sum was "
                     f"within {100 * float(p['target_gap']):g}% of the distance"
                     if len(tried) > 1 else
                     f", enough for the map's sum to be within "
                     f"{100 * float(p['target_gap']):g}% of the distance")
        return text
    if method == "occlusion" and "window" in p:
        n = p.get("windows")
        return (f"windows of {p['window']} x {p['window']} px moved by {p.get('stride', '?')} px"
                + (f" ({n} windows)" if n else "") + ", each replaced by the reference's pixels")
    if method == "smoothgrad" and "samples" in p:
        return (f"gradients averaged over {p['samples']} noisy copies (noise standard "
                f"deviation {p.get('stdev', '?')})")
    if method == "layer_gradcam" and "layer" in p:
        res = p.get("layer_resolution")
        return (f"layer {p['layer']}" + (f" at {res[1]} x {res[0]}" if res else "")
                + ", upsampled bilinearly")
    # Any other method: its settings as "name value" pairs, with spaces for underscores.
    return ", ".join(f"{str(k).replace('_', ' ')} {v}" for k, v in p.items()
                     if not isinstance(v, (list, dict)))


def attribution_figure(attr: Attribution, image_uint8: np.ndarray, *, view: str = "signed",
                       name: str | None = None, opacity: float = 0.8,
                       display_width: int | None = None, zmax: float | None = None,
                       max_side: int | None = None, title: bool = True,
                       pool: int | None = None) -> go.Figure:
    """An attribution map over the attributed image, with completeness and vanishing notices.

    ``pool``: draw the map summed over ``pool`` x ``pool`` px blocks, in percent of the
    distance (signed) or of the total magnitude, on a colour scale that stops at the 99th
    percentile of the blocks in either view (:func:`pooled_attribution`): per-pixel
    gradients are a speckle a person cannot read; the exact per-pixel values stay in the JSON.

    ``name`` is how the attributed image is called on screen (default: its role, A or B);
    ``zmax`` shares one colour scale between maps shown side by side.
    """
    lookup("attribution view", view, ATTRIBUTION_VIEWS)
    heat = np.asarray(getattr(attr, view), dtype=np.float64)
    pooled_text = ""
    bar_title = "attribution"
    if pool is not None and pool > 1:
        heat, pooled_text, bar_title = pooled_attribution(attr, view, pool)
        if zmax is None:  # both views on a percentile: a few blocks cannot wash out the rest
            zmax = percentile_limit(heat)
    heading = f"{method_label(str(attr.method))} attribution, {view}"
    if attr.completeness_gap is not None:
        rel = attr.relative_gap
        heading += (f"<br><sub>sum {attr.total:.4f} vs distance {attr.distance:.4f}: "
                    f"completeness gap {attr.completeness_gap:.2e}"
                    f"{'' if rel is None else f' ({100 * rel:.2f}%)'}</sub>")
    target = name or attr.target.upper()
    params = attr.params or {}
    ptxt = attribution_settings_text(str(attr.method), params)
    what = (f"the regions of {target} as seen by layer {params.get('layer', '')}, "
            f"upsampled bilinearly to the image" if attr.method == "layer_gradcam" else
            f"{target}'s pixels, at image resolution, no upsampling")
    caption = (f"Map: {ATTRIBUTION_VIEWS[view]} attribution to the distance of {what} "
               f"({method_label(str(attr.method))}{f'; {ptxt}' if ptxt else ''})."
               + (f" {pooled_text}" if pooled_text else
                  f"{' Colour scale clipped at the 99.5th percentile of |value|.' if view == 'signed' and zmax is None else ''}"
                  f"{' One colour scale shared with the other map.' if zmax is not None else ''}"))
    notes = [str(n) for n in attr.notes]
    if view != "signed":  # the sign note explains negative values, which this view has none of
        notes = [n for n in notes if not n.startswith("Positive values")]
    if notes:
        caption += " " + " ".join(notes)
    fig = heatmap_overlay(image_uint8, heat, title=heading if title else None, caption=caption,
                          symmetric=view == "signed", colorbar_title=bar_title,
                          opacity=opacity, zmax=zmax, display_width=display_width,
                          max_side=max_side)
    if attr.vanishing:
        fig.add_annotation(
            text=("Gradients vanish here: LPIPS is quadratic in the feature difference, so at "
                  "(near-)identical images the map is (nearly) blank."),
            showarrow=False, xref="paper", yref="paper", x=0.5, y=1.0, yanchor="bottom",
            bgcolor="#fff3cd", bordercolor="#c9a227", font={"size": 12})
    return fig


POOL_PERCENTILE = 99.0


def pooled_attribution(attr: Attribution, view: str, pool: int) -> tuple[np.ndarray, str, str]:
    """(the map summed over ``pool`` x ``pool`` px blocks and spread back over each block's
    pixels, the sentence saying so, the colour bar's title). Each block's sum in percent of
    the distance (the signed view of a method whose sum is the distance: integrated
    gradients) or of the map's total magnitude (every other case)."""
    z = np.nan_to_num(np.asarray(getattr(attr, view), dtype=np.float64))
    h, w = z.shape
    rows, cols = -(-h // pool), -(-w // pool)
    padded = np.zeros((rows * pool, cols * pool))
    padded[:h, :w] = z
    blocks = padded.reshape(rows, pool, cols, pool).sum(axis=(1, 3))
    exact = (view == "signed" and getattr(attr, "completeness", None) == "exact"
             and float(getattr(attr, "distance", 0.0) or 0.0) > 0)
    total = float(attr.distance) if exact else float(np.abs(z).sum())
    blocks = 100.0 * blocks / total if total > 1e-30 else blocks
    full = np.repeat(np.repeat(blocks, pool, axis=0), pool, axis=1)[:h, :w]
    of = ("of the distance" if exact else "of the map's total magnitude")
    text = (f"Shown summed over {pool}x{pool} px blocks, each block in percent {of}; colour "
            f"scale to the {POOL_PERCENTILE:g}th percentile of the blocks (the exact "
            f"per-pixel map is in the JSON).")
    return full, text, f"% per {pool} px block"


def percentile_limit(heat: np.ndarray, q: float = POOL_PERCENTILE) -> float:
    """The colour scale's top for a map: the ``q``th percentile of |value| (its maximum when
    that is 0; 1 for an all-zero map)."""
    a = np.abs(np.asarray(heat, dtype=np.float64))
    a = a[np.isfinite(a)]
    if not a.size:
        return 1.0
    top = float(np.percentile(a, q))
    return top if top > 0 else (float(a.max()) or 1.0)


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
    custom = [[float(it.distance), _fmt(it.psnr, ".2f"), _fmt(it.ssim, ".4f"), group]
              for group, it in rows]
    fig = go.Figure(go.Bar(
        x=changes, y=labels, orientation="h", marker_color=colors,
        marker_pattern={"shape": patterns, "fgcolor": "#ffffff", "fillmode": "overlay"},
        customdata=custom, showlegend=False,
        hovertemplate=("%{y}<br>change %{x:+.4f}<br>distance %{customdata[0]:.4f}<br>"
                       "PSNR %{customdata[1]} dB, SSIM %{customdata[2]}<br>"
                       "%{customdata[3]}<extra></extra>"),
    ))
    _legend_entry(fig, "raises the distance", RAISES, kind="bar")
    _legend_entry(fig, "lowers the distance", LOWERS, kind="bar")
    if any(patterns):
        _legend_entry(fig, "rotation or shift (geometric)", "#888888", kind="bar", pattern="/")
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
        fig.add_trace(go.Scatter(x=x, y=_finite_list(values), name=name, mode="lines+markers",
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
    _legend_entry(fig, f"half the distance ({base / 2:.4f})", GUIDE, dash="dash")
    half = rep.half_area
    if half is not None and math.isfinite(float(half)):
        fig.add_vline(x=float(half), line={"dash": "dot", "color": GUIDE})
        _legend_entry(fig, f"half of it lies in {100 * float(half):.1f}% of the area", GUIDE,
                      dash="dot")
    if threshold is not None:
        fig.add_hline(y=float(threshold), line={"dash": "dashdot", "color": threshold_color})
        _legend_entry(fig, f"{threshold_label or 'threshold'} ({float(threshold):.4f})",
                      threshold_color, dash="dashdot")
    if mark_area is not None:
        fig.add_vline(x=float(mark_area), line={"color": DISTANCE_TOTAL, "width": 2})
        _legend_entry(fig, f"{mark_label or 'marked'} at {100 * float(mark_area):.1f}% of the "
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
                      legend=_BELOW_LEGEND, margin={"b": 120, "t": 30 + 20 * len(lines)})
    fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%")
    fig.update_yaxes(rangemode="tozero")
    _set_caption(fig, caption)
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
    _legend_entry(fig, "favours A (A closer in this layer)", CANDIDATE_A, kind="bar")
    _legend_entry(fig, "favours B", CANDIDATE_B, kind="bar")
    verdict = {"a": "A is closer", "b": "B is closer", "tie": "a tie"}.get(tri.closer, tri.closer)
    fig.add_hline(y=0, line={"color": "#444", "width": 1})
    top = max((abs(m) for m in margins), default=0.0) or 1.0
    fig.update_yaxes(range=[min(0.0, min(margins)) - 0.18 * top,
                            max(0.0, max(margins)) + 0.18 * top])
    fig.update_layout(
        title=f"Per-layer margins d(REF, B) - d(REF, A): total {tri.margin:+.4f} ({verdict})",
        xaxis_title="layer (shallow to deep; the hatched bar is the total)",
        yaxis_title="margin", height=400, legend=_BELOW_LEGEND, margin={"b": 110, "t": 50})
    return fig


def comparison_figure(a_uint8: np.ndarray, b_uint8: np.ndarray) -> go.Figure:
    """A and B side by side, plus a panel whose slider flicks between A and B (works offline).

    The app and the HTML report use the swipe component (lpips_explain.output.compare)."""
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

"""Maps drawn over images: overlays, the spatial breakdown, maps side by side, the
triplet's margin map, channel grids, and the two images compared."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lpips_explain.analyses.pair.map_scale import MapScale, hottest_window, map_scale
from lpips_explain.core.decompose import UPSAMPLING, Decomposition, LayerBreakdown
from lpips_explain.errors import InputError, lookup
from lpips_explain.output.figures.common import (
    colour_bar_scale,
    colour_bar_spec,
    set_caption,
)
from lpips_explain.output.imaging import (
    as_uint8_image,
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
    INFERNO,
)

CHANNEL_VIEWS: dict[str, str] = {
    "diff": "diff_map",
    "activation_a": "activation_a",
    "activation_b": "activation_b",
}


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
                    "colorscale": colour_bar_scale(symmetric=symmetric, cmap=cmap,
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
    bar = colour_bar_spec(colorbar_title, colorbar_ticks, y=0.5, yanchor="middle")
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
    set_caption(fig, caption)
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
    bar = colour_bar_spec(colorbar_title, colorbar_ticks)
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
    axis = {"colorscale": colour_bar_scale(symmetric=symmetric, cmap=cmap, opacity=opacity),
            "cmin": lo, "cmax": hi, "colorbar": bar, "showscale": True}
    fig.update_layout(coloraxis=axis, width=area + 4 + right, height=height + top + 6,
                      margin={"l": 4, "r": right, "t": top, "b": 6}, autosize=False,
                      showlegend=False, plot_bgcolor="#ffffff")
    fig.update_annotations(font_size=12)
    set_caption(fig, caption)
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

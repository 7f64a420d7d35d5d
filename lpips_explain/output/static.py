"""Static figures: one-page PNG summaries drawn with matplotlib (Agg canvas, no global state)."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure

from lpips_explain import notices
from lpips_explain.analyses.pair.categories import category_text
from lpips_explain.analyses.pair.explanation import Explanation, category_of
from lpips_explain.analyses.pair.map_scale import hottest_window, scale_for
from lpips_explain.analyses.pair.perturbations import strength_text
from lpips_explain.output.figures import margin_map, sensitivity_rows
from lpips_explain.output.imaging import (
    as_uint8_image,
    colour_bar_rgb,
    explained_images,
    map_limits,
    outline,
    overlay_image,
    size_text,
)
from lpips_explain.output.palette import (
    AMOUNT,
    DISTANCE,
    FAVOUR_A,
    FAVOUR_B,
    GUIDE,
    LOWERS,
    MPL_CANDIDATES,
    MPL_DIVERGING,
    NEUTRAL,
    RAISES,
)
from lpips_explain.output.scale import draw_result_scale

MAP_OPACITY = 0.8  # as the app's default

# --------------------------------------------------------------------------- matplotlib


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _show_image(ax: Axes, image: np.ndarray, title: str) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()


def _text_block(ax: Axes, lines: Sequence[str], width: int = 150) -> None:
    ax.set_axis_off()
    wrapped = [w for line in lines for w in (textwrap.wrap(line, width) or [""])]
    ax.text(0.0, 1.0, "\n".join(wrapped), va="top", ha="left", fontsize=9,
            transform=ax.transAxes, family="DejaVu Sans")


def _wrapped_count(lines: Sequence[str], width: int = 150) -> int:
    return sum(max(1, len(textwrap.wrap(line, width))) for line in lines)


def _barh(ax: Axes, labels: Sequence[str], values: Sequence[float], title: str,
          colors: Sequence[str] | str = DISTANCE) -> None:
    pos = np.arange(len(labels))
    ax.barh(pos, values, color=colors)
    ax.set_yticks(pos, labels=list(labels), fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#444", linewidth=0.8)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8)


def _wrap_title(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _map_axis(fig: Figure, ax: Axes, image: np.ndarray, heat: np.ndarray, title: str, *,
              cmap: str, symmetric: bool = False, zmax: float | None = None,
              label: str = "", opacity: float = MAP_OPACITY,
              box: tuple[float, float, float, float] | None = None) -> Colorbar:
    """The photo in grey with a map over it and its colour bar attached (row 0 at the top):
    the very pixels and colour bar of the app's map (imaging.overlay_image, colour_bar_rgb)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    z = np.asarray(heat, dtype=np.float64)
    lo, hi = map_limits(z, symmetric, zmax)
    top = hi if symmetric or lo == 0.0 else None
    drawn = overlay_image(image, z, opacity=opacity, symmetric=symmetric, zmax=top, cmap=cmap)
    ax.imshow(drawn if box is None else outline(drawn, box), interpolation="nearest")
    ax.set_title(_wrap_title(title), fontsize=9)
    ax.set_axis_off()
    bar_colours = colour_bar_rgb(symmetric=symmetric, cmap=cmap, opacity=opacity, n=256)
    mappable = ScalarMappable(norm=Normalize(lo, hi), cmap=ListedColormap(bar_colours / 255.0))
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02, shrink=0.9)
    bar.ax.tick_params(labelsize=7)
    if label:
        bar.set_label(label, fontsize=8)
    return bar


def _with_opinions(lines: list[str], opinions: Any) -> list[str]:
    """The summary with the second opinions' values (each on its own scale) just before
    their sentences (the summary carries those already), and what could not run."""
    if opinions is None or not opinions.opinions:
        return lines
    head = f"Second opinions (each on its own scale): {opinions.values_text()}."
    said = set(opinions.sentences)
    at = next((i for i, line in enumerate(lines) if line in said), len(lines))
    missing = [s for s in opinions.sentences if s not in lines]
    return [*lines[:at], head, *lines[at:], *missing, *opinions.failures]


SCALE_H = 1.1  # inches: the distance scale above the images


def summary_png(expl: Explanation) -> bytes:
    """A static one-page PNG: A, B, the distance map and the attribution map (each with its
    colour bar), layer and sensitivity bars, the repair curve and the summary."""
    dec = expl.decomposition
    _, target, ref_name, target_name = explained_images(expl)
    # The summary already says "random weights" in words: not twice.
    lines = _with_opinions(list(expl.summary), expl.second_opinions) + [
        f"Warning: {w}" for w in notices.without(expl.warnings, notices.RANDOM_TRUNK)]
    text_h = 0.18 * _wrapped_count(lines, 140) + 0.5
    fig = _new_figure(14, SCALE_H + 4.2 + 3.6 + text_h)
    rows = fig.add_gridspec(2, 1, height_ratios=[SCALE_H, 4.2 + 3.6 + text_h], hspace=0.05)
    draw_result_scale(rows[0].subgridspec(1, 3)[0, 1:].subgridspec(1, 1).subplots(),
                      [(f"d = {dec.distance:.4f}", dec.distance)], dec.net, dec.version,
                      expl.backbone, getattr(expl, "lin_heads", None),
                      expl.category_info.limits)
    outer = rows[1].subgridspec(3, 1, height_ratios=[4.2, 3.6, text_h])
    top = outer[0].subgridspec(1, 4)
    _show_image(fig.add_subplot(top[0, 0]), as_uint8_image(expl.a),
                f"A{' (reference)' if ref_name == 'A' else ' (explained)'}")
    _show_image(fig.add_subplot(top[0, 1]), as_uint8_image(expl.b),
                f"B{' (reference)' if ref_name == 'B' else ' (explained)'}")
    scale, heat = scale_for(expl), dec.spatial_map(None, "bilinear")
    _map_axis(fig, fig.add_subplot(top[0, 2]), target, heat,
              f"Where the distance is: all layers, bilinear, over {target_name} (box: the "
              f"hottest quarter-size window)", cmap=AMOUNT, zmax=scale.limit,
              box=hottest_window(heat).edges,
              label=(f"distance (fixed {dec.net} v{dec.version} scale)" if scale.fixed
                     else "distance (this pair's own scale)"))
    ax = fig.add_subplot(top[0, 3])
    attr = expl.attribution
    if attr is not None:
        _map_axis(fig, ax, target, np.asarray(attr.signed, dtype=np.float64),
                  f"{attr.method.replace('_', ' ').capitalize()} attribution of "
                  f"{target_name} (red raises, blue lowers)", cmap=MPL_DIVERGING,
                  symmetric=True, label="attribution")
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "attribution not computed", ha="center", va="center", color="#777")

    mid = outer[1].subgridspec(1, 3)
    ax = fig.add_subplot(mid[0, 0])
    _barh(ax, [f"{lay.name} {size_text(lay.resolution)}" for lay in dec.layers],
          [lay.distance for lay in dec.layers],
          f"per-layer distance (sum = {dec.distance:.4f})", DISTANCE)
    sens = expl.sensitivity
    ax = fig.add_subplot(mid[0, 1])
    if sens is not None and (sens.items or sens.geometric):
        rows = sensitivity_rows(sens)
        _barh(ax, [f"{it.label}, {strength_text(it.unit, it.strength)}"
                   + (" (geometric table)" if g == "geometric" else "") for g, it in rows],
              [it.change for _, it in rows],
              _wrap_title(f"change when {target_name} is perturbed (base "
                          f"{sens.base_distance:.4f}; red raises, blue lowers)", 48),
              [RAISES if it.change >= 0 else LOWERS for _, it in rows])
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "sensitivity not computed", ha="center", va="center", color="#777")
    rep = expl.repair
    ax = fig.add_subplot(mid[0, 2])
    if rep is not None and len(rep.curve_area):
        ax.plot(rep.curve_area, rep.curve_distance, marker="o", markersize=3, color=DISTANCE)
        ax.axhline(rep.base_distance / 2, color=GUIDE, linestyle="--", linewidth=0.8)
        if rep.half_area is not None and math.isfinite(float(rep.half_area)):
            ax.axvline(float(rep.half_area), color=GUIDE, linestyle=":", linewidth=0.8)
        ax.set_xlabel("fraction of area repaired", fontsize=8)
        ax.set_ylabel("remaining distance", fontsize=8)
        ax.set_title(f"repair of {target_name} with {ref_name}'s patches "
                     f"({rep.order_name.replace('_', ' ')} order)", fontsize=10)
        ax.tick_params(labelsize=8)
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "repair not computed", ha="center", va="center", color="#777")
    _text_block(fig.add_subplot(outer[2, 0]), lines, 140)
    fig.suptitle(f"LPIPS ({dec.net}, v{dec.version}) d({ref_name}, {target_name}) = "
                 f"{dec.distance:.4f}: {category_text(expl.category)}", fontsize=13)
    return _figure_png(fig)


def triplet_png(tri: Any) -> bytes:
    """A static one-page PNG of a triplet: REF, A, B, where each loses, the per-layer margins
    and the flip."""
    ims = [as_uint8_image(t) for t in tri.inputs.tensors[:3]]
    lines = list(tri.summary) or [tri.flip.statement]
    if tri.flip.statement not in lines:
        lines.append(tri.flip.statement)
    lines += [f"Warning: {w}" for w in notices.without(tri.warnings, notices.RANDOM_TRUNK)]
    text_h = 0.18 * _wrapped_count(lines, 140) + 0.5
    fig = _new_figure(14, SCALE_H + 4.2 + 3.4 + text_h)
    rows = fig.add_gridspec(2, 1, height_ratios=[SCALE_H, 4.2 + 3.4 + text_h], hspace=0.05)
    dec_a = tri.decomposition_a
    draw_result_scale(rows[0].subgridspec(1, 3)[0, 1:].subgridspec(1, 1).subplots(),
                      [("A", tri.distance_a, FAVOUR_A), ("B", tri.distance_b, FAVOUR_B)],
                      dec_a.net, dec_a.version, tri.backbone, tri.lin_heads,
                      category_of(tri.distance_a, dec_a.net, dec_a.version, tri.backbone,
                                  tri.lin_heads).limits)
    outer = rows[1].subgridspec(3, 1, height_ratios=[4.2, 3.4, text_h])
    top = outer[0].subgridspec(1, 4)
    closer = tri.closer
    _show_image(fig.add_subplot(top[0, 0]), ims[0], "REF")
    _show_image(fig.add_subplot(top[0, 1]), ims[1],
                f"A: d = {tri.distance_a:.4f}{' (closer)' if closer == 'a' else ''}")
    _show_image(fig.add_subplot(top[0, 2]), ims[2],
                f"B: d = {tri.distance_b:.4f}{' (closer)' if closer == 'b' else ''}")
    _map_axis(fig, fig.add_subplot(top[0, 3]), ims[0],
              margin_map(tri.decomposition_a, tri.decomposition_b),
              "Where each loses: purple B farther, orange A farther", cmap=MPL_CANDIDATES,
              symmetric=True, label="d(REF,B) - d(REF,A)")
    ax = fig.add_subplot(outer[1, 0])
    layers = list(tri.layers)
    margins = [lay.margin for lay in layers] + [tri.margin]
    pos = np.arange(len(margins))
    ax.bar(pos, margins, color=[FAVOUR_A if m > 0 else FAVOUR_B if m < 0 else NEUTRAL
                                for m in margins])
    ax.set_xticks(pos, labels=[lay.name for lay in layers] + ["total"], fontsize=9)
    ax.axhline(0, color="#444", linewidth=0.8)
    ax.set_title("margin d(REF, B) - d(REF, A) per layer (purple favours A, orange favours B)",
                 fontsize=10)
    _text_block(fig.add_subplot(outer[2, 0]), lines, 140)
    verdict = {"a": "A is closer", "b": "B is closer", "tie": "tie"}.get(closer, closer)
    fig.suptitle(f"2AFC: {verdict} to REF (margin {tri.margin:+.4f})", fontsize=13)
    return _figure_png(fig)

"""The distance scale: one bar from 0 with the category limits as segments, the distances
of a pair (or a triplet) as markers, and, for the verified published trunk, the fixed scale
of its trunk and version with familiar distortions marked on it
(:mod:`~lpips_explain.analyses.pair.anchors`). The same drawing in the app and the HTML
report (:func:`scale_html`, with :data:`SCALE_CSS`) and in the PNG summaries
(:func:`draw_scale`). Without an anchor the scale is a plain bar and says why it is not
anchored.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

from lpips_explain.analyses.pair.categories import NAMES as CATEGORIES

SEGMENT_COLOURS = ("#d9ead3", "#fff2cc", "#fce5cd", "#f4cccc")
ANCHOR_COLOUR = "#6b6b6b"
NOMINAL_WIDTH_PX = 300.0  # the width label rows are laid out for (a card column)

SCALE_CSS = """
.lx-scale{position:relative;height:44px;margin:.35rem 0 .2rem 0;font-size:11px;color:#444}
.lx-scale:has(.leg){height:60px}
.lx-scale .leg{position:absolute;top:44px;left:0;white-space:nowrap}
.lx-scale .seg{position:absolute;top:0;height:12px;border-right:1px solid #fff}
.lx-scale .lab{position:absolute;top:15px;white-space:nowrap}
.lx-scale .mark{position:absolute;top:-4px;width:3px;height:20px;margin-left:-1px;
  background:#111;border-radius:1px}
.lx-scale .marklab{position:absolute;top:28px;font-weight:700;white-space:nowrap;
  transform:translateX(-50%)}
.lx-scale.anchored{height:auto;padding-top:16px}
.lx-scale.anchored .bar{position:relative;height:12px}
.lx-scale.anchored .mark{top:-5px;height:22px}
.lx-scale.anchored .marklab{top:-17px}
.lx-scale.anchored .tick{position:absolute;top:12px;width:1px;height:6px;background:#6b6b6b}
.lx-scale.anchored .alab{position:absolute;font-size:10px;color:#6b6b6b;white-space:nowrap;
  transform:translateX(-50%)}
.lx-scale.anchored .lab{top:auto;position:absolute;font-size:10px;color:#999}
.lx-scale.anchored .rows{position:relative}
.lx-scale.anchored .leg{position:static;margin-top:2px}
"""


def _label_rows(items: Sequence[tuple[str, float]], char_px: float = 5.6,
                gap_px: float = 6.0) -> list[int]:
    """A row for each (label, position 0..1), greedily, so labels in a row do not overlap
    (at :data:`NOMINAL_WIDTH_PX`)."""
    ends: list[float] = []  # the right end (px) of the last label in each row
    rows = []
    for label, pos in items:
        half = len(label) * char_px / 2
        centre = min(max(pos * NOMINAL_WIDTH_PX, half), NOMINAL_WIDTH_PX - half)
        row = next((i for i, end in enumerate(ends) if centre - half >= end + gap_px), None)
        if row is None:
            ends.append(0.0)
            row = len(ends) - 1
        ends[row] = centre + half
        rows.append(row)
    return rows


def _clamped_left(pos: float, label: str, char_px: float = 5.6) -> float:
    """A label's centre in % of the bar, kept inside it."""
    half = 100 * len(label) * char_px / 2 / NOMINAL_WIDTH_PX
    return min(max(100 * pos, half), 100 - half)


def scale_html(marks: Sequence[tuple], limits: Sequence[float], anchor: Any = None,
               no_anchor: str | None = None) -> str:
    """A horizontal distance scale from 0 with the category limits (if any) as labelled
    segments and one marker per (label, distance[, colour]). With ``anchor`` (an
    anchors.Anchor) the scale is its fixed one: 0 to ``anchor.top`` for every pair, with its
    familiar distortions marked below the bar; ``no_anchor`` is the line shown instead when
    there is none."""
    if anchor is not None:
        return _anchored_html(marks, limits, anchor)
    values = [m[1] for m in marks if np.isfinite(m[1])]
    top = max([0.8 if limits else 0.0, *(1.25 * v for v in values), 1e-6])
    if not limits:  # no categories: a plain 0..top bar with round ends
        top = float(f"{top:.1g}") if top < 1 else float(np.ceil(top * 10) / 10)
        top = max(top, max(values, default=0.0) * 1.05, 1e-6)
    parts = ['<div class="lx-scale">']
    edges = [0.0, *limits, top]
    names = CATEGORIES if limits else ("",)
    for i, name in enumerate(names[: len(edges) - 1]):
        lo, hi = edges[i], min(edges[i + 1], top)
        if hi <= lo:
            continue
        left, width = 100 * lo / top, 100 * (hi - lo) / top
        colour = SEGMENT_COLOURS[i] if limits else "#e6e6e6"
        parts.append(f'<div class="seg" style="left:{left:.2f}%;width:{width:.2f}%;'
                     f'background:{colour}"></div>')
        if name and i > 0:
            parts.append(f'<div class="lab" style="left:{left:.2f}%;'
                         f'transform:translateX(-50%)" title="{html.escape(name)} from '
                         f'{lo:.3g}">{lo:.3g}</div>')
    if limits:
        parts.append(f'<div class="leg">{_legend(len(limits))}</div>')
    if not limits:
        parts.append('<div class="lab" style="left:0">0</div>'
                     f'<div class="lab" style="right:0">{top:.3g}</div>')
    for mark in marks:
        label, d = mark[0], mark[1]
        colour = mark[2] if len(mark) > 2 else "#111"
        pos = min(100.0, 100 * d / top)
        parts.append(f'<div class="mark" style="left:{pos:.2f}%;background:{colour}"></div>'
                     f'<div class="marklab" style="left:{min(max(pos, 4), 96):.2f}%;'
                     f'color:{colour}">{html.escape(label)}</div>')
    parts.append("</div>")
    if no_anchor:
        parts.append(f'<div class="lx-small" style="font-size:11px;color:#777">No fixed scale: '
                     f"{html.escape(no_anchor)}.</div>")
    return "".join(parts)


def _legend(n_limits: int) -> str:
    return " · ".join(
        f'<span style="color:{SEGMENT_COLOURS[i]};filter:brightness(.55)">&#9632;</span> '
        f"{html.escape(n)}" for i, n in enumerate(CATEGORIES[: n_limits + 1]))


def _anchored_html(marks: Sequence[tuple], limits: Sequence[float], anchor: Any) -> str:
    top = float(anchor.top)
    bar = ['<div class="bar">']
    edges = [0.0, *[x for x in limits if x < top], top]
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        colour = SEGMENT_COLOURS[i] if limits else "#e6e6e6"
        tip = f"{CATEGORIES[i]}: {lo:.3g} to {hi:.3g}" if limits else ""
        bar.append(f'<div class="seg" title="{html.escape(tip)}" style="left:{100 * lo / top:.2f}%;width:{100 * (hi - lo) / top:.2f}%;'
                   f'background:{colour}"></div>')
    for m in anchor.marks:
        if m.distance <= top:
            bar.append(f'<div class="tick" style="left:{100 * m.distance / top:.2f}%"></div>')
    pair_marks = []
    for mark in marks:
        label, d = mark[0], float(mark[1])
        colour = mark[2] if len(mark) > 2 else "#111"
        beyond = d > top
        pos = min(1.0, max(0.0, d / top))
        text = f"{label} ▸ beyond the scale" if beyond else label
        pair_marks.append((text, pos, colour))
        bar.append(f'<div class="mark" style="left:{100 * pos:.2f}%;background:{colour}">'
                   "</div>")
    # The pairs' labels above the bar (rows if they would overlap), anchors' below.
    mrows = _label_rows([(t, p) for t, p, _ in pair_marks], char_px=6.6)
    for (text, pos, colour), row in zip(pair_marks, mrows, strict=True):
        bar.append(f'<div class="marklab" style="left:{_clamped_left(pos, text, 6.6):.2f}%;'
                   f'top:{-17 - 13 * row}px;color:{colour}">{html.escape(text)}</div>')
    bar.append("</div>")
    shown = [(m.label, m.distance / top) for m in anchor.marks if m.distance <= top]
    rows = _label_rows(shown)
    below = [f'<div class="rows" style="height:{14 * (max(rows, default=-1) + 1) + 14}px">']
    below.append(f'<div class="lab" style="left:0;top:{14 * (max(rows, default=-1) + 1)}px">0'
                 "</div>")
    below.append(f'<div class="lab" style="right:0;top:{14 * (max(rows, default=-1) + 1)}px">'
                 f"{top:.2g}</div>")
    for (label, pos), row, m in zip(shown, rows, [m for m in anchor.marks
                                                   if m.distance <= top], strict=True):
        below.append(f'<div class="alab" style="left:{_clamped_left(pos, label):.2f}%;'
                     f'top:{4 + 14 * row}px" title="{html.escape(m.words)} of the bundled '
                     f'photographs: d = {m.distance:.3f} (median over {anchor.images})">'
                     f"{html.escape(label)}</div>")
    below.append("</div>")
    extra = 13 * (max(mrows, default=0))
    legend = f'<div class="leg">{_legend(len(limits))}</div>' if limits else ""
    return (f'<div class="lx-scale anchored" style="padding-top:{16 + extra}px">'
            f'{"".join(bar)}{"".join(below)}{legend}</div>')


def draw_scale(ax: Any, marks: Sequence[tuple], limits: Sequence[float],
               anchor: Any = None, no_anchor: str | None = None) -> None:
    """The same scale on a matplotlib axis (the PNG summaries): segments, markers of the
    pair, the anchor's familiar distortions below; a plain 0..top bar without an anchor."""
    values = [float(m[1]) for m in marks if np.isfinite(m[1])]
    top = float(anchor.top) if anchor is not None else max([1.25 * v for v in values] + [1e-6])
    ax.set_xlim(0, top)
    ax.set_ylim(-1.6, 1.8)
    ax.set_axis_off()
    edges = [0.0, *[x for x in limits if x < top], top]
    for i in range(len(edges) - 1):
        ax.barh(0, edges[i + 1] - edges[i], left=edges[i], height=0.5,
                color=SEGMENT_COLOURS[i] if limits else "#e6e6e6", edgecolor="white")
    if anchor is not None:
        rows = _label_rows([(m.label, m.distance / top) for m in anchor.marks
                            if m.distance <= top], char_px=7.0)
        for m, row in zip([m for m in anchor.marks if m.distance <= top], rows, strict=True):
            ax.plot([m.distance, m.distance], [-0.25, -0.45], color=ANCHOR_COLOUR, lw=0.8)
            ax.text(m.distance, -0.7 - 0.45 * row, m.label, ha="center", va="center",
                    fontsize=7, color=ANCHOR_COLOUR)
    texts = [(m[0] + (" ▸ beyond the scale" if float(m[1]) > top else ""),
              min(float(m[1]), top) / top) for m in marks]
    for mark, (text, _), row in zip(marks, texts, _label_rows(texts, char_px=7.0),
                                    strict=True):
        colour = mark[2] if len(mark) > 2 else "#111111"
        x = min(float(mark[1]), top)
        ax.plot([x, x], [-0.35, 0.35], color=colour, lw=2.5)
        ax.text(x, 0.75 + 0.4 * row, text, ha="center", va="center", fontsize=8,
                fontweight="bold", color=colour)
    ax.text(0, -0.05, "0 ", ha="right", va="center", fontsize=7, color="#999")
    ax.text(top, -0.05, f" {top:.2g}", ha="left", va="center", fontsize=7, color="#999")
    if anchor is None and no_anchor:
        ax.text(0, -0.9, f"No fixed scale: {no_anchor}.", fontsize=7, color="#777",
                va="center")


def result_scale_html(marks: Sequence[tuple], net: str, version: str, backbone: Any,
                      heads: Any = None, limits: Sequence[float] | None = None) -> str:
    """:func:`scale_html` on the fixed scale of a result's trunk and version (its anchor), or
    a plain scale saying why there is none: for the HTML reports."""
    from lpips_explain.analyses.pair.anchors import anchor_of

    anchor, why = anchor_of(net, version, backbone, heads, tuple(limits or ()))
    # about the card's width: the labels are laid out for it
    return (f'<div style="max-width:{2 * NOMINAL_WIDTH_PX:.0f}px">'
            f"{scale_html(marks, tuple(limits or ()), anchor, why)}</div>")


def draw_result_scale(ax: Any, marks: Sequence[tuple], net: str, version: str, backbone: Any,
                      heads: Any = None, limits: Sequence[float] | None = None) -> None:
    """:func:`draw_scale` on a result's fixed scale (or a plain one saying why not)."""
    from lpips_explain.analyses.pair.anchors import anchor_of

    anchor, why = anchor_of(net, version, backbone, heads, tuple(limits or ()))
    draw_scale(ax, marks, tuple(limits or ()), anchor, why)

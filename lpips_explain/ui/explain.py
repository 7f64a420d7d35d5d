"""The Explain page: its parts (computed on one prepared pair) and the verdict card; the "where"
view is in :mod:`~lpips_explain.ui.explain_where`, the before/after comparison, the panels
below and the downloads in :mod:`~lpips_explain.ui.explain_panels`.

No maths here: numbers come from the result objects, figures from lpips_explain.output.
Roles (which image is the reference, which one is explained) are read off the result
(``expl.reference``, ``expl.explained``, ``expl.reference_name``, ``expl.explained_name``),
never worked out again. Display-only widgets are keyed and never trigger a recomputation.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import streamlit as st

from lpips_explain.analyses.pair.anchors import anchor_of
from lpips_explain.analyses.pair.equivalents import reached_phrases
from lpips_explain.analyses.pair.explanation import Explanation, join_parts, summary_of
from lpips_explain.analyses.pair.map_scale import hottest_window, scale_for
from lpips_explain.analyses.pair.regions import repair_sentence
from lpips_explain.analyses.pair.second_opinions import SecondOpinions
from lpips_explain.analyses.pair.summary import (
    describe_image,
    describe_sensitivity,
)
from lpips_explain.explainer import Explainer
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.output import imaging
from lpips_explain.ui.controls import Options, mode_badge
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.widgets import (
    category_limits,
    drawn,
    note,
    presenting,
    scale,
)
from lpips_explain.validation import Progress, pct

# In the order the page computes them: the card's parts first (the distance, the repair
# headline, the equivalents), then the second opinions; the sensitivity (its panel's button)
# and the attribution (the map view) on request: on a 600x400 pair they take 8 s and 15 s
# (integrated gradients and its deletion check) of a full explanation's 40 s.
PARTS = ("breakdown", "repair", "equivalents", "second opinions", "sensitivity",
         "attribution")
CARD_PARTS = ("repair", "equivalents")
# The page evaluates each repair curve at about this many values of k, refined around the
# goal to one patch (repair(max_points=...)), where the CLI and the API take 24: the card
# waits for the repair headline, and on the 600x400 pair of benchmarks/bench_app.py this is
# 17 trunk passes instead of 33 (repair 1.97 s against 3.0-3.3 s on the 2-core AVX2 VM).
# The goal step is the same wherever the curve falls monotonically near the goal; every
# point is a real distance, and the repair notes say how many steps were evaluated.
APP_REPAIR_POINTS = 8
# The longest side of the images the card draws (its map and the repaired thumbnail, about
# 200 px wide on the page) and of the swipe comparison's photos (zoomable: 2.8x at 720 px).
CARD_SIDE = 480
COMPARE_SIDE = 2048
SUMMED = "__all__"
UPSAMPLING_LABELS = {"none": "none (the layer's own grid)", "bilinear": "bilinear (official)",
                     "mean_preserving": "mean-preserving"}
GLOSSARY_TERMS = ("LPIPS", "trunk", "layer", "channel", "lin weight", "category", "spatial map",
                  "bilinear", "mean-preserving", "attribution", "integrated gradients",
                  "completeness gap", "saliency", "SmoothGrad", "occlusion", "Grad-CAM", "PSNR",
                  "SSIM", "repair", "random trunk")


def map_width() -> int:
    """How wide the large maps are drawn: larger in presentation mode (no sidebar)."""
    return 720 if presenting() else 540


# --- the parts -----------------------------------------------------------------------------------


def compute_part(explainer: Explainer, prep: PreparedInputs, opts: Options, swap: bool,
                 part: str, progress: Progress | None,
                 breakdown: Explanation | None = None) -> Explanation:
    """One part of the explanation, computed on the pair prepared once (``part`` is one of
    :data:`PARTS` but the second opinions). Every part carries a breakdown: ``breakdown``'s
    (the page's first part, for the same pair and roles) when given, so the trunk does not
    run over both images again for each part (at 12 MP that is seconds a part), else its
    own."""
    return explainer.explain_prepared(
        prep, attribution=opts.method if part == "attribution" else None, steps=opts.steps,
        attribution_params=opts.attribution_params if part == "attribution" else None,
        sensitivity=part == "sensitivity", repair=part == "repair", patch=opts.repair_patch,
        top_k=opts.top_k, swap=swap, progress=progress, equivalents=part == "equivalents",
        repair_points=APP_REPAIR_POINTS, breakdown=None if part == "breakdown" else breakdown,
        explanation_plan=True)  # the breakdown is the first part of a whole explanation


def part_key(part: str, base: tuple, opts: Options) -> tuple:
    """The cache key of a part: the pair, the roles and only the options that part uses.
    "Top channels per layer" is the breakdown's alone: the page joins every part to the
    breakdown (join_parts takes the decomposition from it), so changing it recomputes
    only the fast breakdown."""
    extra = {"breakdown": (opts.top_k,), "repair": (opts.patch,), "equivalents": (),
             "attribution": (opts.method, opts.steps, opts.params), "sensitivity": ()}[part]
    return (*base, *extra)


def join(base: Explanation, parts: Sequence[Explanation]) -> Explanation:
    """The parts put together (join_parts refuses parts of another pair or other roles)."""
    return join_parts(base, *parts)


def _sentences_of(expl: Explanation, part: str) -> list[str]:
    """The summary's sentences that a part contributed (the summary without it lacks them)."""
    if getattr(expl, part) is None:
        return []
    without = set(summary_of(replace(expl, **{part: None})))
    return [s for s in expl.summary if s not in without]


def card_sentences(expl: Explanation) -> list[str]:
    """The card's sentences about the image: where the distance is (a named region and its
    share) and what kind of change it is (analyses.pair.regions' rule), then what moves the
    distance most once the sensitivity is computed. Layer and channel facts are in the
    layer and channel panels; the repair has its own place beside."""
    in_summary = set(expl.summary)
    about = [s for s in describe_image(expl.decomposition, expl.reference, expl.explained,
                                       reference=expl.reference_name,
                                       explained=expl.explained_name) if s in in_summary]
    sens = (describe_sensitivity(expl.sensitivity, expl.explained_name)
            if expl.sensitivity is not None else [])
    return [*about, *[s for s in sens if s in in_summary]][:3]


# --- the verdict card --------------------------------------------------------------------------


def card_map(explained: Any, heat: np.ndarray, edges: tuple[float, float, float, float],
             limit: float) -> np.ndarray:
    """The card's map: ``heat`` over the explained image in grey with the hottest window
    boxed, at most :data:`CARD_SIDE` px a side (area means of both: the card shows it about
    200 px wide; drawing a 12 MP overlay and sending it took seconds per draw)."""
    image = imaging.downsample_image(explained, CARD_SIDE)
    shown = imaging.overlay_image(image, imaging.downsample_map(heat, CARD_SIDE), zmax=limit)
    return imaging.outline(shown, edges)


def _card_images(expl: Explanation) -> tuple[Any, Any, list[tuple[np.ndarray, int]],
                                             np.ndarray]:
    """The card's hottest window, map scale, boxed crops of A and B (with their zoom) and
    its map: all derived from the decomposition and the images."""
    heat, mscale = expl.decomposition.spatial_map(None, "bilinear"), scale_for(expl)
    hot = hottest_window(heat)
    crops = []
    for img in (expl.a, expl.b):
        crop, zoom, _ = imaging.zoom_crop(imaging.as_uint8_image(img), hot.edges, target=160)
        crops.append((crop, zoom))
    return hot, mscale, crops, card_map(expl.explained, heat, hot.edges, mscale.limit)


@panel("the verdict")
def verdict_card(expl: Explanation, *, waiting: Sequence[str] = ()) -> None:
    """The answer first: the distance on its scale, the verdict sentence, A | B | map at one
    size, the three most informative sentences and the repair headline with its thumbnail."""
    dec = expl.decomposition
    with st.container(border=True):
        left, col_a, col_b, col_m = st.columns([1.55, 1, 1, 1], gap="medium")
        with left:
            # No category says why not, in short (the full reason is in the JSON).
            why = ("the trunk is not the verified published one" if not expl.backbone.perceptual
                   else "no limits are computed for this trunk and version")
            category = (f'<p class="lx-category">{html.escape(expl.category)}</p>'
                        if expl.category else f'<p class="lx-small">No category: {why}.</p>')
            st.html(f'<p class="lx-distance">{dec.distance:.4f}</p>{category}')
            note(f"distance = {dec.distance:.6f}")
            mode_badge(expl.mode)  # "approximate (bf16)" beside a number from a fast mode
            anchor, no_anchor = anchor_of(dec.net, dec.version, expl.backbone,
                                          getattr(expl, "lin_heads", None),
                                          category_limits(expl.category_info))
            scale([(f"d = {dec.distance:.4f}", dec.distance)], category_limits(expl.category_info),
                  anchor=anchor, no_anchor=no_anchor)
            # The verdict sentence; with a category, only where the distance falls (the
            # number and the category are above it, the limits on the scale).
            placement = expl.category_info.placement
            verdict = (placement.capitalize() + "." if placement
                       else expl.summary[0] if expl.summary else None)
            if verdict:
                st.html(f'<p class="lx-verdict lx-placement">{html.escape(verdict)}</p>')
        names = {expl.reference_name: "reference", expl.explained_name: "explained"}
        # The card is drawn again as parts arrive and on every click: its images are kept.
        hot, mscale, crops, shown = drawn("card images", lambda: _card_images(expl), dec,
                                          expl.a, expl.b, expl.explained)
        # The boxed region of A and B, each pixel a square (never shrunk): thumbnails of the
        # whole images hide exactly what the distance is about (JPEG blocks, grain, a blur).
        for col, name, (crop, zoom) in ((col_a, "A", crops[0]), (col_b, "B", crops[1])):
            col.image(crop, caption=f"{name} ({names[name]}): the boxed part at "
                      f"{100 * zoom}%", width=crop.shape[1] if zoom > 1 else "stretch")
        col_m.image(shown, width="stretch")
        which = "the same scale for every pair" if mscale.fixed else "this pair's own scale"
        col_m.html(imaging.colour_bar_html(
            0.0, mscale.limit, f"Where the distance is, over {expl.explained_name} in grey (box: "
            f"the part holding most of it, {pct(hot.share)}; shown enlarged on the left); "
            f"{which}"))
        why, fix = st.columns([2.2, 1.8], gap="medium")
        sentences = card_sentences(expl)
        # The same elements on every draw: the card is drawn again as parts arrive, and a
        # trailing element of an earlier draw would stay behind.
        why.markdown(equivalents_line(expl, "equivalents" in waiting),
                     help=EQUIVALENTS_HELP.format(ref=expl.reference_name,
                                                  other=expl.explained_name))
        why.markdown("\n".join(f"- {s}" for s in sentences))
        with fix:
            _repair_headline(expl, "repair" in waiting)


OPINIONS_HELP = ("The same pair under other metrics, each on its own scale (the numbers are not "
                 "comparable across metrics): ST-LPIPS (shift-tolerant LPIPS, same trunk), "
                 "DISTS (texture-tolerant), SSIM and PSNR (pixel formulas, higher = closer). "
                 "A sentence appears only where the numbers support it.")


def compute_opinions(explainer: Explainer, expl: Explanation) -> SecondOpinions:
    """Every second opinion on the pair of ``expl`` (its LPIPS breakdown reused)."""
    return explainer.opinions_of(expl, "all")


def with_opinions(expl: Explanation, opinions: SecondOpinions | None) -> list[Explanation]:
    """The opinions as a part for :func:`join` (none when they could not be computed)."""
    return [] if opinions is None else [replace(expl, second_opinions=opinions)]


@panel("the second opinions")
def opinions_line(opinions: SecondOpinions | None, computing: bool = False) -> None:
    """One compact line: each metric's value on its own scale, then the sentences their
    numbers support, then the metrics that could not run and why (in short)."""
    if opinions is None:
        st.markdown(":gray[:material/hourglass_top: Second opinions: computing...]"
                    if computing else ":gray[Second opinions not computed.]")
        return
    items = []
    for o in opinions.opinions:
        net = f" {o.net}" if o.net and o.metric != "dists" else ""
        items.append(f":gray[{o.label}{net}: not computed]" if o.error
                     else f"{o.label}{net} **{o.value_text()}**")
    st.markdown("**Second opinions** (each on its own scale): " + " · ".join(items),
                help=OPINIONS_HELP)
    lines = [f"- {s}" for s in opinions.sentences]
    lines += [f"- :gray[{o.label} not computed: {o.error}]" for o in opinions.opinions
              if o.error]
    if lines:
        st.markdown("\n".join(lines))


EQUIVALENTS_HELP = ("Distortions of {ref} that LPIPS finds as far from {ref} as {other} is, "
                    "each strength found by bisection on evaluated distances (the summary and "
                    "the JSON give each one's distance).")


def equivalents_line(expl: Explanation, computing: bool) -> str:
    """One line of distortion equivalents: "As far from A as: JPEG quality 23 · blur 1.4 px",
    with the distortions no strength tried reaches."""
    items, ref = expl.equivalents, expl.reference_name
    if items is None:
        return (":gray[:material/hourglass_top: Equivalent distortions: computing...]"
                if computing else ":gray[Equivalent distortions not computed.]")
    if not items:
        return ":gray[Identical images: no distortion equivalent.]"
    missed = " · ".join(e.text for e in items if not e.reached)
    if not any(e.reached for e in items):
        return f"**No distortion of {ref} tried is this far:** {missed}"
    line = f"**As far from {ref} as:** {reached_phrases(items)}"
    return line + (f" :gray[(not reached: {missed})]" if missed else "")


def _repair_headline(expl: Explanation, computing: bool) -> None:
    rep = expl.repair
    if rep is None:
        st.markdown(":gray[:material/hourglass_top: Repair: computing...]" if computing else
                    ":gray[Repair not computed.]")
        return
    thumb, text = st.columns([1, 1.7])
    area = rep.half_area if rep.half_area is not None else float(rep.curve_area[-1])
    thumb.image(drawn("repaired thumbnail", lambda: imaging.downsample_image(
        rep.repaired_image(expl.reference, expl.explained, area), CARD_SIDE), rep,
        expl.reference, expl.explained, options=(area,)),
        caption=f"{expl.explained_name} repaired", width="stretch")
    said = repair_sentence(rep, expl.explained_name, expl.reference_name) or rep.headline
    text.markdown(f'<p class="lx-small">{html.escape(said)}</p>', unsafe_allow_html=True,
                  help=f"How it was measured: {rep.headline}")

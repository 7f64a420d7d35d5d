"""The Explain page: its parts (computed on one prepared pair), the verdict card, the "where"
view, the before/after comparison and the panels below.

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
    describe_deletion,
    describe_image,
    describe_layers,
    describe_sensitivity,
)
from lpips_explain.core.decompose import UPSAMPLING
from lpips_explain.explainer import Explainer
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.output import figures as plots
from lpips_explain.output import imaging, report, static
from lpips_explain.output.compare import compare_height, compare_html
from lpips_explain.ui import keys
from lpips_explain.ui.controls import Options, attribution_controls, mode_badge
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.sensitivity import geometric_table
from lpips_explain.ui.state import persistent
from lpips_explain.ui.widgets import (
    ICONS,
    category_limits,
    chart,
    note,
    pick,
    presenting,
    scale,
    show_notices,
    table,
    term,
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
        heat, mscale = dec.spatial_map(None, "bilinear"), scale_for(expl)
        hot = hottest_window(heat)
        # The boxed region of A and B, each pixel a square (never shrunk): thumbnails of the
        # whole images hide exactly what the distance is about (JPEG blocks, grain, a blur).
        for col, name, img in ((col_a, "A", expl.a), (col_b, "B", expl.b)):
            crop, zoom, _ = imaging.zoom_crop(imaging.as_uint8_image(img), hot.edges, target=160)
            col.image(crop, caption=f"{name} ({names[name]}): the boxed part at "
                      f"{100 * zoom}%", width=crop.shape[1] if zoom > 1 else "stretch")
        col_m.image(card_map(expl.explained, heat, hot.edges, mscale.limit), width="stretch")
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
    thumb.image(imaging.downsample_image(
        rep.repaired_image(expl.reference, expl.explained, area), CARD_SIDE),
        caption=f"{expl.explained_name} repaired", width="stretch")
    said = repair_sentence(rep, expl.explained_name, expl.reference_name) or rep.headline
    text.markdown(f'<p class="lx-small">{html.escape(said)}</p>', unsafe_allow_html=True,
                  help=f"How it was measured: {rep.headline}")


# --- the "where" view ------------------------------------------------------------------------------


class WhereView:
    """One large map over the explained image: the spatial map (any layer) or the attribution
    map (method picker beside it), with an opacity slider and the colour bar attached."""

    def __init__(self, expl: Explanation, opts: Options) -> None:
        self.expl = expl
        st.subheader("Where is the difference?")
        c_view, c_what, c_how, c_op = st.columns([2.1, 2.5, 2.1, 1.4], vertical_alignment="top")
        self.view = persistent(
            c_view.segmented_control, "Map", ["spatial", "attribution"], key=keys.WHERE_VIEW,
            default="spatial", choices=("spatial", "attribution"), required=True,
            format_func=lambda v: {"spatial": "Distance", "attribution": "Attribution"}[v],
            help=f"Distance: {term('spatial map')} Attribution: {term('attribution')}")
        self.opacity = float(persistent(c_op.slider, "Opacity", 0.0, 1.0, key=keys.WHERE_OPACITY,
                                        default=0.8, step=0.05, help="How strongly the map "
                                        "covers the image."))
        names = [lay.name for lay in expl.decomposition.layers]
        if self.view == "spatial":
            self.layer = pick("Layer", [SUMMED, *names], keys.MAP_LAYER, SUMMED,
                              container=c_what, help=term("layer"),
                              format_func=lambda n: "all layers, summed" if n == SUMMED
                              else f"layer {n}")
            # A summed map needs a common size: "none" is offered for one layer only.
            choices = list(UPSAMPLING) if self.layer != SUMMED else ["bilinear",
                                                                      "mean_preserving"]
            self.upsample = pick("Upsampling", choices, keys.MAP_UPSAMPLE, "bilinear",
                                 container=c_how, format_func=UPSAMPLING_LABELS.__getitem__,
                                 help=f"Bilinear: {term('bilinear')} Mean-preserving: "
                                      f"{term('mean-preserving')}")
        else:
            with c_what:
                attribution_controls(opts.net)
            self.attr_view = pick("Show", list(plots.ATTRIBUTION_VIEWS), keys.ATTR_VIEW,
                                  "signed", container=c_how,
                                  format_func=lambda v: plots.ATTRIBUTION_VIEWS[v].split(" (")[0],
                                  help="Signed: red raises the distance, blue lowers it. "
                                       "Magnitude: how much each pixel matters either way.")
        self.slot = st.empty()
        if self.view == "spatial":
            self._spatial()
        else:
            with self.slot.container():
                st.info("Computing the attribution map (see the top of the page)...",
                        icon=":material/hourglass_top:")

    @property
    def wants_attribution(self) -> bool:
        return self.view == "attribution"

    def _spatial(self) -> None:
        expl, dec = self.expl, self.expl.decomposition
        chosen = None if self.layer == SUMMED else self.layer
        fig = plots.spatial_map_figure(dec, imaging.as_uint8_image(expl.explained), layer=chosen,
                                       upsample=self.upsample, opacity=self.opacity,
                                       display_width=map_width(), title=False,
                                       name=expl.explained_name,
                                       scale=scale_for(expl, chosen, self.upsample))
        with self.slot.container():
            col_f, col_n = st.columns([3.2, 1])
            chart(fig, "where_chart", container=col_f)
            if chosen is None:
                top = max(dec.layers, key=lambda lay: lay.distance)
                col_n.metric("Distance", f"{dec.distance:.4f}")
                col_n.metric("Largest layer", top.name, f"{top.share:.0%} of the distance",
                             delta_color="off", delta_arrow="off", help=term("layer"))
            else:
                lay = dec.layer(chosen)
                col_n.metric(f"Layer {lay.name}", f"{lay.distance:.4f}",
                             f"{lay.share:.1%} of the distance", delta_color="off",
                             delta_arrow="off")
                col_n.metric("Grid", imaging.size_text(lay.resolution),
                             help="The layer's own resolution, width x height.")

    def fill(self, full: Explanation | None) -> None:
        """Draw the attribution map once it is computed (the spatial map is drawn at once)."""
        if not self.wants_attribution:
            return
        attr = full.attribution if full is not None else None
        with self.slot.container():
            if attr is None:
                st.info("The attribution map could not be computed (see the message below).")
                return
            name = self.expl.explained_name
            if attr.vanishing:
                st.warning(attr.notes[0] if attr.notes else "Gradients vanish for this pair.",
                           icon=ICONS["vanish"])
            fig = plots.attribution_figure(attr, imaging.as_uint8_image(self.expl.explained),
                                           view=self.attr_view, name=name,
                                           opacity=self.opacity, display_width=map_width(),
                                           title=False, pool=attribution_pool(attr))
            col_f, col_n = st.columns([3.2, 1])
            chart(fig, "where_chart", container=col_f)
            faithfulness_badge(attr, col_n)
            if attr.completeness_gap is not None:
                col_n.metric("Sum of attributions", f"{attr.total:.6f}",
                             help=term("integrated gradients"))
                col_n.metric("Distance", f"{attr.distance:.6f}")
                rel = "" if attr.relative_gap is None else f" ({attr.relative_gap:.2%})"
                col_n.metric("Completeness gap", f"{attr.completeness_gap:.2e}{rel}",
                             help=term("completeness gap"))
                note(f"Integrated gradients from the reference to {name}: points used "
                     f"{attr.params.get('steps')} (tried "
                     f"{', '.join(map(str, attr.steps_tried))}).", col_n)
            else:
                col_n.metric("Sum of attributions", f"{attr.total:.4g}")
                note(f"{attr.seconds:.2f} s.", col_n)
            deletion_note(attr)


def attribution_pool(attr: Any) -> int:
    """The block size the attribution map is shown summed over: about 1/32 of the shorter
    side, at least 4 px (so a 256 px image shows 32 x 32 blocks)."""
    h, w = np.asarray(attr.signed).shape[:2]
    return max(4, round(min(h, w) / 32))


def faithfulness_state(attr: Any) -> tuple[str, str] | None:
    """(state, words) of the map's deletion check on this pair: "passes" when replacing
    patches in the map's order lowers the distance faster than every random order, "fails"
    otherwise; None when the check was not run."""
    check = getattr(attr, "deletion", None)
    if check is None or check.base_distance <= 0:
        return None
    n = check.random_aucs.size
    if check.better_than_random:
        return "passes", (f"Faithful on this pair: following this map lowers the distance "
                          f"faster than all {n} random orders (deletion AUC {check.auc:.3f} "
                          f"against {check.random_auc:.3f} at random; lower is better).")
    return "fails", (f"Not faithful on this pair: following this map lowers the distance no "
                     f"faster than random ({check.beaten_by} of {n} random orders did as well "
                     f"or better; deletion AUC {check.auc:.3f} against {check.random_auc:.3f}). "
                     f"Do not read this map as where the distance is.")


def faithfulness_badge(attr: Any, container: Any) -> None:
    """A badge beside the map: the deletion check's verdict on this pair, in words with its
    numbers in the tooltip (the full sentence is under the map: :func:`deletion_note`)."""
    state = faithfulness_state(attr)
    if state is None:
        container.markdown(":gray-badge[Faithfulness not checked]",
                           help="The deletion check did not run for this map.")
        return
    verdict, words = state
    badge = (":green-badge[:material/check: Passes the deletion check]" if verdict == "passes"
             else ":red-badge[:material/close: Fails the deletion check]")
    container.markdown(badge, help=words)


def deletion_note(attr: Any) -> None:
    """Whether the shown map ranks regions better than random orders on this pair (the
    explanation's deletion check): a warning when it does not, a caption when it does."""
    said = describe_deletion(attr)
    if not said:
        return
    if attr.deletion.better_than_random:
        note(said[0])
    else:
        st.warning(said[0], icon=ICONS["warning"])


# --- the comparison --------------------------------------------------------------------------------


@panel("the comparison")
def compare_panel(expl: Explanation) -> None:
    st.subheader("Compare A and B")
    a, b = (imaging.downsample_image(x, COMPARE_SIDE) for x in (expl.a, expl.b))
    width = map_width() + 80
    heat = imaging.downsample_map(expl.decomposition.spatial_map(None, "bilinear"),
                                  COMPARE_SIDE)
    layer = imaging.map_rgba(heat, fade=True, zmax=scale_for(expl).limit)
    h, w = expl.decomposition.size
    if (a.shape[0], a.shape[1]) != (h, w):
        note(f"Shown at {a.shape[1]}x{a.shape[0]} px, averaged down from {w}x{h} "
             f"(the card's boxed crops show the pixels at 100%).")
    fragment = compare_html(a, b, map_layer=layer, names=("A", "B"),
                            map_label="distance map", display_width=width, uid="cmp")
    st.iframe(fragment, height=compare_height(a.shape[:2], width), width=width + 10)
    note("Swipe (drag across the image), flicker or side by side; the map layer and one zoom "
         "apply to every view. Works offline.")


# --- the panels below -------------------------------------------------------------------------


@panel("the layer waterfall")
def layers_panel(expl: Explanation) -> None:
    dec = expl.decomposition
    st.subheader("Layer by layer", help=term("layer"))
    chart(plots.layer_waterfall(dec), "waterfall_chart")
    total = sum(lay.distance for lay in dec.layers)
    note(f"{len(dec.layers)} layers ({', '.join(lay.name for lay in dec.layers)}) add up "
         f"to {total:.6f}; the distance is {dec.distance:.6f}.")
    said = describe_layers(dec)
    if said:
        st.markdown("\n".join(f"- {s}" for s in said[:2]))


@panel("the top channels")
def channels_panel(expl: Explanation) -> None:
    dec = expl.decomposition
    st.subheader("Top channels", help=term("channel"))
    names = [lay.name for lay in dec.layers]
    top = max(dec.layers, key=lambda lay: lay.distance).name
    col_l, col_v = st.columns([2, 3])
    name = pick("Layer", names, keys.CHANNEL_LAYER, top, container=col_l)
    view = pick("Channel maps", list(plots.CHANNEL_VIEWS), keys.CHANNEL_VIEW, "diff", radio=True,
                container=col_v,
                format_func=lambda v: {"diff": "squared difference",
                                       "activation_a": "activation of A",
                                       "activation_b": "activation of B"}[v])
    lay = dec.layer(name)
    chart(plots.channel_grid(lay, which=view), "channel_chart")
    table([{"channel": c.index, "contribution": c.contribution, "share of layer": c.share,
            "lin weight": c.weight} for c in lay.top_channels], "channel_table",
          formats={"contribution": "%.6f", "share of layer": "percent", "lin weight": "%.3g"})
    zero = int(lay.zero_weight_channels.size)
    said = describe_layers(dec)
    if len(said) > 2 and name == top:
        st.markdown(said[2])
    note(f"{lay.name}: {lay.weights.size} channels at {imaging.size_text(lay.resolution)}, "
         f"layer distance {lay.distance:.6f} ({lay.share:.1%} of the total). {zero} of its "
         f"channels have lin weight exactly 0 and can never contribute.")


def wants_sensitivity() -> bool:
    """Whether this session asked for the sensitivity (computed on request, like the
    attribution map; the Sensitivity page computes its own)."""
    return bool(st.session_state.get(keys.WANT_SENSITIVITY))


def _want_sensitivity() -> None:
    st.session_state[keys.WANT_SENSITIVITY] = True


@panel("the sensitivity")
def sensitivity_panel(expl: Explanation) -> None:
    sens = expl.sensitivity
    st.subheader("What changes the distance")
    if sens is None:
        if wants_sensitivity():
            st.info("The sensitivity could not be computed (see the message above).")
            return
        col_t, col_b = st.columns([3, 1], vertical_alignment="center")
        col_t.markdown(
            f"On request: {expl.explained_name} blurred, compressed, noised, recoloured, "
            f"rotated and shifted at about 80 strengths, each one scored (the slowest part "
            f"after the attribution). Once asked for, it is computed for every pair.")
        col_b.button("Compute the sensitivity", key=keys.SENSITIVITY_BUTTON,
                     icon=":material/show_chart:", on_click=_want_sensitivity)
        return
    ref_name, target_name = expl.reference_name, expl.explained_name
    chart(plots.sensitivity_bars(sens, explained=target_name), "sensitivity_chart")
    sweeps = {s.transform: s for s in sens.sweeps}
    if sweeps:
        default = sens.most_sensitive if sens.most_sensitive in sweeps else next(iter(sweeps))
        name = pick("Sweep", list(sweeps), keys.SWEEP_PICK, default,
                    format_func=lambda n: sweeps[n].label)
        chart(plots.sweep_figure(sweeps[name]), "sweep_chart")
        note(f"LPIPS, PSNR and SSIM (one panel each) as {target_name} is perturbed more and "
             f"more, {ref_name} staying the reference; every marker is a real evaluation.")
    st.markdown(f"**Geometric sensitivity** (small rotations, shifts and a zoom of "
                f"{target_name}: LPIPS beside ST-LPIPS)")
    geometric_table(sens, target_name, "geometric_table")


@panel("the repair")
def repair_panel(expl: Explanation) -> None:
    rep = expl.repair
    st.subheader("What would have to be repaired", help=term("repair"))
    if rep is None:
        st.info("No repair analysis was computed.")
        return
    ref_t, tgt_t = expl.reference, expl.explained
    ref_name, target_name = expl.reference_name, expl.explained_name
    chart(plots.repair_curve(rep, repaired=target_name, source=ref_name), "repair_chart")
    # Only evaluated points are offered, so every position has a measured distance.
    points = {float(a): (int(k), float(d)) for a, k, d in zip(
        rep.curve_area, rep.curve_steps, rep.curve_distance, strict=True)}
    areas = list(points)
    default = rep.half_area if rep.half_area is not None else areas[len(areas) // 2]
    default = min(areas, key=lambda a: abs(a - float(default)))
    area = default
    if len(areas) > 1:
        area = persistent(st.select_slider, f"Area of {target_name} repaired with {ref_name}'s "
                          f"pixels (the evaluated points of the curve)", areas,
                          key=keys.REPAIR_AREA, default=default, choices=areas,
                          format_func=lambda a: f"{a:.1%}")
    k, after = points[area]
    repaired = rep.repaired_image(ref_t, tgt_t, area)
    c1, c2, c3 = st.columns(3)
    c1.image(imaging.as_uint8_image(ref_t), caption=f"{ref_name} (reference)", width="stretch")
    c2.image(imaging.as_uint8_image(tgt_t), caption=f"{target_name} as given", width="stretch")
    c3.image(imaging.as_uint8_image(repaired),
             caption=f"{target_name} with its first {k} patches (order: "
                     f"{rep.order_name.replace('_', ' ')}) from {ref_name}",
             width="stretch")
    st.markdown(f"{k} of {rep.grid[0] * rep.grid[1]} patches of {rep.patch} px repaired "
                f"({area:.1%} of the area): distance after repair {after:.4f} (from "
                f"{rep.base_distance:.4f}).")
    with st.expander("Single-patch gains"):
        chart(plots.heatmap_overlay(
            imaging.as_uint8_image(tgt_t), rep.gain_map(), symmetric=True, title=None,
            caption=("Distance removed by repairing each patch alone: red patches hold "
                     "distance, blue ones lower it when repaired alone."),
            colorbar_title="gain", display_width=map_width() - 100), "gain_chart")
        for n in rep.notes:
            note(n)


@panel("the summary")
def summary_panel(expl: Explanation) -> None:
    st.subheader("In plain words")
    st.markdown("\n".join(f"- {s}" for s in expl.summary))
    show_notices(expl.warnings)


@panel("the downloads")
def downloads(expl: Explanation) -> None:
    st.subheader("Downloads")
    c1, c2, c3 = st.columns(3)
    c1.download_button("JSON (numbers)", report.to_json(expl), "lpips_explanation.json",
                       "application/json", key=keys.DOWNLOAD_JSON, on_click="ignore",
                       icon=ICONS["download"])
    c2.download_button("HTML report (offline)", lambda: report.html_report(expl),
                       "lpips_report.html", "text/html", key=keys.DOWNLOAD_HTML,
                       on_click="ignore", icon=ICONS["download"])
    c3.download_button("PNG summary figure", lambda: static.summary_png(expl),
                       "lpips_summary.png", "image/png", key=keys.DOWNLOAD_PNG,
                       on_click="ignore", icon=ICONS["download"])
    note("The HTML report opens offline in one file under 3 MB (images and maps shown "
         "downsampled, numbers at full resolution).")
    note(f"Timings (ms): {', '.join(f'{k} {v:.0f}' for k, v in expl.timings_ms.items())}.")


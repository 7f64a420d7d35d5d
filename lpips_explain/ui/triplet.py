"""The Triplet page (a 2AFC debugger): its stages, the verdict card and the panels.

The page computes in stages so that the verdict comes first: the verdict and the per-layer
margins (two breakdowns against the reference encoded once, well under a second), then the
flip (a repair of the losing candidate, in the best of the orders tried), then both attribution maps. The engine's
TripletExplanation is built by the engine; the stages only put its parts in front of the
person in that order.
"""

from __future__ import annotations

import html
import math
from dataclasses import replace
from typing import Any

import numpy as np
import streamlit as st
import torch

from lpips_explain.analyses.attribution import attribute
from lpips_explain.analyses.pair.anchors import anchor_of
from lpips_explain.analyses.pair.explanation import category_of
from lpips_explain.analyses.pair.map_scale import fixed_limit
from lpips_explain.analyses.pair.triplet import (
    TOO_CLOSE_RULE,
    TripletExplanation,
    explain_triplet,
    with_metric_choices,
)
from lpips_explain.core.decompose import decompose_encoded
from lpips_explain.explainer import Explainer
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.output import figures as plots
from lpips_explain.output import imaging, palette, report, static
from lpips_explain.ui import keys
from lpips_explain.ui.controls import Options, attribution_controls
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.widgets import (
    ICONS,
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

PARTS = ("verdict", "metrics", "flip", "attributions")
LABELS = ["REF", "A", "B"]
GLOSSARY_TERMS = ("LPIPS", "2AFC", "margin", "flip", "layer", "channel", "spatial map",
                  "mean-preserving", "attribution", "integrated gradients", "completeness gap",
                  "repair", "random trunk")


# --- the stages -------------------------------------------------------------------------------


def verdict_stage(explainer: Explainer, prep: PreparedInputs, top_k: int) -> TripletExplanation:
    """Distances and per-layer breakdowns of both candidates (the reference encoded once);
    the flip, the repair and the attributions are not computed yet (None)."""
    ref, a, b = prep.tensors
    scorer = explainer.scorer(ref)
    # explainer.fast: the sidebar's precision (the scorer encoded the reference with it too).
    dec_a, dec_b = decompose_encoded(explainer.fast, scorer.ref, torch.cat([a, b]), top_k)
    return explainer.with_mode(TripletExplanation(
        prep, dec_a, dec_b, None, None, None,  # type: ignore[arg-type]
        explainer.weights_info, None, prep.warnings, ()))


def with_breakdowns(tri: TripletExplanation, verdict: TripletExplanation
                    ) -> TripletExplanation:
    """``tri`` (the flip stage) with the verdict stage's breakdowns: the same distances and
    layers, with the top channels of the sidebar's current "Top channels per layer"."""
    same = all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in
               ((tri.distance_a, verdict.distance_a), (tri.distance_b, verdict.distance_b)))
    if not same:  # another pair or model: never mix them (the keys should make it impossible)
        raise ValueError("The flip and the verdict are of different triplets.")
    return replace(tri, decomposition_a=verdict.decomposition_a,
                   decomposition_b=verdict.decomposition_b)


def metrics_stage(explainer: Explainer, tri: TripletExplanation) -> Any:
    """Each metric's 2AFC choice (LPIPS's breakdowns reused): a MetricChoices."""
    return explainer.choices_of(tri, "all").metric_choices


def with_choices(tri: TripletExplanation, choices: Any) -> TripletExplanation:
    return tri if choices is None else with_metric_choices(tri, choices)


def flip_stage(explainer: Explainer, prep: PreparedInputs, opts: Options,
               progress: Progress | None) -> TripletExplanation:
    """The engine's triplet explanation without attribution maps: verdict, flip, summary.
    Neither the flip nor the summary depends on the number of top channels: the page
    stores this once per patch size and takes the breakdowns from the verdict stage
    (:func:`with_breakdowns`), so changing "Top channels per layer" recomputes nothing slow."""
    return explainer.with_mode(explain_triplet(
        explainer.model, prep, seed=explainer.seed, attribution=None, steps=None,
        patch=opts.repair_patch, top_k=opts.top_k, progress=progress, fast=explainer.fast))


def attribution_stage(explainer: Explainer, prep: PreparedInputs, opts: Options,
                      progress: Progress | None) -> tuple[Any, Any]:
    """Both candidates' attribution maps of d(REF, candidate), as the engine computes them."""
    ref, a, b = prep.tensors
    return tuple(attribute(explainer.model, ref, x, opts.method, steps=opts.steps,
                           progress=progress, seed=explainer.seed, **opts.attribution_params)
                 for x in (a, b))  # type: ignore[return-value]


def with_attributions(tri: TripletExplanation, attrs: tuple[Any, Any] | None
                      ) -> TripletExplanation:
    if attrs is None:
        return tri
    return replace(tri, attribution_a=attrs[0], attribution_b=attrs[1])


# --- the verdict card --------------------------------------------------------------------------


def _verdict(tri: TripletExplanation) -> str:
    if tri.verdict == "too_close":
        return "Too close to call"
    return {"a": "A is closer", "b": "B is closer", "tie": "A and B are tied"}[tri.closer]


def too_close_help() -> str:
    """The too-close rule, for the verdict's tooltip (the numbers: analyses.pair.triplet)."""
    return (f"The verdict is {TOO_CLOSE_RULE}. The first is exact: the layer margins add up "
            f"to the margin, so reweighting agreeing layers down and dissenting ones up by a "
            f"fraction e moves the margin by e x (sum of |layer margins|).")


def _limits(tri: TripletExplanation) -> tuple[float, ...]:
    """The category limits to mark: only stated ones (published trunk, official heads,
    a shipped table); none otherwise."""
    info = category_of(tri.distance_a, tri.decomposition_a.net, tri.decomposition_a.version,
                       tri.backbone, tri.lin_heads)
    return tuple(info.limits or ())


@panel("the verdict")
def verdict_card(tri: TripletExplanation, *, waiting: tuple[str, ...] = ()) -> None:
    """Verdict and margins first: which candidate is closer, both distances on one scale,
    REF | A | B | where each loses, then the summary's sentences and the flip."""
    ims = [imaging.as_uint8_image(t) for t in tri.inputs.tensors[:3]]
    with st.container(border=True):
        # The images, the sentences and the flip share the right-hand side, so that nothing
        # waits below the verdict's column (the card stays on the first screen).
        left, right = st.columns([1.5, 4], gap="small")
        c_ref, c_a, c_b, c_m = right.columns(4, gap="small")
        with left:
            choices = tri.metric_choices
            if choices is not None and choices.headline:
                st.markdown(f":orange[:material/call_split: **{choices.headline}**]")
            too_close = tri.verdict == "too_close"
            lean = ("" if tri.closer == "tie" else
                    f" (LPIPS leans {tri.closer.upper()})" if too_close else "")
            size = ' style="font-size:2rem"' if too_close else ""
            st.html(f'<p class="lx-distance"{size}>{_verdict(tri)}</p>'
                    f'<p class="lx-category">margin {tri.margin:+.4f}{lean}</p>')
            if too_close:
                st.markdown(f"Why: {'; and '.join(tri.too_close_reasons)}.",
                            help=too_close_help())
            elif tri.closer != "tie":
                eps = tri.reweight_to_flip
                st.markdown(f"Not a near-tie: {tri.layers_agreeing} of {len(tri.layers)} layers "
                            f"agree"
                            + (f", and flipping it takes reweighting the layers by "
                               f"{pct(eps)}" if eps is not None else "") + ".",
                            help=too_close_help())
            note(f"distance_a = {tri.distance_a:.6f}, distance_b = {tri.distance_b:.6f}, "
                 f"margin = {tri.margin:+.6f}")
            anchor, no_anchor = anchor_of(tri.decomposition_a.net, tri.decomposition_a.version,
                                          tri.backbone, tri.lin_heads, _limits(tri))
            scale([("A", tri.distance_a, palette.CANDIDATE_A),
                   ("B", tri.distance_b, palette.CANDIDATE_B)], _limits(tri),
                  anchor=anchor, no_anchor=no_anchor)
            closer = ("equally close to" if tri.closer == "tie" else
                      "too close to call against" if too_close else
                      f"{tri.closer.upper()} is closer to")
            st.html(f'<p class="lx-verdict lx-placement">d(REF, A) = {tri.distance_a:.4f}, '
                    f"d(REF, B) = {tri.distance_b:.4f}: {closer} the reference.</p>")
        closer = tri.closer
        c_ref.image(ims[0], caption="REF", width="stretch")
        c_a.image(ims[1], caption=f"A: d = {tri.distance_a:.4f}"
                  + (" (closer)" if closer == "a" else ""), width="stretch")
        c_b.image(ims[2], caption=f"B: d = {tri.distance_b:.4f}"
                  + (" (closer)" if closer == "b" else ""), width="stretch")
        z = plots.margin_map(tri.decomposition_a, tri.decomposition_b)
        c_m.image(imaging.overlay_image(ims[0], z, opacity=0.65, symmetric=True,
                                      zmax=imaging.shared_limit(z, symmetric=True),
                                      cmap=palette.MPL_CANDIDATES),
                  caption="Where each loses: purple B, orange A", width="stretch")
        with right:
            # The summary less its head (the verdict above), the flip (beside) and the random
            # trunk's warning (the banner); until the flip stage, the layers' agreement.
            flip_text = (getattr(tri.flip, "sentence", None) or
                         getattr(tri.flip, "statement", None))
            headline = getattr(tri.metric_choices, "headline", None)
            lines = [s for s in tri.summary if s not in (flip_text, headline)
                     and not s.startswith(("Warning:", "LPIPS finds", "Too close to call"))]
            if not lines and tri.closer != "tie":
                sign = 1 if tri.closer == "a" else -1
                agree = sum(sign * lay.margin > 0 for lay in tri.layers)
                lines = [f"{agree} of {len(tri.layers)} layers agree with the verdict."]
            st.markdown("\n".join(f"- {s}" for s in lines[:3]))
            _flip_headline(tri, "flip" in waiting)


def _flip_headline(tri: TripletExplanation, computing: bool) -> None:
    flip = tri.flip
    if flip is None:
        st.markdown(":gray[:material/hourglass_top: What would flip it: computing...]"
                    if computing else ":gray[The flip was not computed.]")
        return
    if flip.exists and tri.repair is not None:
        thumb, text = st.columns([1, 3.2], vertical_alignment="center")
        loser = 1 if flip.repaired == "a" else 2
        ref_t, cand_t = tri.inputs.tensors[0], tri.inputs.tensors[loser]
        thumb.image(imaging.as_uint8_image(tri.repair.repaired_image(ref_t, cand_t, flip.area)),
                    caption=f"{flip.repaired.upper()} repaired", width="stretch")
        text.markdown(f'<p class="lx-small">{html.escape(flip.sentence or flip.statement)}</p>',
                      unsafe_allow_html=True, help=flip.method or None)
    else:
        st.markdown(f'<p class="lx-small">{html.escape(flip.sentence or flip.statement)}</p>',
                    unsafe_allow_html=True, help=flip.method or None)


# --- panels ------------------------------------------------------------------------------------


@panel("the layer margins")
def margins_panel(tri: TripletExplanation) -> None:
    st.subheader("Which layers decide", help=term("margin"))
    chart(plots.triplet_margin_chart(tri), "triplet_margin_chart")
    table([{"layer": lay.name, "d(REF, A)": lay.distance_a, "d(REF, B)": lay.distance_b,
            "margin (B - A)": lay.margin, "favours": "A" if lay.margin > 0 else
            "B" if lay.margin < 0 else "neither"} for lay in tri.layers],
          "triplet_layer_table",
          formats={"d(REF, A)": "%.6f", "d(REF, B)": "%.6f", "margin (B - A)": "%+.6f"})


@panel("the metrics' choices")
def metrics_panel(tri: TripletExplanation) -> None:
    """Each metric's choice and margin on its own scale, with what drives it."""
    st.subheader("Do the other metrics agree?",
                 help="Each metric's own 2AFC choice on this triplet. A margin is on that "
                      "metric's own scale (never compare margins across metrics); positive "
                      "means A is closer: d(REF, B) - d(REF, A) for the distances, "
                      "SSIM(A) - SSIM(B) and PSNR(A) - PSNR(B) for the similarities.")
    choices = tri.metric_choices
    if choices is None:
        st.info("The other metrics were not computed.")
        return
    if choices.headline:
        st.markdown(f"**{choices.headline}**")
    elif choices.agreement:
        st.markdown(choices.agreement)

    def value(c: Any, v: float | None) -> str:
        return "not computed" if not c.ok else c.value_text(v)

    rows = []
    for c in choices.choices:
        m = c.margin
        rows.append({
            "metric": c.label + (f" ({c.net})" if c.net else ""),
            "REF vs A": value(c, c.value_a), "REF vs B": value(c, c.value_b),
            "prefers": "-" if c.choice is None else "tie" if c.choice == "tie"
            else c.choice.upper(),
            "margin": "-" if m is None else ("inf" if not np.isfinite(m) else f"{m:+.4f}"),
            "driven by": (", ".join(f"{d['name']} {pct(d['share'])}" for d in c.drivers[:3])
                          if c.drivers else (c.error or "")),
            "scale": "higher is closer" if c.higher_is_closer else "lower is closer"})
    table(rows, "triplet_metric_choices")
    note("'driven by': the layers (LPIPS, ST-LPIPS) or stages (DISTS) whose margins agree "
         "with the metric's choice, with their share of the agreeing margins.")


@panel("the maps")
def maps_panel(tri: TripletExplanation) -> None:
    """Where each candidate is far from REF (one colour scale for both), and where each loses."""
    st.subheader("Where the candidates differ from REF", help=term("spatial map"))
    ims = [imaging.as_uint8_image(t) for t in tri.inputs.tensors[:3]]
    maps = [dec.spatial_map(None, "bilinear") for dec in (tri.decomposition_a,
                                                          tri.decomposition_b)]
    big = presenting()
    col_ab, col_m = st.columns([2.05, 1])
    # The published trunk's fixed scale (the same as Explain's maps) when there is one.
    heads = tri.lin_heads
    perceptual = bool(tri.backbone.perceptual) and (heads is None or heads.official)
    dec = tri.decomposition_a
    fixed = fixed_limit(dec.net, dec.version) if perceptual else None
    where = (f"the fixed scale of {dec.net} v{dec.version} (0 to {fixed:.3g}, as on Explain)"
             if fixed is not None else "0 to the larger maximum")
    chart(plots.maps_side_by_side(
        ims[1:], maps, ["d(REF, A) over A", "d(REF, B) over B"], colorbar_title="distance",
        each_width=330 if big else 235, zmax=fixed,
        caption=(f"The spatial distance to REF, all layers summed, bilinear, on ONE colour "
                 f"scale ({where}): equal colours mean equal distance in both maps.")),
        "triplet_maps_ab", container=col_ab)
    chart(plots.margin_map_figure(tri, ims[0], display_width=250 if big else 175, title=False),
          "triplet_margin_map", container=col_m)


class AttributionsView:
    """Both candidates' attribution maps on one colour scale; the method picker is drawn at
    once, the maps when they are computed."""

    def __init__(self, opts: Options) -> None:
        st.subheader("Attribution maps of both candidates", help=term("attribution"))
        c_m, c_v = st.columns([3, 2])
        with c_m:
            attribution_controls(opts.net)
        self.view = pick("Show", list(plots.ATTRIBUTION_VIEWS), keys.TRIPLET_ATTR_VIEW,
                         "signed", container=c_v,
                         format_func=lambda v: plots.ATTRIBUTION_VIEWS[v].split(" (")[0])
        self.slot = st.empty()
        self.slot.info("Computing both attribution maps (see the top of the page)...",
                       icon=":material/hourglass_top:")

    def fill(self, tri: TripletExplanation) -> None:
        with self.slot.container():
            self._draw(tri)

    @panel("the attribution maps")
    def _draw(self, tri: TripletExplanation) -> None:
        view = self.view
        if tri.attribution_a is None:
            st.info("The attribution maps could not be computed (see the message above).")
            return
        ims = [imaging.as_uint8_image(t) for t in tri.inputs.tensors[:3]]
        attrs = (tri.attribution_a, tri.attribution_b)
        for name, attr in (("A", attrs[0]), ("B", attrs[1])):
            if attr.vanishing:
                st.warning(f"{name}: " + (attr.notes[0] if attr.notes else "gradients vanish."),
                           icon=ICONS["vanish"])
        signed = view == "signed"
        clip = ", at the 99.5th percentile of |value|" if signed else ""
        label = plots.ATTRIBUTION_VIEWS[view]
        chart(plots.maps_side_by_side(
            ims[1:], [np.asarray(getattr(at, view), dtype=np.float64) for at in attrs],
            [f"{name}: sum {at.total:.3g} of d = {at.distance:.4f}"
             for name, at in (("A", attrs[0]), ("B", attrs[1]))],
            symmetric=signed, colorbar_title="attribution",
            each_width=420 if presenting() else 310,
            caption=(f"{label[0].upper()}{label[1:]} attribution of d(REF, A) to A's pixels and "
                     f"of d(REF, B) to B's ({plots.method_label(attrs[0].method)}). "
                     f"ONE colour scale for both (the larger of the two{clip}): equal colours "
                     f"mean equal attribution.")), "triplet_attr_maps")


@panel("the flip")
def flip_panel(tri: TripletExplanation, *, computing: bool = False) -> None:
    st.subheader("What would flip the decision", help=term("flip"))
    flip = tri.flip
    if flip is None:
        st.info("Computing the flip (see the top of the page)..." if computing else
                "The flip was not computed.", icon=":material/hourglass_top:")
        return
    (st.success if flip.exists else st.info)(flip.sentence or flip.statement)
    if flip.method:
        note(f"How: {flip.method}")
    if flip.exists and tri.repair is not None:
        loser = 1 if flip.repaired == "a" else 2
        ref_t, cand_t = tri.inputs.tensors[0], tri.inputs.tensors[loser]
        repaired = tri.repair.repaired_image(ref_t, cand_t, flip.area)
        name = flip.repaired.upper()
        cols = st.columns(3)
        cols[0].image(imaging.as_uint8_image(ref_t), caption="REF", width="stretch")
        cols[1].image(imaging.as_uint8_image(cand_t), caption=f"{name} as given", width="stretch")
        cols[2].image(imaging.as_uint8_image(repaired),
                      caption=f"{name} repaired: {flip.patches} of {flip.total_patches} patches "
                              f"({flip.area:.1%} of the area)", width="stretch")
    if tri.repair is not None:
        loser = (flip.repaired or "b").upper()
        chart(plots.repair_curve(
            tri.repair, repaired=loser, source="REF", threshold=flip.rival_distance,
            threshold_label="the other candidate's distance",
            threshold_color=palette.CANDIDATE_B if loser == "A" else palette.CANDIDATE_A,
            mark_area=flip.area if flip.exists else None, mark_label="the decision flips"),
            "triplet_repair_chart", caption=False)
        note(f"d(REF, {loser}) as more of {loser}'s patches are replaced by REF's; the "
             f"decision flips where the curve drops below the other candidate's distance "
             f"({flip.rival_distance:.4f}).")


@panel("the top channels")
def channels_panel(tri: TripletExplanation) -> None:
    st.subheader("Top channels per layer", help=term("channel"))
    note("The channels that contribute most to d(REF, A) and d(REF, B) in each layer "
         "(how many: 'Top channels per layer' in the sidebar).")
    pairs = list(zip(tri.decomposition_a.layers, tri.decomposition_b.layers, strict=True))
    for tab, (lay_a, lay_b) in zip(st.tabs([la.name for la, _ in pairs]), pairs, strict=True):
        rows = []
        for rank in range(max(len(lay_a.top_channels), len(lay_b.top_channels))):
            row: dict[str, Any] = {"rank": rank + 1}
            for name, lay in (("A", lay_a), ("B", lay_b)):
                c = lay.top_channels[rank] if rank < len(lay.top_channels) else None
                row[f"{name}: channel"] = None if c is None else c.index
                row[f"{name}: contribution"] = None if c is None else c.contribution
                row[f"{name}: share of layer"] = None if c is None else c.share
            rows.append(row)
        table(rows, f"triplet_channels_{lay_a.name}", container=tab,
              formats={"A: contribution": "%.6f", "B: contribution": "%.6f",
                       "A: share of layer": "percent", "B: share of layer": "percent"})
        note(f"{lay_a.name}: d(REF, A) {lay_a.distance:.6f}, d(REF, B) {lay_b.distance:.6f} "
             f"in this layer.", tab)


@panel("the summary and downloads")
def summary_and_downloads(tri: TripletExplanation) -> None:
    st.subheader("In plain words")
    st.markdown("\n".join(f"- {s}" for s in tri.summary))
    show_notices(tri.warnings)
    if tri.flip is None:
        st.info("The downloads need the flip, which could not be computed.")
        return
    c1, c2, c3 = st.columns(3)
    c1.download_button("JSON (numbers)", report.to_json(tri), "lpips_triplet.json",
                       "application/json", key=keys.TRIPLET_DOWNLOAD_JSON, on_click="ignore",
                       icon=ICONS["download"])
    c2.download_button("HTML report (offline)", lambda: report.html_triplet_report(tri),
                       "lpips_triplet_report.html", "text/html",
                       key=keys.TRIPLET_DOWNLOAD_HTML, on_click="ignore", icon=ICONS["download"])
    c3.download_button("PNG summary figure", lambda: static.triplet_png(tri),
                       "lpips_triplet.png", "image/png", key=keys.TRIPLET_DOWNLOAD_PNG,
                       on_click="ignore", icon=ICONS["download"])

"""Renderers for the Explain and Triplet pages: each draws one panel from a finished result.

No maths here: numbers come from the result objects, figures from lpips_explain.plots,
exports from lpips_explain.report. Display-only widgets (which layer, which view, how much
area to repair) are keyed and never trigger a recomputation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from lpips_explain import notices
from lpips_explain.analyses.attribution import METHODS
from lpips_explain.core.decompose import UPSAMPLING
from lpips_explain.output import figures as plots
from lpips_explain.output import report, static
from lpips_explain.ui import keys
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.state import persistent

SUMMED = "__all__"
_PLOTLY_CONFIG = {"displaylogo": False}


def chart(fig: Any, key: str) -> None:
    """A plotly figure as built (its own colour scales; row 0 of every map at the top).

    Streamlit swaps plotly's default template for its own, which drops automatic margins:
    long tick labels (the sensitivity bars) would be cut off without ``automargin``.
    """
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    st.plotly_chart(fig, key=key, theme=None, config=_PLOTLY_CONFIG)


def plain(text: str) -> str:
    """Text for st.table cells, which render Markdown: "L*a*b*" must not turn italic."""
    return re.sub(r"([\\`*_~$\[\]])", r"\\\1", text)


def pick(label: str, options: Sequence[Any], key: str, default: Any, *, radio: bool = False,
         container: Any = st, **kwargs: Any) -> Any:
    """A keyed selectbox/radio, kept across pages; a stale value (another trunk's layer) resets."""
    options = list(options)
    widget = container.radio if radio else container.selectbox
    if radio:
        kwargs.setdefault("horizontal", True)
    return persistent(widget, label, options, key=key,
                      default=default if default in options else options[0], choices=options,
                      **kwargs)


def _warnings(warnings: Sequence[str]) -> None:
    # The random-trunk warning is the page banner already.
    for w in notices.without(warnings, notices.RANDOM_TRUNK):
        st.warning(w, icon="ℹ️")


def _roles(expl: Any) -> tuple[Any, Any, str, str]:
    """(reference tensor, explained tensor, their names): B explained unless roles swapped."""
    _, _, ref_name, target_name = plots.explained_images(expl)
    if ref_name == "B":
        return expl.b, expl.a, ref_name, target_name
    return expl.a, expl.b, ref_name, target_name


# --- fast panels -------------------------------------------------------------------------------


@panel("the distance")
def distance_panel(expl: Any) -> None:
    dec = expl.decomposition
    col_d, col_c, col_i = st.columns([2, 2, 3])
    with col_d:
        st.metric("LPIPS distance", f"{dec.distance:.4f}",
                  help="0 means identical to the network; see the category for a reading.")
        st.caption(f"distance = {dec.distance:.6f}")
    col_c.metric("Category", expl.category)
    h, w = dec.size
    col_i.markdown(
        f"**LPIPS {dec.net}, v{dec.version}**, trunk weights `{expl.backbone.spec}`  \n"
        f"Compared at {w}x{h} px (size policy `{expl.inputs.align.policy}`); "
        f"A: `{expl.inputs.describe(0)['name']}`, B: `{expl.inputs.describe(1)['name']}`")
    _warnings(expl.warnings)


@panel("the comparison")
def comparison_panel(expl: Any) -> None:
    st.subheader("The two images")
    a, b = plots.as_uint8_image(expl.a), plots.as_uint8_image(expl.b)
    side, flick = st.tabs(["Side by side", "Flick A / B"])
    with side:
        col_a, col_b = st.columns(2)
        col_a.image(a, caption="A", width="stretch")
        col_b.image(b, caption="B", width="stretch")
    with flick:
        chart(plots.comparison_figure(a, b), "comparison_chart")
        st.caption("Drag the slider under the right panel to flick between A and B.")


@panel("the spatial map")
def spatial_panel(expl: Any) -> None:
    dec = expl.decomposition
    _, target, _, target_name = plots.explained_images(expl)
    st.subheader(f"Where the distance is (over {target_name})")
    names = [lay.name for lay in dec.layers]
    col_l, col_u = st.columns([2, 3])
    layer = pick("Map", [SUMMED, *names], keys.MAP_LAYER, SUMMED, container=col_l,
                 format_func=lambda n: "all layers, summed" if n == SUMMED else f"layer {n}")
    upsample = pick("Upsampling", list(UPSAMPLING), keys.MAP_UPSAMPLE, "bilinear", radio=True,
                    container=col_u,
                    format_func=lambda u: {"none": "none (layer grid)",
                                           "bilinear": "bilinear (official)",
                                           "mean_preserving": "mean-preserving"}[u])
    if layer == SUMMED and upsample == "none":
        st.info("The summed map needs a common size: pick one layer to see it at its own "
                "resolution, or choose bilinear or mean-preserving upsampling.")
        return
    chosen = None if layer == SUMMED else names.index(layer)
    fig = plots.spatial_map_figure(dec, target, layer=chosen, upsample=upsample)
    chart(fig, "spatial_chart")
    which = "all layers summed" if chosen is None else f"layer {layer}"
    st.caption(f"Map: spatial LPIPS distance over {target_name}, {which}; upsampling: "
               f"{upsample}, {UPSAMPLING[upsample]}.")


@panel("the layer waterfall")
def waterfall_panel(expl: Any) -> None:
    dec = expl.decomposition
    st.subheader("Layer by layer")
    chart(plots.layer_waterfall(dec), "waterfall_chart")
    total = sum(lay.distance for lay in dec.layers)
    st.caption(f"{len(dec.layers)} layers ({', '.join(lay.name for lay in dec.layers)}) add up "
               f"to {total:.6f}; the distance is {dec.distance:.6f}.")


@panel("the top channels")
def channels_panel(expl: Any) -> None:
    dec = expl.decomposition
    st.subheader("Top channels")
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
    rows = [{"channel": c.index, "contribution": c.contribution, "share of layer": c.share,
             "lin weight": c.weight} for c in lay.top_channels]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="channel_table",
                 column_config={
                     "contribution": st.column_config.NumberColumn(format="%.6f"),
                     "share of layer": st.column_config.NumberColumn(format="percent")})
    zero = int(lay.zero_weight_channels.size)
    st.caption(f"{lay.name}: {lay.weights.size} channels at {lay.resolution[0]}x"
               f"{lay.resolution[1]}, layer distance {lay.distance:.6f} ({lay.share:.1%} of the "
               f"total). {zero} of its channels have lin weight exactly 0 and can never "
               f"contribute.")


# --- slow panels ---------------------------------------------------------------------------------


@panel("the attribution map")
def attribution_panel(expl: Any) -> None:
    attr = expl.attribution
    st.subheader("Attribution map")
    if attr is None:
        st.info("No attribution was computed.")
        return
    _, target, _, target_name = plots.explained_images(expl)
    view = pick("View", list(plots.ATTRIBUTION_VIEWS), keys.ATTR_VIEW, "signed", radio=True,
                format_func=lambda v: plots.ATTRIBUTION_VIEWS[v])
    st.caption(f"{METHODS[attr.method].label} on {target_name}: "
               f"{METHODS[attr.method].description} Method and its parameter are in the sidebar.")
    if attr.vanishing:
        st.warning(attr.notes[0] if attr.notes else "Gradients vanish for this pair.", icon="🕳️")
    chart(plots.attribution_figure(attr, target, view=view, name=target_name),
          "attribution_chart")
    if attr.completeness_gap is not None:
        c1, c2, c3 = st.columns(3)
        c1.metric("Sum of attributions", f"{attr.total:.6f}")
        c2.metric("Distance", f"{attr.distance:.6f}")
        rel = "" if attr.relative_gap is None else f" ({attr.relative_gap:.2%})"
        c3.metric("Completeness gap", f"{attr.completeness_gap:.2e}{rel}")
        st.caption(f"Integrated gradients from the reference to {target_name}: the attributions "
                   f"should add up to the distance. Points used: {attr.params.get('steps')}"
                   f" (tried {', '.join(map(str, attr.steps_tried))}).")
    params = ", ".join(f"{k}={v}" for k, v in attr.params.items())
    with st.expander("Notes on this map"):
        for note in attr.notes:
            st.markdown(f"- {note}")
        st.caption(f"Parameters: {params or 'none'}; {attr.seconds:.2f} s.")


def _sensitivity_rows(items: Sequence[Any], explained: str) -> pd.DataFrame:
    return pd.DataFrame([{f"perturbation of {explained}": it.label, "strength": it.strength,
                          "unit": it.unit, "LPIPS": it.distance, "change": it.change,
                          "PSNR (dB)": it.psnr, "SSIM": it.ssim} for it in items])


@panel("the sensitivity")
def sensitivity_panel(expl: Any, *, key_prefix: str = "") -> None:
    sens = expl.sensitivity
    st.subheader("Counterfactual sensitivity")
    if sens is None:
        st.info("No sensitivity analysis was computed.")
        return
    _, _, ref_name, target_name = _roles(expl)
    chart(plots.sensitivity_bars(sens, explained=target_name), key_prefix + "sensitivity_chart")
    sweeps = {s.transform: s for s in sens.sweeps}
    if sweeps:
        default = sens.most_sensitive if sens.most_sensitive in sweeps else next(iter(sweeps))
        name = pick("Sweep", list(sweeps), key_prefix + keys.SWEEP_PICK, default,
                    format_func=lambda n: sweeps[n].label)
        chart(plots.sweep_figure(sweeps[name]), key_prefix + "sweep_chart")
        st.caption(f"LPIPS (left axis) beside PSNR and SSIM (right axes) as {target_name} is "
                   f"perturbed more and more, {ref_name} staying the reference; every marker "
                   f"is a real evaluation.")
    st.markdown(f"**Geometric sensitivity** (small rotations and shifts of {target_name})")
    st.dataframe(_sensitivity_rows(sens.geometric, target_name), hide_index=True,
                 key=key_prefix + "geometric_table")


@panel("the repair")
def repair_panel(expl: Any) -> None:
    rep = expl.repair
    st.subheader("What would have to be repaired")
    if rep is None:
        st.info("No repair analysis was computed.")
        return
    ref_t, tgt_t, ref_name, target_name = _roles(expl)
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
    c1.image(plots.as_uint8_image(ref_t), caption=f"{ref_name} (reference)", width="stretch")
    c2.image(plots.as_uint8_image(tgt_t), caption=f"{target_name} as given", width="stretch")
    c3.image(plots.as_uint8_image(repaired),
             caption=f"{target_name} with its first {k} patches (greedy order) from {ref_name}",
             width="stretch")
    st.caption(f"{k} of {rep.grid[0] * rep.grid[1]} patches of {rep.patch} px repaired "
               f"({area:.1%} of the area): distance after repair {after:.4f} (from "
               f"{rep.base_distance:.4f}).")
    with st.expander("Single-patch gains"):
        _, target, _, _ = plots.explained_images(expl)
        chart(plots.heatmap_overlay(target, rep.gain_map(), symmetric=True,
                                    title="Distance removed by repairing each patch alone",
                                    caption="Red patches hold distance; blue ones lower it "
                                            "when repaired alone."), "gain_chart")
        for note in rep.notes:
            st.caption(note)


@panel("the summary")
def summary_panel(expl: Any) -> None:
    st.subheader("In plain words")
    st.markdown("\n".join(f"- {s}" for s in expl.summary))


@panel("the downloads")
def downloads(expl: Any) -> None:
    st.subheader("Downloads")
    c1, c2, c3 = st.columns(3)
    c1.download_button("JSON (numbers)", report.to_json(expl), "lpips_explanation.json",
                       "application/json", key=keys.DOWNLOAD_JSON, on_click="ignore")
    c2.download_button("HTML report (offline)", lambda: report.html_report(expl),
                       "lpips_report.html", "text/html", key=keys.DOWNLOAD_HTML,
                       on_click="ignore")
    c3.download_button("PNG summary figure", lambda: static.summary_png(expl),
                       "lpips_summary.png", "image/png", key=keys.DOWNLOAD_PNG,
                       on_click="ignore")
    st.caption(f"Timings (ms): {', '.join(f'{k} {v:.0f}' for k, v in expl.timings_ms.items())}.")


# --- triplet -------------------------------------------------------------------------------------


@panel("the verdict")
def triplet_verdict(tri: Any) -> None:
    verdict = {"a": "A is closer", "b": "B is closer", "tie": "A and B are tied"}[tri.closer]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Verdict", verdict)
    c2.metric("Margin d(REF,B) - d(REF,A)", f"{tri.margin:+.4f}")
    c3.metric("d(REF, A)", f"{tri.distance_a:.4f}")
    c4.metric("d(REF, B)", f"{tri.distance_b:.4f}")
    st.caption(f"distance_a = {tri.distance_a:.6f}, distance_b = {tri.distance_b:.6f}, "
               f"margin = {tri.margin:+.6f}")
    ims = [plots.as_uint8_image(t) for t in tri.inputs.tensors[:3]]
    cols = st.columns(3)
    for col, im, cap in zip(cols, ims, ("REF", f"A (d = {tri.distance_a:.4f})",
                                        f"B (d = {tri.distance_b:.4f})"), strict=True):
        col.image(im, caption=cap, width="stretch")
    _warnings(tri.warnings)


@panel("the layer margins")
def triplet_margins(tri: Any) -> None:
    st.subheader("Which layers decide")
    chart(plots.triplet_margin_chart(tri), "triplet_margin_chart")
    st.dataframe(pd.DataFrame([lay.to_dict() for lay in tri.layers]), hide_index=True,
                 key="triplet_layer_table")


@panel("the attribution maps")
def triplet_attributions(tri: Any) -> None:
    st.subheader("Attribution maps of both candidates")
    if tri.attribution_a is None:
        st.info("No attribution was computed.")
        return
    view = pick("View", list(plots.ATTRIBUTION_VIEWS), keys.TRIPLET_ATTR_VIEW, "signed",
                radio=True, format_func=lambda v: plots.ATTRIBUTION_VIEWS[v])
    ims = [plots.as_uint8_image(t) for t in tri.inputs.tensors[:3]]
    cols = st.columns(2)
    for col, name, attr, im in ((cols[0], "A", tri.attribution_a, ims[1]),
                                (cols[1], "B", tri.attribution_b, ims[2])):
        with col:
            if attr.vanishing:
                st.warning(attr.notes[0] if attr.notes else "Gradients vanish.", icon="🕳️")
            chart(plots.attribution_figure(attr, im, view=view, name=name),
                  f"triplet_attr_{name}")
            st.caption(f"d(REF, {name}) attributed to {name}'s pixels with "
                       f"{METHODS[attr.method].label}.")


@panel("the flip")
def triplet_flip(tri: Any) -> None:
    st.subheader("What would flip the decision")
    flip = tri.flip
    (st.success if flip.exists else st.info)(flip.statement)
    if flip.exists and tri.repair is not None:
        loser = 1 if flip.repaired == "a" else 2
        ref_t, cand_t = tri.inputs.tensors[0], tri.inputs.tensors[loser]
        repaired = tri.repair.repaired_image(ref_t, cand_t, flip.area)
        name = flip.repaired.upper()
        cols = st.columns(3)
        cols[0].image(plots.as_uint8_image(ref_t), caption="REF", width="stretch")
        cols[1].image(plots.as_uint8_image(cand_t), caption=f"{name} as given", width="stretch")
        cols[2].image(plots.as_uint8_image(repaired),
                      caption=f"{name} repaired: {flip.patches} of {flip.total_patches} patches "
                              f"({flip.area:.1%} of the area)", width="stretch")
    if tri.repair is not None:
        loser = (flip.repaired or "b").upper()
        chart(plots.repair_curve(
            tri.repair, repaired=loser, source="REF", threshold=flip.rival_distance,
            threshold_label="the other candidate's distance",
            mark_area=flip.area if flip.exists else None, mark_label="decision flips"),
            "triplet_repair_chart")
        st.caption(f"d(REF, {loser}) as more of {loser}'s patches are replaced by REF's; the "
                   f"decision flips where the curve drops below the other candidate's distance "
                   f"({flip.rival_distance:.4f}).")


@panel("the top channels")
def triplet_channels(tri: Any) -> None:
    st.subheader("Top channels per layer")
    st.caption("The channels that contribute most to d(REF, A) and d(REF, B) in each layer "
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
        pct = st.column_config.NumberColumn(format="percent")
        num = st.column_config.NumberColumn(format="%.6f")
        tab.dataframe(pd.DataFrame(rows), hide_index=True, key=f"triplet_channels_{lay_a.name}",
                      column_config={"A: contribution": num, "B: contribution": num,
                                     "A: share of layer": pct, "B: share of layer": pct})
        tab.caption(f"{lay_a.name}: d(REF, A) {lay_a.distance:.6f}, d(REF, B) "
                    f"{lay_b.distance:.6f} in this layer.")


@panel("the summary and downloads")
def triplet_summary_and_downloads(tri: Any) -> None:
    st.subheader("In plain words")
    st.markdown("\n".join(f"- {s}" for s in tri.summary))
    c1, c2, c3 = st.columns(3)
    c1.download_button("JSON (numbers)", report.to_json(tri), "lpips_triplet.json",
                       "application/json", key=keys.TRIPLET_DOWNLOAD_JSON, on_click="ignore")
    c2.download_button("HTML report (offline)", lambda: report.html_triplet_report(tri),
                       "lpips_triplet_report.html", "text/html",
                       key=keys.TRIPLET_DOWNLOAD_HTML, on_click="ignore")
    c3.download_button("PNG summary figure", lambda: static.triplet_png(tri),
                       "lpips_triplet.png", "image/png", key=keys.TRIPLET_DOWNLOAD_PNG,
                       on_click="ignore")

"""The Explain page below the card and the "where" view: the before/after comparison, the
panels (layers, channels, sensitivity, repair, summary) and the downloads.
"""

from __future__ import annotations

import streamlit as st

from lpips_explain.analyses.pair.explanation import Explanation
from lpips_explain.analyses.pair.map_scale import scale_for
from lpips_explain.analyses.pair.summary import (
    describe_layers,
)
from lpips_explain.output import figures as plots
from lpips_explain.output import imaging, report, static
from lpips_explain.output.compare import compare_height, compare_html
from lpips_explain.ui import keys
from lpips_explain.ui.explain import COMPARE_SIDE, map_width
from lpips_explain.ui.feedback import panel
from lpips_explain.ui.sensitivity import geometric_table
from lpips_explain.ui.state import persistent
from lpips_explain.ui.widgets import (
    ICONS,
    chart,
    drawn,
    note,
    pick,
    show_notices,
    table,
    term,
)

# --- the comparison --------------------------------------------------------------------------------


def _comparison(expl: Explanation, width: int) -> tuple[tuple[int, int], str]:
    """The swipe view's (height, width) and its HTML: A, B and the distance map at most
    COMPARE_SIDE px a side."""
    a, b = (imaging.downsample_image(x, COMPARE_SIDE) for x in (expl.a, expl.b))
    heat = imaging.downsample_map(expl.decomposition.spatial_map(None, "bilinear"),
                                  COMPARE_SIDE)
    layer = imaging.map_rgba(heat, fade=True, zmax=scale_for(expl).limit)
    return (int(a.shape[0]), int(a.shape[1])), compare_html(
        a, b, map_layer=layer, names=("A", "B"), map_label="distance map",
        display_width=width, uid="cmp")


@panel("the comparison")
def compare_panel(expl: Explanation) -> None:
    st.subheader("Compare A and B")
    width = map_width() + 80
    shown, fragment = drawn("comparison", lambda: _comparison(expl, width),
                            expl.a, expl.b, expl.decomposition, options=(width,))
    h, w = expl.decomposition.size
    if shown != (h, w):
        note(f"Shown at {shown[1]}x{shown[0]} px, averaged down from {w}x{h} "
             f"(the card's boxed crops show the pixels at 100%).")
    st.iframe(fragment, height=compare_height(shown, width), width=width + 10)
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
    chart(drawn("channel grid", lambda: plots.channel_grid(lay, which=view), lay,
                options=(view,)), "channel_chart")
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
    chart(drawn("repair curve", lambda: plots.repair_curve(rep, repaired=target_name,
                                                            source=ref_name),
                rep, options=(target_name, ref_name)), "repair_chart")
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
    ref_u8, tgt_u8, repaired = drawn("repair images", lambda: tuple(
        imaging.as_uint8_image(x) for x in (ref_t, tgt_t, rep.repaired_image(ref_t, tgt_t, area))),
        rep, ref_t, tgt_t, options=(area,))
    c1, c2, c3 = st.columns(3)
    c1.image(ref_u8, caption=f"{ref_name} (reference)", width="stretch")
    c2.image(tgt_u8, caption=f"{target_name} as given", width="stretch")
    c3.image(repaired,
             caption=f"{target_name} with its first {k} patches (order: "
                     f"{rep.order_name.replace('_', ' ')}) from {ref_name}",
             width="stretch")
    st.markdown(f"{k} of {rep.grid[0] * rep.grid[1]} patches of {rep.patch} px repaired "
                f"({area:.1%} of the area): distance after repair {after:.4f} (from "
                f"{rep.base_distance:.4f}).")
    with st.expander("Single-patch gains"):
        width = map_width() - 100
        chart(drawn("repair gains", lambda: plots.heatmap_overlay(
            imaging.as_uint8_image(tgt_t), rep.gain_map(), symmetric=True, title=None,
            caption=("Distance removed by repairing each patch alone: red patches hold "
                     "distance, blue ones lower it when repaired alone."),
            colorbar_title="gain", display_width=width), rep, tgt_t, options=(width,)),
            "gain_chart")
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



"""The Explain page's "where" view: one large map over the explained image (the spatial map
of any layer, or the attribution map with its faithfulness badge and deletion note).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from lpips_explain.analyses.pair.explanation import Explanation
from lpips_explain.analyses.pair.map_scale import scale_for
from lpips_explain.analyses.pair.summary import (
    describe_deletion,
)
from lpips_explain.core.decompose import UPSAMPLING
from lpips_explain.output import figures as plots
from lpips_explain.output import imaging
from lpips_explain.ui import keys
from lpips_explain.ui.controls import Options, attribution_controls
from lpips_explain.ui.explain import SUMMED, UPSAMPLING_LABELS, map_width
from lpips_explain.ui.state import persistent
from lpips_explain.ui.widgets import (
    ICONS,
    chart,
    drawn,
    note,
    pick,
    term,
)


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
        width = map_width()
        fig = drawn("spatial map", lambda: plots.spatial_map_figure(
            dec, imaging.as_uint8_image(expl.explained), layer=chosen, upsample=self.upsample,
            opacity=self.opacity, display_width=width, title=False, name=expl.explained_name,
            scale=scale_for(expl, chosen, self.upsample)), dec, expl.explained,
            options=(chosen, self.upsample, self.opacity, width, expl.explained_name))
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
            width, explained = map_width(), self.expl.explained
            fig = drawn("attribution map", lambda: plots.attribution_figure(
                attr, imaging.as_uint8_image(explained), view=self.attr_view, name=name,
                opacity=self.opacity, display_width=width, title=False,
                pool=attribution_pool(attr)), attr, explained,
                options=(self.attr_view, name, self.opacity, width))
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



"""Triplet page: a 2AFC debugger. Which candidate does LPIPS find closer to the reference, and why?

Stages, so that the verdict comes first: verdict and margins (fast), the flip, then both
attribution maps; the run state at the top says which one is being computed.
"""

import streamlit as st

from lpips_explain.ui import controls, inputs, triplet
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached
from lpips_explain.ui.runstate import RunState
from lpips_explain.ui.widgets import glossary

opts, explainer = controls.page_setup(
    "Triplet: which is closer?",
    "which candidate is closer to the reference, and why")
run = RunState(triplet.PARTS)
card = st.empty()
images = inputs.triplet_input(run)
controls.fill_share(images.origin == "upload")
base = (opts.model_key, images.key)

with guard("reading the images"):
    prep = cached("prepare-triplet", base, lambda _p: explainer.prepare(
        *(i.source() for i in images.images), labels=triplet.LABELS))
with guard("computing the verdict"):
    verdict = run.compute("verdict", "triplet-verdict", (*base, opts.top_k),
                          lambda _p: triplet.verdict_stage(explainer, prep, opts.top_k))
with card.container():
    triplet.verdict_card(verdict, waiting=("flip", "attributions"))
choices = None
with guard("computing the other metrics' choices", stop=False):
    # The metrics' choices and the flip do not depend on "Top channels per layer": keyed
    # without it, so changing it redraws the tables only.
    choices = run.compute("metrics", "triplet-metrics", base,
                          lambda _p: triplet.metrics_stage(explainer, verdict))
verdict = triplet.with_choices(verdict, choices)
card.empty()
with card.container():
    triplet.verdict_card(verdict, waiting=("flip", "attributions"))
triplet.metrics_panel(verdict)
triplet.margins_panel(verdict)
triplet.maps_panel(verdict)
attributions = triplet.AttributionsView(opts)
flip_slot = st.empty()
flip_slot.info("Computing the flip (see the top of the page)...",
               icon=":material/hourglass_top:")

tri = verdict
with guard("computing the flip", stop=False):
    tri = run.compute("flip", "triplet-flip", (*base, opts.patch),
                      lambda progress: triplet.flip_stage(explainer, prep, opts, progress))
    tri = triplet.with_breakdowns(tri, verdict)
tri = triplet.with_choices(tri, choices)
card.empty()  # a fresh card: nothing of the first one may stay behind
with card.container():
    triplet.verdict_card(tri)
with flip_slot.container():
    triplet.flip_panel(tri)

attrs = None
with guard("computing the attribution maps", stop=False):
    attrs = run.compute("attributions", "triplet-attributions",
                        (*base, opts.method, opts.steps, opts.params),
                        lambda progress: triplet.attribution_stage(explainer, prep, opts,
                                                                   progress))
full = triplet.with_attributions(tri, attrs)
run.finish()
attributions.fill(full)
triplet.channels_panel(full)
triplet.summary_and_downloads(full)
glossary(triplet.GLOSSARY_TERMS)

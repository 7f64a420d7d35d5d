"""Triplet page: a 2AFC debugger. Which candidate does LPIPS find closer to the reference, and why?"""

from lpips_explain.ui import controls, inputs, render
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached

opts, explainer = controls.page_setup(
    "Triplet: which is closer?",
    "A reference and two candidates: LPIPS's verdict, the layers behind it, both attribution "
    "maps and the smallest repair that flips the decision.")
triplet = inputs.triplet_input()

key = (opts.model_key, triplet.key, opts.analysis_key)
with guard("explaining the triplet"):
    tri = cached("triplet", key, lambda progress: explainer.explain_triplet(
        triplet.ref.source(), triplet.a.source(), triplet.b.source(), attribution=opts.method,
        steps=opts.steps, attribution_params=opts.attribution_params, patch=opts.patch,
        top_k=opts.top_k, progress=progress),
        progress="Explaining the decision:")
render.triplet_verdict(tri)
render.triplet_margins(tri)
render.triplet_channels(tri)
render.triplet_attributions(tri)
render.triplet_flip(tri)
render.triplet_summary_and_downloads(tri)

"""Explain page: why does LPIPS say what it says about two images?

streamlit run app.py
"""

from lpips_explain.ui import controls, inputs, keys, render, state
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached

opts, explainer = controls.page_setup(
    "LPIPS, explained",
    "Drop two images (or pick a sample pair) to see the LPIPS distance, where it comes from "
    "and what would change it.")

pair = inputs.pair_input()
swap = inputs.swapped()
state.reset_when_changed(keys.RESULT_INPUTS, (pair.key, swap), keys.RESULT_DEFAULT_WIDGETS)
fast_key = (opts.model_key, pair.key, swap, opts.top_k)

# The fast view first: distance, comparison, maps, waterfall, channels.
with guard("computing the distance"):
    fast = cached("explain-fast", fast_key, lambda _progress: explainer.explain(
        pair.a.source(), pair.b.source(), attribution=None, sensitivity=False, repair=False,
        top_k=opts.top_k, swap=swap))
render.distance_panel(fast)
render.comparison_panel(fast)
render.spatial_panel(fast)
render.waterfall_panel(fast)
render.channels_panel(fast)

# Then the slow parts, with progress.
with guard("explaining the pair"):
    full = cached("explain-full", (fast_key, opts.analysis_key), lambda progress: explainer.explain(
        pair.a.source(), pair.b.source(), attribution=opts.method, steps=opts.steps,
        attribution_params=opts.attribution_params, patch=opts.patch, top_k=opts.top_k,
        progress=progress, swap=swap), progress="Explaining:")
render.attribution_panel(full)
render.sensitivity_panel(full)
render.repair_panel(full)
render.summary_panel(full)
render.downloads(full)

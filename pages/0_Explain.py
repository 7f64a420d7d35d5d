"""Explain page (the app's default page): why does LPIPS say what it says about two images?

Run the app with ``streamlit run app.py``; app.py lists the pages.
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
base = (opts.model_key, pair.key, swap)

# The fast view first: distance, comparison, maps, waterfall, channels.
with guard("computing the distance"):
    fast = cached("explain-fast", (base, opts.top_k), lambda _progress: explainer.explain(
        pair.a.source(), pair.b.source(), attribution=None, sensitivity=False, repair=False,
        top_k=opts.top_k, swap=swap))
render.distance_panel(fast)
render.comparison_panel(fast)
render.spatial_panel(fast)
render.waterfall_panel(fast)
render.channels_panel(fast)

# Then the slow parts, each cached on its own options only (a new attribution method does
# not rerun the sensitivity or the repair), each with its own progress bar. A part that
# fails says so and the others are still shown.
parts = []
with guard("attributing the distance", stop=False):
    parts.append(cached(
        "explain-attribution", (base, opts.method, opts.steps, opts.params),
        lambda progress: explainer.explain(
            pair.a.source(), pair.b.source(), attribution=opts.method, steps=opts.steps,
            attribution_params=opts.attribution_params, sensitivity=False, repair=False,
            top_k=opts.top_k, swap=swap, progress=progress),
        progress="Attribution map:"))
with guard("measuring the sensitivity", stop=False):
    parts.append(cached(
        "explain-sensitivity", base, lambda progress: explainer.explain(
            pair.a.source(), pair.b.source(), attribution=None, sensitivity=True,
            repair=False, top_k=opts.top_k, swap=swap, progress=progress),
        progress="Counterfactual sensitivity:"))
with guard("computing the repair", stop=False):
    parts.append(cached(
        "explain-repair", (base, opts.patch), lambda progress: explainer.explain(
            pair.a.source(), pair.b.source(), attribution=None, sensitivity=False,
            repair=True, patch=opts.patch, top_k=opts.top_k, swap=swap, progress=progress),
        progress="Repair curve:"))
with guard("putting the explanation together"):
    full = explainer.combine(fast, *parts)
render.attribution_panel(full)
render.sensitivity_panel(full)
render.repair_panel(full)
render.summary_panel(full)
render.downloads(full)

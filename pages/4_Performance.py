"""Performance page: latency and memory against image size per mode, the fidelity of each
approximate mode against exact fp32, and a short profile run live on this server."""

from lpips_explain.ui import controls, performance

opts, explainer = controls.page_setup(
    "Performance",
    "How fast each mode is and how far its numbers are from exact fp32: measured, never "
    "assumed. Approximate modes are labelled wherever their numbers appear.", analysis=False)
performance.modes_panel(explainer)

stored = performance.stored_profile()
if stored is not None:
    performance.render_profile(stored, "stored profile (README table)", "stored")
live = performance.live_profile(explainer)
if live is not None:
    performance.render_profile(live, "live profile on this server", "live")

"""Performance page: latency and memory against image size per mode, the fidelity of each
approximate mode against exact fp32, and a short profile run live on this server."""

from lpips_explain.ui import controls, performance
from lpips_explain.ui.runstate import RunState

opts, explainer = controls.page_setup(
    "Performance",
    "How fast each mode is and how far its numbers are from exact fp32: measured, never "
    "assumed. Approximate modes are labelled wherever their numbers appear.", analysis=False)
run = RunState(("modes", "stored profile", "live profile"))
with run.part("modes"):
    performance.modes_panel(explainer)

with run.part("stored profile"):
    stored = performance.stored_profile()
    if stored is not None:
        performance.render_stored(stored, "stored profile (README table)", "stored")
with run.part("live profile"):
    live = performance.live_profile(explainer)
    if live is not None:
        performance.render_profile(live, "live profile on this server", "live")
if live is None:
    run.skip("live profile")
run.finish()

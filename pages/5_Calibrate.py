"""Calibrate page: fit the lin heads to your own 2AFC judgments, see what changed, take the
heads away; and measure how far a new image domain is from a known one."""

from lpips_explain.ui import calibrate as cal_ui
from lpips_explain.ui import controls
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached
from lpips_explain.ui.runstate import RunState

opts, explainer = controls.page_setup(
    "Calibrate",
    "Judgments in, lin heads out: the official loss on your 2AFC judgments with a schedule "
    "chosen from their number (or the official recipe), the learning curve, before/after "
    "agreement on held-out triplets, and the domain gap.", analysis=False)

run = RunState(("judgments", "trunk features", "training", "domain gap"))
trunk = cal_ui.trunk_key(opts)  # calibration does not depend on the heads in use
with guard("reading the judgments"), run.part("judgments"):
    data = cal_ui.judgments_input(run)
    jset = cached("judgments", data.key, lambda _p: data.read())
cal_ui.judgments_panel(jset)
params = cal_ui.training_controls(opts.seed)
with guard("computing the trunk features"):
    features = run.compute("trunk features", "judgment-features", (trunk, data.key, params.size),
                           lambda progress: explainer.judgment_features(
                               jset, size=params.size, progress=progress),
                           progress="Trunk features (computed once per data set):")
with guard("training the heads"), run.part("training"):
    cal = cal_ui.run_training(explainer, features, params, (trunk, data.key, params))
if cal is None:
    run.skip("training")
else:
    cal_ui.results_panel(cal)
    cal_ui.changed_panel(cal, jset)
    cal_ui.weights_panel(cal)
    cal_ui.downloads_panel(cal, explainer)

key, set_a, set_b = cal_ui.gap_inputs(run)
with guard("measuring the domain gap"):
    gap = run.compute("domain gap", "domain-gap", (opts.model_key, key),
                      lambda progress: explainer.domain_gap(
                          set_a, set_b, judgments=jset if key == "sample" else None,
                          progress=progress),
                      progress="Encoding both sets:")
run.finish()
cal_ui.gap_panel(gap)

"""Diagnostics page: is the input sane, does the maths hold, where do the weights come from,
and how scoring behaves when LPIPS must refuse."""

from lpips_explain.analyses.checks import diagnostics
from lpips_explain.ui import controls, inputs
from lpips_explain.ui import diagnostics as checks
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached
from lpips_explain.ui.runstate import RunState

opts, explainer = controls.page_setup(
    "Diagnostics",
    "Input anomalies, live self-checks of the maths, the weights in use, and robust scoring "
    "that keeps refusals as refusals.", analysis=False)
run = RunState(("input report", "self-checks", "faithfulness", "robust scores"))
pair = inputs.current_pair()
base = (opts.model_key, pair.key)

with guard("loading the pair"), run.part("input report"):
    prep = cached("prepare", base,
                  lambda _p: explainer.prepare(pair.a.source(), pair.b.source()))
    rows = diagnostics.input_report(prep)
checks.anomalies_panel(rows, prep.warnings)

with guard("running the self-checks"):
    results = run.compute("self-checks", "self-checks", base,
                          lambda _p: explainer.self_checks(prep.tensors[0], prep.tensors[1]))
checks.checks_panel(results)
checks.weights_panel(explainer)

wanted, methods, patch, randomise = checks.faithfulness_controls(prep.size)
if wanted:
    with guard("running the faithfulness checks"):
        faith = run.compute("faithfulness", "faithfulness", (base, methods, patch, randomise),
                            lambda progress: explainer.faithfulness(
                                pair.a.source(), pair.b.source(), methods=methods,
                                patch=patch, randomisation=randomise, progress=progress),
                            progress="Faithfulness checks:")
    checks.faithfulness_panel(faith)
else:
    run.skip("faithfulness")

checks.robust_heading()
fallback = checks.fallback_picker()
with guard("scoring the demo pairs"):
    robust = run.compute("robust scores", "robust",
                         (base, pair.origin, pair.a.name, pair.b.name, fallback),
                         lambda _p: explainer.robust_score(checks.demo_cases(pair),
                                                           fallback=fallback))
run.finish()
checks.robust_panel(robust)

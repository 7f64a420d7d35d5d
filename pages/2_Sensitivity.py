"""Sensitivity page: how LPIPS reacts when the explained image is perturbed, against PSNR and
SSIM (B is explained unless the roles were swapped on Explain)."""

import streamlit as st

from lpips_explain.analyses.pair.perturbations import display_name
from lpips_explain.ui import controls, explain, inputs
from lpips_explain.ui import sensitivity as sweeps
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached
from lpips_explain.ui.runstate import RunState

opts, explainer = controls.page_setup(
    "Sensitivity",
    "how LPIPS reacts to perturbations, beside PSNR and SSIM", analysis=False)
run = RunState(("roles", "sensitivity", "sweeps", "colour spaces"))
pair = inputs.current_pair()
swap = inputs.swapped()
controls.fill_share(pair.origin == "upload")
base = (opts.model_key, pair.key)

with guard("loading the pair"):
    prep = cached("prepare", base,
                  lambda _p: explainer.prepare(pair.a.source(), pair.b.source()))
    # The breakdown (shared with the Explain page) carries the roles: which image is perturbed.
    expl = run.compute("roles", "explain-breakdown",
                       explain.part_key("breakdown", (*base, swap), opts),
                       lambda p: explain.compute_part(explainer, prep, opts, swap, "breakdown",
                                                      p))
target, reference = expl.explained_name, expl.reference_name
with st.expander(f"Perturbations of {target} and their ranges", icon=":material/tune:"):
    transforms, ranges, points = sweeps.sweep_controls(target)

with guard("measuring the sensitivity"):
    sens = run.compute("sensitivity", "sensitivity", (base, swap, tuple(transforms)),
                       lambda progress: sweeps.default_sensitivity(explainer, expl, transforms,
                                                                   progress=progress),
                       progress=f"Perturbing {target}:")
sweeps.distance_header(sens, target)

with guard("sweeping the perturbations"), run.part("sweeps"):
    curves = [cached("sweep", (base, swap, name, ranges[name], points),
                     lambda _p, name=name: sweeps.sweep_range(
                         explainer, expl, name, *ranges[name], points),
                     spinner=f"Sweeping {display_name(name).lower()}...")
              for name in transforms]
sweeps.sweeps_panel(curves, target, reference)
sweeps.geometric_panel(sens, target)

with guard("rendering the colour spaces"):
    rows = run.compute("colour spaces", "colorspace", base,
                       lambda _p: sweeps.colorspaces(explainer, prep))
run.finish()
sweeps.colorspace_panel(rows)

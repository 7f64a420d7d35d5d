"""Sensitivity page: how LPIPS reacts when the explained image is perturbed, against PSNR and
SSIM (B is explained unless the roles were swapped on Explain)."""

from lpips_explain.ui import controls, inputs
from lpips_explain.ui import sensitivity as sweeps
from lpips_explain.ui.feedback import guard
from lpips_explain.ui.resources import cached

opts, explainer = controls.page_setup(
    "Sensitivity",
    "Perturb the explained image step by step and watch LPIPS beside PSNR and SSIM; small "
    "rotations and shifts; what happens when the colour space is wrong.", analysis=False)
pair = inputs.current_pair()
swap = inputs.swapped()
target = "A" if swap else "B"
transforms, ranges, points = sweeps.sweep_controls(target)

base = (opts.model_key, pair.key)
with guard("loading the pair"):
    prep = cached("prepare", base,
                  lambda _p: explainer.prepare(pair.a.source(), pair.b.source()))
with guard("measuring the sensitivity"):
    sens = cached("sensitivity", (base, swap, tuple(transforms)),
                  lambda progress: sweeps.default_sensitivity(
                      explainer, prep, transforms, swap=swap, progress=progress),
                  progress=f"Perturbing {target}:")
sweeps.distance_header(sens, swap)

with guard("sweeping the perturbations"):
    curves = [cached("sweep", (base, swap, name, ranges[name], points),
                     lambda _p, name=name: sweeps.sweep_range(
                         explainer, prep, name, *ranges[name], points, swap=swap),
                     spinner=f"Sweeping {name}...")
              for name in transforms]
sweeps.sweeps_panel(curves, target)
sweeps.geometric_panel(sens, target)

with guard("rendering the colour spaces"):
    rows = cached("colorspace", base, lambda _p: sweeps.colorspaces(explainer, prep))
sweeps.colorspace_panel(rows)

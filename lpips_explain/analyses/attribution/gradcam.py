"""Layer Grad-CAM on a trunk tap, made meaningful for LPIPS.

LPIPS unit-normalises the features at every position, and the distance does not change when
the features at one position are rescaled: sum_c g_c A_c = 0 at every position of the last
tap (g = dd/dA; nothing else reads it), and the tap's own term contributes nothing to that
sum at the earlier taps. Classic Grad-CAM, sum_c mean_hw(g_c) A_c, therefore shows only the
leftover sum_c (mean_hw(g_c) - g_c) A_c, whose sign says nothing about the distance.

The default (``baseline="reference"``) weights the layer's *change from the reference*,
A(explained) - A(reference), by the same channel weights mean_hw(g_c): zero wherever the
layer sees no change, positive where the change runs along channels whose averaged gradient
raises the distance. ``baseline="zero"`` gives the classic map, labelled for what it is.
All through Captum's public layer API on a private copy of the network.
"""

from __future__ import annotations

import torch

from lpips_explain.analyses.attribution.result import MethodResult
from lpips_explain.analyses.attribution.support import RunContext, layer_index, share
from lpips_explain.core.model import LpipsNet
from lpips_explain.errors import lookup

BASELINES: dict[str, str] = {
    "reference": "the layer's change from the reference, A(explained) - A(reference)",
    "zero": "the explained image's activations A (classic Grad-CAM)",
}

REFERENCE_SIGN_NOTE = (
    "Positive values mark regions where the layer's activations moved away from the "
    "reference's along channels whose layer-averaged gradient raises the distance; negative "
    "values, along channels whose averaged gradient lowers it; zero where the layer sees no "
    "change.")
CLASSIC_SIGN_NOTE = (
    "Positive values mark positions whose features lean towards channels with a larger "
    "layer-averaged gradient than their own; the sign does not say whether the region raises "
    "or lowers the distance (see the note on unit normalisation).")


def check(net: LpipsNet, params: dict) -> None:
    """Refuse a bad layer or baseline before the network is copied."""
    layer_index(net, params["layer"])
    lookup("Grad-CAM baseline", params["baseline"], BASELINES)


def run_layer_gradcam(ctx: RunContext) -> MethodResult:
    from captum.attr import LayerActivation, LayerAttribution, LayerGradientXActivation

    p, x, base = ctx.params, ctx.x, ctx.base
    twin = ctx.scorer.net  # a private copy (the method uses hooks)
    index = layer_index(twin, p["layer"])
    name = twin.spec.layer_names[index]
    baseline = p["baseline"]
    relu = bool(p["relu"])
    layer = twin.features[twin.spec.taps[index]]
    grads = LayerGradientXActivation(ctx.scorer, layer, multiply_by_inputs=False).attribute(
        x.clone().requires_grad_(True))
    with torch.no_grad():
        acts = LayerActivation(ctx.scorer, layer).attribute(torch.cat([x, base]))
    ctx.done()
    g = grads.detach().double()
    a_x, a_ref = acts[:1].double(), acts[1:].double()
    alpha = g.mean(dim=(2, 3), keepdim=True)
    feats = a_x - a_ref if baseline == "reference" else a_x
    cam = (alpha * feats).sum(dim=1, keepdim=True)
    # How close sum_c g_c A_c comes to 0 (relative to sum_c |g_c A_c|), measured here.
    ga = g * a_x
    scale = float(ga.abs().sum())
    residual = float(ga.sum(dim=1).abs().sum()) / scale if scale > 0 else 0.0

    notes: list[str] = []
    last = index == len(twin.spec.taps) - 1
    if baseline == "zero":
        where = (f"at {name}, the last tap, only the normalised features read the activations, "
                 f"so sum_c g_c A_c = 0 at every position" if last else
                 f"at {name} the layer's own LPIPS term adds nothing to sum_c g_c A_c at any "
                 f"position; what remains comes through the deeper layers")
        notes.append(f"Unit normalisation: {where} (measured: |sum_c g_c A_c| is "
                     f"{residual:.1e} of sum_c |g_c A_c|). Classic Grad-CAM therefore shows "
                     f"sum_c (mean(g_c) - g_c) A_c plus that remainder, not what a region adds "
                     f"to the distance; baseline='reference' weights the layer's change from "
                     f"the reference instead.")
    cause = None
    if relu:
        negative = float((cam < 0).double().mean())
        if float(cam.max()) <= 0 < float(cam.abs().max()):
            cause = (f"ReLU clipped every value of the {name} map: all of them were <= 0 (the "
                     f"most negative {float(cam.min()):.3g}), and ReLU keeps only positive "
                     f"ones; the images are not identical. Turn ReLU off to see the map.")
        elif negative > 0:
            notes.append(f"ReLU set the negative values to zero ({share(negative)} of the "
                         f"{name} map's positions).")
        cam = cam.clamp_min(0)
    if cause is None and baseline == "reference" and bool(torch.equal(a_x, a_ref)):
        cause = (f"The activations at {name} are the same for both images, so the layer's "
                 f"change from the reference is zero everywhere: the distance comes from "
                 f"other layers. Choose another layer.")
    elif cause is None and not bool(alpha.any()):
        cause = (f"The distance's gradient at {name} averages to zero in every channel, so "
                 f"every channel weight is zero; this is not a pair of identical images.")
    layer_hw = (int(cam.shape[-2]), int(cam.shape[-1]))
    up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
    return MethodResult(
        signed=up[0, 0],
        params={"layer": name, "layer_index": index, "relu": relu, "baseline": baseline,
                "layer_resolution": list(layer_hw), "upsampling": "bilinear",
                "identity_residual": residual},
        notes=tuple(notes), blank_cause=cause,
        sign_note=REFERENCE_SIGN_NOTE if baseline == "reference" else CLASSIC_SIGN_NOTE)

"""The attribution methods: one :class:`MethodSpec` per method, the only list of them.

The UI's method picker, the CLI's ``--attribution`` choices, :func:`attribute` and the JSON
all read :data:`METHODS`; adding a method is one entry here plus its runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lpips_explain.analyses.attribution import gradcam
from lpips_explain.analyses.attribution.gradients import (
    run_delta_x_gradient,
    run_input_x_gradient,
    run_saliency,
    run_smoothgrad,
)
from lpips_explain.analyses.attribution.integrated import (
    IG_DEFAULT_RULE,
    IG_MAP_TOLERANCE,
    IG_MAX_STEPS,
    IG_TARGET_GAP,
    run_integrated_gradients,
)
from lpips_explain.analyses.attribution.occlusion import run_occlusion
from lpips_explain.analyses.attribution.result import Completeness, MethodResult
from lpips_explain.analyses.attribution.support import RunContext
from lpips_explain.core.model import LpipsNet
from lpips_explain.errors import lookup

SIGN_NOTE = ("Positive values mark pixels whose difference from the reference adds to the "
             "distance; negative values mark pixels whose difference lowers it.")


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method and what its map means."""

    name: str
    label: str  # for people, e.g. "Layer Grad-CAM"
    description: str  # one sentence: what the map is, sign included
    sign_note: str  # what a positive and a negative value mean (shown beside the map)
    completeness: Completeness  # whether (and how) the map's sum compares with the distance
    cost: str  # a cost hint for people
    defaults: dict  # default parameters (the accepted keys)
    uses_hooks: bool  # attaches hooks: runs on a private copy of the network
    gradient_based: bool  # built from gradients (occlusion is not)
    runner: Callable[[RunContext], MethodResult] = field(repr=False, compare=False)
    check: Callable[[LpipsNet, dict], None] | None = field(default=None, repr=False,
                                                           compare=False)

    @property
    def complete(self) -> bool:
        """The map adds up to the distance (up to a reported gap)."""
        return self.completeness == "exact"


METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec(
        "saliency", "Saliency (gradient)",
        "The signed gradient of the distance with respect to each pixel of the explained "
        "image: positive where brightening that pixel would add to the distance.",
        "Positive values mark pixels where brightening would raise the distance; negative "
        "values, pixels where brightening would lower it.",
        "none", "1 forward + 1 backward", {}, False, True, run_saliency),
    MethodSpec(
        "input_x_gradient", "Input x gradient",
        "The explained image's pixel values times the gradient of the distance: a first-order "
        "estimate relative to a black (all-zero) image, not to the reference, so pixels "
        "identical to the reference can carry large values; positive where moving the pixel "
        "towards black would lower the distance.",
        "Positive values mark pixels where, to first order, moving the pixel towards black "
        "would lower the distance (value times gradient is positive); negative values, where "
        "it would raise it. They do not say whether the pixel differs from the reference.",
        "none", "1 forward + 1 backward", {}, False, True, run_input_x_gradient),
    MethodSpec(
        "delta_x_gradient", "(B - reference) x gradient",
        "The explained image's difference from the reference times the gradient of the "
        "distance at the explained image: a pair-aware first-order estimate, zero wherever the "
        "images agree, whose sum approximates the distance; positive where the pixel's "
        "difference adds to the distance.",
        "Positive values mark pixels whose difference from the reference adds to the "
        "distance, to first order (gradient at the explained image times the difference); "
        "negative values, pixels whose difference lowers it; zero where the images agree.",
        "first_order", "1 forward + 1 backward", {}, False, True, run_delta_x_gradient),
    MethodSpec(
        "integrated_gradients", "Integrated gradients (reference as baseline)",
        "Each pixel's share of the distance, integrated along the straight path from the "
        "reference to the explained image, so the shares add up to the distance (gap "
        "reported); positive where the pixel's difference from the reference adds to it.",
        SIGN_NOTE, "exact",
        f"adaptive: rule sizes 8, 16, 32, ... points until the completeness gap is under "
        f"{IG_TARGET_GAP:.0%} and the map changes less than {IG_MAP_TOLERANCE:.0%} between "
        f"sizes; the default nested trapezoid reuses every point of the smaller sizes, so "
        f"n points cost n x (forward + backward) in all (at most {IG_MAX_STEPS}); Captum's "
        f"rules pay each size afresh (at most {2 * IG_MAX_STEPS - 8})",
        {"rule": IG_DEFAULT_RULE, "target_gap": IG_TARGET_GAP,
         "map_tolerance": IG_MAP_TOLERANCE, "max_steps": IG_MAX_STEPS},
        False, True, run_integrated_gradients),
    MethodSpec(
        "smoothgrad", "SmoothGrad",
        "The signed gradient averaged over copies of the explained image with small Gaussian "
        "noise added (seeded), which smooths speckle; positive where brightening the pixel "
        "adds to the distance.",
        "Positive values mark pixels where brightening would raise the distance, on average "
        "over the noisy copies; negative values, where it would lower it.",
        "none", "samples x (forward + backward)", {"samples": 8, "stdev": 0.05}, False, True,
        run_smoothgrad),
    MethodSpec(
        "occlusion", "Occlusion (reference patches)",
        "How much of the distance disappears when that window of the explained image is "
        "replaced by the reference's pixels; positive where the window's difference adds to "
        "the distance.",
        "Positive values mark windows whose replacement by the reference's pixels lowers the "
        "distance (their difference adds to it); negative values, windows whose replacement "
        "raises it.",
        "none", "1 + windows forwards, no backward", {"window": 16, "stride": None}, False,
        False, run_occlusion),
    MethodSpec(
        "layer_gradcam", "Layer Grad-CAM",
        "A trunk layer's change from the reference (the explained image's activations minus "
        "the reference's) weighted per channel by the layer-averaged gradient of the "
        "distance, upsampled bilinearly to the image: positive where the change runs along "
        "channels that raise the distance, zero where the layer sees no change "
        "(baseline='zero' gives classic Grad-CAM, which unit normalisation reduces to a "
        "leftover term).",
        gradcam.REFERENCE_SIGN_NOTE, "none",
        "2 forwards + 1 backward on a private copy of the network",
        {"layer": None, "relu": False, "baseline": "reference"}, True, True,
        gradcam.run_layer_gradcam, gradcam.check),
)}


def get_method(name: str) -> MethodSpec:
    """The registry entry of an attribution method (``UnknownOptionError`` with a hint)."""
    return lookup("attribution method", name, METHODS)  # type: ignore[return-value]

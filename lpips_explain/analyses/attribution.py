"""Pixel and layer attributions of an LPIPS distance, computed with Captum on the pair-aware scorer.

Every method explains f_ref(x) = d(ref, x) (see :class:`~lpips_explain.model.ReferenceScorer`):
the reference is encoded once and the trunk runs once per forward, which Captum's hook-based
methods assume. Sign convention everywhere: a positive value means that the pixel's
difference from the reference adds to the distance.

Concurrency (DESIGN.md section 4): one :class:`LpipsNet` is shared between threads. Methods
that hook modules (``layer_gradcam``) run on a private deep copy of the network; the others
only run forwards and backwards on the shared one. SmoothGrad draws its noise from a private,
seeded generator, never from torch's global RNG, so results are the same alone or side by side.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS as _IG_RULES
from torch import Tensor, nn

from lpips_explain.analyses.common import check_pair
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.errors import InputError, lookup

Progress = Callable[[int, int, str], None]

# At or below this distance the two images count as identical: every gradient is 0 by maths.
VANISHING_DISTANCE = 1e-10
# Adaptive integrated gradients: first rule size, ceiling, and the completeness target.
IG_START_STEPS = 8
IG_MAX_STEPS = 128
IG_TARGET_GAP = 0.01
# A completeness gap this small is float32 round-off, whatever the distance.
IG_ABSOLUTE_TOLERANCE = 1e-7

SIGN_NOTE = ("Positive values mark pixels whose difference from the reference adds to the "
             "distance; negative values mark pixels whose difference lowers it.")
# What the sign means differs by method: a gradient says which way a pixel would move the
# distance, a share (IG, input x gradient, occlusion) says what it contributes now.
SIGN_NOTES: dict[str, str] = {
    "saliency": "Positive values mark pixels where brightening would raise the distance; "
                "negative values, pixels where brightening would lower it.",
    "smoothgrad": "Positive values mark pixels where brightening would raise the distance, on "
                  "average over the noisy copies; negative values, where it would lower it.",
    "input_x_gradient": "Positive values mark pixels estimated (to first order) to add to the "
                        "distance; negative values, pixels estimated to lower it.",
    "integrated_gradients": SIGN_NOTE,
    "occlusion": "Positive values mark windows whose replacement by the reference's pixels "
                 "lowers the distance (their difference adds to it); negative values, windows "
                 "whose replacement raises it.",
    "layer_gradcam": "Positive values mark regions where the layer's features push the distance "
                     "up; negative values, regions where they pull it down.",
}
# Methods whose attributions add up to the distance (completeness): their sum is meaningful.
COMPLETE_METHODS = ("integrated_gradients",)


@dataclass(frozen=True)
class MethodSpec:
    """One attribution method of the registry and what its map means."""

    name: str
    label: str
    description: str  # one sentence: what the map means, sign included
    defaults: dict  # default parameters (accepted keys)
    cost: str
    uses_hooks: bool


METHODS: dict[str, MethodSpec] = {
    "saliency": MethodSpec(
        "saliency", "Saliency (gradient)",
        "The signed gradient of the distance with respect to each pixel of the candidate: "
        "positive where brightening that pixel would add to the distance.",
        {}, "1 forward + 1 backward", False,
    ),
    "input_x_gradient": MethodSpec(
        "input_x_gradient", "Input x gradient",
        "The candidate's pixel values times the gradient of the distance: a first-order "
        "estimate of each pixel's share, positive where the pixel adds to the distance.",
        {}, "1 forward + 1 backward", False,
    ),
    "integrated_gradients": MethodSpec(
        "integrated_gradients", "Integrated gradients (reference as baseline)",
        "Each pixel's share of the distance, integrated along the straight path from the "
        "reference to the candidate, so the shares add up to the distance; positive where "
        "the pixel's difference from the reference adds to the distance.",
        {"rule": "gausslegendre", "target_gap": IG_TARGET_GAP, "max_steps": IG_MAX_STEPS},
        "steps x (forward + backward); adaptive: 8, 16, ... points until the gap is under 1%",
        False,
    ),
    "smoothgrad": MethodSpec(
        "smoothgrad", "SmoothGrad",
        "The signed gradient averaged over copies of the candidate with small Gaussian noise "
        "added, which smooths speckle; positive where brightening the pixel adds to the distance.",
        {"samples": 8, "stdev": 0.05},
        "samples x (forward + backward)", False,
    ),
    "occlusion": MethodSpec(
        "occlusion", "Occlusion (reference patches)",
        "How much of the distance disappears when that window of the candidate is replaced by "
        "the reference's pixels; positive where the window's difference adds to the distance.",
        {"window": 16, "stride": None},
        "1 + windows forwards, no backward", False,
    ),
    "layer_gradcam": MethodSpec(
        "layer_gradcam", "Layer Grad-CAM",
        "A trunk layer's activations weighted by the mean gradient of the distance per channel, "
        "upsampled bilinearly to the image: positive where that layer's features push the "
        "distance up.",
        {"layer": None, "relu": False},
        "1 forward + 1 backward on a private copy of the network", True,
    ),
}


def get_method(name: str) -> MethodSpec:
    """The registry entry of an attribution method (``UnknownOptionError`` with a hint)."""
    return lookup("attribution method", name, METHODS)  # type: ignore[return-value]


@dataclass(frozen=True)
class Attribution:
    """An attribution map of d(ref, target) and the numbers that qualify it.

    ``per_channel`` is 3 x H x W where the method separates colour channels, and ``None``
    where it does not: ``occlusion`` (its windows span all three channels, so each channel
    would hold the same value) and ``layer_gradcam`` (it attributes a layer, not pixels).
    For those, ``signed`` holds the map itself (occlusion: the distance drop of the window
    covering the pixel, averaged over windows where they overlap) and ``magnitude`` is
    ``|signed|``. For the others, ``signed`` is the channel sum and ``magnitude`` the sum
    of ``|per_channel|``. ``total`` is the sum of ``signed``.
    """

    method: str
    params: dict
    target: str  # "b": the candidate was attributed; "a": the reference (roles swapped)
    per_channel: np.ndarray | None
    signed: np.ndarray
    magnitude: np.ndarray
    positive: np.ndarray
    total: float
    distance: float
    completeness_gap: float | None  # |total - distance|, integrated gradients only
    relative_gap: float | None  # completeness_gap / distance (None when distance is 0)
    vanishing: bool
    notes: tuple[str, ...]
    seconds: float
    convergence_delta: float | None = None  # Captum's own delta (integrated gradients only)
    steps_tried: tuple[int, ...] = field(default=())  # rule sizes evaluated (adaptive IG)

    @property
    def label(self) -> str:
        return METHODS[self.method].label

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "params": dict(self.params),
            "target": self.target,
            # Only a complete method's sum compares with the distance; for the others the
            # total of the map has no meaning of its own, so it is kept apart.
            "sum": self.total if self.method in COMPLETE_METHODS else None,
            "map_total": self.total,
            "distance": self.distance,
            "completeness_gap": self.completeness_gap,
            "relative_gap": self.relative_gap,
            "convergence_delta": self.convergence_delta,
            "vanishing": self.vanishing,
            "notes": list(self.notes),
            "seconds": self.seconds,
        }


# --------------------------------------------------------------------------------------
# Helpers


class _Counted:
    """Wraps the scorer so that Captum's forward calls report progress.

    Counts the examples of each forward; gradient methods count only forwards with grad
    enabled, so Captum's extra no-grad evaluations (convergence delta) are not counted.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], progress: Progress | None,
                 total: int, label: str, *, grad_only: bool, skip_first: bool = False):
        self.fn = fn
        self.progress = progress
        self.total = total
        self.label = label
        self.grad_only = grad_only
        self.skip = skip_first
        self.done = 0
        self.last: int | None = None

    def __call__(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        if self.skip:
            self.skip = False
        elif not self.grad_only or torch.is_grad_enabled():
            self.done += int(x.shape[0])
            self.report(min(self.done, self.total))
        return out

    def report(self, done: int) -> None:
        if self.progress is not None and done != self.last:
            self.last = done
            self.progress(done, self.total, self.label)

    def finish(self) -> None:
        self.report(self.total)


class _SeededNoiseTunnel(NoiseTunnel):
    """NoiseTunnel drawing its noise from a private generator instead of torch's global RNG.

    Captum 0.9 draws with ``torch.normal`` on the global generator, which any thread may
    reseed at any time; a private generator makes SmoothGrad a pure function of ``seed``
    and needs no lock. Overrides Captum's (private) per-input noise step.
    """

    def __init__(self, attribution_method: Any, generator: torch.Generator):
        super().__init__(attribution_method)
        self.generator = generator

    def _add_noise_to_input(self, input: Tensor, stdev: float,  # type: ignore[override]
                            nt_samples_partition: int) -> Tensor:
        size = (input.shape[0] * nt_samples_partition, *input.shape[1:])
        noise = torch.randn(size, generator=self.generator, dtype=input.dtype).to(input.device)
        return input.repeat_interleave(nt_samples_partition, dim=0) + stdev * noise


def _int_param(params: dict, key: str, low: int, high: int | None = None) -> int:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{key} must be an integer, got {value!r}.")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InputError(f"{key} must be {bound}, got {value}.")
    return value


def _float_param(params: dict, key: str, low: float, *, inclusive: bool = False) -> float:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise InputError(f"{key} must be a number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < low or (value == low and not inclusive):
        raise InputError(f"{key} must be {'>=' if inclusive else '>'} {low}, got {value}.")
    return value


def _layer_index(net: LpipsNet, layer: object) -> int:
    names = net.spec.layer_names
    if layer is None:
        return len(names) - 1
    if isinstance(layer, int | np.integer) and not isinstance(layer, bool):
        if not -len(names) <= int(layer) < len(names):
            raise InputError(f"Layer index {layer} out of range: the {net.spec.label} trunk "
                             f"has {len(names)} taps ({', '.join(names)}).")
        return int(layer) % len(names)
    return names.index(lookup("layer", layer, {n: n for n in names}))  # type: ignore[arg-type]


def _to_np(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).contiguous().numpy()


def _private_copy(net: LpipsNet) -> LpipsNet:
    """A deep copy for hook users: hooks on it can never see another thread's forward."""
    twin = copy.deepcopy(net)
    for module in twin.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # a hooked output must not be overwritten in place
    return twin


# --------------------------------------------------------------------------------------
# The methods: each returns (per_channel or None, signed map, extra params, extras)


def _run_saliency(scorer: ReferenceScorer, x: Tensor, base: Tensor, p: dict,
                  progress: Progress | None, batch: int) -> dict:
    attr = Saliency(scorer).attribute(x.clone().requires_grad_(True), abs=False)
    return {"per_channel": attr[0]}


def _run_input_x_gradient(scorer: ReferenceScorer, x: Tensor, base: Tensor, p: dict,
                          progress: Progress | None, batch: int) -> dict:
    attr = InputXGradient(scorer).attribute(x.clone().requires_grad_(True))
    out: dict = {"per_channel": attr[0]}
    if not bool(x.any()):
        out["blank_note"] = ("Input x gradient is pixel value times gradient, and every pixel of "
                             "the attributed image is 0 (black): the map is blank because the "
                             "image is, not because the gradient vanished. Use saliency or "
                             "integrated gradients instead.")
    return out


def _run_integrated_gradients(scorer: ReferenceScorer, x: Tensor, base: Tensor, p: dict,
                              progress: Progress | None, batch: int) -> dict:
    rule = p["rule"]
    if rule not in _IG_RULES:
        lookup("integration rule", rule, {r: r for r in _IG_RULES})
    target = _float_param(p, "target_gap", 0.0)
    max_steps = _int_param(p, "max_steps", 1)
    adaptive = p["steps"] is None
    if adaptive:
        schedule, n = [], min(IG_START_STEPS, max_steps)
        while n < max_steps:
            schedule.append(n)
            n *= 2
        schedule.append(max_steps)
    else:
        schedule = [_int_param(p, "steps", 1)]

    with torch.no_grad():
        distance = float(scorer(x)[0]) - float(scorer(base)[0])
    done, tried, notes = 0, [], []
    for n in schedule:
        label = f"integrated gradients: {n} points"
        counted = _Counted(scorer, progress, done + n, label, grad_only=True)
        counted.done = done
        ig = IntegratedGradients(counted)
        attr, delta = ig.attribute(x.clone().requires_grad_(True), baselines=base, n_steps=n,
                                   method=rule, internal_batch_size=batch,
                                   return_convergence_delta=True)
        counted.finish()
        done += n
        tried.append(n)
        total = float(attr.detach().double().sum())
        gap = abs(total - distance)
        if distance <= VANISHING_DISTANCE or gap <= IG_ABSOLUTE_TOLERANCE or gap <= target * distance:
            break
    met = distance <= VANISHING_DISTANCE or gap <= IG_ABSOLUTE_TOLERANCE or gap <= target * distance
    if not met:
        notes.append(f"Completeness target not met: with {tried[-1]} points the attributions add "
                     f"up to {total:.6g} against a distance of {distance:.6g} (gap "
                     f"{gap / distance:.2%}, target {target:.0%}). Read the map as approximate"
                     + ("." if adaptive else ", or leave steps unset to choose them adaptively."))
    elif adaptive and len(tried) > 1:
        notes.append(f"Integration points raised from {tried[0]} to {tried[-1]} to bring the "
                     f"completeness gap under {target:.0%}.")
    delta_v = float(delta.double().sum())
    # Captum's delta is sum - (f(x) - f(baseline)) in float32; ours is in float64.
    if abs(abs(delta_v) - gap) > 1e-5 + 1e-4 * abs(distance):
        notes.append(f"Captum's convergence delta ({delta_v:.3g}) disagrees with the measured "
                     f"completeness gap ({gap:.3g}); treat the completeness figure with care.")
    return {"per_channel": attr[0], "distance": distance,
            "params": {"steps": tried[-1], "rule": rule, "adaptive": adaptive,
                       "target_gap": target, "max_steps": max_steps},
            "convergence_delta": delta_v, "steps_tried": tuple(tried), "notes": notes,
            "complete": True}


def _run_smoothgrad(scorer: ReferenceScorer, x: Tensor, base: Tensor, p: dict,
                    progress: Progress | None, batch: int) -> dict:
    samples = _int_param(p, "samples", 1)
    stdev = _float_param(p, "stdev", 0.0, inclusive=True)
    seed = p["seed"]
    counted = _Counted(scorer, progress, samples, "smoothgrad: noisy samples", grad_only=True)
    gen = torch.Generator().manual_seed(int(seed))
    nt = _SeededNoiseTunnel(Saliency(counted), gen)
    attr = nt.attribute(x.clone(), nt_type="smoothgrad", nt_samples=samples,
                        nt_samples_batch_size=min(batch, samples), stdevs=stdev, abs=False)
    counted.finish()
    return {"per_channel": attr[0], "params": {"samples": samples, "stdev": stdev, "seed": seed}}


def _run_occlusion(scorer: ReferenceScorer, x: Tensor, base: Tensor, p: dict,
                   progress: Progress | None, batch: int) -> dict:
    h, w = int(x.shape[-2]), int(x.shape[-1])
    window = _int_param(p, "window", 1, min(h, w))
    stride = window if p["stride"] is None else _int_param(p, "stride", 1, window)
    n_windows = (math.ceil((h - window) / stride) + 1) * (math.ceil((w - window) / stride) + 1)
    counted = _Counted(scorer, progress, n_windows, "occlusion: windows", grad_only=False,
                       skip_first=True)
    attr = Occlusion(counted).attribute(
        x.clone(), sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=base, perturbations_per_eval=batch)
    counted.finish()
    # Every channel holds the same value (windows span all three): keep one.
    return {"per_channel": None, "signed": attr[0, 0],
            "params": {"window": window, "stride": stride, "windows": n_windows},
            "notes": [f"Each pixel holds the distance drop when its {window} x {window} window "
                      f"is replaced by the reference's pixels"
                      + (" (averaged over overlapping windows)." if stride < window else ".")
                      + " The map's sum counts each window once per pixel, so it is not "
                        "comparable with the distance."]}


def _run_layer_gradcam(scorer: ReferenceScorer, x: Tensor, base: Tensor, p: dict,
                       progress: Progress | None, batch: int) -> dict:
    twin = scorer.net  # already a private copy (see attribute())
    index = _layer_index(twin, p["layer"])
    relu = bool(p["relu"])
    layer = twin.features[twin.spec.taps[index]]
    cam = LayerGradCam(scorer, layer).attribute(x.clone().requires_grad_(True),
                                                relu_attributions=relu)
    layer_hw = (int(cam.shape[-2]), int(cam.shape[-1]))
    up = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), "bilinear")
    return {"per_channel": None, "signed": up[0, 0],
            "params": {"layer": twin.spec.layer_names[index], "layer_index": index,
                       "relu": relu, "layer_resolution": list(layer_hw),
                       "upsampling": "bilinear"}}


_RUNNERS = {
    "saliency": _run_saliency,
    "input_x_gradient": _run_input_x_gradient,
    "integrated_gradients": _run_integrated_gradients,
    "smoothgrad": _run_smoothgrad,
    "occlusion": _run_occlusion,
    "layer_gradcam": _run_layer_gradcam,
}


# --------------------------------------------------------------------------------------


def attribute(net: LpipsNet, reference: Tensor, candidate: Tensor,
              method: str = "integrated_gradients", *, steps: int | None = None,
              progress: Progress | None = None, internal_batch_size: int = 8, seed: int = 0,
              swap: bool = False, **params: Any) -> Attribution:
    """Attribute d(reference, candidate) to the candidate's pixels (or, with swap, the reference's).

    ``steps`` applies to integrated gradients only: None chooses it adaptively (8, 16, ...
    up to ``max_steps`` points until the completeness gap is under ``target_gap`` of the
    distance). ``seed`` drives SmoothGrad's noise. ``internal_batch_size`` bounds how many
    images go through the trunk at once. ``progress(done, total, label)`` is called as the
    work proceeds and always ends with ``done == total``. Inputs are never modified.
    """
    start = time.perf_counter()
    spec = get_method(method)
    accepted = set(spec.defaults)
    unknown = sorted(set(params) - accepted)
    if unknown:
        names = ", ".join(sorted(accepted)) or "none"
        raise InputError(f"Unknown parameter(s) {', '.join(unknown)} for {method!r}. "
                         f"Accepted: {names}.")
    if steps is not None and method != "integrated_gradients":
        raise InputError(f"steps applies to integrated_gradients only, not {method!r}.")
    batch = _int_param({"internal_batch_size": internal_batch_size}, "internal_batch_size", 1)
    _int_param({"seed": seed}, "seed", 0)
    p = {**spec.defaults, **params, "steps": steps, "seed": seed}

    ref, cand = check_pair(net, reference, candidate, ("reference", "candidate"))
    ref, cand = ref.clone(), cand.clone()
    device = net.head0.device
    base, x = (cand, ref) if swap else (ref, cand)
    base, x = base.to(device), x.to(device)

    if method == "layer_gradcam":
        _layer_index(net, p["layer"])  # refuse a bad layer before copying the network
    model: nn.Module = _private_copy(net) if spec.uses_hooks else net
    scorer = ReferenceScorer(model, base)  # type: ignore[arg-type]
    out = _RUNNERS[method](scorer, x, base, p, progress, batch)

    if "distance" in out:
        distance = out["distance"]
    else:
        with torch.no_grad():
            distance = float(scorer(x)[0])
    distance = max(distance, 0.0)
    per_channel = None if out["per_channel"] is None else _to_np(out["per_channel"])
    if per_channel is not None:
        signed = per_channel.sum(axis=0)
        magnitude = np.abs(per_channel).sum(axis=0)
    else:
        signed = _to_np(out["signed"])
        magnitude = np.abs(signed)
    if method != "smoothgrad" and torch.equal(base, x):
        # Identical inputs: every attribution is exactly 0 by maths; batched kernels can
        # leave ~1e-13 of float noise (e.g. occlusion's differences), which is not signal.
        signed, magnitude = np.zeros_like(signed), np.zeros_like(magnitude)
        per_channel = None if per_channel is None else np.zeros_like(per_channel)
    maps = [signed] if per_channel is None else [per_channel]
    if not all(np.isfinite(m).all() for m in maps):
        # Cannot happen with eps inside the square root; refuse rather than show NaN.
        raise InputError(f"{spec.label} produced non-finite values for this pair; try "
                         f"another method or check the images.")
    total = float(signed.sum())

    notes: list[str] = list(out.get("notes", []))
    blank = not bool(np.any(signed)) or (per_channel is not None and not bool(np.any(per_channel)))
    identical = distance <= VANISHING_DISTANCE
    vanishing = identical or (blank and "blank_note" not in out)
    if identical:
        what = ("SmoothGrad's map shows only the effect of its own added noise"
                if method == "smoothgrad" else "the map is blank by maths, not by accident")
        notes.insert(0, f"The images are identical as far as LPIPS can tell (distance "
                        f"{distance:.3g}). Gradients vanish exactly there, because the distance "
                        f"is quadratic in the feature difference, and no patch can lower a zero "
                        f"distance: {what}.")
    elif vanishing:
        notes.insert(0, f"Every attribution is zero (vanishing gradients): the distance "
                        f"({distance:.3g}) is too small for the gradient to register, because "
                        f"the distance is quadratic in the feature difference. The map is blank "
                        f"by maths, not by accident.")
    elif blank:
        notes.insert(0, out["blank_note"])
    notes.append(SIGN_NOTES[method])

    gap = rel = None
    if out.get("complete"):
        gap = abs(total - distance)
        rel = gap / distance if distance > VANISHING_DISTANCE else None
    if progress is not None and method in ("saliency", "input_x_gradient", "layer_gradcam"):
        progress(1, 1, spec.label)

    used = {k: v for k, v in p.items() if k in accepted}
    used.update(out.get("params", {}))
    return Attribution(
        method=method, params=used, target="a" if swap else "b",
        per_channel=per_channel, signed=signed, magnitude=magnitude,
        positive=np.maximum(signed, 0.0), total=total, distance=distance,
        completeness_gap=gap, relative_gap=rel, vanishing=vanishing, notes=tuple(notes),
        seconds=time.perf_counter() - start,
        convergence_delta=out.get("convergence_delta"),
        steps_tried=tuple(out.get("steps_tried", ())),
    )


"""Pixel and layer attributions of an LPIPS distance, computed with Captum on the pair-aware scorer.

Every method explains f_ref(x) = d(reference, x) (see :class:`~lpips_explain.core.model.
ReferenceScorer`): the reference is encoded once and the trunk runs once per forward, which
Captum's hook-based methods assume. The caller decides which image is the reference and which
is explained, once, and names them (``roles``); the result records them. Sign convention
everywhere: a positive value means that the pixel's difference from the reference adds to the
distance, except where a method's sign note says what its sign means instead.

Concurrency (docs/architecture.md#concurrency): one :class:`LpipsNet` is shared between threads. Methods
that hook modules (``layer_gradcam``) run on a private deep copy of the network; the others
only run forwards and backwards on the shared one. SmoothGrad draws its noise from a private,
seeded generator, never from torch's global RNG, so results are the same alone or side by side.
No private Captum API is used (tests/analyses/attribution/test_captum_public.py checks it).

Layout: ``registry`` (the one list of methods, :class:`MethodSpec`), ``result`` (the typed
runner result and :class:`Attribution`), one module per method family, ``support`` (shared
helpers), and :func:`attribute` here. Each runner imports Captum when it runs: Captum's
``captum.attr`` loads matplotlib's pyplot, about a second in all, which the commands that
only read the registry or the result types (``distance``, ``audit``) do not pay.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lpips_explain.analyses.attribution.integrated import (
    CAPTUM_RULES,
    IG_ABSOLUTE_TOLERANCE,
    IG_DEFAULT_RULE,
    IG_MAP_TOLERANCE,
    IG_MAX_STEPS,
    IG_RULES,
    IG_START_STEPS,
    IG_TARGET_GAP,
    NESTED_RULE,
    NestedTrapezoid,
)
from lpips_explain.analyses.attribution.registry import METHODS, SIGN_NOTE, MethodSpec, get_method
from lpips_explain.analyses.attribution.result import (
    VANISHING_DISTANCE,
    Attribution,
    Completeness,
    Convergence,
    DeletionCheck,
    MethodResult,
)
from lpips_explain.analyses.attribution.support import (
    RunContext,
    int_param,
    private_copy,
    to_np,
)
from lpips_explain.analyses.inputs import check_pair
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.errors import ComputationError, InputError
from lpips_explain.validation import Progress, agreeing

__all__ = [
    "CAPTUM_RULES", "IG_ABSOLUTE_TOLERANCE", "IG_DEFAULT_RULE", "IG_MAP_TOLERANCE",
    "IG_MAX_STEPS", "IG_RULES", "IG_START_STEPS", "IG_TARGET_GAP", "METHODS", "NESTED_RULE",
    "SIGN_NOTE", "VANISHING_DISTANCE", "Attribution", "Completeness", "Convergence",
    "DeletionCheck", "MethodResult", "MethodSpec", "NestedTrapezoid", "RunContext", "attribute",
    "get_method",
]


def _roles(roles: object) -> tuple[str, str]:
    if (not isinstance(roles, tuple | list) or len(roles) != 2
            or not all(isinstance(r, str) and r for r in roles)):
        raise InputError(f"roles must be two names (reference, explained), got {roles!r}.")
    return str(roles[0]), str(roles[1])


def attribute(net: LpipsNet, reference: Tensor, explained: Tensor,
              method: str = "integrated_gradients", *, steps: int | None = None,
              progress: Progress | None = None, internal_batch_size: int = 8, seed: int = 0,
              roles: tuple[str, str] = ("a", "b"), **params: Any) -> Attribution:
    """Attribute d(reference, explained) to the explained image's pixels (or a layer's regions).

    The caller decides the roles once: ``reference`` is the baseline, ``explained`` the image
    whose pixels are attributed; ``roles`` names them on the result (``target`` and
    ``reference``; default "a" and "b"). ``steps`` applies to integrated gradients only: None
    chooses it adaptively (8, 16, ... up to ``max_steps`` points until the completeness gap is
    under ``target_gap`` of the distance AND the map changes by less than ``map_tolerance``
    between sizes); with the default ``rule="nested_trapezoid"`` each size reuses the
    previous one's gradients, with Captum's rules (``rule="gausslegendre"``, ...) each size
    runs afresh. ``seed`` drives SmoothGrad's noise. ``internal_batch_size`` bounds how
    many images go through the trunk at once. ``progress(done, total, label)`` is called as
    the work proceeds and always ends with ``done == total``. Inputs are never modified.

    Raises :class:`~lpips_explain.errors.InputError` for bad arguments and
    :class:`~lpips_explain.errors.ComputationError` if the map comes out non-finite.
    """
    start = time.perf_counter()
    spec = get_method(method)
    batch = _check_params(spec, params, steps, internal_batch_size, seed)
    ref_name, target_name = _roles(roles)
    p = {**spec.defaults, **params, "steps": steps, "seed": seed}

    ref, cand = check_pair(net, reference, explained, ("reference", "explained image"))
    device = net.head0.device
    base, x = ref.clone().to(device), cand.clone().to(device)
    if spec.check is not None:
        spec.check(net, p)  # refuse bad parameters before copying the network
    model: nn.Module = private_copy(net) if spec.uses_hooks else net
    scorer = ReferenceScorer(model, base)  # type: ignore[arg-type]
    out = spec.runner(RunContext(scorer, x, base, p, progress, batch, spec.label))

    distance = _distance(out, scorer, x, spec)
    per_channel, signed, magnitude = _maps(out, spec, base, x)
    total = float(signed.sum())
    vanishing = distance <= VANISHING_DISTANCE
    blank = not bool(np.any(signed)) or (per_channel is not None
                                         and not bool(np.any(per_channel)))
    cause = None
    notes: list[str] = []
    if vanishing:
        notes.append(_identical_note(spec, distance))
    elif blank:
        cause = out.blank_cause or (
            f"Every value of the {spec.label} map is zero although the distance is "
            f"{distance:.3g}, above the {VANISHING_DISTANCE:g} at which the images count as "
            f"identical: the method's output is exactly zero here, which is not vanishing "
            f"gradients at identical images.")
        notes.append(cause)
    notes += out.notes

    gap = rel = ratio = None
    if spec.completeness != "none" and not vanishing:
        ratio = total / distance
    if spec.completeness == "exact":
        gap = abs(total - distance)
        rel = None if vanishing else gap / distance
    elif spec.completeness == "first_order" and ratio is not None and not blank:
        notes.append(f"A first-order (tangent) estimate, approximate: the map sums to "
                     f"{total:.4g} against a distance of {distance:.4g} (ratio {ratio:.2f}). "
                     f"Read it as where the difference matters, not as exact shares.")
    sign_note = out.sign_note or spec.sign_note
    notes.append(sign_note)

    used = {k: v for k, v in p.items() if k in spec.defaults}
    used.update(out.params)
    conv = out.convergence
    return Attribution(
        method=method, params=used, target=target_name, reference=ref_name, label=spec.label,
        per_channel=per_channel, signed=signed, magnitude=magnitude,
        positive=np.maximum(signed, 0.0), total=total, distance=distance,
        completeness=spec.completeness, completeness_gap=gap, relative_gap=rel,
        sum_ratio=ratio, vanishing=vanishing, blank=blank, blank_cause=cause,
        sign_note=sign_note, notes=tuple(notes), seconds=time.perf_counter() - start,
        convergence_delta=out.convergence_delta, convergence=conv,
        steps_tried=() if conv is None else conv.steps_tried,
    )


def _check_params(spec: MethodSpec, params: dict[str, Any], steps: int | None,
                  internal_batch_size: int, seed: int) -> int:
    """Refuse parameters the method does not take, ``steps`` outside integrated gradients,
    and a bad batch size or seed; returns the batch size."""
    accepted = set(spec.defaults)
    unknown = sorted(set(params) - accepted)
    if unknown:
        names = ", ".join(sorted(accepted)) or "none"
        raise InputError(f"Unknown {agreeing(len(unknown), 'parameter', 'parameters')} "
                         f"{', '.join(unknown)} for {spec.name!r}. "
                         f"Accepted: {names}.")
    if steps is not None and spec.name != "integrated_gradients":
        raise InputError(f"steps applies to integrated_gradients only, not {spec.name!r}.")
    batch = int_param({"internal_batch_size": internal_batch_size}, "internal_batch_size", 1)
    int_param({"seed": seed}, "seed", 0)
    return batch


def _distance(out: MethodResult, scorer: ReferenceScorer, x: Tensor, spec: MethodSpec) -> float:
    """d(reference, explained): the runner's, or one more forward; never negative."""
    if out.distance is not None:
        distance = out.distance
    else:
        with torch.no_grad():
            distance = float(scorer(x)[0])
    if not math.isfinite(distance):
        raise ComputationError(f"The distance came out non-finite ({distance}) while computing "
                               f"{spec.label}: a numerical failure in the network, not a "
                               f"problem with the images.")
    return max(distance, 0.0)


def _maps(out: MethodResult, spec: MethodSpec, base: Tensor, x: Tensor
          ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(per-channel map or None, signed map, magnitude map) of the runner's result: exactly 0
    at identical inputs, refused if not finite."""
    per_channel = None if out.per_channel is None else to_np(out.per_channel)
    if per_channel is not None:
        signed = per_channel.sum(axis=0)
        magnitude = np.abs(per_channel).sum(axis=0)
    else:
        signed = to_np(out.signed)  # type: ignore[arg-type]
        magnitude = np.abs(signed)
    if spec.name != "smoothgrad" and torch.equal(base, x):
        # Identical inputs: every attribution is exactly 0 by maths; batched kernels can
        # leave ~1e-13 of float noise (e.g. occlusion's differences), which is not signal.
        signed, magnitude = np.zeros_like(signed), np.zeros_like(magnitude)
        per_channel = None if per_channel is None else np.zeros_like(per_channel)
    maps = [signed] if per_channel is None else [per_channel]
    if not all(np.isfinite(m).all() for m in maps):
        # Cannot happen with eps inside the square root: a computation failure, not bad input.
        raise ComputationError(f"{spec.label} produced non-finite values (NaN or Inf) for this "
                               f"pair: a numerical failure, not a problem with the images. Try "
                               f"another method.")
    return per_channel, signed, magnitude


def _identical_note(spec: MethodSpec, distance: float) -> str:
    head = (f"The images are identical as far as LPIPS can tell: the distance {distance:.3g} "
            f"is at most {VANISHING_DISTANCE:g}, the tolerance below which it counts as zero.")
    if spec.name == "smoothgrad":
        return (head + " Gradients vanish there (the distance is quadratic in the feature "
                       "difference): SmoothGrad's map shows only the effect of its own added "
                       "noise.")
    if spec.gradient_based:
        return (head + " Every gradient vanishes there, because the distance is quadratic in "
                       "the feature difference: the map is blank by maths, not by accident.")
    return head + " No window can lower a zero distance: the map is blank by maths."

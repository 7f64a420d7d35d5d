"""Diagnostics: the input report and live self-checks of the maths and the weights."""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.attribution import VANISHING_DISTANCE, attribute
from lpips_explain.analyses.jsonable import finite_or_none as _finite_or_none
from lpips_explain.core.decompose import decompose
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.weights import official_lin_path
from lpips_explain.errors import InputError
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.intake.tensors import check_tensor_pair

__all__ = [
    "Check",
    "input_report",
    "self_checks",
]

IDENTITY_TOL = 1e-7
SYMMETRY_TOL = 1e-6
DECOMPOSITION_RTOL = 1e-6
PARITY_TOL = 1e-5
IG_RTOL = 0.01



def _px(h: int, w: int) -> str:
    return f"{w}x{h}"


# ------------------------------------------------------------------------------ input report


def input_report(prep: PreparedInputs, labels: Sequence[str] | None = None) -> list[dict]:
    """One row per prepared image: where it came from, its statistics and what was done to it.

    Statistics (min, max, mean, std) are of the decoded image in [0, 1] before alignment;
    ``resized_or_cropped`` says whether the size policy changed it for the comparison.
    """
    n = len(prep.loaded)
    labels = list(labels) if labels is not None else list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n])
    if len(labels) != n:
        raise InputError(f"input_report got {len(labels)} labels for {n} images.")
    # align_images writes one note per changed image, in order.
    changed_idx = [i for i, c in enumerate(prep.align.changed) if c]
    align_note = dict(zip(changed_idx, prep.align.notes, strict=False))
    how = {"resize": "resized", "crop": "centre-cropped"}.get(prep.align.policy, "changed")
    ch, cw = prep.size
    rows = []
    for i, (im, label) in enumerate(zip(prep.loaded, labels, strict=True)):
        t = im.tensor.detach().to("cpu", torch.float64)
        finite = bool(torch.isfinite(t).all())
        vals = t[torch.isfinite(t)]
        has = vals.numel() > 0
        std = float(vals.std(unbiased=False)) if has else float("nan")
        constant = has and std == 0.0
        # Arrays and tensors have no Pillow mode; a file in any mode but RGB was converted.
        converted = im.mode not in ("RGB", "array", "tensor")
        changed = bool(prep.align.changed[i])
        notes = list(im.warnings)
        if changed:
            notes.append(align_note.get(i, f"{label} was {how} to {_px(ch, cw)} px."))
        if constant:
            notes.append(f"{label} is constant (one flat colour): there is no structure for the "
                         f"network to compare, so the distance reflects colour only.")
        if not finite:
            notes.append(f"{label} holds NaN or Inf values.")
        oh, ow = im.original_size
        rows.append({
            "label": label,
            "name": im.name,
            "original_size": _px(oh, ow),
            "mode": im.mode,
            "format": im.format,
            "compared_size": _px(ch, cw),
            "finite": finite,
            "min": float(vals.min()) if has else None,
            "max": float(vals.max()) if has else None,
            "mean": float(vals.mean()) if has else None,
            "std": _finite_or_none(std),
            "constant": constant,
            "converted": converted,
            "resized_or_cropped": changed,
            "alignment": how if changed else "none",
            "warnings": notes,
        })
    return rows


# ------------------------------------------------------------------------------ self-checks


@dataclass(frozen=True)
class Check:
    """One live self-check: what was measured, against which tolerance, and whether it held.

    A skipped check (nothing to compare against) is neither passed nor failed: ``passed``
    is False and ``status`` is "skipped".
    """

    name: str
    passed: bool
    value: float | None
    tolerance: float | None
    detail: str
    skipped: bool = False

    @property
    def status(self) -> str:
        """"passed", "failed" or "skipped"."""
        return "skipped" if self.skipped else "passed" if self.passed else "failed"

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "passed": self.passed,
                "value": _finite_or_none(self.value), "tolerance": self.tolerance,
                "detail": self.detail}


def _skipped(name: str, tolerance: float | None, detail: str) -> Check:
    return Check(name, False, None, tolerance, detail, skipped=True)


def _check_pair(a: object, b: object) -> tuple[Tensor, Tensor]:
    return check_tensor_pair(a, b)


def _rel(x: float, ref: float) -> float:
    return abs(x - ref) / abs(ref) if ref != 0 else abs(x)


def _identity_check(model: Any, x: Tensor, label: str) -> Check:
    d = float(model(x, x)[0])
    ok = abs(d) <= IDENTITY_TOL
    return Check(f"identity: d({label}, {label}) = 0", ok, abs(d), IDENTITY_TOL,
                 f"d({label}, {label}) = {d:.3g}; it must be 0 (within {IDENTITY_TOL:g}) because "
                 f"an image has no difference from itself.")


def _decomposition_checks(model: Any, a: Tensor, b: Tensor) -> list[Check]:
    dec = decompose(model, a, b, top_k=0)
    # The reference is the distance explain() reports: A encoded once, B scored in float32
    # by the network's own code. (The pair forward encodes A and B in one batch, whose
    # float32 features differ from separate encodings by ~1e-7, amplified for close images.)
    with torch.no_grad():
        d_ab = float(ReferenceScorer(model, a)(b)[0])
    layer_sum = float(np.sum([lay.distance for lay in dec.layers]))
    err_sum = _rel(layer_sum, d_ab)
    channel_errs = {lay.name: _rel(float(lay.contributions.sum()), lay.distance)
                    for lay in dec.layers}
    map_errs = {lay.name: _rel(float(lay.spatial.mean()), lay.distance) for lay in dec.layers}
    worst_c = max(channel_errs, key=channel_errs.__getitem__)
    worst_m = max(map_errs, key=map_errs.__getitem__)
    return [
        Check("decomposition: layers sum to the distance", err_sum <= DECOMPOSITION_RTOL,
              err_sum, DECOMPOSITION_RTOL,
              f"The {len(dec.layers)} layer terms (float64) sum to {layer_sum:.9g} and the "
              f"network's scorer gives d(A, B) = {d_ab:.9g}: relative difference {err_sum:.2g} "
              f"(tolerance {DECOMPOSITION_RTOL:g})."),
        Check("decomposition: channels sum to each layer",
              channel_errs[worst_c] <= DECOMPOSITION_RTOL, channel_errs[worst_c],
              DECOMPOSITION_RTOL,
              f"In every layer the per-channel terms add up to the layer's term; the largest "
              f"relative difference is {channel_errs[worst_c]:.2g} (layer {worst_c}, tolerance "
              f"{DECOMPOSITION_RTOL:g})."),
        Check("decomposition: layer maps average to their layer",
              map_errs[worst_m] <= DECOMPOSITION_RTOL, map_errs[worst_m], DECOMPOSITION_RTOL,
              f"Each layer's spatial map, at the layer's own resolution, averages to the "
              f"layer's term; the largest relative difference is {map_errs[worst_m]:.2g} "
              f"(layer {worst_m}, tolerance {DECOMPOSITION_RTOL:g})."),
    ]


def _official_lin_file(net: str, version: str) -> Path | None:
    try:
        return official_lin_path(net, version).resolve()
    except ImportError:
        return None


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _parity_check(model: Any, a: Tensor, b: Tensor, d_ab: float) -> Check:
    name = "parity: matches the official lpips package"
    try:
        import lpips
    except ImportError:
        return _skipped(name, PARITY_TOL,
                     "Skipped: the official lpips package is not installed here, so there is "
                     "nothing to compare against (pip install lpips to run this check).")
    net, version = model.spec.name, model.version
    try:
        # The official constructor initialises a random trunk from torch's global RNG:
        # fork it so that a self-check never changes the caller's random stream.
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            official = lpips.LPIPS(net=net, version=version, pnet_rand=True,
                                   verbose=False).eval()
        ours = model.features.state_dict()
        # The official trunk's net.sliceK.<idx>.* is torchvision's features.<idx>.*.
        mapped = {k: ours[k.split(".", 1)[1]].detach().clone().contiguous()
                  for k in official.net.state_dict()}
        official.net.load_state_dict(mapped, strict=True)
        official_file = _official_lin_file(net, version)
        same_heads = official_file is not None and Path(model.lin_file).resolve() == official_file
        if not same_heads:
            # Custom heads (e.g. from calibration): compare the computation with our heads.
            for lin, w in zip(official.lins, model.heads, strict=True):
                lin.model[-1].weight.data.copy_(w.detach().reshape(lin.model[-1].weight.shape))
        official = official.to(a.device)
        with torch.no_grad():
            d_off = float(official(a, b, normalize=True).reshape(-1)[0])
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        return Check(name, False, None, PARITY_TOL,
                     f"Could not build the official {net!r} v{version} model with this trunk's "
                     f"weights ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).")
    diff = abs(d_ab - d_off)
    heads = ("the official lin heads" if same_heads
             else "this model's own (non-official) lin heads copied into it too")
    return Check(name, diff <= PARITY_TOL, diff, PARITY_TOL,
                 f"lpips {_package_version('lpips')} with this trunk's weights and "
                 f"{heads} gives {d_off:.9g}; this model gives {d_ab:.9g}: difference "
                 f"{diff:.2g} (tolerance {PARITY_TOL:g}).")


def _read_lin_file(path: str) -> list[Tensor]:
    state = torch.load(path, weights_only=True, map_location="cpu")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    out, i = [], 0
    while True:
        key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.model.0.weight",
                                f"lins.{i}.model.1.weight") if k in state), None)
        if key is None:
            return out
        out.append(state[key].detach().to(torch.float32).reshape(-1))
        i += 1


def _lin_check(model: Any) -> Check:
    name = "lin weights: loaded from the file and non-negative"
    file = model.lin_file
    official_file = _official_lin_file(model.spec.name, model.version)
    kind = ("the official" if official_file is not None and Path(file).resolve() == official_file
            else "the custom")
    try:
        expected = _read_lin_file(file)
    except Exception as exc:  # any unreadable file is a failed check, shown to the person
        return Check(name, False, None, 0.0,
                     f"Could not read {kind} lin-weights file {file} "
                     f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).")
    heads = [h.detach().to("cpu", torch.float32).reshape(-1) for h in model.heads]
    total = sum(h.numel() for h in heads)
    zeros = sum(int((h == 0).sum()) for h in heads)
    negatives = sum(int((h < 0).sum()) for h in heads)
    nonfinite = sum(int((~torch.isfinite(h)).sum()) for h in heads)
    if len(expected) != len(heads) or any(e.numel() != h.numel()
                                          for e, h in zip(expected, heads, strict=False)):
        return Check(name, False, None, 0.0,
                     f"{kind.capitalize()} file {file} holds {len(expected)} lin layers of sizes "
                     f"{[e.numel() for e in expected]}, but the model has {len(heads)} of sizes "
                     f"{[h.numel() for h in heads]}.")
    diff = max(float((e - h).abs().max()) for e, h in zip(expected, heads, strict=True))
    ok = diff == 0.0 and negatives == 0 and nonfinite == 0
    min_w = min(float(h.min()) for h in heads)
    problems = []
    if diff != 0.0:
        problems.append(f"the weights in use differ from {kind} file {file} by up to {diff:.3g}")
    if negatives:
        problems.append(f"{negatives} weights are negative (smallest {min_w:.3g}), so the "
                        f"distance could drop below 0")
    if nonfinite:
        problems.append(f"{nonfinite} weights are NaN or Inf")
    zero_note = (f"{zeros} of {total} channels ({zeros / total:.0%}) have a weight of exactly 0 "
                 f"and can never contribute.")
    if ok:
        detail = (f"All {total} weights equal {kind} file {file} exactly and are >= 0. "
                  + zero_note)
    else:
        detail = "Problem: " + "; ".join(problems) + ". " + zero_note
    return Check(name, ok, diff, 0.0, detail)


def _ig_check(model: Any, a: Tensor, b: Tensor, d_ab: float, steps: int | None,
              seed: int) -> Check:

    name = "integrated gradients: completeness"
    if d_ab <= VANISHING_DISTANCE:
        return _skipped(name, IG_RTOL,
                     f"Skipped: d(A, B) = {d_ab:.3g}, the images are identical as far as LPIPS "
                     f"can tell, so every gradient vanishes and there is nothing to attribute.")
    attr = attribute(model, a, b, "integrated_gradients", steps=steps, seed=seed)
    if attr.relative_gap is None:
        return _skipped(name, IG_RTOL,
                     f"Skipped: the distance the attribution explains is {attr.distance:.3g} "
                     f"(vanishing gradients), so a relative gap is undefined.")
    ok = attr.relative_gap <= IG_RTOL
    return Check(name, ok, attr.relative_gap, IG_RTOL,
                 f"With {attr.params.get('steps')} points the attributions of B sum to "
                 f"{attr.total:.6g} against d(A, B) = {attr.distance:.6g}: gap "
                 f"{attr.relative_gap:.2%} of the distance (tolerance {IG_RTOL:.0%}).")


def self_checks(model: LpipsNet, a: Tensor, b: Tensor, *, seed: int = 0,
                ig_steps: int | None = None) -> list[Check]:
    """Run the live self-checks on one pair (1 x 3 x H x W tensors in [0, 1], same size).

    Identity, symmetry, the exact decomposition, parity with the official ``lpips`` package
    (skipped, neither passed nor failed, when it is not installed), the lin weights against their file, and
    the completeness of integrated gradients (``ig_steps=None``: adaptive).
    """
    a, b = _check_pair(a, b)
    device = model.head0.device
    a, b = a.to(device), b.to(device)
    checks = []
    with torch.no_grad():
        checks.append(_identity_check(model, a, "A"))
        checks.append(_identity_check(model, b, "B"))
        d_ab = float(model(a, b)[0])
        d_ba = float(model(b, a)[0])
    asym = abs(d_ab - d_ba)
    checks.append(Check("symmetry: d(A, B) = d(B, A)", asym <= SYMMETRY_TOL, asym, SYMMETRY_TOL,
                        f"d(A, B) = {d_ab:.9g} and d(B, A) = {d_ba:.9g}: difference {asym:.2g} "
                        f"(tolerance {SYMMETRY_TOL:g}, float32 precision)."))
    checks.extend(_decomposition_checks(model, a, b))
    checks.append(_parity_check(model, a, b, d_ab))
    checks.append(_lin_check(model))
    checks.append(_ig_check(model, a, b, d_ab, ig_steps, seed))
    return checks

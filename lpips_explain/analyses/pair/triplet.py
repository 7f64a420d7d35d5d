"""2AFC explanations: which of two candidates LPIPS finds closer to a reference, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lpips_explain.analyses.attribution import attribute
from lpips_explain.analyses.jsonable import header
from lpips_explain.analyses.pair.explanation import category_of
from lpips_explain.analyses.pair.repair import repair
from lpips_explain.core.decompose import Decomposition, decompose_encoded
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.modes import EXACT, Mode
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.validation import Progress

TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class TripletLayer:
    name: str
    distance_a: float
    distance_b: float

    @property
    def margin(self) -> float:
        """distance_b - distance_a: positive means this layer prefers A."""
        return self.distance_b - self.distance_a

    def to_dict(self) -> dict:
        return {"name": self.name, "distance_a": self.distance_a,
                "distance_b": self.distance_b, "margin": self.margin}


@dataclass(frozen=True)
class Flip:
    """A repair of the losing candidate that makes LPIPS change its mind: the fewest patches
    among the repair orders tried (named in ``order_label``), not necessarily the smallest."""

    repaired: str | None  # which candidate is repaired ("a" or "b"); None for a tie
    exists: bool
    patches: int  # number of patches repaired (0 if none exists)
    total_patches: int
    area: float  # fraction of the image area repaired
    distance_before: float
    distance_after: float | None
    rival_distance: float
    patch: int
    statement: str
    order: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))
    order_name: str | None = None  # the repair order used ("single_gain", "greedy", ...)
    order_label: str | None = None  # that order, for people
    orders_tried: tuple[dict, ...] = ()  # each order: {order, label, patches, area}

    def to_dict(self) -> dict:
        return {"repaired": self.repaired, "exists": self.exists, "patches": self.patches,
                "total_patches": self.total_patches, "area": self.area,
                "distance_before": self.distance_before, "distance_after": self.distance_after,
                "rival_distance": self.rival_distance, "patch": self.patch,
                "statement": self.statement, "order": self.order_name,
                "order_label": self.order_label, "orders_tried": list(self.orders_tried)}


@dataclass(frozen=True)
class TripletExplanation:
    inputs: Any  # PreparedInputs
    decomposition_a: Decomposition
    decomposition_b: Decomposition
    attribution_a: Any
    attribution_b: Any
    flip: Flip
    backbone: Any
    repair: Any = None  # the counterfactual.Repair of the repaired candidate
    warnings: tuple[str, ...] = ()
    summary: tuple[str, ...] = ()
    lin_heads: Any = None  # core.heads.LinInfo: official or custom (calibrated) heads
    mode: Mode = EXACT  # precision and device of the forward passes (core.modes)

    @property
    def distance_a(self) -> float:
        return self.decomposition_a.distance

    @property
    def distance_b(self) -> float:
        return self.decomposition_b.distance

    @property
    def margin(self) -> float:
        """distance_b - distance_a: positive means A is closer to the reference."""
        return self.distance_b - self.distance_a

    @property
    def closer(self) -> str:
        if abs(self.margin) <= TIE_TOLERANCE:
            return "tie"
        return "a" if self.margin > 0 else "b"

    @property
    def layers(self) -> tuple[TripletLayer, ...]:
        return tuple(TripletLayer(la.name, la.distance, lb.distance) for la, lb in
                     zip(self.decomposition_a.layers, self.decomposition_b.layers, strict=True))

    def to_dict(self) -> dict:
        def attr(x: Any) -> dict | None:
            return x.to_dict() if x is not None else None

        return {
            **header("triplet", self.decomposition_a.net, self.decomposition_a.version,
                     self.backbone),
            "lin_weights": self.lin_heads.file if self.lin_heads is not None else None,
            "lin_heads": self.lin_heads.to_dict() if self.lin_heads is not None else None,
            "inputs": {"ref": self.inputs.describe(0), "a": self.inputs.describe(1),
                       "b": self.inputs.describe(2), "size": list(self.inputs.size),
                       "policy": self.inputs.align.policy,
                       "alignment": self.inputs.align.to_dict()},
            "distance_a": self.distance_a,
            "distance_b": self.distance_b,
            "closer": self.closer,
            "margin": self.margin,
            "margin_convention": "distance_b - distance_a; positive means A is closer",
            "layers": [lay.to_dict() for lay in self.layers],
            "top_channels": {
                "a": [lay.to_dict()["top_channels"] for lay in self.decomposition_a.layers],
                "b": [lay.to_dict()["top_channels"] for lay in self.decomposition_b.layers],
            },
            "attribution": {"a": attr(self.attribution_a), "b": attr(self.attribution_b)},
            "flip": self.flip.to_dict(),
            "summary": list(self.summary),
            "warnings": list(self.warnings),
            "mode": self.mode.to_dict(),
        }


# The flip tries the true greedy search too, bounded: over blocks of patches when the grid
# is larger than this (each pick re-scores every remaining block), and within a budget.
FLIP_GREEDY_BLOCKS = 16
FLIP_ORDERS = ("single_gain", "greedy")


def _flip(model: LpipsNet, prep: PreparedInputs, da: float, db: float, patch: int,
          progress: Progress | None) -> tuple[Flip, Any]:
    if abs(db - da) <= TIE_TOLERANCE:
        return Flip(None, False, 0, 0, 0.0, da, None, db, patch,
                    "The two candidates are tied: there is no decision to flip."), None
    # The loser is repaired toward the reference, patch by patch, until it is strictly
    # closer than the winner: "what would have to be fixed to change the verdict".
    loser = "b" if da < db else "a"
    ref, cand = prep.tensors[0], prep.tensors[2 if loser == "b" else 1]
    before, rival = (db, da) if loser == "b" else (da, db)
    rep = repair(model, ref, cand, patch=patch, progress=progress, orders=FLIP_ORDERS,
                 greedy_blocks=FLIP_GREEDY_BLOCKS, goal=rival, strict=True)
    grid = rep.grid[0] * rep.grid[1]
    tried = tuple({"order": o.name, "label": o.label, "patches": o.goal_steps,
                   "area": o.goal_area} for o in rep.orders_tried)
    name = loser.upper()
    below = np.flatnonzero(rep.curve_distance < rival)
    if below.size == 0:
        return Flip(loser, False, 0, grid, 0.0, before, None, rival, patch,
                    f"No repair of {name}'s {patch} px patches in the orders tried "
                    f"({', '.join(o.name.replace('_', ' ') for o in rep.orders_tried)}) makes "
                    f"it closer than the other candidate.", rep.order, rep.order_name,
                    rep.order_label, tried), rep
    k = int(below[0])
    steps, area = int(rep.curve_steps[k]), float(rep.curve_area[k])
    after = float(rep.curve_distance[k])
    statement = (f"Replacing {steps} of {grid} patches of {name} ({100 * area:.1f}% of the area, "
                 f"{patch} px patches) with the reference's pixels flips the decision (order: "
                 f"{rep.order_label}): d(REF, {name}) goes from {before:.4f} to {after:.4f}, "
                 f"below the other candidate's {rival:.4f}; a smaller repair may exist.")
    return Flip(loser, True, steps, grid, area, before, after, rival, patch, statement,
                rep.order, rep.order_name, rep.order_label, tried), rep


def explain_triplet(model: LpipsNet, prep: PreparedInputs, *, seed: int, attribution: str | None,
                    steps: int | None, patch: int, top_k: int,
                    progress: Progress | None,
                    attribution_params: dict | None = None,
                    fast: LpipsNet | None = None) -> TripletExplanation:
    """Distances, per-layer margins, attribution maps for both candidates and the flip.

    ``fast`` (core.modes) runs the forward passes (distances, flip) in an approximate mode;
    attribution always runs on ``model``, in exact fp32.
    """
    ref, a, b = prep.tensors
    fwd = fast if fast is not None else model
    scorer = ReferenceScorer(fwd, ref)
    dec_a, dec_b = decompose_encoded(fwd, scorer.ref, torch.cat([a, b]), top_k)
    attr_a = attr_b = None
    if attribution is not None:
        params = attribution_params or {}
        attr_a = attribute(model, ref, a, attribution, steps=steps,
                           progress=progress, seed=seed, roles=("ref", "a"), **params)
        attr_b = attribute(model, ref, b, attribution, steps=steps,
                           progress=progress, seed=seed, roles=("ref", "b"), **params)
    flip, rep = _flip(fwd, prep, dec_a.distance, dec_b.distance, patch, progress)
    result = TripletExplanation(prep, dec_a, dec_b, attr_a, attr_b, flip,
                                model.weights_info, rep, prep.warnings)
    layers = result.layers
    if result.closer == "tie":
        head = f"LPIPS finds A and B equally close to the reference ({dec_a.distance:.4f})."
    else:
        win = result.closer.upper()
        cat_a, cat_b = (category_of(d, dec_a.net, dec_a.version, model.weights_info,
                                    model.lin_info) for d in (dec_a.distance, dec_b.distance))
        # Categories only with a stated source (none for an unpublished trunk or heads).
        named = (f" ({cat_a.name}; {cat_b.name}: {cat_a.source})"
                 if cat_a.name and cat_b.name else "")
        head = (f"LPIPS finds {win} closer to the reference: d(REF, A) = {dec_a.distance:.4f}, "
                f"d(REF, B) = {dec_b.distance:.4f}{named}; margin d(REF, B) - d(REF, A) = "
                f"{result.margin:+.4f}.")
    summary = [head]
    if result.closer != "tie":
        sign = 1 if result.closer == "a" else -1
        agree = [lay for lay in layers if sign * lay.margin > 0]
        top = max(layers, key=lambda lay: sign * lay.margin)
        summary.append(f"{len(agree)} of {len(layers)} layers agree with the verdict; {top.name} "
                       f"contributes most to it (its margin: {top.margin:+.4f}).")
    summary.append(flip.statement)
    if not model.weights_info.perceptual:
        summary.append("Warning: the trunk has random weights, so this is not a perceptual "
                       "judgement." if model.weights_info.spec == "random"
                       else f"Warning: {model.weights_info.warning}")
    return TripletExplanation(prep, dec_a, dec_b, attr_a, attr_b, flip, model.weights_info,
                              rep, prep.warnings, tuple(summary), model.lin_info)

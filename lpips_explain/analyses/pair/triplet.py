"""2AFC explanations: which of two candidates LPIPS finds closer to a reference, and why."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from lpips_explain import notices
from lpips_explain.analyses.attribution import attribute
from lpips_explain.analyses.jsonable import header
from lpips_explain.analyses.pair.explanation import category_of
from lpips_explain.analyses.pair.metric_choices import MARGIN_CONVENTION
from lpips_explain.analyses.pair.repair import repair, resolve_patch
from lpips_explain.core.decompose import Decomposition, decompose_encoded
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.modes import EXACT, Mode
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.notices import Notice
from lpips_explain.validation import Progress, pct

TIE_TOLERANCE = 1e-9

# --- "too close to call" ------------------------------------------------------------------
# The verdict is called too close when a change that small could flip it, measured by two
# numbers the triplet computes anyway (docs/methods.md#too-close):
# 1. the layers' disagreement: the layer margins m_l sum to the margin m. Reweighting every
#    layer by a relative eps (agreeing layers down, dissenting ones up) moves the margin by
#    eps * sum_l |m_l|, so the smallest reweighting that flips the verdict is exactly
#    |m| / sum_l |m_l| ("reweight_to_flip"). At or below TOO_CLOSE_REWEIGHT the verdict
#    rests on the layers' weights more than on the images.
# 2. one patch: the flip (the losing candidate repaired patch by patch) needs a single patch
#    out of a grid of at least ONE_PATCH_MIN_GRID (a patch is at most 1/16 of the image).
TOO_CLOSE_REWEIGHT = 0.10
ONE_PATCH_MIN_GRID = 16
TOO_CLOSE_RULE = (f"too close to call when a reweighting of the layers by at most "
                  f"{TOO_CLOSE_REWEIGHT:.0%} each flips the verdict (|margin| <= "
                  f"{TOO_CLOSE_REWEIGHT:g} x the sum of |layer margins|), or when repairing a "
                  f"single patch of the losing candidate (of at least {ONE_PATCH_MIN_GRID}) "
                  f"flips it")


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
    sentence: str = ""  # the flip in one sentence (statement: with the method)
    method: str = ""  # how the flip was searched, for a tooltip

    @property
    def one_patch(self) -> bool:
        """A single patch of a grid of at least ONE_PATCH_MIN_GRID flips the decision."""
        return (self.exists and self.patches == 1
                and self.total_patches >= ONE_PATCH_MIN_GRID)

    def to_dict(self) -> dict:
        return {"repaired": self.repaired, "exists": self.exists, "patches": self.patches,
                "total_patches": self.total_patches, "area": self.area,
                "distance_before": self.distance_before, "distance_after": self.distance_after,
                "rival_distance": self.rival_distance, "patch": self.patch,
                "statement": self.statement, "order": self.order_name,
                "order_label": self.order_label, "orders_tried": list(self.orders_tried),
                "sentence": self.sentence or self.statement, "method": self.method,
                "one_patch": self.one_patch}


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
    # Each metric's 2AFC choice (None: not asked; analyses.pair.metric_choices)
    metric_choices: Any = None

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

    @property
    def layers_agreeing(self) -> int:
        """How many layers' margins have the verdict's sign (0 for a tie)."""
        if self.closer == "tie":
            return 0
        sign = 1 if self.closer == "a" else -1
        return sum(sign * lay.margin > 0 for lay in self.layers)

    @property
    def reweight_to_flip(self) -> float | None:
        """|margin| / sum of |layer margins|: the smallest relative reweighting of the
        layers (agreeing ones down, dissenting ones up, all by the same fraction) that
        flips the verdict; None when every layer margin is 0. At most 1 (every layer
        agrees: float rounding of the sums may not put it above)."""
        gross = sum(abs(lay.margin) for lay in self.layers)
        return min(1.0, abs(self.margin) / gross) if gross > 0 else None

    @property
    def too_close_reasons(self) -> tuple[str, ...]:
        """Why the verdict is too close to call (empty when it is not), each from a number
        (the rule: TOO_CLOSE_RULE)."""
        if self.closer == "tie":
            return ("the distances are equal",)
        out = []
        eps = self.reweight_to_flip
        if eps is not None and eps <= TOO_CLOSE_REWEIGHT:
            out.append(f"reweighting the layers by {pct(eps)} flips it "
                       f"({self.layers_agreeing} of {len(self.layers)} layers agree)")
        if self.flip is not None and self.flip.one_patch:
            out.append(f"repairing one patch of {self.flip.repaired.upper()} (of "  # type: ignore[union-attr]
                       f"{self.flip.total_patches}) flips it")
        return tuple(out)

    @property
    def verdict(self) -> str:
        """"A", "B" or "too_close" (see TOO_CLOSE_RULE); the one-patch half of the rule
        needs the flip (until it is computed, only the layers' half is applied)."""
        return "too_close" if self.too_close_reasons else self.closer.upper()

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
            "verdict": self.verdict,
            "too_close": {"reasons": list(self.too_close_reasons),
                          "reweight_to_flip": self.reweight_to_flip,
                          "layers_agreeing": self.layers_agreeing,
                          "one_patch_flip": (self.flip.one_patch if self.flip is not None
                                             else None),
                          "rule": TOO_CLOSE_RULE},
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
            **({} if self.metric_choices is None else {
                "metric_choices": self.metric_choices.to_list(),
                "metric_headline": self.metric_choices.headline,
                "metric_margin_convention": MARGIN_CONVENTION}),
        }


# The flip tries the true greedy search too, bounded: over blocks of patches when the grid
# is larger than this (each pick re-scores every remaining block), and within a budget.
FLIP_GREEDY_BLOCKS = 16
FLIP_ORDERS = ("single_gain", "greedy")


def _flip(model: LpipsNet, prep: PreparedInputs, da: float, db: float, patch: int,
          progress: Progress | None) -> tuple[Flip, Any]:
    if abs(db - da) <= TIE_TOLERANCE:
        tied = "The two candidates are tied: there is no decision to flip."
        return Flip(None, False, 0, 0, 0.0, da, None, db, patch, tied, sentence=tied), None
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
    method = (f"{name}'s {patch} px patches ({grid} of them) are replaced by the reference's "
              f"pixels one by one, in each of these orders: "
              + "; ".join(o.label for o in rep.orders_tried)
              + ". The flip is the fewest patches among the orders tried; a smaller repair "
                "may exist.")
    if below.size == 0:
        text = (f"No repair of {name}'s {patch} px patches in the orders tried "
                f"({', '.join(o.name.replace('_', ' ') for o in rep.orders_tried)}) makes "
                f"it closer than the other candidate.")
        return Flip(loser, False, 0, grid, 0.0, before, None, rival, patch, text,
                    rep.order, rep.order_name, rep.order_label, tried,
                    sentence=f"No repair of {name} tried flips the decision.",
                    method=method), rep
    k = int(below[0])
    steps, area = int(rep.curve_steps[k]), float(rep.curve_area[k])
    after = float(rep.curve_distance[k])
    statement = (f"Replacing {steps} of {grid} patches of {name} ({100 * area:.1f}% of the area, "
                 f"{patch} px patches) with the reference's pixels flips the decision (order: "
                 f"{rep.order_label}): d(REF, {name}) goes from {before:.4f} to {after:.4f}, "
                 f"below the other candidate's {rival:.4f}; a smaller repair may exist.")
    other = "A" if name == "B" else "B"
    sentence = (f"Replacing {steps} of {grid} patches of {name} ({100 * area:.1f}% of the area) "
                f"with the reference's pixels flips the decision: d(REF, {name}) goes from "
                f"{before:.4f} to {after:.4f}, below {other}'s {rival:.4f}.")
    return Flip(loser, True, steps, grid, area, before, after, rival, patch, statement,
                rep.order, rep.order_name, rep.order_label, tried, sentence=sentence,
                method=method), rep


def explain_triplet(model: LpipsNet, prep: PreparedInputs, *, seed: int, attribution: str | None,
                    steps: int | None, patch: int | None, top_k: int,
                    progress: Progress | None,
                    attribution_params: dict | None = None,
                    fast: LpipsNet | None = None) -> TripletExplanation:
    """Distances, per-layer margins, attribution maps for both candidates and the flip.

    ``fast`` (core.modes) runs the forward passes (distances, flip) in an approximate mode;
    attribution always runs on ``model``, in exact fp32. ``patch``: the flip's patch size;
    None: 32 px, fitted to large images with a notice (repair.resolve_patch).
    """
    patch, patch_note = resolve_patch(patch, prep.size)  # a bad size fails before any work
    warnings = prep.warnings
    if patch_note is not None:
        warnings = (*warnings, Notice(notices.PATCH, patch_note))
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
                                model.weights_info, rep, warnings, (), model.lin_info)
    return replace(result, summary=triplet_summary(result))


def with_metric_choices(tri: TripletExplanation, choices: Any) -> TripletExplanation:
    """The triplet with each metric's choice (analyses.pair.metric_choices) and the summary
    that says where they disagree."""
    out = replace(tri, metric_choices=choices)
    return replace(out, summary=triplet_summary(out))


def triplet_summary(tri: TripletExplanation) -> tuple[str, ...]:
    """The triplet's sentences, each from its numbers: the verdict (or "too close to
    call"), the layers' agreement, the metrics' disagreement (when asked), the flip."""
    dec_a, dec_b = tri.decomposition_a, tri.decomposition_b
    if tri.closer == "tie":
        head = f"LPIPS finds A and B equally close to the reference ({dec_a.distance:.4f})."
    else:
        win = tri.closer.upper()
        cat_a, cat_b = (category_of(d, dec_a.net, dec_a.version, tri.backbone, tri.lin_heads)
                        for d in (dec_a.distance, dec_b.distance))
        # Categories only with a stated source (none for an unpublished trunk or heads).
        named = (f" ({cat_a.name}; {cat_b.name}: {cat_a.source})"
                 if cat_a.name and cat_b.name else "")
        head = (f"LPIPS finds {win} closer to the reference: d(REF, A) = {dec_a.distance:.4f}, "
                f"d(REF, B) = {dec_b.distance:.4f}{named}; margin d(REF, B) - d(REF, A) = "
                f"{tri.margin:+.4f}.")
    summary = []
    choices = tri.metric_choices
    if choices is not None and choices.headline:
        summary.append(choices.headline)  # a disagreement between metrics comes first
    summary.append(head)
    if tri.verdict == "too_close" and tri.closer != "tie":
        summary.append(f"Too close to call: {'; and '.join(tri.too_close_reasons)}.")
    if tri.closer != "tie":
        layers = tri.layers
        sign = 1 if tri.closer == "a" else -1
        top = max(layers, key=lambda lay: sign * lay.margin)
        summary.append(f"{tri.layers_agreeing} of {len(layers)} layers agree with the verdict; "
                       f"{top.name} contributes most to it (its margin: {top.margin:+.4f}).")
    if choices is not None:
        summary += [s for s in choices.sentences if s != choices.headline]
    if tri.flip is not None:
        summary.append(tri.flip.sentence or tri.flip.statement)
    info = tri.backbone
    if not info.perceptual:
        summary.append("Warning: the trunk has random weights, so this is not a perceptual "
                       "judgement." if info.spec == "random" else f"Warning: {info.warning}")
    return tuple(summary)

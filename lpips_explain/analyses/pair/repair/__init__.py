"""Patch repair: which patches of B hold the distance, found by replacing them with A's pixels.

Every point of every curve is a real distance of a real repaired image, scored in batches
against A encoded once. Patches can be repaired in several orders, each named for what it
is: ``single_gain`` (ranked once by how much replacing each patch alone lowers the
distance), ``greedy`` (after each pick, every remaining patch is re-scored and the best one
taken), and ``ranking`` (by the patch sums of a map, e.g. an attribution). The best order
tried is the one shown; none of them is guaranteed to be the smallest repair.

Layout: ``result`` (:class:`Repair`, :class:`RepairOrder`, the order names), ``patches``
(patch sizes that fit the images, the patch grid, a map's patch sums), ``scoring``
(repaired copies scored in batches or on windows), ``greedy`` (the greedy order),
``curves`` (each order's curve, :func:`order_curves`, :func:`curve_auc`), ``notes`` (the
headline and the notes), and :func:`repair` here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.inputs import check_pair, scorer_for
from lpips_explain.analyses.pair.repair.curves import (
    REPAIR_POINTS,
    coarse_steps,
    curve_auc,
    evaluate_order,
    order_curves,
)
from lpips_explain.analyses.pair.repair.greedy import GREEDY_BUDGET, greedy_order
from lpips_explain.analyses.pair.repair.notes import (
    curve_notes,
    gain_note,
    halving,
    headline,
    orders_note,
)
from lpips_explain.analyses.pair.repair.patches import (
    DEFAULT_PATCH,
    MAX_PATCHES,
    PatchGrid,
    check_patch,
    patch_count,
    patch_sums,
    ranked,
    resolve_patch,
    smallest_patch,
)
from lpips_explain.analyses.pair.repair.result import (
    ORDERS,
    RANKED_BY,
    SINGLE_GAIN_LABEL,
    Repair,
    RepairOrder,
    check_orders,
    default_orders,
    rises,
)
from lpips_explain.analyses.pair.repair.scoring import (
    LOCAL_MAX_COST,
    WALK_START,
    WALK_STEP_PIXELS,
    RepairBatches,
)
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.errors import InputError
from lpips_explain.validation import Progress, integer, optional_integer

__all__ = [
    "DEFAULT_PATCH", "GREEDY_BUDGET", "LOCAL_MAX_COST", "MAX_PATCHES", "ORDERS", "RANKED_BY",
    "REPAIR_POINTS", "SINGLE_GAIN_LABEL", "WALK_START", "WALK_STEP_PIXELS", "Repair",
    "RepairOrder", "check_orders", "check_patch", "curve_auc", "default_orders", "order_curves",
    "patch_count", "patch_sums", "ranked", "repair", "resolve_patch", "smallest_patch",
]


def repair(net: LpipsNet, a: Tensor, b: Tensor, *, patch: int = 32,
           max_points: int | None = None, batch_size: int = 16,
           scorer: ReferenceScorer | None = None, progress: Progress | None = None,
           orders: Sequence[str] | str = ("single_gain",), ranking: np.ndarray | None = None,
           ranking_label: str = "map", greedy_budget: int = GREEDY_BUDGET,
           greedy_blocks: int | None = None, goal: float | None = None,
           strict: bool = False) -> Repair:
    """Replace B's patches with A's: single-patch gains and repair curves in named orders.

    Gains are Occlusion with A as the baseline: d(a, b) - d(a, b with patch p from a), all
    patches in one batched evaluation. Each order in ``orders`` ("single_gain", "greedy",
    "ranking": by the patch sums of ``ranking``, an H x W map called ``ranking_label``) is
    evaluated for real at every k = 0..P repaired patches (or, with ``max_points``, at that
    many values of k refined around the goal, and the monotonicity check says how many
    were checked). The orders are compared by the fewest patches (smallest area) that reach
    ``goal`` (default: half the distance; ``strict``: strictly below it), then by the area
    under their curves; the best is shown. ``progress(done, total, label)`` follows each
    batch; ``total`` grows as work is planned (the greedy search plans one pick at a time).
    """
    a, b = check_pair(net, a, b)
    h, w = int(a.shape[-2]), int(a.shape[-1])
    patch = check_patch(patch, (h, w))
    max_points, batch_size, greedy_budget, greedy_blocks, names = _options(
        max_points, batch_size, greedy_budget, greedy_blocks, orders, ranking)
    scorer = scorer_for(net, a, scorer)

    sums = patch_sums(ranking, (h, w), patch) if "ranking" in names else None
    cut = PatchGrid.of((h, w), patch, a.device)
    points = cut.n if max_points is None else len(coarse_steps(cut.n, max_points)) - 1
    score = RepairBatches(scorer, a, b, batch_size, progress, 1 + cut.n + points * len(names))
    with torch.no_grad():
        single = _single_patches(score, b, cut)
        base = float(single[0])
        gains = base - single[1:]
        identical = bool(torch.equal(a, b)) or base <= 0.0
        target = base / 2 if goal is None else float(goal)

        def reached(d: float) -> bool:
            return d < target if strict else d <= target

        single_order = ranked(gains)
        tried: list[RepairOrder] = []
        for name in names:
            known: dict[int, float] = {0: base}
            spent = 0
            if name == "single_gain":
                order, label = single_order, SINGLE_GAIN_LABEL
            elif name == "ranking":
                order = ranked(sums)
                label = (f"{ranking_label} patch sums (patches ranked by the map's sum over "
                         f"each, largest first)")
            else:
                order, greedy_known, label, spent = greedy_order(
                    score, cut, base, single_order, lambda d: identical or reached(d),
                    greedy_budget, greedy_blocks, a.device)
                known.update(greedy_known)
            tried.append(evaluate_order(score, cut, order, known, name, label, max_points,
                                        reached, identical, base, spent, cut.boxes))
    return _best(cut, base, gains, tried, identical, goal, strict, target)


def _options(max_points: int | None, batch_size: int, greedy_budget: int,
             greedy_blocks: int | None, orders: Sequence[str] | str, ranking: np.ndarray | None
             ) -> tuple[int | None, int, int, int | None, tuple[str, ...]]:
    """:func:`repair`'s options checked, in this order (the first bad one is refused):
    (max_points, batch_size, greedy_budget, greedy_blocks, the order names)."""
    max_points = optional_integer(max_points, "max_points", minimum=2)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    greedy_budget = integer(greedy_budget, "greedy_budget", minimum=1)
    greedy_blocks = optional_integer(greedy_blocks, "greedy_blocks", minimum=1)
    names = check_orders(orders)
    if "ranking" in names and ranking is None:
        raise InputError("The 'ranking' repair order needs a ranking map (H x W).")
    return max_points, batch_size, greedy_budget, greedy_blocks, names


def _single_patches(score: RepairBatches, b: Tensor, cut: PatchGrid) -> np.ndarray:
    """The distance with each single patch of B replaced by A's, after row 0: B itself
    (nothing replaced), its distance from the same batches or from the pass of B the
    windows start from."""
    n = cut.n
    label = "repair: single patches"
    single = score.boxes(b, cut.boxes, label, with_base=True)
    if single is None:
        single_ids = torch.arange(-1, n, device=b.device)
        single = score(lambda sl: cut.pix[None] == single_ids[sl, None, None], n + 1, label)
    return single


def _best(cut: PatchGrid, base: float, gains: np.ndarray, tried: list[RepairOrder],
          identical: bool, goal: float | None, strict: bool, target: float) -> Repair:
    """The repair shown: the order tried that reaches the goal with the smallest area (then
    the smallest area under its curve), with the headline and the notes."""
    best = min(tried, key=lambda o: (o.goal_area if o.goal_area is not None else math.inf,
                                     o.auc))
    half_k, half_area = (None, None) if identical else halving(best, base)
    rise_at = rises(best.distances, base)
    head = headline(identical, base, best, half_k, half_area, cut.n, cut.patch)
    notes = orders_note(tried, identical, goal, strict, target)
    notes += curve_notes(best, cut.size, cut.patch, cut.n, base, rise_at, identical)
    notes += gain_note(gains, base, identical)
    return Repair(
        patch=cut.patch, grid=cut.grid, base_distance=base, gains=gains.reshape(cut.grid),
        order=best.order, curve_area=best.areas, curve_distance=best.distances,
        curve_steps=best.steps, non_monotonic=bool(rise_at), half_area=half_area,
        headline=head, notes=tuple(notes), size=cut.size, order_name=best.name,
        order_label=best.label, orders_tried=tuple(tried), goal=None if identical else target)

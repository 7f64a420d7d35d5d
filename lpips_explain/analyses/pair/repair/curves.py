"""Repair curves: the distance after repairing the first k patches of an order, every point
a real distance of a real repaired image.

:func:`evaluate_order` measures one order's curve for ``repair`` (at every k, or at a few
and then refined around the goal, walked on windows where that costs fewer whole passes);
:func:`order_curves` measures given orders at every k (the deletion check's curves);
:func:`curve_auc` is the area under a curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.inputs import check_pair, scorer_for
from lpips_explain.analyses.pair.repair.patches import PatchGrid, check_patch, repaired_area
from lpips_explain.analyses.pair.repair.result import RepairOrder
from lpips_explain.analyses.pair.repair.scoring import RepairBatches
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.windowed import Box
from lpips_explain.errors import InputError
from lpips_explain.validation import Progress, integer

# An explanation evaluates each order's curve at about this many values of k, then refines
# around the goal to one patch (repair(max_points=...)): on a 600x400 pair (247 patches of
# 32 px) one order costs about 34 trunk passes instead of 248, with the same goal step
# wherever the curve falls monotonically near the goal. Every point is a real distance.
REPAIR_POINTS = 24


def coarse_steps(n_patches: int, max_points: int) -> list[int]:
    """At most ``max_points`` values of k from 0 to ``n_patches``, evenly spread, both ends in."""
    if n_patches + 1 <= max_points:
        return list(range(n_patches + 1))
    return sorted(set(np.rint(np.linspace(0, n_patches, max_points)).astype(int).tolist()))


def first_reaching(evaluated: dict[int, float], reached: Callable[[float], bool]
                   ) -> tuple[int, int] | None:
    """(k before, k at) the first evaluated k whose distance reaches the goal, or None."""
    ks = sorted(evaluated)
    for i, k in enumerate(ks):
        if reached(evaluated[k]):
            return (ks[i - 1] if i > 0 else k), k
    return None


def rounds_cost(m: int, max_points: int) -> int:
    """Whole passes that refining rounds spend on a bracket of ``m`` patches, at most."""
    passes = 0
    while m > 1:
        ks = coarse_steps(m, max_points)
        passes += len(ks) - 2
        m = int(np.diff(ks).max())
    return passes


def curve_auc(area: np.ndarray, distance: np.ndarray, base: float) -> float:
    """Area under d / d(a, b) against the repaired area (trapezoid): lower falls faster."""
    if base <= 0:
        return 0.0
    y = np.asarray(distance, dtype=np.float64) / base
    x = np.asarray(area, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


class _Points:
    """The distances measured along one order, by k (patches repaired), and the trunk passes
    spent on them; a point measured once is never measured again."""

    def __init__(self, score: RepairBatches, pix: Tensor, order: np.ndarray,
                 known: dict[int, float], spent: int, max_points: int | None,
                 boxes: Sequence[Box] | None):
        n = order.size
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        self.pix_rank = torch.from_numpy(rank).to(pix.device)[pix]  # each pixel's place
        self.device = pix.device
        self.score, self.order, self.max_points, self.boxes = score, order, max_points, boxes
        self.evaluated = dict(known)
        self.evaluations = spent

    def new(self, ks: Sequence[int]) -> int:
        """How many of ``ks`` are not measured yet."""
        return sum(k not in self.evaluated for k in ks)

    def measure(self, ks: list[int], what: str) -> None:
        """d at each k of ``ks`` not measured yet, in batches of whole passes."""
        ks = [k for k in ks if k not in self.evaluated]
        if not ks:
            return
        kt = torch.tensor(ks, device=self.device)
        d = self.score(lambda sl: self.pix_rank[None] < kt[sl, None, None], len(ks),
                       f"repair: {what}")
        self.evaluations += len(ks)
        self.evaluated.update(zip(ks, d.tolist(), strict=True))

    def walk(self, lo: int, hi: int, stop: Callable[[float], bool], what: str) -> bool:
        """d at k = lo+1..hi (up to the first that ``stop`` accepts) on windows from the
        image at k = lo, if that costs fewer whole passes than the points or refining rounds
        it replaces; whether it was walked."""
        score, max_points = self.score, self.max_points
        while lo < hi and lo + 1 in self.evaluated:  # start after the points already measured
            lo += 1
        steps = ([self.boxes[int(i)] for i in self.order[lo: hi]]
                 if self.boxes is not None else [])
        cost = score.walk_cost(steps)
        todo = self.new(range(lo + 1, hi + 1))
        rounds = todo if max_points is None else rounds_cost(hi - lo, max_points)
        if cost is None or cost >= rounds:
            return False
        start = torch.where((self.pix_rank < lo)[None, None], score.a, score.b)
        if max_points is not None:
            score.plan(len(steps))  # the progress bar's total: every step, until one stops
        d = score.walk(start, steps, stop, f"repair: {what}")
        if max_points is not None:
            score.plan(len(d) - len(steps))
        self.evaluations += len(d)
        for k, v in enumerate(d, lo + 1):
            self.evaluated.setdefault(k, v)  # a point measured before keeps its whole-pass value
        return True

    def refine(self, reached: Callable[[float], bool], max_points: int, what: str) -> None:
        """Narrow the bracket around the first point reaching the goal to one patch."""
        while (bracket := first_reaching(self.evaluated, reached)) is not None:
            lo, hi = bracket
            if hi - lo <= 1:
                break
            # k = hi is known to reach the goal: walk lo+1..hi-1 until one does.
            if self.walk(lo, hi - 1, reached, what):
                continue
            ks = [lo + k for k in coarse_steps(hi - lo, max_points)[1:-1]]
            self.score.plan(self.new(ks))
            self.measure(ks, what)


def evaluate_order(score: RepairBatches, cut: PatchGrid, order: np.ndarray,
                   known: dict[int, float], name: str, label: str, max_points: int | None,
                   reached: Callable[[float], bool], identical: bool, base: float,
                   spent: int, boxes: Sequence[Box] | None = None) -> RepairOrder:
    """The curve of one order: d after the first k patches, at every k (or coarse + refined
    around the goal with ``max_points``); points already measured are reused. Given the
    patches' ``boxes``, runs of consecutive k are walked on windows where that costs fewer
    whole passes (RepairBatches.walk): the whole curve, or a bracket scanned up to the goal."""
    n = order.size
    points = _Points(score, cut.pix, order, known, spent, max_points, boxes)
    title = f"{name.replace('_', ' ')} order curve"
    first = list(range(n + 1)) if max_points is None else coarse_steps(n, max_points)
    # The plan counted every point but k = 0; points already measured cost nothing.
    score.plan(points.new(first) - (len(first) - 1))
    if max_points is not None or not points.walk(0, n, lambda d: False, title):
        points.measure(first, title)
    if max_points is not None and not identical:
        points.refine(reached, max_points, f"{title}, refining")
    return _curve(points, cut.counts, name, label, reached, identical, base)


def _curve(points: _Points, counts: np.ndarray, name: str, label: str,
           reached: Callable[[float], bool], identical: bool, base: float) -> RepairOrder:
    """The order's curve from its measured points, with the first point reaching the goal."""
    evaluated, order = points.evaluated, points.order
    steps = np.array(sorted(evaluated), dtype=np.int64)
    dist = np.array([evaluated[k] for k in steps], dtype=np.float64)
    area = repaired_area(counts, order)[steps]
    goal_steps = goal_area = None
    if not identical:
        hit = next((i for i, d in enumerate(dist) if reached(d)), None)
        if hit is not None:
            goal_steps, goal_area = int(steps[hit]), float(area[hit])
    return RepairOrder(name, label, order, steps, dist, area, goal_steps, goal_area,
                       curve_auc(area, dist, base), points.evaluations)


def order_curves(net: LpipsNet, a: Tensor, b: Tensor, orders: Sequence[np.ndarray], *,
                 patch: int, batch_size: int = 16, scorer: ReferenceScorer | None = None,
                 progress: Progress | None = None, label: str = "deletion curves"
                 ) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """d(a, b) and, for each order of patch indices, (areas, distances) after repairing the
    first k patches of B with A's, at every k = 0..P: every point a real distance."""
    a, b = check_pair(net, a, b)
    h, w = int(a.shape[-2]), int(a.shape[-1])
    patch = check_patch(patch, (h, w))
    scorer = scorer_for(net, a, scorer)
    cut = PatchGrid.of((h, w), patch, a.device)
    n = cut.n
    score = RepairBatches(scorer, a, b, integer(batch_size, "batch_size", minimum=1), progress,
                          1 + n * len(orders))
    orders = [np.asarray(order, dtype=np.int64) for order in orders]
    for order in orders:
        if sorted(order.tolist()) != list(range(n)):
            raise InputError(f"An order must list each of the {n} patches once.")
    # Each point differs from the one before in one patch: where windows are cheaper
    # (walk_cost), each order is a chain of windowed steps from B (the deletion check's
    # curves 5.2x faster at 600x400, 9.7x at 1920x1280: bench_local.py --curves); else every
    # point is a whole pass.
    chained = score.chains(cut.boxes, orders, label)
    if chained is not None:
        base, steps = chained
        return base, [(repaired_area(cut.counts, order), np.concatenate([[base], d]))
                      for order, d in zip(orders, steps, strict=True)]
    out = []
    with torch.no_grad():
        base = float(score(lambda sl: cut.pix[None] < 0, 1, label)[0])  # nothing replaced: B
        for order in orders:
            o = evaluate_order(score, cut, order, {0: base}, "given", label, None,
                               lambda d: False, False, base, 0)
            out.append((o.areas, o.distances))
    return base, out

"""Patch repair: which patches of B hold the distance, found by replacing them with A's pixels.

Every point of every curve is a real distance of a real repaired image, scored in batches
against A encoded once. Patches can be repaired in several orders, each named for what it
is: ``single_gain`` (ranked once by how much replacing each patch alone lowers the
distance), ``greedy`` (after each pick, every remaining patch is re-scored and the best one
taken), and ``ranking`` (by the patch sums of a map, e.g. an attribution). The best order
tried is the one shown; none of them is guaranteed to be the smallest repair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.inputs import check_image, check_pair, scorer_for
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.windowed import Box, WindowedScorer, supports, window_cost
from lpips_explain.errors import InputError, SizeMismatchError, lookup
from lpips_explain.validation import Progress, integer, pct

# --- repair -------------------------------------------------------------------------------

ORDERS: dict[str, str] = {
    "single_gain": "single-patch gain",
    "greedy": "greedy",
    "ranking": "map patch sums",
}
# How each order ranks the patches, in a few words (the full method is the order's label).
RANKED_BY: dict[str, str] = {
    "single_gain": "how much each alone lowers the distance",
    "greedy": "a greedy search",
    "ranking": "the attribution map",
}
# The true greedy search re-scores every remaining patch after each pick: up to P(P+1)/2
# trunk passes. It stops once the goal is reached, or when this many were spent.
GREEDY_BUDGET = 4096
# Copies of an image with one patch (or block) replaced are scored on the windows the patch
# reaches (core/windowed.py, exact) when that costs at most this share of whole trunk passes.
# benchmarks/bench_local.py, whole / windowed time: alex 256 px, 32 px patches (share 0.35)
# 2.4x; alex 192/32 (0.54) 1.35x; vgg 96/32 (0.59) 1.17x; vgg 64/32 (0.66) 0.70x; alex
# 128/32 (0.74) 0.81x: near 1 the crops' overhead makes the windows slower.
LOCAL_MAX_COST = 0.6
# A walk (_Batches.walk: one image after another, each one box more from A, on windows) costs
# about WALK_START whole passes to start (a pass keeping every layer input), then per step
# its windows' share of a whole pass's multiply-adds plus a fixed cost worth a whole pass
# over WALK_STEP_PIXELS pixels (ten small convolutions and their bookkeeping, about 8 ms
# here). Measured on alex, a step in whole passes: 600x400 with 32 px boxes (share 0.06)
# 0.15, with a 123 px box in the middle (share 0.22) 0.29; 256x256 with 32 px boxes (share
# 0.36) 0.52; 1920x1280 with 60 px boxes 0.023. The start: 1.14-1.39 passes.
WALK_START = 1.4
WALK_STEP_PIXELS = 25_000
# An explanation evaluates each order's curve at about this many values of k, then refines
# around the goal to one patch (repair(max_points=...)): on a 600x400 pair (247 patches of
# 32 px) one order costs about 34 trunk passes instead of 248, with the same goal step
# wherever the curve falls monotonically near the goal. Every point is a real distance.
REPAIR_POINTS = 24
SINGLE_GAIN_LABEL = "single-patch gain (patches ranked once by how much replacing each alone " \
                    "lowers the distance)"


def default_orders(ranking: bool) -> tuple[str, ...]:
    """The orders an explanation tries when none are named: single-patch gain, and the
    attribution map's ranking when one is computed alongside (its curve costs one pass per
    patch). On the published alex trunk the ranking by integrated gradients needed 38.5% of
    the area to halve the distance against single-patch gain's 46.9% (3 bundled pairs at
    256 px), and the true greedy search 42.2% at 7x the repair time: docs/faithfulness.md."""
    return ("single_gain", "ranking") if ranking else ("single_gain",)


@dataclass(frozen=True)
class RepairOrder:
    """One order of repairing B's patches and its curve: d after repairing the first k."""

    name: str  # "single_gain", "greedy" or "ranking"
    label: str  # what the order is, for people (what was done, bounds included)
    order: np.ndarray  # patch flat indices
    steps: np.ndarray  # k at each evaluated point
    distances: np.ndarray  # true d after repairing the first k patches
    areas: np.ndarray  # fraction of the area repaired at each evaluated point
    goal_steps: int | None  # smallest evaluated k that reaches the goal (None: never)
    goal_area: float | None
    auc: float  # area under d / d(A, B) against the repaired area (trapezoid over the points)
    evaluations: int  # trunk passes spent on finding the order (greedy) and its curve

    def to_dict(self) -> dict:
        return {"order": self.name, "label": self.label,
                "patches": self.goal_steps, "area": self.goal_area, "auc": self.auc,
                "evaluations": self.evaluations,
                "sequence": [int(i) for i in self.order],
                "curve": [{"area": float(s), "distance": float(d), "steps": int(k)}
                          for s, d, k in zip(self.areas, self.distances, self.steps,
                                             strict=True)]}


@dataclass(frozen=True)
class Repair:
    """Where the distance lives: replace patches of B by A's and measure what remains.

    Patches are numbered row-major over a ``grid`` of (rows, cols); the last row and column
    are smaller when the image does not divide evenly, and areas count their real pixels.
    ``order`` and the curve are those of the best order tried (``order_name``); every
    order tried is in ``orders_tried``.
    """

    patch: int  # patch size in px
    grid: tuple[int, int]  # (rows, cols) of patches
    base_distance: float
    gains: np.ndarray  # rows x cols: d(a,b) - d(a, b with that one patch replaced by a's)
    order: np.ndarray  # patch flat indices in the shown order (see order_name)
    curve_area: np.ndarray  # fraction of the image area repaired at each evaluated point
    curve_distance: np.ndarray  # true d after repairing the first k patches, evaluated
    curve_steps: np.ndarray  # k at each point
    non_monotonic: bool  # repairing more raised the distance somewhere on the checked curve
    half_area: float | None  # smallest evaluated area with distance <= d/2 (None if d == 0)
    headline: str
    notes: tuple[str, ...]
    size: tuple[int, int]  # (H, W) of the images
    order_name: str = "single_gain"
    order_label: str = SINGLE_GAIN_LABEL
    orders_tried: tuple[RepairOrder, ...] = field(default=(), repr=False)
    goal: float | None = None  # the distance the orders were compared at (d/2 by default)

    def _pixel_patch(self) -> np.ndarray:
        return _patch_ids(self.size, self.patch, self.grid)

    @property
    def half_steps(self) -> int | None:
        """Patches repaired at ``half_area`` (None when no point reached half the distance)."""
        if self.half_area is None:
            return None
        return int(self.curve_steps[int(np.flatnonzero(self.curve_area == self.half_area)[0])])

    def rise_steps(self) -> list[int]:
        """Indices j of curve points above the lowest distance reached before them.

        A rise smaller than float32 noise on d is not a rise. The same test sets
        ``non_monotonic`` and marks the curve in the figure, so they always agree.
        """
        return _rises(self.curve_distance, self.base_distance)

    def areas(self) -> np.ndarray:
        """Area fraction repaired after the first k patches in order, for k = 0..P."""
        counts = np.bincount(self._pixel_patch().ravel(), minlength=self.grid[0] * self.grid[1])
        return _repaired_area(counts, self.order)

    def steps_for_area(self, area: float) -> int:
        """The smallest k whose first k patches cover at least ``area`` of the image."""
        if not 0.0 <= float(area) <= 1.0:
            raise InputError(f"area must be a fraction in [0, 1], got {area!r}.")
        cum = self.areas()
        return int(np.searchsorted(cum, float(area) - 1e-12, side="left"))

    def mask(self, steps: int) -> np.ndarray:
        """H x W booleans: True on the first ``steps`` patches in the shown order."""
        rank = np.empty(self.order.size, dtype=np.int64)
        rank[self.order] = np.arange(self.order.size)
        return rank[self._pixel_patch()] < int(steps)

    def repaired_image(self, a: Tensor, b: Tensor, area: float) -> Tensor:
        """B with the first patches (in order) covering ``area`` of the image replaced by A's."""
        a, b = check_image(a, "A"), check_image(b, "B")
        if tuple(a.shape[-2:]) != self.size or tuple(b.shape[-2:]) != self.size:
            raise SizeMismatchError(
                f"This repair was computed on {self.size[0]}x{self.size[1]} images; got A "
                f"{a.shape[-2]}x{a.shape[-1]} and B {b.shape[-2]}x{b.shape[-1]}.")
        m = torch.from_numpy(self.mask(self.steps_for_area(area))).to(a.device)
        return torch.where(m, a, b.to(a.device, a.dtype))

    def gain_map(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """H x W map in which every pixel holds its patch's single-patch gain.

        ``size`` defaults to the images' size; another size maps each pixel to the patch
        under the same relative position (nearest neighbour), e.g. for a display.
        """
        h, w = self.size if size is None else (int(size[0]), int(size[1]))
        if h < 1 or w < 1:
            raise InputError(f"gain_map needs a positive size, got {size!r}.")
        ys = (np.arange(h) * self.size[0]) // h
        xs = (np.arange(w) * self.size[1]) // w
        return self.gains[np.ix_(ys // self.patch, xs // self.patch)].astype(np.float64)

    def to_dict(self) -> dict:
        total = self.grid[0] * self.grid[1] + 1
        return {
            "patch": self.patch, "grid": list(self.grid), "size": list(self.size),
            "base_distance": self.base_distance,
            "gains": self.gains.tolist(),
            "order": [int(i) for i in self.order],
            "order_name": self.order_name, "order_label": self.order_label,
            "curve": [{"area": float(s), "distance": float(d), "steps": int(k)}
                      for s, d, k in zip(self.curve_area, self.curve_distance, self.curve_steps,
                                         strict=True)],
            "non_monotonic": self.non_monotonic,
            "monotonic_checked": {"steps": len(self.curve_steps), "of": total},
            "half_area": self.half_area, "half_steps": self.half_steps, "goal": self.goal,
            "orders_tried": [o.to_dict() for o in self.orders_tried],
            "headline": self.headline, "notes": list(self.notes),
        }


MAX_PATCHES = 1024  # each patch costs one trunk pass; 1024 is 32x32 patches of 8 px at 256 px
# The patch size when none is named: 32 px, raised for images it would cut into more than
# MAX_PATCHES patches (a 1920x1280 photograph: 2400), lowered to the shorter side of images
# smaller than that (see resolve_patch).
DEFAULT_PATCH = 32


def patch_count(size: tuple[int, int], patch: int) -> int:
    """How many patches of ``patch`` px cut images of ``size`` (h, w); edge patches count."""
    return math.ceil(size[0] / patch) * math.ceil(size[1] / patch)


def smallest_patch(size: tuple[int, int], start: int, max_patches: int = MAX_PATCHES) -> int:
    """The smallest patch of at least ``start`` px that cuts images of ``size`` (h, w) into
    at most ``max_patches`` patches (at most the shorter side: one patch per row then)."""
    h, w = int(size[0]), int(size[1])
    return next((p for p in range(start, min(h, w) + 1) if patch_count((h, w), p) <= max_patches),
                min(h, w))


def check_patch(patch: object, size: tuple[int, int], max_patches: int = MAX_PATCHES) -> int:
    """Refuse a repair patch size that does not fit the images or would take too long."""
    h, w = int(size[0]), int(size[1])
    patch = integer(patch, "patch", minimum=1)
    if patch > min(h, w):
        raise InputError(f"patch must be between 1 and {min(h, w)} px (the shorter side of the "
                         f"{w}x{h} px images), got {patch}.")
    n = patch_count((h, w), patch)
    if n > max_patches:
        raise InputError(f"patch {patch} px cuts the {w}x{h} px images into {n} patches; the "
                         f"repair scores every one of them, so at most {max_patches} are "
                         f"allowed: use a patch of at least "
                         f"{smallest_patch((h, w), patch, max_patches)} px, or name none "
                         f"(the default fits it to the image).")
    return patch


def resolve_patch(patch: object, size: tuple[int, int]) -> tuple[int, str | None]:
    """(the patch size, a sentence when the default was changed to fit the images).

    A named ``patch`` is checked (:func:`check_patch`) and kept. None is DEFAULT_PATCH, raised
    to the smallest patch that keeps the count within MAX_PATCHES, or lowered to the shorter
    side of images smaller than it; the sentence says so."""
    if patch is not None:
        return check_patch(patch, size), None
    h, w = int(size[0]), int(size[1])
    if min(h, w) < DEFAULT_PATCH:
        return min(h, w), (f"Repair patches are {min(h, w)} px, the shorter side of the {w}x{h} "
                           f"px images, not the default {DEFAULT_PATCH} px.")
    n = patch_count((h, w), DEFAULT_PATCH)
    if n <= MAX_PATCHES:
        return DEFAULT_PATCH, None
    fitted = smallest_patch((h, w), DEFAULT_PATCH)
    return fitted, (f"Repair patches are {fitted} px, not the default {DEFAULT_PATCH} px: "
                    f"{DEFAULT_PATCH} px patches would cut the {w}x{h} px images into {n}, "
                    f"and the repair scores at most {MAX_PATCHES} "
                    f"({patch_count((h, w), fitted)} now).")


def check_orders(orders: Sequence[str] | str) -> tuple[str, ...]:
    """Known order names, each once, in the given sequence (a "did you mean" on a typo)."""
    names = [orders] if isinstance(orders, str) else list(orders)
    if not names:
        raise InputError(f"Name at least one repair order: {', '.join(ORDERS)}.")
    return tuple(dict.fromkeys(lookup("repair order", n, {k: k for k in ORDERS})
                               for n in names))


def _patch_ids(size: tuple[int, int], patch: int, grid: tuple[int, int]) -> np.ndarray:
    h, w = size
    rows = np.arange(h) // patch
    cols = np.arange(w) // patch
    return rows[:, None] * grid[1] + cols[None, :]


def _patch_boxes(size: tuple[int, int], patch: int, grid: tuple[int, int]) -> list[Box]:
    """Each patch's pixels as a box (rows, columns), in patch-id order (row-major)."""
    h, w = size
    return [(r * patch, min(h, (r + 1) * patch), c * patch, min(w, (c + 1) * patch))
            for r in range(grid[0]) for c in range(grid[1])]


def _coarse_steps(n_patches: int, max_points: int) -> list[int]:
    if n_patches + 1 <= max_points:
        return list(range(n_patches + 1))
    return sorted(set(np.rint(np.linspace(0, n_patches, max_points)).astype(int).tolist()))


def _first_reaching(evaluated: dict[int, float], reached: Callable[[float], bool]
                    ) -> tuple[int, int] | None:
    """(k before, k at) the first evaluated k whose distance reaches the goal, or None."""
    ks = sorted(evaluated)
    for i, k in enumerate(ks):
        if reached(evaluated[k]):
            return (ks[i - 1] if i > 0 else k), k
    return None


def _rises(dist: np.ndarray, base: float) -> list[int]:
    tol = 1e-6 * max(float(base), 0.0) + 1e-9
    d = np.asarray(dist, dtype=np.float64)
    if d.size < 2:
        return []
    run_min = np.minimum.accumulate(d)
    return [int(j) for j in np.flatnonzero(d[1:] > run_min[:-1] + tol) + 1]


def _auc(area: np.ndarray, dist: np.ndarray, base: float) -> float:
    if base <= 0:
        return 0.0
    y = np.asarray(dist, dtype=np.float64) / base
    x = np.asarray(area, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def patch_sums(values: np.ndarray, size: tuple[int, int], patch: int) -> np.ndarray:
    """The sum of an H x W map over each patch, row-major (the last patches may be smaller)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != tuple(size):
        raise InputError(f"The ranking map is {values.shape[0]}x{values.shape[1]}, but the "
                         f"images are {size[0]}x{size[1]}: rank with a map of the image size.")
    if not np.isfinite(values).all():
        raise InputError("The ranking map holds NaN or Inf values.")
    grid = (math.ceil(size[0] / patch), math.ceil(size[1] / patch))
    ids = _patch_ids(size, patch, grid)
    return np.bincount(ids.ravel(), weights=values.ravel(), minlength=grid[0] * grid[1])


def ranked(scores: np.ndarray) -> np.ndarray:
    """Patch indices by descending score (ties: lower index first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


class _Batches:
    """Scores masked repairs of B in batches against A encoded once, reporting progress."""

    def __init__(self, scorer: ReferenceScorer, a: Tensor, b: Tensor, batch_size: int,
                 progress: Progress | None, total: int):
        self.scorer, self.a, self.b = scorer, a, b
        self.batch_size, self.progress = batch_size, progress
        self.done, self.total = 0, total

    def plan(self, more: int) -> None:
        self.total += more

    def boxes(self, base: Tensor, boxes: list[Box], label: str, *, with_base: bool = False
              ) -> np.ndarray | None:
        """Distances of copies of ``base`` with each box taken from A, each computed on the
        windows its box reaches (core/windowed.py, exact) when the trunk allows that and it
        costs at most LOCAL_MAX_COST of whole passes; None otherwise (score the masks).
        ``with_base``: row 0 is ``base`` itself, from the pass the windows start from."""
        net = self.scorer.net
        if (not boxes or not supports(net)
                or window_cost(net, (int(base.shape[-2]), int(base.shape[-1])), boxes)
                > LOCAL_MAX_COST):
            return None
        local = WindowedScorer(net, self.scorer.ref, base)
        first = 1 if with_base else 0
        out = np.empty(first + len(boxes), dtype=np.float64)
        if with_base:
            out[0] = local.distance()
            self._advance(1, label)
        for start in range(0, len(boxes), self.batch_size):
            part = boxes[start: start + self.batch_size]
            out[first + start: first + start + len(part)] = local.score(self.a, part).numpy()
            self._advance(len(part), label)
        return out

    def chains(self, boxes: list[Box], orders: Sequence[np.ndarray], label: str
               ) -> tuple[float, list[np.ndarray]] | None:
        """d(A, B) and, for each order of ``boxes``, the distances after taking the first k
        boxes from A, k = 1..len(boxes): each step from the one before, on the windows its
        box reaches (WindowedScorer.take, exact), when the trunk allows that, a box costs
        at most LOCAL_MAX_COST of a whole pass and an order's walk fewer whole passes than
        its points (walk_cost); None otherwise (score the masks)."""
        if not orders or (cost := self.walk_cost(boxes)) is None or cost >= len(boxes):
            return None
        start = WindowedScorer(self.scorer.net, self.scorer.ref, self.b)
        base = start.distance()
        self._advance(1, label)
        return base, [np.array(self.walk(start.copy(), [boxes[int(i)] for i in order],
                                         lambda d: False, label)) for order in orders]

    def walk_cost(self, boxes: Sequence[Box]) -> float | None:
        """What :meth:`walk` over ``boxes`` costs in whole passes, at most (every step taken);
        None where windows are not used (the trunk, or a box's windows over LOCAL_MAX_COST)."""
        net = self.scorer.net
        h, w = (int(self.b.shape[-2]), int(self.b.shape[-1]))
        if not boxes or not supports(net):
            return None
        share = window_cost(net, (h, w), boxes)  # one copy's, for the largest box
        if share > LOCAL_MAX_COST:
            return None
        return WALK_START + len(boxes) * (share + WALK_STEP_PIXELS / (h * w))

    def walk(self, start: Tensor | WindowedScorer, boxes: Sequence[Box],
             stop: Callable[[float], bool], label: str) -> list[float]:
        """The distances after taking each of ``boxes`` from A in turn, from the image
        ``start`` (or a scorer holding its pass, which the walk changes), each step on the
        windows its box reaches (WindowedScorer.take, exact); ends after the first
        distance that ``stop`` accepts."""
        chain = (start if isinstance(start, WindowedScorer)
                 else WindowedScorer(self.scorer.net, self.scorer.ref, start))
        out: list[float] = []
        for box in boxes:
            out.append(chain.take(self.a, box))
            self._advance(1, label)
            if stop(out[-1]):
                break
        return out

    def _advance(self, count: int, label: str) -> None:
        self.done += count
        self.total = max(self.total, self.done)
        if self.progress is not None:
            self.progress(self.done, self.total, label)

    def __call__(self, masks: Callable[[slice], Tensor], count: int, label: str) -> np.ndarray:
        out = np.empty(count, dtype=np.float64)
        for start in range(0, count, self.batch_size):
            sl = slice(start, min(start + self.batch_size, count))
            m = masks(sl).unsqueeze(1)  # K x 1 x H x W
            out[sl] = self.scorer(torch.where(m, self.a, self.b)).double().cpu().numpy()
            self._advance(sl.stop - sl.start, label)
        return out


def _blocks(grid: tuple[int, int], max_blocks: int | None) -> tuple[int, tuple[int, int]]:
    """The smallest block side f (in patches) whose block grid has at most ``max_blocks``."""
    f = 1
    while max_blocks is not None and math.ceil(grid[0] / f) * math.ceil(grid[1] / f) > max_blocks:
        f += 1
    return f, (math.ceil(grid[0] / f), math.ceil(grid[1] / f))


def _greedy(score: _Batches, ids: np.ndarray, patch: int, grid: tuple[int, int], base: float,
            single: np.ndarray, reached: Callable[[float], bool], budget: int,
            max_blocks: int | None, device: torch.device
            ) -> tuple[np.ndarray, dict[int, float], str, int]:
    """The true greedy order: after each pick, re-score every remaining patch (or block of
    patches) with those chosen so far, and take the one that leaves the smallest distance.

    Stops when the goal is reached, or before a pick would exceed ``budget`` evaluations;
    the remaining patches follow in single-patch gain order (so do the patches inside a
    picked block). Returns the order, the distances already measured at its steps, its
    label and the evaluations spent.
    """
    n = grid[0] * grid[1]
    f, bgrid = _blocks(grid, max_blocks)
    rows, cols = np.divmod(np.arange(n), grid[1])
    block_of = (rows // f) * bgrid[1] + cols // f
    pix = torch.from_numpy(block_of[ids]).to(device)  # H x W: block id of each pixel
    members = {int(g): [int(p) for p in single if block_of[p] == g] for g in np.unique(block_of)}
    h, w = ids.shape
    side = f * patch
    boxes = [(r * side, min(h, (r + 1) * side), c * side, min(w, (c + 1) * side))
             for r in range(bgrid[0]) for c in range(bgrid[1])]  # block g's pixels
    chosen = torch.zeros(bgrid[0] * bgrid[1], dtype=torch.bool, device=device)
    order: list[int] = []
    known: dict[int, float] = {}
    spent, current, picks = 0, base, 0
    stopped = False
    while picks < len(members) and not reached(current):
        remaining = torch.tensor([g for g in members if not bool(chosen[g])], device=device)
        cost = int(remaining.numel())
        if spent + cost > budget:
            stopped = True
            break
        score.plan(cost)
        done_pix = chosen[pix]
        label = f"repair: greedy search, pick {picks + 1}"
        current_image = torch.where(done_pix[None, None], score.a, score.b)
        d = score.boxes(current_image, [boxes[int(g)] for g in remaining], label)
        if d is None:
            d = score(lambda sl, r=remaining, m=done_pix: (pix[None] == r[sl, None, None])
                      | m[None], cost, label)
        spent += cost
        j = int(np.argmin(d))  # ties: the lowest index
        g = int(remaining[j])
        chosen[g] = True
        picks += 1
        order += members[g]
        current = float(d[j])
        known[len(order)] = current
    taken = set(order)
    rest = [int(p) for p in single if int(p) not in taken]
    unit = "patch" if f == 1 else "block"
    label = f"greedy (after each pick every remaining {unit} is re-scored)"
    if f > 1:
        label = (f"greedy over a {bgrid[0]}x{bgrid[1]} grid of blocks of up to {f}x{f} patches "
                 f"(after each pick every remaining block is re-scored; patches inside a block "
                 f"by single-patch gain)")
    if stopped:
        label += (f" for {picks} picks, stopped at the budget of {budget} evaluations; "
                  f"the rest by single-patch gain")
    elif rest:
        label += f" for {picks} picks until the goal was reached; the rest by single-patch gain"
    return np.array(order + rest, dtype=np.int64), known, label, spent


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
    if max_points is not None:
        max_points = integer(max_points, "max_points", minimum=2)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    greedy_budget = integer(greedy_budget, "greedy_budget", minimum=1)
    if greedy_blocks is not None:
        greedy_blocks = integer(greedy_blocks, "greedy_blocks", minimum=1)
    names = check_orders(orders)
    if "ranking" in names and ranking is None:
        raise InputError("The 'ranking' repair order needs a ranking map (H x W).")
    scorer = scorer_for(net, a, scorer)

    grid = (math.ceil(h / patch), math.ceil(w / patch))
    n = grid[0] * grid[1]
    ids = _patch_ids((h, w), patch, grid)
    sums = patch_sums(ranking, (h, w), patch) if "ranking" in names else None
    pix = torch.from_numpy(ids).to(a.device)
    counts = np.bincount(ids.ravel(), minlength=n)
    points = n if max_points is None else len(_coarse_steps(n, max_points)) - 1
    score = _Batches(scorer, a, b, batch_size, progress, 1 + n + points * len(names))

    boxes = _patch_boxes((h, w), patch, grid)
    with torch.no_grad():
        single = _single_patches(score, b, pix, boxes)
        base = float(single[0])
        gains_flat = base - single[1:]
        identical = bool(torch.equal(a, b)) or base <= 0.0
        target = base / 2 if goal is None else float(goal)

        def reached(d: float) -> bool:
            return d < target if strict else d <= target

        single_order = ranked(gains_flat)
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
                order, greedy_known, label, spent = _greedy(
                    score, ids, patch, grid, base, single_order,
                    lambda d: identical or reached(d),
                    greedy_budget, greedy_blocks, a.device)
                known.update(greedy_known)
            tried.append(_evaluate_order(score, pix, counts, order, known, name, label,
                                         max_points, reached, identical, base, spent,
                                         boxes))

    best = min(tried, key=lambda o: (o.goal_area if o.goal_area is not None else math.inf,
                                     o.auc))
    half_k, half_area = (None, None) if identical else _halving(best, base)
    rises = _rises(best.distances, base)
    headline = _headline(identical, base, best, half_k, half_area, n, patch)
    notes = _orders_note(tried, identical, goal, strict, target)
    notes += _curve_notes(best, (h, w), patch, n, base, rises, identical)
    tol = 1e-6 * max(base, 0.0) + 1e-9
    negative = int((gains_flat < -tol).sum())
    if negative and not identical:
        notes.append(f"{negative} of {n} patches have a negative gain: replacing one of them "
                     "alone by A's raises the distance.")

    return Repair(
        patch=patch, grid=grid, base_distance=base, gains=gains_flat.reshape(grid),
        order=best.order, curve_area=best.areas, curve_distance=best.distances,
        curve_steps=best.steps, non_monotonic=bool(rises), half_area=half_area,
        headline=headline, notes=tuple(notes), size=(h, w), order_name=best.name,
        order_label=best.label, orders_tried=tuple(tried), goal=None if identical else target)


def _single_patches(score: _Batches, b: Tensor, pix: Tensor, boxes: list[Box]) -> np.ndarray:
    """The distance with each single patch (``boxes``) of B replaced by A's, after row 0: B
    itself (nothing replaced), its distance from the same batches or from the pass of B the
    windows start from."""
    n = len(boxes)
    label = "repair: single patches"
    single = score.boxes(b, boxes, label, with_base=True)
    if single is None:
        single_ids = torch.arange(-1, n, device=b.device)
        single = score(lambda sl: pix[None] == single_ids[sl, None, None], n + 1, label)
    return single


def _halving(best: RepairOrder, base: float) -> tuple[int | None, float | None]:
    """The fewest patches of ``best`` (and their area) that bring the distance to half."""
    hit = np.flatnonzero(best.distances <= base / 2)
    if not hit.size:
        return None, None
    return int(best.steps[hit[0]]), float(best.areas[hit[0]])


def _headline(identical: bool, base: float, best: RepairOrder, half_k: int | None,
              half_area: float | None, n: int, patch: int) -> str:
    if identical:
        return "A and B are identical: there is no distance to locate."
    if half_area is None:
        # Only possible when d is at float-noise level: even A itself does not score below d/2.
        return (f"The distance ({base:.3g}) is too small to locate: no repair of B "
                "scores below half of it.")
    return (f"Repairing {pct(half_area)} of the area ({half_k} of {n} patches of {patch} px, "
            f"ranked by {RANKED_BY.get(best.name, best.name)}) halves the distance; another "
            f"order may need less.")


def _orders_note(tried: list[RepairOrder], identical: bool, goal: float | None, strict: bool,
                 target: float) -> list[str]:
    """How many patches each order tried needed to reach the goal (when more than one ran)."""
    if len(tried) <= 1 or identical:
        return []
    parts = [f"{o.name.replace('_', ' ')}: "
             + (f"{o.goal_steps} patches" if o.goal_steps is not None else "never")
             for o in tried]
    what = "halve the distance" if goal is None else (
        f"bring the distance {'below' if strict else 'to'} {target:.4g}")
    return [f"Orders tried (patches needed to {what}): " + "; ".join(parts) + "."]


def _curve_notes(best: RepairOrder, size: tuple[int, int], patch: int, n: int, base: float,
                 rises: list[int], identical: bool) -> list[str]:
    """Notes on the patch grid and on the monotonicity of the shown curve."""
    h, w = size
    steps, dist, area = best.steps, best.distances, best.areas
    notes: list[str] = []
    if h % patch or w % patch:
        notes.append(f"The {h}x{w} image is not a multiple of {patch} px: the last row or "
                     "column of patches is smaller; areas count real pixels.")
    checked = ("every step" if len(steps) == n + 1 else
               f"the {len(steps)} evaluated steps of {n + 1}")
    if rises:
        j = rises[0]
        i = int(np.argmin(dist[:j]))
        notes.append(
            f"The repair curve is not monotonic: with {pct(area[j])} of the area repaired "
            f"({steps[j]} patches) the distance is {dist[j]:.4g}, above the {dist[i]:.4g} "
            f"already reached at {pct(area[i])} ({steps[i]} patches); checked at {checked}. "
            "Pasting A's patches into B can create seams that add distance.")
    elif len(steps) != n + 1 and not identical:
        notes.append(f"Monotonicity was checked at {checked} only: the curve may rise "
                     "between them.")
    return notes


def _repaired_area(counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The share of the image repaired after the first k patches of ``order``, k = 0..P
    (``counts``: each patch's pixels; edge patches are smaller)."""
    return np.concatenate([[0.0], np.cumsum(counts[order])]) / counts.sum()


def _rounds_cost(m: int, max_points: int) -> int:
    """Whole passes that refining rounds spend on a bracket of ``m`` patches, at most."""
    passes = 0
    while m > 1:
        ks = _coarse_steps(m, max_points)
        passes += len(ks) - 2
        m = int(np.diff(ks).max())
    return passes


def _evaluate_order(score: _Batches, pix: Tensor, counts: np.ndarray, order: np.ndarray,
                    known: dict[int, float], name: str, label: str, max_points: int | None,
                    reached: Callable[[float], bool], identical: bool, base: float,
                    spent: int, boxes: Sequence[Box] | None = None) -> RepairOrder:
    """The curve of one order: d after the first k patches, at every k (or coarse + refined
    around the goal with ``max_points``); points already measured are reused. Given the
    patches' ``boxes``, runs of consecutive k are walked on windows where that costs fewer
    whole passes (_Batches.walk): the whole curve, or a bracket scanned up to the goal."""
    n = order.size
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    pix_rank = torch.from_numpy(rank).to(pix.device)[pix]
    evaluated = dict(known)
    evaluations = spent

    def evaluate(ks: list[int], what: str) -> None:
        nonlocal evaluations
        ks = [k for k in ks if k not in evaluated]
        if not ks:
            return
        kt = torch.tensor(ks, device=pix.device)
        d = score(lambda sl: pix_rank[None] < kt[sl, None, None], len(ks),
                  f"repair: {what}")
        evaluations += len(ks)
        evaluated.update(zip(ks, d.tolist(), strict=True))

    def walk(lo: int, hi: int, stop: Callable[[float], bool], what: str) -> bool:
        """d at k = lo+1..hi (up to the first that ``stop`` accepts) on windows from the
        image at k = lo, if that costs fewer whole passes than the points or refining rounds
        it replaces; whether it was walked."""
        nonlocal evaluations
        while lo < hi and lo + 1 in evaluated:  # start after the points already measured
            lo += 1
        steps = [boxes[int(i)] for i in order[lo: hi]] if boxes is not None else []
        cost = score.walk_cost(steps)
        todo = sum(k not in evaluated for k in range(lo + 1, hi + 1))
        rounds = todo if max_points is None else _rounds_cost(hi - lo, max_points)
        if cost is None or cost >= rounds:
            return False
        start = torch.where((pix_rank < lo)[None, None], score.a, score.b)
        if max_points is not None:
            score.plan(len(steps))  # the progress bar's total: every step, until one stops
        d = score.walk(start, steps, stop, f"repair: {what}")
        if max_points is not None:
            score.plan(len(d) - len(steps))
        evaluations += len(d)
        for k, v in enumerate(d, lo + 1):
            evaluated.setdefault(k, v)  # a point measured before keeps its whole-pass value
        return True

    title = f"{name.replace('_', ' ')} order curve"
    first = list(range(n + 1)) if max_points is None else _coarse_steps(n, max_points)
    # The plan counted every point but k = 0; points already measured cost nothing.
    score.plan(sum(k not in evaluated for k in first) - (len(first) - 1))
    if max_points is not None or not walk(0, n, lambda d: False, title):
        evaluate(first, title)
    if max_points is not None and not identical:
        # Narrow the bracket around the first point reaching the goal to one patch.
        while (bracket := _first_reaching(evaluated, reached)) is not None:
            lo, hi = bracket
            if hi - lo <= 1:
                break
            # k = hi is known to reach the goal: walk lo+1..hi-1 until one does.
            if walk(lo, hi - 1, reached, f"{title}, refining"):
                continue
            ks = [lo + k for k in _coarse_steps(hi - lo, max_points)[1:-1]]
            score.plan(sum(k not in evaluated for k in ks))
            evaluate(ks, f"{title}, refining")
    steps = np.array(sorted(evaluated), dtype=np.int64)
    dist = np.array([evaluated[k] for k in steps], dtype=np.float64)
    area = _repaired_area(counts, order)[steps]
    goal_steps = goal_area = None
    if not identical:
        hit = next((i for i, d in enumerate(dist) if reached(d)), None)
        if hit is not None:
            goal_steps, goal_area = int(steps[hit]), float(area[hit])
    return RepairOrder(name, label, order, steps, dist, area, goal_steps, goal_area,
                       _auc(area, dist, base), evaluations)


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
    grid = (math.ceil(h / patch), math.ceil(w / patch))
    n = grid[0] * grid[1]
    ids = _patch_ids((h, w), patch, grid)
    pix = torch.from_numpy(ids).to(a.device)
    counts = np.bincount(ids.ravel(), minlength=n)
    score = _Batches(scorer, a, b, integer(batch_size, "batch_size", minimum=1), progress,
                     1 + n * len(orders))
    orders = [np.asarray(order, dtype=np.int64) for order in orders]
    for order in orders:
        if sorted(order.tolist()) != list(range(n)):
            raise InputError(f"An order must list each of the {n} patches once.")
    # Each point differs from the one before in one patch: where windows are cheaper
    # (walk_cost), each order is a chain of windowed steps from B (the deletion check's
    # curves 5.2x faster at 600x400, 9.7x at 1920x1280: bench_local.py --curves); else every
    # point is a whole pass.
    chained = score.chains(_patch_boxes((h, w), patch, grid), orders, label)
    if chained is not None:
        base, steps = chained
        return base, [(_repaired_area(counts, order), np.concatenate([[base], d]))
                      for order, d in zip(orders, steps, strict=True)]
    out = []
    with torch.no_grad():
        base = float(score(lambda sl: pix[None] < 0, 1, label)[0])  # nothing replaced: B
        for order in orders:
            o = _evaluate_order(score, pix, counts, order, {0: base}, "given", label, None,
                                lambda d: False, False, base, 0)
            out.append((o.areas, o.distances))
    return base, out


def curve_auc(area: np.ndarray, distance: np.ndarray, base: float) -> float:
    """Area under d / d(a, b) against the repaired area (trapezoid): lower falls faster."""
    return _auc(area, distance, base)

"""What a repair returns: :class:`Repair` and one :class:`RepairOrder` per order tried, the
order names (``ORDERS``) and the test of a rise on a curve that both use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.inputs import check_image
from lpips_explain.analyses.pair.repair.patches import patch_ids, repaired_area
from lpips_explain.errors import InputError, SizeMismatchError, lookup

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
SINGLE_GAIN_LABEL = "single-patch gain (patches ranked once by how much replacing each alone " \
                    "lowers the distance)"


def default_orders(ranking: bool) -> tuple[str, ...]:
    """The orders an explanation tries when none are named: single-patch gain, and the
    attribution map's ranking when one is computed alongside (its curve costs one pass per
    patch). On the published alex trunk the ranking by integrated gradients needed 38.5% of
    the area to halve the distance against single-patch gain's 46.9% (3 bundled pairs at
    256 px), and the true greedy search 42.2% at 7x the repair time: docs/faithfulness.md."""
    return ("single_gain", "ranking") if ranking else ("single_gain",)


def check_orders(orders: Sequence[str] | str) -> tuple[str, ...]:
    """Known order names, each once, in the given sequence (a "did you mean" on a typo)."""
    names = [orders] if isinstance(orders, str) else list(orders)
    if not names:
        raise InputError(f"Name at least one repair order: {', '.join(ORDERS)}.")
    return tuple(dict.fromkeys(lookup("repair order", n, {k: k for k in ORDERS})
                               for n in names))


def rises(dist: np.ndarray, base: float) -> list[int]:
    """Indices j of the points of a curve above the lowest distance reached before them; a
    rise smaller than float32 noise on ``base`` (the distance before any repair) is none."""
    tol = 1e-6 * max(float(base), 0.0) + 1e-9
    d = np.asarray(dist, dtype=np.float64)
    if d.size < 2:
        return []
    run_min = np.minimum.accumulate(d)
    return [int(j) for j in np.flatnonzero(d[1:] > run_min[:-1] + tol) + 1]


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
        return patch_ids(self.size, self.patch, self.grid)

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
        return rises(self.curve_distance, self.base_distance)

    def areas(self) -> np.ndarray:
        """Area fraction repaired after the first k patches in order, for k = 0..P."""
        counts = np.bincount(self._pixel_patch().ravel(), minlength=self.grid[0] * self.grid[1])
        return repaired_area(counts, self.order)

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


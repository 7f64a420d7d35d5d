"""Patch repair: which patches of B hold the distance, found by replacing them with A's pixels.

Every point of the curve is a real distance of a real repaired image, scored in batches
against A encoded once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.common import (
    Progress,
    check_image,
    check_int,
    check_pair,
    pct,
    scorer_for,
)
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.errors import InputError, SizeMismatchError

# --- repair -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repair:
    """Where the distance lives: replace patches of B by A's and measure what remains.

    Patches are numbered row-major over a ``grid`` of (rows, cols); the last row and column
    are smaller when the image does not divide evenly, and areas count their real pixels.
    """

    patch: int  # patch size in px
    grid: tuple[int, int]  # (rows, cols) of patches
    base_distance: float
    gains: np.ndarray  # rows x cols: d(a,b) - d(a, b with that one patch replaced by a's)
    order: np.ndarray  # patch flat indices in greedy order (descending single-patch gain)
    curve_area: np.ndarray  # fraction of the image area repaired at each evaluated point
    curve_distance: np.ndarray  # true d after repairing the first k patches, evaluated
    curve_steps: np.ndarray  # k at each point
    non_monotonic: bool  # repairing more raised the distance somewhere on the curve
    half_area: float | None  # smallest evaluated area with distance <= d/2 (None if d == 0)
    headline: str
    notes: tuple[str, ...]
    size: tuple[int, int]  # (H, W) of the images

    def _pixel_patch(self) -> np.ndarray:
        return _patch_ids(self.size, self.patch, self.grid)

    def areas(self) -> np.ndarray:
        """Area fraction repaired after the first k patches in order, for k = 0..P."""
        counts = np.bincount(self._pixel_patch().ravel(), minlength=self.grid[0] * self.grid[1])
        return np.concatenate([[0.0], np.cumsum(counts[self.order])]) / counts.sum()

    def steps_for_area(self, area: float) -> int:
        """The smallest k whose first k patches cover at least ``area`` of the image."""
        if not 0.0 <= float(area) <= 1.0:
            raise InputError(f"area must be a fraction in [0, 1], got {area!r}.")
        cum = self.areas()
        return int(np.searchsorted(cum, float(area) - 1e-12, side="left"))

    def mask(self, steps: int) -> np.ndarray:
        """H x W booleans: True on the first ``steps`` patches in greedy order."""
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
        return {
            "patch": self.patch, "grid": list(self.grid), "size": list(self.size),
            "base_distance": self.base_distance,
            "gains": self.gains.tolist(),
            "order": [int(i) for i in self.order],
            "curve": [{"area": float(s), "distance": float(d), "steps": int(k)}
                      for s, d, k in zip(self.curve_area, self.curve_distance, self.curve_steps,
                                         strict=True)],
            "non_monotonic": self.non_monotonic, "half_area": self.half_area,
            "headline": self.headline, "notes": list(self.notes),
        }


MAX_PATCHES = 1024  # each patch costs one trunk pass; 1024 is 32x32 patches of 8 px at 256 px


def check_patch(patch: object, size: tuple[int, int], max_patches: int = MAX_PATCHES) -> int:
    """Refuse a repair patch size that does not fit the images or would take too long."""
    h, w = int(size[0]), int(size[1])
    patch = check_int(patch, "patch", 1)
    if patch > min(h, w):
        raise InputError(f"patch must be between 1 and {min(h, w)} px (the shorter side of the "
                         f"{w}x{h} px images), got {patch}.")
    n = math.ceil(h / patch) * math.ceil(w / patch)
    if n > max_patches:
        smallest = next(p for p in range(patch, min(h, w) + 1)
                        if math.ceil(h / p) * math.ceil(w / p) <= max_patches)
        raise InputError(f"patch {patch} px cuts the {w}x{h} px images into {n} patches; the "
                         f"repair scores every one of them, so at most {max_patches} are "
                         f"allowed: use a patch of at least {smallest} px.")
    return patch


def _patch_ids(size: tuple[int, int], patch: int, grid: tuple[int, int]) -> np.ndarray:
    h, w = size
    rows = np.arange(h) // patch
    cols = np.arange(w) // patch
    return rows[:, None] * grid[1] + cols[None, :]


def _coarse_steps(n_patches: int, max_points: int) -> list[int]:
    if n_patches + 1 <= max_points:
        return list(range(n_patches + 1))
    return sorted(set(np.rint(np.linspace(0, n_patches, max_points)).astype(int).tolist()))


def _half_bracket(evaluated: dict[int, float], target: float) -> tuple[int, int] | None:
    """(k before, k at) the first evaluated k whose distance is <= target, or None."""
    ks = sorted(evaluated)
    for i, k in enumerate(ks):
        if evaluated[k] <= target:
            return (ks[i - 1] if i > 0 else k), k
    return None


def repair(net: LpipsNet, a: Tensor, b: Tensor, *, patch: int = 32, max_points: int = 33,
           batch_size: int = 16, scorer: ReferenceScorer | None = None,
           progress: Progress | None = None) -> Repair:
    """Replace B's patches with A's: single-patch gains and the greedy repair curve.

    Gains are Occlusion with A as the baseline: d(a, b) - d(a, b with patch p from a), all
    patches in one batched evaluation. The curve repairs patches in descending order of gain
    and evaluates d for real at k = 0..P repaired patches, or at ``max_points`` values of k
    spread over 0..P, refined around the point where half of d is gone so that
    ``half_area`` is exact at patch resolution. ``progress(done, total, label)`` follows each
    batch; ``total`` grows once when that refinement is planned.
    """
    a, b = check_pair(net, a, b)
    h, w = int(a.shape[-2]), int(a.shape[-1])
    patch = check_patch(patch, (h, w))
    max_points = check_int(max_points, "max_points", 2)
    batch_size = check_int(batch_size, "batch_size", 1)
    scorer = scorer_for(net, a, scorer)

    grid = (math.ceil(h / patch), math.ceil(w / patch))
    n = grid[0] * grid[1]
    ids = _patch_ids((h, w), patch, grid)
    pix = torch.from_numpy(ids).to(a.device)
    counts = np.bincount(ids.ravel(), minlength=n)

    state = {"done": 0, "total": 1 + n + len(_coarse_steps(n, max_points)) - 1}

    def score_masks(masks: Callable[[slice], Tensor], count: int, label: str) -> np.ndarray:
        out = np.empty(count, dtype=np.float64)
        for start in range(0, count, batch_size):
            sl = slice(start, min(start + batch_size, count))
            m = masks(sl).unsqueeze(1)  # K x 1 x H x W
            out[sl] = scorer(torch.where(m, a, b)).double().cpu().numpy()
            state["done"] += sl.stop - sl.start
            if progress is not None:
                progress(state["done"], state["total"], label)
        return out

    with torch.no_grad():
        # Row 0 is B itself (nothing replaced): the base distance comes from the same batches.
        single_ids = torch.arange(-1, n, device=a.device)
        single = score_masks(lambda sl: pix[None] == single_ids[sl, None, None], n + 1,
                             "repair: single patches")
        base = float(single[0])
        gains_flat = base - single[1:]
        order = np.argsort(-gains_flat, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        pix_rank = torch.from_numpy(rank[ids]).to(a.device)
        cum_area = np.concatenate([[0.0], np.cumsum(counts[order])]) / (h * w)

        evaluated: dict[int, float] = {0: base}  # k = 0 is B itself, already scored

        def evaluate(ks: list[int], label: str) -> None:
            ks = [k for k in ks if k not in evaluated]
            if not ks:
                return
            kt = torch.tensor(ks, device=a.device)
            d = score_masks(lambda sl: pix_rank[None] < kt[sl, None, None], len(ks), label)
            evaluated.update(zip(ks, d.tolist(), strict=True))

        evaluate(_coarse_steps(n, max_points), "repair: curve")
        identical = bool(torch.equal(a, b)) or base <= 0.0
        if not identical:
            # Narrow the bracket around the first crossing of d/2 until it spans one patch.
            while (bracket := _half_bracket(evaluated, base / 2)) is not None:
                lo, hi = bracket
                if hi - lo <= 1:
                    break
                inner = _coarse_steps(hi - lo, max_points)[1:-1]
                ks = [lo + k for k in inner]
                state["total"] += len(ks)
                evaluate(ks, "repair: refining the half point")

    steps = np.array(sorted(evaluated), dtype=np.int64)
    dist = np.array([evaluated[k] for k in steps], dtype=np.float64)
    area = cum_area[steps]

    half_area: float | None = None
    half_k: int | None = None
    bracket = None if identical else _half_bracket(evaluated, base / 2)
    if bracket is not None:
        half_k = bracket[1]
        half_area = float(cum_area[half_k])

    # A rise smaller than float32 noise on d is not a rise; anything larger is reported.
    tol = 1e-6 * max(base, 0.0) + 1e-9
    run_min = np.minimum.accumulate(dist)
    rises = dist[1:] - run_min[:-1]
    non_monotonic = bool(rises.size and rises.max() > tol)

    notes: list[str] = []
    if identical:
        headline = "A and B are identical: there is no distance to locate."
    elif half_area is None:
        # Only possible when d is at float-noise level: even A itself does not score below d/2.
        headline = (f"The distance ({base:.3g}) is too small to locate: no repair of B "
                    "scores below half of it.")
    else:
        headline = (f"Half of the distance lies in {pct(half_area)} of the image area "
                    f"({half_k} of {n} patches of {patch} px).")
    if h % patch or w % patch:
        notes.append(f"The {h}x{w} image is not a multiple of {patch} px: the last row or "
                     "column of patches is smaller; areas count real pixels.")
    if non_monotonic:
        j = int(np.argmax(rises)) + 1
        i = int(np.argmin(dist[:j]))
        notes.append(
            f"The repair curve is not monotonic: with {pct(area[j])} of the area repaired "
            f"({steps[j]} patches) the distance is {dist[j]:.4g}, above the {dist[i]:.4g} "
            f"already reached at {pct(area[i])} ({steps[i]} patches). Pasting A's patches "
            "into B can create seams that add distance.")
    negative = int((gains_flat < -tol).sum())
    if negative and not identical:
        notes.append(f"{negative} of {n} patches have a negative gain: replacing one of them "
                     "alone by A's raises the distance.")

    return Repair(
        patch=patch, grid=grid, base_distance=base, gains=gains_flat.reshape(grid),
        order=order, curve_area=area, curve_distance=dist, curve_steps=steps,
        non_monotonic=non_monotonic, half_area=half_area, headline=headline,
        notes=tuple(notes), size=(h, w))

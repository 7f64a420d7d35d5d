"""The patch grid of a repair: patch sizes that fit the images, each patch's pixels and boxes,
and the sums of a map over the patches (the ``ranking`` order)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lpips_explain.core.windowed import Box
from lpips_explain.errors import InputError
from lpips_explain.validation import integer

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


def patch_grid(size: tuple[int, int], patch: int) -> tuple[int, int]:
    """(rows, cols) of the patches of ``patch`` px that cut images of ``size`` (h, w)."""
    return math.ceil(size[0] / patch), math.ceil(size[1] / patch)


def patch_ids(size: tuple[int, int], patch: int, grid: tuple[int, int]) -> np.ndarray:
    """H x W: the index of each pixel's patch, row-major over ``grid`` (rows, cols)."""
    h, w = size
    rows = np.arange(h) // patch
    cols = np.arange(w) // patch
    return rows[:, None] * grid[1] + cols[None, :]


def patch_boxes(size: tuple[int, int], patch: int, grid: tuple[int, int]) -> list[Box]:
    """Each patch's pixels as a box (rows, columns), in patch-id order (row-major)."""
    h, w = size
    return [(r * patch, min(h, (r + 1) * patch), c * patch, min(w, (c + 1) * patch))
            for r in range(grid[0]) for c in range(grid[1])]


def repaired_area(counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The share of the image repaired after the first k patches of ``order``, k = 0..P
    (``counts``: each patch's pixels; edge patches are smaller)."""
    return np.concatenate([[0.0], np.cumsum(counts[order])]) / counts.sum()


@dataclass(frozen=True)
class PatchGrid:
    """Images of ``size`` (h, w) cut into patches of ``patch`` px, row-major over ``grid``."""

    size: tuple[int, int]
    patch: int
    grid: tuple[int, int]  # (rows, cols) of patches
    ids: np.ndarray  # H x W: each pixel's patch index
    pix: Tensor  # the same, on the images' device
    counts: np.ndarray  # each patch's pixels (the last row and column may be smaller)
    boxes: list[Box]  # each patch's pixels as a box, in patch-id order

    @classmethod
    def of(cls, size: tuple[int, int], patch: int, device: torch.device) -> PatchGrid:
        grid = patch_grid(size, patch)
        ids = patch_ids(size, patch, grid)
        return cls(size, patch, grid, ids, torch.from_numpy(ids).to(device),
                   np.bincount(ids.ravel(), minlength=grid[0] * grid[1]),
                   patch_boxes(size, patch, grid))

    @property
    def n(self) -> int:
        """How many patches."""
        return self.grid[0] * self.grid[1]


def patch_sums(values: np.ndarray, size: tuple[int, int], patch: int) -> np.ndarray:
    """The sum of an H x W map over each patch, row-major (the last patches may be smaller)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != tuple(size):
        raise InputError(f"The ranking map is {values.shape[0]}x{values.shape[1]}, but the "
                         f"images are {size[0]}x{size[1]}: rank with a map of the image size.")
    if not np.isfinite(values).all():
        raise InputError("The ranking map holds NaN or Inf values.")
    grid = patch_grid(size, patch)
    ids = patch_ids(size, patch, grid)
    return np.bincount(ids.ravel(), weights=values.ravel(), minlength=grid[0] * grid[1])


def ranked(scores: np.ndarray) -> np.ndarray:
    """Patch indices by descending score (ties: lower index first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")

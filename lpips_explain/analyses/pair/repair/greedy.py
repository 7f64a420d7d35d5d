"""The ``greedy`` repair order: after each pick, every remaining patch (or block of patches)
is re-scored with those chosen so far, and the one that leaves the smallest distance taken."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.pair.repair.patches import PatchGrid, patch_boxes
from lpips_explain.analyses.pair.repair.scoring import RepairBatches
from lpips_explain.core.windowed import Box

# The true greedy search re-scores every remaining patch after each pick: up to P(P+1)/2
# trunk passes. It stops once the goal is reached, or when this many were spent.
GREEDY_BUDGET = 4096


def greedy_order(score: RepairBatches, cut: PatchGrid, base: float, single: np.ndarray,
                 reached: Callable[[float], bool], budget: int, max_blocks: int | None,
                 device: torch.device) -> tuple[np.ndarray, dict[int, float], str, int]:
    """The true greedy order: after each pick, re-score every remaining patch (or block of
    patches) with those chosen so far, and take the one that leaves the smallest distance.

    Stops when the goal is reached, or before a pick would exceed ``budget`` evaluations;
    the remaining patches follow in single-patch gain order (so do the patches inside a
    picked block). Returns the order, the distances already measured at its steps, its
    label and the evaluations spent.
    """
    n = cut.n
    f, bgrid = _blocks(cut.grid, max_blocks)
    rows, cols = np.divmod(np.arange(n), cut.grid[1])
    block_of = (rows // f) * bgrid[1] + cols // f
    pix = torch.from_numpy(block_of[cut.ids]).to(device)  # H x W: block id of each pixel
    members = {int(g): [int(p) for p in single if block_of[p] == g] for g in np.unique(block_of)}
    boxes = patch_boxes(cut.size, f * cut.patch, bgrid)  # block g's pixels
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
        d = _rescore(score, pix, chosen, boxes, remaining,
                     f"repair: greedy search, pick {picks + 1}")
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
    label = _label(f, bgrid, picks, budget, stopped, bool(rest))
    return np.array(order + rest, dtype=np.int64), known, label, spent


def _blocks(grid: tuple[int, int], max_blocks: int | None) -> tuple[int, tuple[int, int]]:
    """The smallest block side f (in patches) whose block grid has at most ``max_blocks``."""
    f = 1
    while max_blocks is not None and math.ceil(grid[0] / f) * math.ceil(grid[1] / f) > max_blocks:
        f += 1
    return f, (math.ceil(grid[0] / f), math.ceil(grid[1] / f))


def _rescore(score: RepairBatches, pix: Tensor, chosen: Tensor, boxes: list[Box],
             remaining: Tensor, label: str) -> np.ndarray:
    """The distance with each ``remaining`` block taken from A along with the ``chosen``
    ones (``pix``: each pixel's block), on windows where they are cheaper."""
    cost = int(remaining.numel())
    score.plan(cost)
    done_pix = chosen[pix]
    current_image = torch.where(done_pix[None, None], score.a, score.b)
    d = score.boxes(current_image, [boxes[int(g)] for g in remaining], label)
    if d is None:
        d = score(lambda sl: (pix[None] == remaining[sl, None, None]) | done_pix[None],
                  cost, label)
    return d


def _label(f: int, bgrid: tuple[int, int], picks: int, budget: int, stopped: bool,
           rest: bool) -> str:
    """What the greedy order was, for people: patches or blocks, and where it stopped."""
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
    return label

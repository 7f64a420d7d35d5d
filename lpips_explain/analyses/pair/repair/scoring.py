"""Scoring repaired copies of B against A encoded once: :class:`RepairBatches` scores masks in
batches, or, where that costs fewer whole passes, each copy on the windows its patch reaches
(core/windowed.py, exact), one copy or a walk of copies at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from lpips_explain.core.model import ReferenceScorer
from lpips_explain.core.windowed import Box, WindowedScorer, supports, window_cost
from lpips_explain.validation import Progress

# Copies of an image with one patch (or block) replaced are scored on the windows the patch
# reaches (core/windowed.py, exact) when that costs at most this share of whole trunk passes.
# benchmarks/bench_local.py, whole / windowed time: alex 256 px, 32 px patches (share 0.35)
# 2.4x; alex 192/32 (0.54) 1.35x; vgg 96/32 (0.59) 1.17x; vgg 64/32 (0.66) 0.70x; alex
# 128/32 (0.74) 0.81x: near 1 the crops' overhead makes the windows slower.
LOCAL_MAX_COST = 0.6
# A walk (RepairBatches.walk: one image after another, each one box more from A, on
# windows) costs about WALK_START whole passes to start (a pass keeping every layer input),
# then per step its windows' share of a whole pass's multiply-adds plus a fixed cost worth a
# whole pass over WALK_STEP_PIXELS pixels (ten small convolutions and their bookkeeping,
# about 8 ms here). Measured on alex, a step in whole passes: 600x400 with 32 px boxes
# (share 0.06) 0.15, with a 123 px box in the middle (share 0.22) 0.29; 256x256 with 32 px
# boxes (share 0.36) 0.52; 1920x1280 with 60 px boxes 0.023. The start: 1.14-1.39 passes.
WALK_START = 1.4
WALK_STEP_PIXELS = 25_000


class RepairBatches:
    """Scores masked repairs of B in batches against A encoded once, reporting progress."""

    def __init__(self, scorer: ReferenceScorer, a: Tensor, b: Tensor, batch_size: int,
                 progress: Progress | None, total: int):
        self.scorer, self.a, self.b = scorer, a, b
        self.batch_size, self.progress = batch_size, progress
        self.done, self.total = 0, total
        self._differs: Tensor | None = None
        self._b_distance: float | None = None

    @property
    def differs(self) -> Tensor:
        """H x W: True where A and B differ in any channel. A copy of B takes only these
        pixels from A that change it: a copy with none of them is B, one with all is A."""
        if self._differs is None:
            self._differs = (self.a != self.b).flatten(0, 1).any(dim=0)
        return self._differs

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
        # A box whose pixels are A's already leaves the copy equal to ``base``: its distance
        # is base's, exactly, with no windows run (most boxes of a local edit).
        moving = [i for i, box in enumerate(boxes) if _moves(self.a, base, box)]
        out[first:] = local.distance()
        self._advance(len(boxes) - len(moving), label)
        for start in range(0, len(moving), self.batch_size):
            rows = moving[start: start + self.batch_size]
            out[[first + i for i in rows]] = local.score(
                self.a, [boxes[i] for i in rows]).numpy()
            self._advance(len(rows), label)
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
                                         lambda d: False, label, image=self.b))
                      for order in orders]

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
             stop: Callable[[float], bool], label: str, *, image: Tensor | None = None
             ) -> list[float]:
        """The distances after taking each of ``boxes`` from A in turn, from the image
        ``start`` (or a scorer holding its pass, which the walk changes: ``image`` is the
        image it holds), each step on the windows its box reaches (WindowedScorer.take,
        exact); ends after the first distance that ``stop`` accepts. A step whose box holds
        A's pixels already leaves the image as it was: its distance is the one before,
        exactly, with no windows run."""
        if isinstance(start, WindowedScorer):
            chain = start
        else:
            chain, image = WindowedScorer(self.scorer.net, self.scorer.ref, start), start
        current = image.clone() if image is not None else None
        last = chain.distance()
        out: list[float] = []
        for box in boxes:
            if current is None or _moves(self.a, current, box):
                last = chain.take(self.a, box)
                if current is not None:
                    y0, y1, x0, x1 = box
                    current[..., y0:y1, x0:x1] = self.a[..., y0:y1, x0:x1]
            out.append(last)
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
        """d(A, copy) of each copy of B taking ``masks(rows)`` (K x H x W) from A. A copy that
        takes every pixel where A and B differ is A (d = 0 exactly); one that takes none is
        B (its distance scored once): neither runs the trunk."""
        out = np.empty(count, dtype=np.float64)
        differs = self.differs
        changed = int(differs.sum())
        for start in range(0, count, self.batch_size):
            sl = slice(start, min(start + self.batch_size, count))
            m = masks(sl)
            covered = (m & differs).flatten(1).sum(dim=1).tolist()
            rows = []
            for i, c in enumerate(covered):
                if c == changed:
                    out[start + i] = 0.0
                elif c == 0 and self._b_distance is not None:
                    out[start + i] = self._b_distance
                else:
                    rows.append(i)
            if rows:
                pick = torch.tensor(rows, device=m.device)
                d = self.scorer(torch.where(m[pick].unsqueeze(1), self.a, self.b))
                for i, v in zip(rows, d.double().cpu().tolist(), strict=True):
                    out[start + i] = v
                    if covered[i] == 0:
                        self._b_distance = v
            self._advance(sl.stop - sl.start, label)
        return out


def _moves(a: Tensor, image: Tensor, box: Box) -> bool:
    """Whether taking ``box`` from ``a`` changes ``image``."""
    y0, y1, x0, x1 = box
    return not torch.equal(a[..., y0:y1, x0:x1], image[..., y0:y1, x0:x1])

"""Is an attribution map faithful to LPIPS? Measured, not asserted.

Three checks per method (docs/architecture.md#faithfulness):

- deletion: B's patches are replaced by the reference's in the order of the map's patch
  sums (largest first), and d is measured for real after every patch. A faithful map
  makes d fall fast: a small area under the curve (AUC, of d / d(A, B) against the
  repaired area). Seeded random orders give the band a map must beat, and the best
  repair order found (single-patch gain or greedy) a yardstick from the other side.
- cascading randomisation (Adebayo et al. 2018): on a private deep copy of the network,
  the lin heads and then the trunk's blocks from the top down are re-initialised, one
  more at each stage, and the method re-run; Spearman's rank correlation between |map|
  before and after. A map that barely changes when the network it explains is destroyed
  does not explain the network.
- pixel difference: Spearman's rank correlation of |map| with plain |B - reference|
  (summed over colour channels), which a map that ignores the network would mirror.

The shared network is never modified: randomisation works on its own copy.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lpips_explain import notices
from lpips_explain.analyses.attribution import DeletionCheck, attribute, get_method
from lpips_explain.analyses.jsonable import header
from lpips_explain.analyses.pair.repair import (
    curve_auc,
    order_curves,
    patch_sums,
    ranked,
    repair,
    resolve_patch,
)
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.weights import build_features
from lpips_explain.errors import InputError
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.notices import Notice
from lpips_explain.validation import Progress, integer, pct

DEFAULT_METHODS: tuple[str, ...] = ("integrated_gradients", "saliency", "occlusion")
RANDOM_ORDERS = 8
# A map whose rank correlation with its own original stays above this when every part of
# the network is random "barely changes under randomisation".
RANDOMISATION_WARN = 0.5
# The yardstick's greedy search runs over at most this many blocks of patches.
BEST_ORDER_BLOCKS = 16
HEADS_STAGE = "lin heads"
# The per-pair deletion check of an explanation (deletion_check): about this many patches and
# this many random orders, (1 + orders) x patches trunk passes in all. A map that ranks at
# random beats all of 8 random orders with probability 1/9.
CHECK_PATCHES = 16
CHECK_RANDOM_ORDERS = 8


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None if either is constant."""
    from scipy.stats import rankdata  # scipy only when a correlation is computed

    rx = rankdata(np.asarray(x, dtype=np.float64).ravel())
    ry = rankdata(np.asarray(y, dtype=np.float64).ravel())
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass(frozen=True)
class DeletionCurve:
    """d after replacing the first k patches of B by the reference's, in one order."""

    method: str  # the attribution method, or the name of the yardstick order
    label: str
    order: np.ndarray = field(repr=False)
    area: np.ndarray = field(repr=False)
    distance: np.ndarray = field(repr=False)
    auc: float

    def to_dict(self) -> dict:
        return {"method": self.method, "label": self.label, "auc": self.auc,
                "curve": [{"area": float(s), "distance": float(d)}
                          for s, d in zip(self.area, self.distance, strict=True)]}


@dataclass(frozen=True)
class RandomBand:
    """Seeded random orders: their AUCs and, per area, the range of their distances."""

    aucs: np.ndarray
    area: np.ndarray  # a common grid of areas, 0..1
    low: np.ndarray  # lowest random-order distance at each area (interpolated)
    high: np.ndarray
    seed: int

    @property
    def auc(self) -> float:
        return float(self.aucs.mean())

    @property
    def spread(self) -> float:
        return float(self.aucs.std())

    def to_dict(self) -> dict:
        return {"auc": self.auc, "spread": self.spread, "min": float(self.aucs.min()),
                "max": float(self.aucs.max()), "orders": int(self.aucs.size),
                "aucs": [float(x) for x in self.aucs], "seed": self.seed,
                "band": [{"area": float(s), "low": float(lo), "high": float(hi)}
                         for s, lo, hi in zip(self.area, self.low, self.high, strict=True)]}


@dataclass(frozen=True)
class RandomisationRow:
    method: str
    stage: str  # what is random at this stage (cumulative, top down)
    spearman: float | None  # |map| at this stage against |map| of the intact network

    def to_dict(self) -> dict:
        return {"method": self.method, "stage": self.stage, "spearman": self.spearman}


@dataclass(frozen=True)
class PixelRow:
    method: str
    spearman: float | None  # |map| against |B - reference|

    def to_dict(self) -> dict:
        return {"method": self.method, "spearman": self.spearman}


@dataclass(frozen=True)
class Faithfulness:
    """The faithfulness checks of attribution maps on one pair; ``to_dict`` is the JSON."""

    inputs: PreparedInputs
    backbone: Any  # core.weights.WeightsInfo
    net: str
    version: str
    patch: int
    grid: tuple[int, int]
    base_distance: float
    methods: tuple[str, ...]
    deletion: tuple[DeletionCurve, ...]
    random_order: RandomBand
    best_order: DeletionCurve
    stages: tuple[str, ...]
    randomisation: tuple[RandomisationRow, ...]
    pixel_difference: tuple[PixelRow, ...]
    maps: dict = field(repr=False, default_factory=dict)  # method -> H x W signed map
    warnings: tuple[str, ...] = ()
    summary: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def no_better_than_random(self, method: str) -> bool:
        """The map's order did not beat every one of the seeded random orders."""
        curve = next(c for c in self.deletion if c.method == method)
        return curve.auc >= float(self.random_order.aucs.min())

    def final_spearman(self, method: str) -> float | None:
        """The rank correlation at the last stage (everything random)."""
        rows = [r for r in self.randomisation if r.method == method]
        return rows[-1].spearman if rows else None

    def to_dict(self) -> dict:
        return {
            **header("faithfulness", self.net, self.version, self.backbone),
            "inputs": {"a": self.inputs.describe(0), "b": self.inputs.describe(1),
                       "size": list(self.inputs.size), "policy": self.inputs.align.policy},
            "distance": self.base_distance,
            "patch": self.patch,
            "grid": list(self.grid),
            "methods": list(self.methods),
            "deletion": [c.to_dict() for c in self.deletion],
            "random_order": self.random_order.to_dict(),
            "best_order": self.best_order.to_dict(),
            "stages": list(self.stages),
            "randomisation": [r.to_dict() for r in self.randomisation],
            "pixel_difference": [r.to_dict() for r in self.pixel_difference],
            "summary": list(self.summary),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- randomisation


def _stages(net: LpipsNet) -> list[tuple[str, list[int]]]:
    """(stage name, trunk module indices newly randomised), top down; heads come first."""
    taps, names = net.spec.taps, net.spec.layer_names
    out: list[tuple[str, list[int]]] = [(HEADS_STAGE, [])]
    for i in range(len(taps) - 1, -1, -1):
        start = taps[i - 1] + 1 if i > 0 else 0
        first = names[-1] if i == len(taps) - 1 else f"{names[-1]}-{names[i]}"
        out.append((f"{HEADS_STAGE}, {first}", list(range(start, taps[i] + 1))))
    return out


def randomised_copies(net: LpipsNet, seed: int) -> Callable[[], Any]:
    """A generator of (stage, network) with one more part re-initialised at each stage.

    Works on one private deep copy of ``net``; the trunk's blocks get torchvision's own
    initialisation (a fresh random trunk, seeded), the lin heads uniform non-negative
    weights with each head's original mean, so distances stay on a comparable scale.
    """
    def stages():
        twin = copy.deepcopy(net)
        fresh = build_features(net.spec.name, seed + 1)
        g = torch.Generator().manual_seed(seed)
        for name, modules in _stages(net):
            with torch.no_grad():
                if name == HEADS_STAGE:
                    for i, head in enumerate(twin.heads):
                        new = torch.rand(head.shape, generator=g) * 2 * float(head.mean())
                        getattr(twin, f"head{i}").copy_(new.to(head))
                for j in modules:
                    twin.features[j].load_state_dict(fresh[j].state_dict())
            yield name, twin
    return stages


# --------------------------------------------------------------------------- the checks


def _attribute(net: LpipsNet, ref: Tensor, cand: Tensor, method: str, seed: int,
               steps: int | None) -> np.ndarray:
    kwargs: dict[str, Any] = {"steps": steps} if method == "integrated_gradients" else {}
    return np.asarray(attribute(net, ref, cand, method, seed=seed, **kwargs).signed,
                      dtype=np.float64)


def faithfulness(net: LpipsNet, prep: PreparedInputs, *,
                 methods: Sequence[str] = DEFAULT_METHODS, patch: int | None = None,
                 seed: int = 0,
                 random_orders: int = RANDOM_ORDERS, steps: int | None = None,
                 randomisation: bool = True, progress: Progress | None = None) -> Faithfulness:
    """Deletion curves, random orders, the best repair order, cascading randomisation and
    the pixel-difference correlation for each attribution method, on A (reference) and B.
    ``patch``: the deletion curves' patch size; None: 32 px, fitted to large images with a
    warning (repair.resolve_patch)."""
    methods = tuple(dict.fromkeys(get_method(m).name for m in methods))
    if not methods:
        raise InputError("Name at least one attribution method to check.")
    random_orders = integer(random_orders, "random_orders", minimum=2)
    seed = integer(seed, "seed", minimum=0)
    ref, cand = prep.tensors[0], prep.tensors[1]
    h, w = (int(s) for s in ref.shape[-2:])
    patch, patch_note = resolve_patch(patch, (h, w))
    grid = (math.ceil(h / patch), math.ceil(w / patch))
    n = grid[0] * grid[1]
    stages = _stages(net) if randomisation else []
    total = len(methods) * (1 + len(stages)) + 2
    done = [0]

    def step(label: str) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, label)

    maps: dict[str, np.ndarray] = {}
    for m in methods:
        maps[m] = _attribute(net, ref, cand, m, seed, steps)
        step(f"faithfulness: {m}")

    scorer = ReferenceScorer(net, ref)
    rng = np.random.default_rng(seed)
    random_perms = [rng.permutation(n) for _ in range(random_orders)]
    map_orders = [ranked(patch_sums(maps[m], (h, w), patch)) for m in methods]
    base, curves = order_curves(net, ref, cand, [*map_orders, *random_perms], patch=patch,
                                scorer=scorer)
    step("faithfulness: deletion curves")
    deletion = tuple(
        DeletionCurve(m, get_method(m).label, order, area, dist, curve_auc(area, dist, base))
        for m, order, (area, dist) in zip(methods, map_orders, curves, strict=False))
    rand = curves[len(methods):]
    grid_area = np.linspace(0.0, 1.0, n + 1)
    interp = np.array([np.interp(grid_area, area, dist) for area, dist in rand])
    band = RandomBand(np.array([curve_auc(a_, d_, base) for a_, d_ in rand]), grid_area,
                      interp.min(axis=0), interp.max(axis=0), seed)

    rep = repair(net, ref, cand, patch=patch, scorer=scorer,
                 orders=("single_gain", "greedy"), greedy_blocks=BEST_ORDER_BLOCKS)
    best = min(rep.orders_tried, key=lambda o: o.auc)
    best_curve = DeletionCurve(best.name, best.label, best.order, best.areas, best.distances,
                               best.auc)
    step("faithfulness: best repair order")

    rows: list[RandomisationRow] = []
    if stages:
        originals = {m: np.abs(maps[m]) for m in methods}
        for stage, twin in randomised_copies(net, seed)():
            for m in methods:
                after = np.abs(_attribute(twin, ref, cand, m, seed, steps))
                rows.append(RandomisationRow(m, stage, spearman(originals[m], after)))
                step(f"faithfulness: randomised {stage}: {m}")
    diff = (cand - ref).abs().sum(dim=1)[0].detach().cpu().double().numpy()
    pixel = tuple(PixelRow(m, spearman(np.abs(maps[m]), diff)) for m in methods)

    result = Faithfulness(prep, net.weights_info, net.spec.name, net.version, patch, grid,
                          base, methods, deletion, band, best_curve,
                          tuple(s for s, _ in stages), tuple(rows), pixel, maps)
    warnings, summary, notes = _words(result)
    if patch_note is not None:
        warnings.insert(0, Notice(notices.PATCH, patch_note))
    return Faithfulness(**{**result.__dict__, "warnings": tuple(warnings),
                           "summary": tuple(summary), "notes": tuple(notes)})


def check_patch_size(size: tuple[int, int], patches: int = CHECK_PATCHES) -> int:
    """The square patch (px) that cuts an image of ``size`` into about ``patches`` patches."""
    h, w = int(size[0]), int(size[1])
    patches = integer(patches, "patches", minimum=1)
    return max(1, min(min(h, w), math.ceil(math.sqrt(h * w / patches))))


def deletion_check(net: LpipsNet, reference: Tensor, explained: Tensor, signed: np.ndarray, *,
                   seed: int = 0, patches: int = CHECK_PATCHES,
                   random_orders: int = CHECK_RANDOM_ORDERS,
                   scorer: ReferenceScorer | None = None, batch_size: int = 16,
                   progress: Progress | None = None) -> DeletionCheck:
    """The cheap per-pair form of the deletion check: the map's order of a coarse grid of
    patches (about ``patches``) against ``random_orders`` seeded random orders.

    ``signed`` is the H x W map whose patch sums rank the patches (largest first), as in
    :func:`faithfulness`. Every point is a real distance, scored against the reference
    encoded once (``scorer``: pass the one the explanation already holds), each from the
    point before on the windows its patch reaches where the trunk allows (order_curves).
    """
    start = time.perf_counter()
    seed = integer(seed, "seed", minimum=0)
    random_orders = integer(random_orders, "random_orders", minimum=1)
    h, w = (int(s) for s in reference.shape[-2:])
    patch = check_patch_size((h, w), patches)
    grid = (math.ceil(h / patch), math.ceil(w / patch))
    n = grid[0] * grid[1]
    rng = np.random.default_rng(seed)
    orders = [ranked(patch_sums(signed, (h, w), patch)),
              *(rng.permutation(n) for _ in range(random_orders))]
    base, curves = order_curves(net, reference, explained, orders, patch=patch,
                                batch_size=batch_size, scorer=scorer, progress=progress,
                                label="attribution: deletion check")
    aucs = np.array([curve_auc(a_, d_, base) for a_, d_ in curves])
    area, dist = curves[0]
    return DeletionCheck(patch, grid, base, float(aucs[0]), aucs[1:], area, dist, seed,
                         time.perf_counter() - start, 1 + n * len(orders))


def _fmt(x: float | None) -> str:
    return "undefined (a constant map)" if x is None else f"{x:.2f}"


def _words(f: Faithfulness) -> tuple[list[str], list[str], list[str]]:
    """Plain warnings and summary sentences, each from a number of the result."""
    warnings: list[str] = []
    summary = [f"Deletion: B's {f.patch} px patches ({f.grid[0]}x{f.grid[1]}) replaced by the "
               f"reference's in each map's order; AUC of d / d(A, B) against the repaired "
               f"area, lower is better. {f.random_order.aucs.size} random orders: AUC "
               f"{f.random_order.auc:.3f} ± {f.random_order.spread:.3f} (lowest "
               f"{f.random_order.aucs.min():.3f}); best repair order found "
               f"({f.best_order.method.replace('_', ' ')}): {f.best_order.auc:.3f}."]
    if f.base_distance <= 0:
        warnings.append("A and B are identical: there is no distance to delete, so the "
                        "deletion curves say nothing about the maps.")
    for c in f.deletion:
        line = f"{c.label}: deletion AUC {c.auc:.3f}"
        if f.no_better_than_random(c.method) and f.base_distance > 0:
            beaten = int((f.random_order.aucs <= c.auc).sum())
            warnings.append(f"{c.label}: its order is no better than random: deletion AUC "
                            f"{c.auc:.3f}, while {beaten} of {f.random_order.aucs.size} random "
                            f"orders did as well or better (lowest {f.random_order.aucs.min():.3f}).")
        final = f.final_spearman(c.method)
        if f.stages:
            line += (f"; rank correlation with itself once the whole network is random: "
                     f"{_fmt(final)}")
            if final is not None and final > RANDOMISATION_WARN:
                warnings.append(f"{c.label}: the map barely changes under randomisation: with "
                                f"the lin heads and every trunk layer random, its rank "
                                f"correlation with the original map is still {final:.2f} "
                                f"(warning above {RANDOMISATION_WARN}). It shows the images "
                                f"more than the network.")
        pix = next(p for p in f.pixel_difference if p.method == c.method)
        line += f"; rank correlation with |B - reference|: {_fmt(pix.spearman)}."
        summary.append(line)
    summary += [f"Warning: {w}" for w in warnings]
    notes = [f"Maps rank patches by their signed patch sums (largest first): a positive value "
             f"claims the patch adds to the distance. Every deletion point is a real distance "
             f"({f.grid[0] * f.grid[1] + 1} per order).",
             f"The random band shows the lowest and highest of {f.random_order.aucs.size} seeded "
             f"random orders (seed {f.random_order.seed}) at each area."]
    if f.stages:
        notes.append(f"Cascading randomisation on a private copy of the network, top down, one "
                     f"more part random at each stage: {'; '.join(f.stages)}. Trunk blocks get "
                     f"torchvision's initialisation; lin heads uniform non-negative weights "
                     f"with their original means.")
    half = next((i for i, d in enumerate(f.best_order.distance)
                 if d <= f.base_distance / 2), None)
    if half is not None and f.base_distance > 0:
        notes.append(f"The yardstick order ({f.best_order.label}) halves the distance with "
                     f"{pct(float(f.best_order.area[half]))} of the area.")
    return warnings, summary, notes

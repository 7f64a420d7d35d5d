"""How far an approximate mode's distances are from the exact ones, on one fixed set of images.

The set (:func:`fidelity_set`): the pairs and triplets bundled in ``assets/samples.json``,
plus generated distortions: each bundled original under every registered perturbation at
:data:`GENERATED_STRENGTHS` points of its sweep (identity excluded), seeded. Every triplet
(reference, x0, x1) of two distortions of the same original counts for 2AFC agreement, as
do the bundled triplets. Both networks score the same images against the same references;
nothing is sampled at random, so two runs give the same figures.

Reported: Spearman rank correlation of the distances, mean and max absolute error, the
mean relative error, and the share of triplets on which both modes prefer the same
candidate (2AFC agreement; an exact tie counts as agreeing only with a tie).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lpips_explain.analyses.pair import perturbations
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.modes import ASSETS, Mode, ModeUnavailableError
from lpips_explain.intake.images import load_image
from lpips_explain.validation import Progress, integer

GENERATED_STRENGTHS = 3  # sweep points per perturbation (after identity)
# The targets of the efficiency issue: (speed-up over exact, Spearman, 2AFC agreement).
TARGETS: dict[str, dict[str, float]] = {
    "int8": {"speedup": 2.5, "spearman": 0.99, "agreement_2afc": 0.98},
    "bf16": {"speedup": 1.3, "spearman": 0.995},
}


@dataclass(frozen=True)
class FidelitySet:
    """References, their candidates and the triplets over them (indices into candidates)."""

    references: tuple[Tensor, ...]  # each 1 x 3 x S x S
    candidates: tuple[Tensor, ...]  # per reference, K x 3 x S x S
    labels: tuple[tuple[str, ...], ...]  # per reference, per candidate
    triplets: tuple[tuple[int, int, int], ...]  # (reference index, candidate i, candidate j)
    size: int

    @property
    def pairs(self) -> int:
        return sum(int(c.shape[0]) for c in self.candidates)


@dataclass(frozen=True)
class Fidelity:
    """One mode against exact fp32 on the fixed set."""

    mode: Mode
    size: int
    pairs: int
    triplets: int
    spearman: float
    mean_abs_error: float
    max_abs_error: float
    mean_rel_error: float
    agreement_2afc: float
    exact: np.ndarray = field(repr=False)  # distances, exact fp32
    approx: np.ndarray = field(repr=False)  # the same distances in the mode

    def to_dict(self) -> dict:
        return {"mode": self.mode.to_dict(), "size": self.size, "pairs": self.pairs,
                "triplets": self.triplets, "spearman": self.spearman,
                "mean_abs_error": self.mean_abs_error, "max_abs_error": self.max_abs_error,
                "mean_rel_error": self.mean_rel_error, "agreement_2afc": self.agreement_2afc}

    def checks(self) -> dict[str, bool]:
        """Each fidelity target of the mode (see :data:`TARGETS`) -> met or not."""
        t = TARGETS.get(self.mode.precision, {})
        out = {}
        if "spearman" in t:
            out[f"spearman >= {t['spearman']}"] = self.spearman >= t["spearman"]
        if "agreement_2afc" in t:
            out[f"2AFC agreement >= {t['agreement_2afc']}"] = (
                self.agreement_2afc >= t["agreement_2afc"])
        return out


def _resized(x: Tensor, size: int) -> Tensor:
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def _asset(rel: str, size: int) -> Tensor:
    return _resized(load_image(ASSETS / rel).tensor, size)


def fidelity_set(size: int = 256, *, seed: int = 0, assets: Path | None = None) -> FidelitySet:
    """The fixed set at ``size`` x ``size`` px (see the module docstring)."""
    size = integer(size, "size", minimum=32)
    root = assets or ASSETS
    manifest = root / "samples.json"
    if not manifest.is_file():
        raise ModeUnavailableError(f"The fidelity set needs the bundled images: {manifest} "
                                   "was not found.")
    spec = json.loads(manifest.read_text(encoding="utf-8"))
    refs: list[Tensor] = []
    cands: list[Tensor] = []
    labels: list[tuple[str, ...]] = []
    triplets: list[tuple[int, int, int]] = []
    names = list(perturbations.PERTURBATIONS)
    for orig in spec["originals"]:
        rel = orig["path"]
        ref = _asset(rel, size)
        items = [(n, s) for n in names
                 for s in perturbations.get_perturbation(n).sweep_values(
                     GENERATED_STRENGTHS + 1)[1:]]
        batch = perturbations.perturb_batch(ref, items, seed=seed)
        r = len(refs)
        refs.append(ref)
        cands.append(batch)
        labels.append(tuple(f"{Path(rel).stem}: {n} {s:g}" for n, s in items))
        k = len(items)
        triplets += [(r, i, j) for i in range(k) for j in range(i + 1, k)]
    for pair in spec["pairs"]:
        refs.append(_asset(pair["a"], size))
        cands.append(_asset(pair["b"], size))
        labels.append((pair["id"],))
    for trip in spec["triplets"]:
        r = len(refs)
        refs.append(_asset(trip["ref"], size))
        cands.append(torch.cat([_asset(trip["a"], size), _asset(trip["b"], size)]))
        labels.append((f"{trip['id']}: a", f"{trip['id']}: b"))
        triplets.append((r, 0, 1))
    return FidelitySet(tuple(refs), tuple(cands), tuple(labels), tuple(triplets), size)


def distances(net: LpipsNet, fset: FidelitySet, *, batch_size: int = 16,
              progress: Progress | None = None, label: str = "fidelity") -> list[np.ndarray]:
    """d(reference, candidate) for every candidate of the set, per reference (float64)."""
    out = []
    with torch.no_grad():
        for i, (ref, cand) in enumerate(zip(fset.references, fset.candidates, strict=True)):
            scorer = ReferenceScorer(net, ref)
            out.append(scorer.score_batches(cand, batch_size).double().cpu().numpy())
            if progress is not None:
                progress(i + 1, len(fset.references), label)
    return out


def compare(exact: list[np.ndarray], approx: list[np.ndarray], fset: FidelitySet,
            mode: Mode) -> Fidelity:
    """The fidelity figures from distances already computed on ``fset`` both ways."""
    from scipy.stats import spearmanr

    e, a = np.concatenate(exact), np.concatenate(approx)
    err = np.abs(a - e)
    rel = err / np.maximum(np.abs(e), 1e-12)
    agree = [np.sign(exact[r][i] - exact[r][j]) == np.sign(approx[r][i] - approx[r][j])
             for r, i, j in fset.triplets]
    rho = float(spearmanr(e, a).statistic) if e.size > 1 and np.ptp(e) > 0 else 1.0
    if not np.isfinite(rho):  # constant approximate distances: no rank information at all
        rho = 0.0
    return Fidelity(mode=mode, size=fset.size, pairs=int(e.size), triplets=len(agree),
                    spearman=rho, mean_abs_error=float(err.mean()),
                    max_abs_error=float(err.max()), mean_rel_error=float(rel.mean()),
                    agreement_2afc=float(np.mean(agree)) if agree else 1.0, exact=e, approx=a)


def measure_fidelity(exact: LpipsNet, approx: LpipsNet, mode: Mode, *, size: int = 256,
                     fset: FidelitySet | None = None, progress: Progress | None = None
                     ) -> Fidelity:
    """Score the fixed set with the exact network and with the mode's; compare."""
    fset = fset or fidelity_set(size)
    de = distances(exact, fset, progress=progress, label="fidelity: exact fp32")
    da = de if approx is exact else distances(approx, fset, progress=progress,
                                              label=f"fidelity: {mode.precision}")
    return compare(de, da, fset, mode)

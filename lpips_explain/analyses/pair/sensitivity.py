"""Counterfactual sensitivity: how d(A, B) reacts to perturbing B (photometric, geometric, sweeps).

Every candidate is scored in batches against A encoded once (ReferenceScorer), never by
re-encoding A. Every number reported is a real evaluation of a real image: curves are never
smoothed, interpolated or forced to be monotonic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.inputs import check_pair, scorer_for
from lpips_explain.analyses.jsonable import finite_or_none, json_floats
from lpips_explain.analyses.pair import perturbations, quality
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.validation import Progress, integer

# --- sensitivity --------------------------------------------------------------------------


@dataclass(frozen=True)
class SensitivityItem:
    """d(A, perturbed B) for one perturbation at one strength, beside PSNR and SSIM."""

    transform: str
    label: str
    unit: str
    strength: float
    distance: float  # d(a, perturbed b)
    change: float  # distance - d(a, b)
    psnr: float | None  # PSNR(a, perturbed b) in dB; None where it is infinite (identical)
    ssim: float
    geometric: bool

    def to_dict(self) -> dict:
        return {"transform": self.transform, "strength": self.strength,
                "distance": self.distance, "change": self.change, "psnr": self.psnr,
                "ssim": self.ssim, "label": self.label, "unit": self.unit,
                "geometric": self.geometric}


@dataclass(frozen=True)
class Sweep:
    """d(A, perturbed B) along a range of strengths of one perturbation (identity first)."""

    transform: str
    label: str
    unit: str
    strengths: np.ndarray
    distances: np.ndarray
    psnr: np.ndarray  # dB; nan where infinite (perturbed B == A)
    ssim: np.ndarray

    def to_dict(self) -> dict:
        return {"transform": self.transform, "label": self.label, "unit": self.unit,
                "strengths": [float(s) for s in self.strengths],
                "distances": [float(d) for d in self.distances],
                "psnr": json_floats(self.psnr), "ssim": [float(s) for s in self.ssim]}


@dataclass(frozen=True)
class Sensitivity:
    """How d(A, B) changes when B is perturbed: defaults, the geometric table, sweeps."""

    base_distance: float
    items: tuple[SensitivityItem, ...]  # each chosen perturbation at its default strength
    geometric: tuple[SensitivityItem, ...]  # the perturbations.GEOMETRIC_TABLE rows
    sweeps: tuple[Sweep, ...]
    most_sensitive: str | None  # transform with the largest |change| among items

    def to_dict(self) -> dict:
        return {"base_distance": self.base_distance,
                "items": [i.to_dict() for i in self.items],
                "geometric": [i.to_dict() for i in self.geometric],
                "sweeps": [s.to_dict() for s in self.sweeps],
                "most_sensitive": self.most_sensitive}

    @property
    def largest(self) -> SensitivityItem | None:
        """What moves the distance most: the row with the largest |change| among the default
        strengths and the geometric table together (the rows the sensitivity chart draws);
        ties go to the first. The one answer every page gives (None without rows or when
        nothing changes the distance)."""
        rows = [*self.items, *self.geometric]
        best = max(rows, key=lambda i: abs(i.change), default=None)
        return best if best is not None and abs(best.change) > 1e-9 else None

    def rows(self) -> list[dict]:
        """Items then geometric rows, for the report's ``sensitivity`` list.

        ``group`` says which table a row comes from ("default" or "geometric"): the same
        (transform, strength) can appear in both.
        """
        return ([{**i.to_dict(), "group": "default"} for i in self.items]
                + [{**i.to_dict(), "group": "geometric"} for i in self.geometric])


def _names(value: Sequence[str] | str | None) -> list[str]:
    if value is None:
        return list(perturbations.PERTURBATIONS)
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        perturbations.get_perturbation(name)  # unknown names fail with "did you mean"
    return names


def sensitivity(net: LpipsNet, a: Tensor, b: Tensor, *, transforms: Sequence[str] | None = None,
                sweep: Sequence[str] | None = None, sweep_points: int = 7, seed: int = 0,
                batch_size: int = 16, scorer: ReferenceScorer | None = None,
                progress: Progress | None = None,
                ranges: Mapping[str, tuple[float, float]] | None = None,
                geometric: bool = True) -> Sensitivity:
    """Perturb B with each registered perturbation and score every variant against A.

    ``transforms`` (default: all registered) are evaluated at their default strengths;
    ``sweep`` (default: all registered, ``()`` for none) along ``sweep_points`` strengths
    from identity to the far end of their range, or over ``ranges[name]`` = (low, high)
    where given; the geometric table is included unless ``geometric=False``.
    Variants are built with :func:`perturbations.perturb_batch` (each row seeded with
    ``seed`` on its own) and scored in batches of ``batch_size``; a (transform, strength)
    asked for twice is evaluated once, and identity strengths reuse B itself, which they
    equal exactly. ``progress(done, total, "sensitivity")`` follows each batch.
    """
    a, b = check_pair(net, a, b)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    sweep_points = integer(sweep_points, "sweep_points", minimum=1)
    item_names = _names(transforms)
    sweep_names = _names(sweep)
    scorer = scorer_for(net, a, scorer)

    item_keys = [(n, float(perturbations.get_perturbation(n).default)) for n in item_names]
    geo_keys = [(n, float(s)) for n, s in perturbations.GEOMETRIC_TABLE] if geometric else []
    ranges = dict(ranges or {})
    for name in ranges:
        perturbations.get_perturbation(name)  # an unknown name fails with "did you mean"
    sweep_keys = {n: [(n, s) for s in _sweep_strengths(n, ranges, sweep_points)]
                  for n in sweep_names}

    rows = _Rows()
    item_rows = [rows.of(k) for k in item_keys]
    geo_rows = [rows.of(k) for k in geo_keys]
    sweep_rows = {n: [rows.of(k) for k in keys] for n, keys in sweep_keys.items()}
    scores = _score(scorer, a, b, rows.unique, batch_size, seed, progress)

    items = tuple(scores.item(k, r) for k, r in zip(item_keys, item_rows, strict=True))
    geometric_items = tuple(scores.item(k, r) for k, r in zip(geo_keys, geo_rows, strict=True))
    sweeps = tuple(scores.sweep(name, keys, sweep_rows[name]) for name, keys in sweep_keys.items())
    most = max(items, key=lambda i: abs(i.change), default=None)
    return Sensitivity(base_distance=scores.base, items=items, geometric=geometric_items,
                       sweeps=sweeps,
                       most_sensitive=most.transform if most is not None else None)


def _sweep_strengths(name: str, ranges: Mapping[str, tuple[float, float]],
                     points: int) -> list[float]:
    """The strengths of ``name``'s sweep: over ``ranges[name]`` where given, else from
    identity to the far end of its range."""
    p = perturbations.get_perturbation(name)
    if name in ranges:
        low, high = ranges[name]
        return p.values_between(float(low), float(high), points)
    return p.sweep_values(points)


class _Rows:
    """The rows to score: row 0 is B itself (every identity strength, which equals B
    exactly); every distinct non-identity (name, strength) gets one row after it."""

    def __init__(self) -> None:
        self.unique: list[tuple[str, float]] = []
        self._row: dict[tuple[str, float], int] = {}

    def of(self, key: tuple[str, float]) -> int:
        if key[1] == perturbations.get_perturbation(key[0]).identity:
            return 0
        if key not in self._row:
            self._row[key] = len(self.unique) + 1
            self.unique.append(key)
        return self._row[key]


@dataclass(frozen=True)
class _Scores:
    """Distance, PSNR and SSIM against A of every row (row 0: B itself)."""

    distances: np.ndarray
    psnrs: np.ndarray
    ssims: np.ndarray

    @property
    def base(self) -> float:
        return float(self.distances[0])

    def item(self, key: tuple[str, float], r: int) -> SensitivityItem:
        p = perturbations.get_perturbation(key[0])
        return SensitivityItem(
            transform=p.name, label=p.label, unit=p.unit, strength=key[1],
            distance=float(self.distances[r]), change=float(self.distances[r]) - self.base,
            psnr=finite_or_none(self.psnrs[r]), ssim=float(self.ssims[r]),
            geometric=p.geometric)

    def sweep(self, name: str, keys: list[tuple[str, float]], rows: list[int]) -> Sweep:
        p = perturbations.get_perturbation(name)
        ps = self.psnrs[rows].copy()
        ps[~np.isfinite(ps)] = np.nan
        return Sweep(transform=name, label=p.label, unit=p.unit,
                     strengths=np.array([k[1] for k in keys], dtype=np.float64),
                     distances=self.distances[rows].copy(), psnr=ps,
                     ssim=self.ssims[rows].copy())


def _score(scorer: ReferenceScorer, a: Tensor, b: Tensor, unique: list[tuple[str, float]],
           batch_size: int, seed: int, progress: Progress | None) -> _Scores:
    """Score B and every variant in ``unique`` against A, ``batch_size`` rows at a time:
    perturbed chunk by chunk so memory stays bounded by batch_size images, not the whole set."""
    total = len(unique) + 1
    distances = np.empty(total, dtype=np.float64)
    psnrs = np.empty(total, dtype=np.float64)
    ssims = np.empty(total, dtype=np.float64)
    done = 0
    with torch.no_grad():
        for start in range(0, total, batch_size):
            keys = range(start, min(start + batch_size, total))
            parts = []
            if start == 0:
                parts.append(b)
            rest = [unique[i - 1] for i in keys if i > 0]
            if rest:
                parts.append(perturbations.perturb_batch(b, rest, seed=seed))
            batch = torch.cat(parts)
            distances[start: start + len(keys)] = scorer(batch).double().cpu().numpy()
            # a and b were checked by the caller; the variants are clamped to [0, 1] by construction
            psnrs[start: start + len(keys)] = quality.psnr(a, batch, trusted=True)
            ssims[start: start + len(keys)] = quality.ssim(a, batch, trusted=True)
            done += len(keys)
            if progress is not None:
                progress(done, total, "sensitivity")
    return _Scores(distances, psnrs, ssims)

"""Counterfactual sensitivity: how d(A, B) reacts to perturbing B (photometric, geometric, sweeps).

Every candidate is scored in batches against A encoded once (ReferenceScorer), never by
re-encoding A. Every number reported is a real evaluation of a real image: curves are never
smoothed, interpolated or forced to be monotonic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


# --- the geometric table under ST-LPIPS ----------------------------------------------------
#: A comparison sentence is said only for a geometric row where LPIPS changes by at least
#: this much (smaller changes are within what nobody reads off a table) ...
GEOMETRIC_FLOOR = 0.01
#: ... and ST-LPIPS changes by at most this fraction of LPIPS's change: the shift-tolerant
#: trunk sees less than half of what LPIPS sees (the line STLPIPS_GAP draws for the pair).
GEOMETRIC_RATIO = 0.5


@dataclass(frozen=True)
class GeometricSecond:
    """The geometric table scored by ST-LPIPS on the same trunk as LPIPS (alex or vgg), or
    why it could not be: rows align with :attr:`Sensitivity.geometric`."""

    metric: str  # "stlpips"
    net: str | None
    base_distance: float | None  # ST-LPIPS(A, B)
    distances: tuple[float, ...] = ()  # ST-LPIPS(A, perturbed B), one per geometric row
    reason: str | None = None  # why it was not computed (then distances is empty)
    perceptual: bool | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def change(self, i: int) -> float | None:
        if not self.ok or self.base_distance is None:
            return None
        return self.distances[i] - self.base_distance

    def to_dict(self) -> dict:
        return {"metric": self.metric, "net": self.net, "base_distance": self.base_distance,
                "distances": list(self.distances), "available": self.ok,
                "reason": self.reason, "perceptual": self.perceptual}


def _amount(item: SensitivityItem) -> str:
    """"1 degree", "5 degrees", "1 px", "1.05x": the row's strength for a sentence."""
    if item.unit == "degrees":
        return f"{item.strength:g} degree"  # "a 5 degree rotation"
    if item.unit == "pixels":
        return f"{item.strength:g} px"
    if item.unit == "factor":
        return f"{item.strength:g}x"
    return f"{item.strength:g} {item.unit}"


@dataclass(frozen=True)
class Sensitivity:
    """How d(A, B) changes when B is perturbed: defaults, the geometric table, sweeps."""

    base_distance: float
    items: tuple[SensitivityItem, ...]  # each chosen perturbation at its default strength
    geometric: tuple[SensitivityItem, ...]  # the perturbations.GEOMETRIC_TABLE rows
    sweeps: tuple[Sweep, ...]
    most_sensitive: str | None  # transform with the largest |change| among items
    # The geometric rows under ST-LPIPS (None: not asked; else computed or its reason)
    geometric_second: GeometricSecond | None = None

    def geometric_comparison(self, explained: str = "B") -> str | None:
        """"A 1 degree rotation of B adds 0.038 to LPIPS but 0.004 to ST-LPIPS." for the
        first geometric row (table order) where LPIPS changes by at least GEOMETRIC_FLOOR
        and ST-LPIPS by at most GEOMETRIC_RATIO of that; None when no row supports it."""
        sec = self.geometric_second
        if sec is None or not sec.ok:
            return None
        for i, it in enumerate(self.geometric):
            st = sec.change(i)
            if st is None or it.change < GEOMETRIC_FLOOR or st > GEOMETRIC_RATIO * it.change:
                continue
            what = {"rotation": "rotation", "translation": "shift", "scale": "zoom"}.get(
                it.transform, it.label.lower())
            tail = (f"but only {st:.3f} to ST-LPIPS ({sec.net})" if st >= 0
                    else f"but lowers ST-LPIPS ({sec.net}) by {-st:.3f}")
            return f"A {_amount(it)} {what} of {explained} adds {it.change:.3f} to LPIPS {tail}."
        return None

    def to_dict(self) -> dict:
        geo = [i.to_dict() for i in self.geometric]
        sec = self.geometric_second
        if sec is not None:
            for k, row in enumerate(geo):
                row["stlpips_distance"] = sec.distances[k] if sec.ok else None
                row["stlpips_change"] = sec.change(k)
        out = {"base_distance": self.base_distance,
               "items": [i.to_dict() for i in self.items],
               "geometric": geo,
               "sweeps": [s.to_dict() for s in self.sweeps],
               "most_sensitive": self.most_sensitive}
        if sec is not None:
            out["geometric_stlpips"] = {**sec.to_dict(),
                                        "sentence": self.geometric_comparison()}
        return out

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
        sec = self.geometric_second
        geo = []
        for k, i in enumerate(self.geometric):
            row = {**i.to_dict(), "group": "geometric"}
            if sec is not None:
                row["stlpips_distance"] = sec.distances[k] if sec.ok else None
                row["stlpips_change"] = sec.change(k)
            geo.append(row)
        return [{**i.to_dict(), "group": "default"} for i in self.items] + geo


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
                geometric: bool = True, second: LpipsNet | None = None,
                second_reason: str | None = None, second_cache: Any = None) -> Sensitivity:
    """Perturb B with each registered perturbation and score every variant against A.

    ``transforms`` (default: all registered) are evaluated at their default strengths;
    ``sweep`` (default: all registered, ``()`` for none) along ``sweep_points`` strengths
    from identity to the far end of their range, or over ``ranges[name]`` = (low, high)
    where given; the geometric table is included unless ``geometric=False``.
    Variants are built with :func:`perturbations.perturb_batch` (each row seeded with
    ``seed`` on its own) and scored in batches of ``batch_size``; a (transform, strength)
    asked for twice is evaluated once, and identity strengths reuse B itself, which they
    equal exactly. ``progress(done, total, "sensitivity")`` follows each batch.

    ``second``: ST-LPIPS on the same trunk, which scores the geometric rows too (B and its
    geometric variants in batches of ``batch_size``, A encoded once, through
    ``second_cache`` when given); ``second_reason``: why it is not given (the result says
    so). Neither: no ST-LPIPS column (``geometric_second`` None).
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
    sec = None
    if geometric and (second is not None or second_reason is not None):
        sec = geometric_second(second, a, b, geo_keys, seed=seed, batch_size=batch_size,
                               cache=second_cache, reason=second_reason)
    return Sensitivity(base_distance=scores.base, items=items, geometric=geometric_items,
                       sweeps=sweeps,
                       most_sensitive=most.transform if most is not None else None,
                       geometric_second=sec)


def geometric_second(net: LpipsNet | None, a: Tensor, b: Tensor,
                     keys: Sequence[tuple[str, float]], *, seed: int = 0, batch_size: int = 16,
                     cache: Any = None, reason: str | None = None) -> GeometricSecond:
    """ST-LPIPS (``net``) of A against B and against B under each geometric ``keys`` row, in
    batches, A encoded once; a GeometricSecond carrying ``reason`` when ``net`` is None or
    the metric refuses the images (too small for its blur pools)."""
    from lpips_explain.errors import LpipsExplainError

    name = getattr(getattr(net, "spec", None), "name", None)
    if net is None:
        return GeometricSecond("stlpips", name, None, reason=reason or "not given")
    try:
        with torch.no_grad():
            enc = cache.encode(net, a) if cache is not None else None
            scorer = ReferenceScorer(net, a, encoded=enc)
            variants = (perturbations.perturb_batch(b, list(keys), seed=seed) if keys
                        else b[:0])
            d = scorer.score_batches(torch.cat([b, variants]), batch_size=batch_size)
    except LpipsExplainError as exc:
        return GeometricSecond("stlpips", name, None, reason=str(exc))
    values = [float(v) for v in d.double().cpu()]
    return GeometricSecond("stlpips", name, values[0], tuple(values[1:]),
                           perceptual=bool(getattr(net, "perceptual", False)))


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

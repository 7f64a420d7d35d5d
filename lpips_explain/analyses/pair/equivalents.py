"""Distortion-equivalent readings: how strong a familiar distortion of the reference must be for
LPIPS to find it as far from the reference as the other image is.

For each distortion (JPEG quality, Gaussian blur, Gaussian noise, a shift) the strength s with
d(A, distort(A, s)) = d(A, B) is searched by batched bisection: a coarse batch of strengths
from the mild end (the strong end only where the mild part does not cross), then a few rounds
that each evaluate a few strengths inside the bracket where the distance first crosses
d(A, B), placed around where the straight line between the bracket's ends meets d(A, B).
Every distortion still searching shares one batch per round, scored against A encoded once
(ReferenceScorer). Every strength and distance reported was evaluated; nothing is
interpolated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.inputs import check_pair, scorer_for
from lpips_explain.analyses.pair import perturbations
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.errors import InputError, lookup
from lpips_explain.validation import Progress, integer

__all__ = ["DEFAULT_DISTORTIONS", "DISTORTIONS", "Distortion", "Equivalent", "equivalents",
           "reached_phrases", "search"]

TOLERANCE = 0.02  # a search stops once |d(s) - d(A, B)| <= TOLERANCE * d(A, B)
POINTS = 3  # strengths evaluated inside the bracket per refining round
ROUNDS = 3  # refining rounds at most, after the coarse batch
SPREAD = 0.2  # the share of the bracket that a refining round's strengths span
FIRST = 3  # grid strengths of the first batch (the rest only where these do not cross)


@dataclass(frozen=True)
class Distortion:
    """A registered perturbation as an equivalent: its coarse grid and how a person reads it."""

    name: str  # the perturbation's name in perturbations.PERTURBATIONS
    grid: tuple[float, ...]  # coarse strengths, mild to strong, the last one the far end
    step: float  # the resolution of strengths: searched and reported as multiples of it
    short_format: str  # "{s}" is the strength: "JPEG quality {s}", for a line of readings
    phrase_format: str  # in a sentence: "JPEG compression at quality {s}"
    unreached_format: str  # the search's far end in words: "JPEG quality down to {s}"

    @property
    def perturbation(self) -> perturbations.Perturbation:
        return perturbations.get_perturbation(self.name)

    def snap(self, strength: float) -> float:
        """``strength`` rounded to a multiple of ``step`` (and clear of float noise)."""
        return round(round(strength / self.step) * self.step, 6)

    def number(self, strength: float) -> str:
        return f"{self.snap(strength):g}"


# Coarse grids, roughly geometric from the mild end: the distance changes fastest at low JPEG
# quality and at small blurs and noise. With five points (the mild three first) and three per
# refining round, a search ended in about 6 evaluations per distortion on dense curves of the
# bundled samples over targets from 0.05 to 0.7 (about 10 with nine-point grids, 12 with
# evenly spaced refining points). The translation shifts right and down by the same number of
# pixels (perturbations._translation); whole pixels, as sub-pixel shifts also blur.
DISTORTIONS: dict[str, Distortion] = {d.name: d for d in (
    Distortion("jpeg", (70, 40, 20, 10, 5), 1.0, "JPEG quality {s}",
               "JPEG compression at quality {s}", "JPEG quality down to {s}"),
    Distortion("gaussian_blur", (0.5, 1.0, 2.0, 3.0, 5.0), 0.05,
               "blur {s} px", "a Gaussian blur of σ {s} px", "blur up to σ {s} px"),
    Distortion("gaussian_noise", (0.02, 0.05, 0.1, 0.2, 0.3), 0.002,
               "noise σ {s}", "Gaussian noise of σ {s}", "noise up to σ {s}"),
    Distortion("translation", (2, 4, 8, 12, 16), 1.0, "shift {s} px",
               "a shift of {s} px right and down", "shifts up to {s} px"),
)}
DEFAULT_DISTORTIONS: tuple[str, ...] = tuple(DISTORTIONS)


@dataclass(frozen=True)
class Equivalent:
    """The strength of one distortion of the reference at which LPIPS finds it as far from the
    reference as the other image (``target``), or the strongest strength tried when none does.

    ``distance`` is d(reference, distorted reference) at ``strength``, evaluated. When
    ``reached``, ``bracket`` holds the two evaluated strengths around the first crossing from
    the mild end (``bracket_distances`` below and at or above ``target``) and ``strength`` is
    the one of them (never the identity) whose distance is nearer to ``target``. ``stop`` says
    why the search ended: "tolerance" (|distance - target| <= tolerance * target), "step"
    (the bracket's ends are one ``step`` apart: neighbouring JPEG qualities or pixels, 0.05 px
    of blur, 0.002 of noise), "rounds" (refining rounds used up), "unreached" (no strength
    tried is that far: ``strength`` is the strongest, with its distance).
    """

    distortion: str
    label: str
    unit: str
    strength: float
    reached: bool
    distance: float
    target: float
    searched: tuple[float, float]  # (identity, far end): the range searched, mild to strong
    bracket: tuple[float, float] | None
    bracket_distances: tuple[float, float] | None
    evaluations: int  # distorted images scored for this distortion
    tolerance: float
    stop: str
    seed: int | None  # the noise generator's seed (perturbations.apply(..., seed=seed))
    step: float  # the strengths' resolution (1: whole JPEG qualities and pixels)

    @property
    def spec(self) -> Distortion:
        return DISTORTIONS[self.distortion]

    @property
    def phrase(self) -> str:
        """In a sentence: "JPEG compression at quality 23", "a Gaussian blur of σ 1.4 px"."""
        return self.spec.phrase_format.format(s=self.spec.number(self.strength))

    @property
    def text(self) -> str:
        """"JPEG quality 23", "blur 1.4 px"; for an unreached one, "JPEG quality down to 5"."""
        spec = self.spec
        fmt = spec.short_format if self.reached else spec.unreached_format
        return fmt.format(s=spec.number(self.strength))

    def to_dict(self) -> dict:
        return {"distortion": self.distortion, "strength": self.strength, "unit": self.unit,
                "reached": self.reached, "distance": self.distance, "target": self.target,
                "label": self.label, "text": self.text, "searched": list(self.searched),
                "bracket": list(self.bracket) if self.bracket is not None else None,
                "bracket_distances": (list(self.bracket_distances)
                                      if self.bracket_distances is not None else None),
                "evaluations": self.evaluations, "tolerance": self.tolerance,
                "stop": self.stop, "seed": self.seed, "step": self.step}


def reached_phrases(items: Sequence[Equivalent]) -> str:
    """The reached equivalents in one line: "JPEG quality 23 · blur 1.4 px · noise σ 0.05"."""
    return " · ".join(e.text for e in items if e.reached)


class _Search:
    """The evaluated points of one distortion and its bracket."""

    def __init__(self, spec: Distortion, target: float, tolerance: float) -> None:
        self.spec = spec
        self.identity = float(spec.perturbation.identity)
        self.target = target
        self.tolerance = tolerance
        self.points: dict[float, float] = {}  # strength -> evaluated distance
        self.stop: str | None = None
        self.rounds = 0

    def mildness(self, s: float) -> float:
        return abs(s - self.identity)

    def crossing(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The first evaluated crossing from the mild end: ((s_below, d), (s_at, d)); the
        identity counts as d = 0 (d(A, A) = 0 exactly)."""
        prev = (self.identity, 0.0)
        for s in sorted(self.points, key=self.mildness):
            d = self.points[s]
            if d >= self.target:
                return prev, (s, d)
            prev = (s, d)
        return None

    def best(self) -> tuple[float, float]:
        """The bracket's evaluated end (not the identity) whose distance is nearest the target."""
        lo, hi = self.crossing()  # type: ignore[misc]
        ends = [p for p in (lo, hi) if p[0] != self.identity]
        return min(ends, key=lambda p: (abs(p[1] - self.target), self.mildness(p[0])))

    def next_strengths(self, points: int, rounds: int) -> list[float]:
        """Strengths for the next round; sets ``stop`` and returns none when done."""
        cross = self.crossing()
        if cross is None:
            rest = [float(s) for s in self.spec.grid if float(s) not in self.points]
            if not rest:
                self.stop = "unreached"
            return rest
        (lo, d_lo), (hi, d_hi) = cross
        if abs(self.best()[1] - self.target) <= self.tolerance * self.target:
            self.stop = "tolerance"
            return []
        if abs(hi - lo) <= self.spec.step * (1 + 1e-9):
            self.stop = "step"
            return []
        if self.rounds >= rounds:
            self.stop = "rounds"
            return []
        self.rounds += 1
        # Around where the straight line between the bracket's ends meets the target, spread
        # over a fixed share of the bracket: on a curved stretch the crossing may lie outside
        # that share, and the bracket still shrinks to the part beside it.
        t = (self.target - d_lo) / (d_hi - d_lo) if d_hi > d_lo else 0.5
        half = SPREAD / 2
        t = min(max(t, half), 1 - half)
        where = t + np.linspace(-half, half, points) if points > 1 else np.array([t])
        steps = round(abs(hi - lo) / self.spec.step)
        new = {self.spec.snap(lo + w * (hi - lo)) for w in where}
        new = sorted(s for s in new if self.mildness(lo) < self.mildness(s) < self.mildness(hi)
                     and s not in self.points)
        if not new and steps >= 2:  # all snapped onto the ends: the step nearest the estimate
            k = min(max(round(t * steps), 1), steps - 1)
            new = [self.spec.snap(lo + k / steps * (hi - lo))]
        if not new:
            self.stop = "step"
        return new

    def result(self, evaluations: int, seed: int) -> Equivalent:
        p = self.spec.perturbation
        far = float(self.spec.grid[-1])
        cross = self.crossing()
        if cross is None:
            strength, distance, bracket, bracket_d = far, self.points[far], None, None
        else:
            (lo, d_lo), (hi, d_hi) = cross
            strength, distance = self.best()
            bracket, bracket_d = (lo, hi), (d_lo, d_hi)
        return Equivalent(
            distortion=self.spec.name, label=p.label, unit=p.unit, strength=strength,
            reached=cross is not None, distance=distance, target=self.target,
            searched=(self.identity, far), bracket=bracket, bracket_distances=bracket_d,
            evaluations=evaluations, tolerance=self.tolerance, stop=self.stop or "rounds",
            seed=seed if self.spec.name == "gaussian_noise" else None, step=self.spec.step)


Evaluate = Callable[[list[tuple[str, float]]], Sequence[float]]


def search(evaluate: Evaluate, target: float, *,
           distortions: Sequence[str] = DEFAULT_DISTORTIONS, tolerance: float = TOLERANCE,
           points: int = POINTS, rounds: int = ROUNDS, seed: int = 0,
           progress: Progress | None = None) -> tuple[Equivalent, ...]:
    """The batched bisection for any ``evaluate([(name, strength), ...]) -> distances`` (one
    call per round, every distortion still searching in it); :func:`equivalents` passes the
    reference scorer. ``target`` 0 (identical images) gives no equivalents."""
    for name in distortions:
        lookup("distortion", name, DISTORTIONS)  # an unknown name fails with "did you mean"
    points = integer(points, "points", minimum=1)
    rounds = integer(rounds, "rounds", minimum=0)
    if not (isinstance(tolerance, int | float) and 0 < tolerance < 1):
        raise InputError(f"tolerance must be a number between 0 and 1, got {tolerance!r}.")
    target = float(target)
    if not math.isfinite(target) or target < 0:
        raise InputError(f"The target distance must be finite and >= 0, got {target!r}.")
    if target == 0:
        return ()
    jobs = [_Search(DISTORTIONS[name], target, float(tolerance)) for name in distortions]
    # The mild part of each grid first: most pairs cross there, and the strong end is
    # evaluated only for the distortions that have not crossed yet.
    todo = {i: [float(s) for s in job.spec.grid[:FIRST]] for i, job in enumerate(jobs)}
    evaluations = [0] * len(jobs)
    batches = rounds + 2  # the mild grid, the rest of it, the refining rounds (at most)
    for r in range(batches):
        keys = [(jobs[i].spec.name, s) for i, strengths in todo.items() for s in strengths]
        distances = iter(evaluate(keys))
        for i, strengths in todo.items():
            for s in strengths:
                jobs[i].points[s] = float(next(distances))
            evaluations[i] += len(strengths)
        todo = {i: nxt for i, job in enumerate(jobs) if job.stop is None
                and (nxt := job.next_strengths(points, rounds))}
        if progress is not None:
            progress(batches if not todo else r + 1, batches, "equivalents")
        if not todo:
            break
    return tuple(job.result(n, seed) for job, n in zip(jobs, evaluations, strict=True))


def _score(scorer: ReferenceScorer, a: Tensor, keys: list[tuple[str, float]], seed: int,
           batch_size: int) -> np.ndarray:
    """d(a, perturbed a) for each (name, strength), perturbed and scored batch by batch as
    the sensitivity does (perturbations.perturb_batch: each row seeded with ``seed``)."""
    with torch.no_grad():
        return np.concatenate([
            scorer(perturbations.perturb_batch(a, keys[i: i + batch_size], seed=seed))
            .double().cpu().numpy() for i in range(0, len(keys), batch_size)])


def equivalents(net: LpipsNet, a: Tensor, b: Tensor, *,
                distortions: Sequence[str] = DEFAULT_DISTORTIONS, target: float | None = None,
                seed: int = 0, tolerance: float = TOLERANCE, points: int = POINTS,
                rounds: int = ROUNDS, batch_size: int = 16,
                scorer: ReferenceScorer | None = None,
                progress: Progress | None = None) -> tuple[Equivalent, ...]:
    """For each distortion of A, the strength at which d(A, distorted A) equals d(A, B).

    ``target`` is d(A, B) when already known (the breakdown's distance); else B is scored.
    The mild part of every distortion's coarse grid is evaluated in one batch (the rest where
    it does not cross), then up to ``rounds`` rounds evaluate ``points`` strengths inside each
    bracket still open, until the distance
    is within ``tolerance`` (relative) of the target or the bracket's ends are one step apart
    (whole JPEG qualities and pixels, 0.05 px of blur, 0.002 of noise). The noise draws one field from a generator seeded with ``seed`` and
    scales it, so each strength equals ``perturbations.apply("gaussian_noise", a, s,
    seed=seed)``. Identical images (target 0) give no equivalents.
    ``progress(batch, rounds + 2, "equivalents")`` follows each batch.
    """
    a, b = check_pair(net, a, b)
    if a.shape[0] != 1:
        raise InputError(f"Equivalents take one pair of images, got a batch of {a.shape[0]}.")
    batch_size = integer(batch_size, "batch_size", minimum=1)
    seed = integer(seed, "seed", minimum=0)
    scorer = scorer_for(net, a, scorer)
    if target is None:
        with torch.no_grad():
            target = float(scorer(b)[0])
    return search(lambda keys: _score(scorer, a, keys, seed, batch_size), target,
                  distortions=distortions, tolerance=tolerance, points=points, rounds=rounds,
                  seed=seed, progress=progress)

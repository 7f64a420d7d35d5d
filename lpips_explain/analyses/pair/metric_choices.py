"""Each metric's 2AFC choice on a triplet (REF, A, B): LPIPS beside ST-LPIPS, DISTS, SSIM and
PSNR, each on its own scale, with the layers (LPIPS, ST-LPIPS) or stages (DISTS) that drive
its choice, and the disagreement between the perceptual metrics as the headline.

A metric's *margin* is always "how much closer A is than B" on that metric's own scale:
``value_b - value_a`` for the three distances, ``value_a - value_b`` for SSIM and PSNR (higher
is closer), so a positive margin means the metric prefers A whatever its direction. Margins of
different metrics are never compared with one another, only their signs.

Costs: LPIPS's two breakdowns are the triplet's own; ST-LPIPS encodes REF once (through the
feature cache) and scores A and B in one batch; DISTS encodes REF once and A and B in one
batch; SSIM and PSNR are pixel formulas. A metric that cannot run is reported with its reason
while the others are still given (as for second opinions on a pair).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lpips_explain.analyses.jsonable import finite_or_none
from lpips_explain.analyses.pair.quality import psnr, ssim
from lpips_explain.analyses.pair.second_opinions import (
    LABELS,
    SCALES,
    MetricOutcome,
    check_metrics,
    stlpips_net,
)
from lpips_explain.core.decompose import Decomposition, decompose_encoded
from lpips_explain.errors import InputError, LpipsExplainError
from lpips_explain.validation import pct

#: The metrics whose disagreement is the headline (SSIM and PSNR are pixel formulas: that
#: they disagree with a perceptual metric is expected, and they are listed, not headlined).
PERCEPTUAL_METRICS: tuple[str, ...] = ("lpips", "stlpips", "dists")
#: Margins at most this far from 0 are a tie (as the triplet's own verdict).
TIE_TOLERANCE = 1e-9
MARGIN_CONVENTION = ("on the metric's own scale, positive means A is closer: value_b - value_a "
                     "for distances, value_a - value_b for SSIM and PSNR (higher is closer)")


@dataclass(frozen=True)
class MetricChoice(MetricOutcome):
    """One metric's 2AFC choice between A and B, or why it could not run."""

    metric: str
    net: str | None
    value_a: float | None  # the metric on (REF, A), its own scale; PSNR inf for identical
    value_b: float | None
    higher_is_closer: bool = False
    perceptual: bool | None = None
    drivers: tuple[dict, ...] = ()  # layers / stages agreeing with the choice, largest first
    parts: tuple[dict, ...] = ()  # every layer / stage: {name, margin}
    driver_kind: str | None = None  # "layers", "stages" or None (pixel formulas)
    texture_margin: float | None = None  # DISTS: the texture terms' part of the margin
    structure_margin: float | None = None  # DISTS: the structure terms' part
    error: str | None = None
    error_type: str | None = None
    exit_code: int | None = field(default=None, compare=False)

    @property
    def margin(self) -> float | None:
        """How much closer A is than B on this metric's scale (positive: A); None if it
        could not run; +-inf where PSNR is infinite for one candidate only."""
        if not self.ok or self.value_a is None or self.value_b is None:
            return None
        va, vb = self.value_a, self.value_b
        if math.isinf(va) and math.isinf(vb):
            return 0.0
        return va - vb if self.higher_is_closer else vb - va

    @property
    def choice(self) -> str | None:
        """"a", "b", "tie", or None when the metric could not run."""
        m = self.margin
        if m is None:
            return None
        if abs(m) <= TIE_TOLERANCE:
            return "tie"
        return "a" if m > 0 else "b"

    @property
    def agreeing(self) -> int:
        return len(self.drivers)

    def value_text(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        if self.metric == "psnr":
            return "identical" if math.isinf(value) else f"{value:.2f} dB"
        return f"{value:.4f}"

    @property
    def sentence(self) -> str | None:
        """What the metric chose, on its own scale, and what drives it."""
        if not self.ok or self.choice is None:
            return None
        va, vb = self.value_text(self.value_a), self.value_text(self.value_b)
        scale = "higher is closer" if self.higher_is_closer else "lower is closer"
        if self.choice == "tie":
            return f"{self.label} finds A and B equally close ({va} each)."
        win = self.choice.upper()
        text = f"{self.label} prefers {win} ({va} for A against {vb} for B, {scale})"
        if self.drivers:
            top = self.drivers[0]
            kind = self.driver_kind or "parts"
            text += (f"; {len(self.drivers)} of {len(self.parts)} {kind} agree, "
                     f"{top['name']} most ({pct(top['share'])} of their pull)")
        if self.texture_margin is not None and self.structure_margin is not None:
            sign = 1 if win == "A" else -1
            t, s = sign * self.texture_margin, sign * self.structure_margin
            if t > 0 and s > 0:
                text += "; texture and structure terms both"
            elif t > 0:
                text += "; its texture terms drive it (the structure terms pull the other way)"
            elif s > 0:
                text += "; its structure terms drive it (the texture terms pull the other way)"
        return text + "."

    def to_dict(self) -> dict:
        m = self.margin
        return {"metric": self.metric, "label": self.label, "net": self.net,
                "value_a": finite_or_none(self.value_a), "value_b": finite_or_none(self.value_b),
                "higher_is_closer": self.higher_is_closer, "scale": SCALES[self.metric],
                "choice": self.choice, "margin": finite_or_none(m),
                "perceptual": self.perceptual, "driver_kind": self.driver_kind,
                "drivers": list(self.drivers), "parts": list(self.parts),
                "texture_margin": self.texture_margin,
                "structure_margin": self.structure_margin,
                "sentence": self.sentence, "error": self.error, "error_type": self.error_type}


@dataclass(frozen=True)
class MetricChoices:
    """The metrics' choices on one triplet and the headline they support."""

    choices: tuple[MetricChoice, ...]

    def get(self, metric: str) -> MetricChoice | None:
        return next((c for c in self.choices if c.metric == metric), None)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(c.metric for c in self.choices)

    def _groups(self, metrics: Sequence[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for c in self.choices:
            if c.metric in metrics and c.choice is not None:
                groups.setdefault(c.choice, []).append(c.label)
        return groups

    @property
    def disagree(self) -> bool:
        """True when the perceptual metrics that ran do not all make the same choice."""
        return len(self._groups(PERCEPTUAL_METRICS)) > 1

    @property
    def headline(self) -> str | None:
        """"LPIPS prefers A; ST-LPIPS and DISTS prefer B." when the perceptual metrics
        disagree (a tie counts as a choice of its own); None when they agree."""
        if not self.disagree:
            return None
        groups = self._groups(PERCEPTUAL_METRICS)
        lpips_first = sorted(groups, key=lambda k: "LPIPS" not in groups[k])
        parts = []
        for key in lpips_first:
            names = _join(groups[key])
            many = len(groups[key]) > 1
            parts.append(f"{names} find{'' if many else 's'} A and B tied" if key == "tie"
                         else f"{names} prefer{'' if many else 's'} {key.upper()}")
        return "The metrics disagree: " + "; ".join(parts) + "."

    @property
    def agreement(self) -> str | None:
        """"LPIPS, ST-LPIPS and DISTS all prefer A." when two or more perceptual metrics ran
        and agree; None otherwise."""
        groups = self._groups(PERCEPTUAL_METRICS)
        if len(groups) != 1:
            return None
        key, names = next(iter(groups.items()))
        if len(names) < 2:
            return None
        return (f"{_join(names)} all find A and B tied." if key == "tie"
                else f"{_join(names)} all prefer {key.upper()}.")

    @property
    def sentences(self) -> tuple[str, ...]:
        """The headline (or the agreement), then each metric's sentence besides LPIPS's."""
        head = self.headline or self.agreement
        return tuple(s for s in (head, *(c.sentence for c in self.choices
                                         if c.metric != "lpips")) if s)

    def to_list(self) -> list[dict]:
        return [c.to_dict() for c in self.choices]


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _drivers(names: Sequence[str], margins: Sequence[float], choice: str | None
             ) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """(the parts agreeing with the choice, largest first, each with its share of their
    summed margin; every part with its margin)."""
    parts = tuple({"name": n, "margin": float(m)} for n, m in zip(names, margins, strict=True))
    if choice not in ("a", "b"):
        return (), parts
    sign = 1.0 if choice == "a" else -1.0
    agree = sorted((p for p in parts if sign * p["margin"] > 0),
                   key=lambda p: -sign * p["margin"])
    total = sum(sign * p["margin"] for p in agree)
    return tuple({**p, "share": sign * p["margin"] / total} for p in agree), parts


def lpips_like_choice(metric: str, net: str, dec_a: Decomposition, dec_b: Decomposition,
                      perceptual: bool | None) -> MetricChoice:
    """LPIPS or ST-LPIPS: the choice from two exact breakdowns; layer margins sum to it."""
    names = [la.name for la in dec_a.layers]
    margins = [lb.distance - la.distance
               for la, lb in zip(dec_a.layers, dec_b.layers, strict=True)]
    base = MetricChoice(metric, net, dec_a.distance, dec_b.distance, perceptual=perceptual,
                        driver_kind="layers")
    drivers, parts = _drivers(names, margins, base.choice)
    return MetricChoice(metric, net, dec_a.distance, dec_b.distance, perceptual=perceptual,
                        drivers=drivers, parts=parts, driver_kind="layers")


def dists_choice(result_a: Any, result_b: Any) -> MetricChoice:
    """DISTS: the choice from two exact stage splits; stage margins sum to it."""
    names = [s.name for s in result_a.stages]
    margins = [sb.total - sa.total
               for sa, sb in zip(result_a.stages, result_b.stages, strict=True)]
    base = MetricChoice("dists", "vgg", result_a.distance, result_b.distance,
                        perceptual=result_a.perceptual)
    drivers, parts = _drivers(names, margins, base.choice)
    return MetricChoice("dists", "vgg", result_a.distance, result_b.distance,
                        perceptual=result_a.perceptual, drivers=drivers, parts=parts,
                        driver_kind="stages",
                        texture_margin=result_b.texture - result_a.texture,
                        structure_margin=result_b.structure - result_a.structure)


def pixel_choice(metric: str, ref: Tensor, a: Tensor, b: Tensor) -> MetricChoice:
    fn = ssim if metric == "ssim" else psnr
    va, vb = (float(v) for v in fn(ref, torch.cat([a, b]), trusted=True))
    return MetricChoice(metric, None, va, vb, higher_is_closer=True)


def _failed(metric: str, net: str | None, exc: Exception) -> MetricChoice:
    return MetricChoice(metric, net, None, None, higher_is_closer=metric in ("ssim", "psnr"),
                        error=str(exc), error_type=type(exc).__name__,
                        exit_code=int(getattr(exc, "exit_code", 1)))


def metric_choices(ref: Tensor, a: Tensor, b: Tensor, dec_a: Decomposition,
                   dec_b: Decomposition, *, metrics: Sequence[str] | str | None = None,
                   lpips_perceptual: bool = True,
                   model: Callable[[str, str], Any] | None = None, top_k: int = 5,
                   cache: Any = None) -> MetricChoices:
    """Each metric's choice on the triplet (``ref``, ``a``, ``b``), LPIPS's two breakdowns
    ``dec_a``, ``dec_b`` reused. ``model(metric, net)`` builds (or returns) the DISTS or
    ST-LPIPS network; it may raise (weights not installed), which is that metric's error."""
    out: list[MetricChoice] = []
    for metric in check_metrics(metrics):
        net = (dec_a.net if metric == "lpips" else stlpips_net(dec_a.net)
               if metric == "stlpips" else "vgg" if metric == "dists" else None)
        try:
            if metric == "lpips":
                out.append(lpips_like_choice("lpips", dec_a.net, dec_a, dec_b,
                                             lpips_perceptual))
            elif metric in ("ssim", "psnr"):
                out.append(pixel_choice(metric, ref, a, b))
            elif model is None:
                raise InputError(f"No {LABELS[metric]} network was given.")
            elif metric == "stlpips":
                st = model(metric, str(net))
                with torch.no_grad():
                    enc = cache.encode(st, ref) if cache is not None else st.encode(ref)
                sa, sb = decompose_encoded(st, enc, torch.cat([a, b]), top_k)
                out.append(lpips_like_choice("stlpips", st.spec.name, sa, sb, st.perceptual))
            else:
                ds = model(metric, str(net))
                with torch.no_grad():
                    enc = ds.encode(ref)
                ra, rb = ds.decompose_encoded(enc, torch.cat([a, b]))
                out.append(dists_choice(ra, rb))
        except LpipsExplainError as exc:
            out.append(_failed(metric, net, exc))
    return MetricChoices(tuple(out))

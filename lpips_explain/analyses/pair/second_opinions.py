"""Second opinions on one pair: LPIPS beside ST-LPIPS, DISTS, SSIM and PSNR, each on its own
scale, with a sentence only where the numbers support one.

LPIPS is known to go wrong in two ways: it is not shift-tolerant (a 1 px misalignment adds
distance nobody sees), and it compares textures pixel by pixel (two patches of the same
grass differ). ST-LPIPS (Ghildyal and Liu 2022) and DISTS (Ding et al. 2020) were built
for exactly those cases, so where they disagree with LPIPS in the direction of its known
weakness, that is said, with the numbers (docs/architecture.md#faithfulness).

Costs: the LPIPS decomposition is the one already computed; ST-LPIPS and DISTS run their
own trunk once per image (the reference encoded once, through the feature cache for
ST-LPIPS); SSIM and PSNR are pixel formulas (``quality``). A metric that cannot run (its
weights are not installed, the image is below its minimum size, the pair is too large for
its untiled pass) is reported with its reason while the others are still given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.pair.quality import psnr, ssim
from lpips_explain.analyses.pair.sensitivity import Sensitivity
from lpips_explain.core.decompose import Decomposition, decompose_encoded
from lpips_explain.core.modes import EXACT, Mode
from lpips_explain.errors import InputError, LpipsExplainError, UnknownOptionError
from lpips_explain.validation import pct

#: Every metric, in the order results list them (LPIPS first: the metric being explained).
METRICS: tuple[str, ...] = ("lpips", "stlpips", "dists", "ssim", "psnr")
LABELS = {"lpips": "LPIPS", "stlpips": "ST-LPIPS", "dists": "DISTS", "ssim": "SSIM",
          "psnr": "PSNR"}
#: What each metric's number means, for tables (each metric keeps its own scale).
SCALES = {"lpips": "distance, 0 = identical", "stlpips": "distance, 0 = identical",
          "dists": "distance, 0 = identical", "ssim": "similarity, 1 = identical",
          "psnr": "dB, higher = closer (inf = identical)"}
#: The trunks ST-LPIPS ships; LPIPS squeeze is seconded by ST-LPIPS alex.
STLPIPS_NETS: tuple[str, ...] = ("alex", "vgg")

# --- when a sentence is said ---------------------------------------------------------------
# Measured on the app's sample photographs at 128 px (chelsea, astronaut, coffee) against
# their 2-3 px shifts, Gaussian noise (0.08, 0.15), a 3x3 blur and a 1.3x brightening:
# ST-LPIPS was 48-78 % lower than LPIPS (same trunk) for every shift, and at most 41 % lower
# for every other distortion (often higher: noise, vgg blur). Half is the line between.
# The gap alone does not prove a misalignment: JPEG q10 of the astronaut (the app's default
# sample) gave 71 % on alex, as large as a shift (ST-LPIPS's blur pooling also discounts
# blocking), so the sentence names both causes, and cites LPIPS's own 1 px shift row.
STLPIPS_GAP = 0.5
#: Below this LPIPS distance the pair is close already: a gap between two small numbers
#: says nothing about misalignment (the 1.3x brightening sat at 0.02-0.06).
LPIPS_SHIFT_FLOOR = 0.05
# DISTS's terms are measured against their maxima: texture / sum(alpha) (the channel means
# differ) and structure / sum(beta) (the maps are uncorrelated at 1). Two independent
# samples of one random texture gave texture 0.14-0.17 of its maximum and structure
# 0.54-0.58; shifts, noise, blur, brightening and shuffled 16 px blocks of a photograph gave
# texture 0.05-0.34 with structure 0.08-0.38, or texture above 0.3. Small texture with large
# structure is "same statistics, other pixels".
DISTS_TEXTURE_SMALL = 0.2
DISTS_STRUCTURE_LARGE = 0.4
#: The LPIPS distance from which a texture mismatch is worth explaining away (the noise
#: textures above gave 0.13-0.18 on alex; identical-looking pairs stay below 0.05).
LPIPS_TEXTURE_FLOOR = 0.1
#: The geometric rows of the sensitivity table that back the shift sentence.
SHIFT_ROW = ("translation", 1.0)


class MetricOutcome:
    """What one metric's result (an :class:`Opinion`, a ``metric_choices.MetricChoice``)
    says about itself: its name for people, and whether it could be computed."""

    metric: str
    error: str | None

    @property
    def label(self) -> str:
        return LABELS[self.metric]

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Opinion(MetricOutcome):
    """One metric's answer on the pair, on its own scale, or why it could not run."""

    metric: str
    net: str | None
    distance: float | None  # the metric's value (SSIM, PSNR: a similarity, see higher_is_closer)
    higher_is_closer: bool = False
    perceptual: bool | None = None  # None for SSIM and PSNR (pixel formulas)
    mode: Mode | None = None
    layers: tuple[dict, ...] | None = None  # LPIPS, ST-LPIPS
    stages: tuple[dict, ...] | None = None  # DISTS
    texture: float | None = None  # DISTS: sum of its texture terms
    structure: float | None = None  # DISTS: sum of its structure terms
    texture_fraction: float | None = None  # DISTS: texture / sum(alpha)
    structure_fraction: float | None = None  # DISTS: structure / sum(beta)
    error: str | None = None
    error_type: str | None = None
    sentence: str | None = None
    exit_code: int | None = field(default=None, compare=False)  # the CLI's code for the error
    result: Any = field(default=None, repr=False, compare=False)  # the engine's own result

    def value_text(self) -> str:
        """The value for a table: 4 decimals, PSNR in dB, or the reason it is missing."""
        if self.error is not None:
            return "not computed"
        if self.distance is None or not np.isfinite(self.distance):
            return "identical" if self.metric == "psnr" else "n/a"
        return f"{self.distance:.2f} dB" if self.metric == "psnr" else f"{self.distance:.4f}"

    def to_dict(self) -> dict:
        d = {"metric": self.metric, "label": self.label, "net": self.net,
             "distance": self.distance, "higher_is_closer": self.higher_is_closer,
             "scale": SCALES[self.metric], "perceptual": self.perceptual,
             "mode": self.mode.to_dict() if self.mode is not None else None}
        if self.layers is not None:
            d["layers"] = list(self.layers)
        if self.stages is not None:
            d["stages"] = list(self.stages)
        if self.metric == "dists":
            d.update(texture=self.texture, structure=self.structure,
                     texture_fraction=self.texture_fraction,
                     structure_fraction=self.structure_fraction)
        d.update(error=self.error, error_type=self.error_type, sentence=self.sentence)
        return d


@dataclass(frozen=True)
class SecondOpinions:
    """The metrics side by side and the sentences their numbers support."""

    opinions: tuple[Opinion, ...]

    @property
    def sentences(self) -> tuple[str, ...]:
        return tuple(o.sentence for o in self.opinions if o.sentence)

    def get(self, metric: str) -> Opinion | None:
        return next((o for o in self.opinions if o.metric == metric), None)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(o.metric for o in self.opinions)

    def to_list(self) -> list[dict]:
        return [o.to_dict() for o in self.opinions]

    def values_text(self) -> str:
        """One line, each metric on its own scale: "LPIPS alex 0.1546 · DISTS 0.1881 · ...",
        a metric that could not run as "not computed" (the app's line, the report, the PNG)."""
        items = []
        for o in self.opinions:
            net = f" {o.net}" if o.net and o.metric != "dists" else ""
            items.append(f"{o.label}{net} {o.value_text()}")
        return " · ".join(items)

    @property
    def failures(self) -> tuple[str, ...]:
        """One sentence per metric that could not run: its name and the reason."""
        return tuple(f"{o.label} not computed: {o.error}" for o in self.opinions if o.error)


def check_metrics(metrics: Iterable[str] | str | None) -> tuple[str, ...]:
    """The metrics named (None or "all": every one), in :data:`METRICS` order; LPIPS is
    always included (it is the metric explained). Unknown names are an InputError."""
    if metrics is None or (isinstance(metrics, str) and metrics.lower() == "all"):
        return METRICS
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    wanted = {str(m).strip().lower().replace("-", "").replace("_", "") for m in names}
    if "all" in wanted:
        return METRICS
    unknown = sorted(wanted - set(METRICS))
    if unknown:
        raise UnknownOptionError("metric", unknown[0], (*METRICS, "all"))
    return tuple(m for m in METRICS if m in wanted or m == "lpips")


def stlpips_net(lpips_net: str) -> str:
    """The ST-LPIPS trunk that seconds LPIPS ``lpips_net``: the same one where it exists."""
    return lpips_net if lpips_net in STLPIPS_NETS else "alex"


def _failed(metric: str, net: str | None, exc: Exception) -> Opinion:
    return Opinion(metric, net, None, higher_is_closer=metric in ("ssim", "psnr"),
                   error=str(exc), error_type=type(exc).__name__,
                   exit_code=int(getattr(exc, "exit_code", 1)))


def lpips_opinion(dec: Decomposition, *, perceptual: bool, mode: Mode) -> Opinion:
    return Opinion("lpips", dec.net, dec.distance, perceptual=perceptual, mode=mode,
                   layers=tuple(lay.to_dict() for lay in dec.layers), result=dec)


def stlpips_opinion(model: Any, ta: Tensor, tb: Tensor, *, top_k: int = 5,
                    cache: Any = None) -> Opinion:
    """ST-LPIPS on the pair: the reference encoded once (from ``cache`` when given), one
    pass over the other image, the exact layer breakdown."""
    with torch.no_grad():
        ref = cache.encode(model, ta) if cache is not None else model.encode(ta)
    dec = decompose_encoded(model, ref, tb, top_k)[0]
    return Opinion("stlpips", model.spec.name, dec.distance, perceptual=model.perceptual,
                   mode=EXACT, layers=tuple(lay.to_dict() for lay in dec.layers), result=dec)


def dists_opinion(model: Any, ta: Tensor, tb: Tensor) -> Opinion:
    """DISTS on the pair (one pass per image) with its exact stage / texture / structure split."""
    r = model.compare(ta, tb)
    alpha, beta = float(model.alpha64.sum()), float(model.beta64.sum())
    return Opinion("dists", r.net, r.distance, perceptual=r.perceptual, mode=EXACT,
                   stages=tuple(s.to_dict() for s in r.stages), texture=r.texture,
                   structure=r.structure,
                   texture_fraction=r.texture / alpha if alpha > 0 else None,
                   structure_fraction=r.structure / beta if beta > 0 else None, result=r)


def pixel_opinion(metric: str, ta: Tensor, tb: Tensor) -> Opinion:
    fn = ssim if metric == "ssim" else psnr
    value = float(fn(ta, tb, trusted=True)[0])
    return Opinion(metric, None, value if np.isfinite(value) else None, higher_is_closer=True,
                   mode=EXACT)


def second_opinions(ta: Tensor, tb: Tensor, lpips: Decomposition, *,
                    metrics: Sequence[str] | None = None, lpips_perceptual: bool = True,
                    lpips_mode: Mode = EXACT,
                    model: Callable[[str, str], Any] | None = None, top_k: int = 5,
                    cache: Any = None, sensitivity: Sensitivity | None = None,
                    too_large: str | None = None, explained: str = "B") -> SecondOpinions:
    """The metrics on the pair (``ta`` the reference, ``tb`` the other image), LPIPS's
    breakdown ``lpips`` reused. ``model(metric, net)`` builds (or returns) the DISTS or
    ST-LPIPS network; it may raise (weights not installed), which is that metric's error.
    ``too_large``: why an untiled pass does not fit the memory budget (None: it does);
    DISTS and ST-LPIPS have no tiled form (DISTS's statistics are global) and are then not
    run, with that reason.
    ``sensitivity``: LPIPS's sensitivity of this pair, whose geometric rows back the
    shift sentence; ``explained``: the name of ``tb`` in the sentences."""
    wanted = check_metrics(metrics)
    out: list[Opinion] = []
    for metric in wanted:
        net = (lpips.net if metric == "lpips" else stlpips_net(lpips.net)
               if metric == "stlpips" else "vgg" if metric == "dists" else None)
        try:
            if metric == "lpips":
                out.append(lpips_opinion(lpips, perceptual=lpips_perceptual, mode=lpips_mode))
            elif metric in ("ssim", "psnr"):
                out.append(pixel_opinion(metric, ta, tb))
            elif too_large:
                raise InputError(f"{LABELS[metric]} has no tiled form and was not run: "
                                 f"{too_large}.")
            elif model is None:
                raise InputError(f"No {LABELS[metric]} network was given.")
            elif metric == "stlpips":
                out.append(stlpips_opinion(model(metric, str(net)), ta, tb, top_k=top_k,
                                           cache=cache))
            else:
                out.append(dists_opinion(model(metric, str(net)), ta, tb))
        except LpipsExplainError as exc:
            out.append(_failed(metric, net, exc))
    return with_sentences(tuple(out), sensitivity, explained)


# --- the sentences ---------------------------------------------------------------------------


def with_sentences(opinions: Sequence[Opinion], sensitivity: Sensitivity | None = None,
                   explained: str = "B") -> SecondOpinions:
    """The opinions, each given the sentence its numbers support (none when nothing stands
    out)."""
    from dataclasses import replace

    ops = {o.metric: o for o in opinions}
    said = {"stlpips": shift_sentence(ops.get("lpips"), ops.get("stlpips"), sensitivity,
                                      explained),
            "dists": texture_sentence(ops.get("lpips"), ops.get("dists"), explained)}
    return SecondOpinions(tuple(replace(o, sentence=said.get(o.metric)) for o in opinions))


def stlpips_gap(lp: Opinion | None, st: Opinion | None) -> float | None:
    """1 - ST-LPIPS / LPIPS (same trunk): how much of LPIPS's distance a shift-tolerant
    trunk does not see; None when either is missing or LPIPS is 0."""
    if lp is None or st is None or not lp.ok or not st.ok or not lp.distance or st.distance is None:
        return None
    return 1.0 - st.distance / lp.distance


def shift_sentence(lp: Opinion | None, st: Opinion | None,
                   sensitivity: Sensitivity | None = None, explained: str = "B") -> str | None:
    """"ST-LPIPS is 62% lower: ..." when ST-LPIPS is at least :data:`STLPIPS_GAP` lower
    than LPIPS and LPIPS is at least :data:`LPIPS_SHIFT_FLOOR`."""
    gap = stlpips_gap(lp, st)
    if gap is None or gap < STLPIPS_GAP or lp.distance < LPIPS_SHIFT_FLOOR:  # type: ignore[union-attr, operator]
        return None
    text = (f"ST-LPIPS is {pct(gap)} lower than LPIPS ({st.distance:.4f} against "  # type: ignore[union-attr]
            f"{lp.distance:.4f}, both {st.net}): much of this distance is in what a "  # type: ignore[union-attr]
            f"shift-tolerant, anti-aliased trunk does not count: a small misalignment, or "
            f"aliasing-prone fine detail such as JPEG blocking.")
    row = next((r for r in (sensitivity.geometric if sensitivity is not None else ())
                if (r.transform, float(r.strength)) == SHIFT_ROW), None)
    if row is not None:
        unit = "px" if row.unit.startswith("pixel") else row.unit
        text += (f" LPIPS's own sensitivity agrees: shifting {explained} by {row.strength:g} "
                 f"{unit} more changes LPIPS by {row.change:+.4f}.")
    return text


def texture_sentence(lp: Opinion | None, ds: Opinion | None, explained: str = "B"
                     ) -> str | None:
    """"DISTS's texture terms are small: ..." when DISTS's texture terms are at most
    :data:`DISTS_TEXTURE_SMALL` of their maximum, its structure terms at least
    :data:`DISTS_STRUCTURE_LARGE` of theirs, and LPIPS at least :data:`LPIPS_TEXTURE_FLOOR`."""
    if (lp is None or ds is None or not lp.ok or not ds.ok or lp.distance is None
            or ds.texture_fraction is None or ds.structure_fraction is None):
        return None
    if not (lp.distance >= LPIPS_TEXTURE_FLOOR and ds.texture_fraction <= DISTS_TEXTURE_SMALL
            and ds.structure_fraction >= DISTS_STRUCTURE_LARGE):
        return None
    return (f"DISTS's texture terms are small ({pct(ds.texture_fraction)} of their maximum, "
            f"while its structure terms are at {pct(ds.structure_fraction)} of theirs) though "
            f"LPIPS is {lp.distance:.4f}: {explained}'s textures differ pixel by pixel but match in "
            f"statistics.")

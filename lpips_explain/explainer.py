"""The Explainer: one object that loads LPIPS once and answers distance, explain and triplet."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import images
from .decompose import Decomposition, decompose_encoded
from .errors import InputError, lookup
from .images import AlignInfo, LoadedImage
from .model import LpipsNet, ReferenceScorer, build_lpips
from .weights import WeightsInfo

if TYPE_CHECKING:  # imported lazily at run time: they pull in Captum, scikit-image
    from .attribution import Attribution
    from .counterfactual import Repair, Sensitivity
    from .triplet import TripletExplanation

SCHEMA = "lpips-explain/1"
Progress = Callable[[int, int, str], None]

RANDOM_TRUNK_WARNING = (
    "The trunk has random weights: these numbers show the structure of the computation "
    "only and are NOT a perceptual metric."
)


@dataclass(frozen=True)
class PreparedInputs:
    """Loaded, checked and size-aligned images, with what was done to them."""

    loaded: tuple[LoadedImage, ...]
    tensors: tuple[torch.Tensor, ...]  # 1x3xHxW in [0, 1], common size
    align: AlignInfo
    warnings: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        return self.align.size

    def describe(self, i: int) -> dict:
        im = self.loaded[i]
        return {"name": im.name, "original_size": list(im.original_size), "mode": im.mode,
                "format": im.format}


def _anomalies(tensors: Sequence[torch.Tensor], labels: Sequence[str]) -> list[str]:
    notes = []
    for t, label in zip(tensors, labels, strict=True):
        if bool((t == t[..., :1, :1]).all()):  # exact: a float std of a flat image is not 0
            notes.append(f"Image {label} is constant (one flat colour): there is no structure "
                         f"for the network to compare, so the distance reflects colour only.")
    for i in range(len(tensors)):
        for j in range(i + 1, len(tensors)):
            if torch.equal(tensors[i], tensors[j]):
                notes.append(f"Images {labels[i]} and {labels[j]} are pixel-identical (after "
                             f"alignment): their distance is 0 and every gradient between them "
                             f"vanishes.")
    return notes


@dataclass(frozen=True)
class Explanation:
    """Everything lpips-explain knows about one pair; ``to_dict`` is the JSON contract."""

    decomposition: Decomposition
    inputs: PreparedInputs
    backbone: WeightsInfo
    lin_file: str
    attribution: Attribution | None = None
    sensitivity: Sensitivity | None = None
    repair: Repair | None = None
    summary: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    timings_ms: dict = field(default_factory=dict)
    swapped: bool = False  # True: B is the reference and A is the explained image

    @property
    def distance(self) -> float:
        return self.decomposition.distance

    @property
    def category(self) -> str:
        from .summary import category

        return category(self.distance)

    @property
    def a(self) -> torch.Tensor:
        return self.inputs.tensors[0]

    @property
    def b(self) -> torch.Tensor:
        return self.inputs.tensors[1]

    def to_dict(self) -> dict:
        d = self.decomposition
        attr = (self.attribution.to_dict() if self.attribution is not None else
                {"method": None, "sum": None, "distance": None, "completeness_gap": None})
        sens = self.sensitivity
        rep = self.repair
        return {
            "schema": SCHEMA,
            "kind": "explanation",
            "distance": d.distance,
            "category": self.category,
            "net": d.net,
            "version": d.version,
            "backbone": self.backbone.to_dict(),
            "lin_weights": self.lin_file,
            "explained": "a" if self.swapped else "b",
            "inputs": {
                "a": self.inputs.describe(0),
                "b": self.inputs.describe(1),
                "size": list(d.size),
                "policy": self.inputs.align.policy,
                "alignment": self.inputs.align.to_dict(),
            },
            "layers": [lay.to_dict() for lay in d.layers],
            "attribution": attr,
            "sensitivity": sens.rows() if sens is not None else [],
            "sweeps": [s.to_dict() for s in sens.sweeps] if sens is not None else [],
            "most_sensitive": sens.most_sensitive if sens is not None else None,
            "repair": rep.to_dict() if rep is not None else {"patch": None, "curve": []},
            "summary": list(self.summary),
            "warnings": list(self.warnings),
            "timings_ms": dict(self.timings_ms),
        }


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.ms[name] = round((time.perf_counter() - t0) * 1000, 1)
        return out


class Explainer:
    """LPIPS with explanations. Build once, then call distance / explain / explain_triplet.

    One Explainer may be shared between threads: plain forwards touch no state, and
    hook-using attribution methods run on a private copy of the network.
    """

    def __init__(self, net: str = "alex", version: str = "0.1",
                 backbone_weights: str | os.PathLike | None = None, seed: int = 0, *,
                 size_policy: str = "resize", lin_weights: str | os.PathLike | None = None,
                 max_pixels: int | None = None, progress: bool = False):
        lookup("size policy", size_policy, {p: p for p in images.SIZE_POLICIES})
        if (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
                or not 0 <= int(seed) < 2**63):
            raise InputError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}.")
        seed = int(seed)
        self.model: LpipsNet = build_lpips(net, version, backbone_weights, seed,
                                           lin_weights=lin_weights, progress=progress)
        self.size_policy = size_policy
        self.max_pixels = max_pixels
        self.seed = seed
        self._lock = threading.Lock()

    # -- properties ---------------------------------------------------------------
    @property
    def net(self) -> str:
        return self.model.spec.name

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def weights_info(self) -> WeightsInfo:
        return self.model.weights_info

    @property
    def perceptual(self) -> bool:
        return self.weights_info.perceptual

    # -- intake -------------------------------------------------------------------
    def load(self, image: Any, *, value_range: str | None = None,
             label: str = "image") -> LoadedImage:
        """Decode and check one image (any accepted source), including the trunk's minimum size."""
        # The cap (env LPIPS_EXPLAIN_MAX_PIXELS unless given) is read outside the try: a bad
        # setting is a setup error, not something wrong with the image being loaded.
        cap = self.max_pixels if self.max_pixels is not None else images.max_pixels_from_env()
        try:
            im = images.load_image(image, value_range=value_range, max_pixels=cap)
            images.check_min_size(im.size, self.net, label=f"image {label} ({im.name})")
        except InputError as exc:
            # Name which input was refused: with three uploads "the file is empty" is not
            # enough. The same instance is re-raised, so its class and fields are kept.
            if f"image {label.lower()}" not in str(exc).lower():
                name = _source_name(image)
                exc.args = (f"Image {label}{f' ({name})' if name else ''}: {exc}",)
            raise
        return im

    def prepare(self, *sources: Any, value_range: str | None = None,
                labels: Sequence[str] | None = None,
                size_policy: str | None = None) -> PreparedInputs:
        """Load several images and bring them to one size following the size policy."""
        labels = list(labels or "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(sources)])
        if len(labels) != len(sources):
            raise InputError(f"{len(sources)} images but {len(labels)} labels.")
        loaded = [self.load(s, value_range=value_range, label=lab)
                  for s, lab in zip(sources, labels, strict=True)]
        tensors, align = images.align_images(loaded, size_policy or self.size_policy, labels)
        images.check_min_size(align.size, self.net, label="the aligned images")
        warnings = [f"{lab}: {w}" for im, lab in zip(loaded, labels, strict=True)
                    for w in im.warnings]
        warnings += list(align.notes)
        warnings += _anomalies(tensors, labels)
        if not self.perceptual:
            warnings.insert(0, RANDOM_TRUNK_WARNING)
        return PreparedInputs(tuple(loaded), tuple(tensors), align, tuple(warnings))

    def scorer(self, reference: torch.Tensor) -> ReferenceScorer:
        """f_ref(x) = d(reference, x), with the reference encoded once."""
        return ReferenceScorer(self.model, reference)

    # -- distance -----------------------------------------------------------------
    def distance(self, a: Any, b: Any, *, value_range: str | None = None) -> float | list[float]:
        """LPIPS d(a, b); with a list as ``b``, one distance per candidate (a encoded once)."""
        if isinstance(b, (list, tuple)):
            if not b:
                return []
            prep = self.prepare(a, *b, value_range=value_range,
                                labels=["reference"] + [f"candidate {i}" for i in range(len(b))])
            scorer = self.scorer(prep.tensors[0])
            return scorer.score_batches(torch.cat(prep.tensors[1:])).tolist()
        prep = self.prepare(a, b, value_range=value_range)
        with torch.no_grad():
            return float(self.model(prep.tensors[0], prep.tensors[1])[0])

    def decompose(self, a: Any, b: Any, *, top_k: int = 5,
                  value_range: str | None = None) -> Decomposition:
        """The exact layer / channel / spatial breakdown of d(a, b)."""
        prep = self.prepare(a, b, value_range=value_range)
        scorer = self.scorer(prep.tensors[0])
        return decompose_encoded(self.model, scorer.ref, prep.tensors[1], top_k)[0]

    # -- explanations ---------------------------------------------------------------
    def explain(self, a: Any, b: Any, *, attribution: str | None = "integrated_gradients",
                steps: int | None = None, sensitivity: bool = True, repair: bool = True,
                patch: int = 32, top_k: int = 5, progress: Progress | None = None,
                value_range: str | None = None, swap: bool = False,
                attribution_params: dict | None = None) -> Explanation:
        """Explain d(a, b): breakdown, attribution of B, counterfactuals, repair and a summary.

        ``attribution=None``, ``sensitivity=False`` and ``repair=False`` skip those parts
        (the fast first view). With ``swap=True`` the roles are exchanged (attribute A).
        """
        timer = _Timer()
        if attribution is not None:
            from .attribution import get_method

            get_method(attribution)  # an unknown name fails before any work
        prep = timer.run("load", lambda: self.prepare(a, b, value_range=value_range))
        return self.explain_prepared(prep, attribution=attribution, steps=steps,
                                     sensitivity=sensitivity, repair=repair, patch=patch,
                                     top_k=top_k, progress=progress, swap=swap,
                                     attribution_params=attribution_params, timer=timer)

    def explain_prepared(self, prep: PreparedInputs, *, attribution: str | None,
                         steps: int | None, sensitivity: bool, repair: bool, patch: int,
                         top_k: int, progress: Progress | None, swap: bool = False,
                         attribution_params: dict | None = None,
                         timer: _Timer | None = None) -> Explanation:
        from .counterfactual import check_patch

        timer = timer or _Timer()
        if repair:
            check_patch(patch, prep.size)  # refuse before any slow work
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 1):
            raise InputError(f"steps must be a positive integer or None (adaptive), got "
                             f"{steps!r}.")
        a, b = prep.tensors[0], prep.tensors[1]
        # ta is the reference, tb the explained image (B unless the roles are swapped).
        ta, tb = (b, a) if swap else (a, b)
        scorer = self.scorer(ta)
        decomposition = timer.run(
            "decompose", lambda: decompose_encoded(self.model, scorer.ref, tb, top_k)[0])
        if swap:
            decomposition = _swap_activations(decomposition)
        warnings = list(prep.warnings)
        if swap:
            warnings.append("Roles swapped: B is the reference and A is explained.")
        attr = sens = rep = None
        if attribution is not None:
            from .attribution import attribute

            attr = timer.run("attribution", lambda: attribute(
                self.model, a, b, attribution, steps=steps, progress=progress,
                seed=self.seed, swap=swap, **(attribution_params or {})))
        if sensitivity:
            from .counterfactual import sensitivity as run_sensitivity

            sens = timer.run("sensitivity", lambda: run_sensitivity(
                self.model, ta, tb, scorer=scorer, seed=self.seed, progress=progress))
        if repair:
            from .counterfactual import repair as run_repair

            rep = timer.run("repair", lambda: run_repair(
                self.model, ta, tb, patch=patch, scorer=scorer, progress=progress))
        expl = Explanation(decomposition, prep, self.weights_info, self.model.lin_file, attr,
                           sens, rep, (), tuple(warnings), dict(timer.ms), swapped=swap)
        return replace(expl, summary=tuple(_summarize(expl)))

    def combine(self, base: Explanation, *parts: Explanation) -> Explanation:
        """One explanation from parts computed separately on the same inputs.

        The app caches the attribution, the sensitivity and the repair apart, so that
        changing one option recomputes one part; this puts them together again (and
        rebuilds the summary from all of them). Each part's non-empty attribution,
        sensitivity and repair replace the base's.
        """
        fields: dict[str, Any] = {}
        timings = dict(base.timings_ms)
        for part in parts:
            same = (part.swapped == base.swapped and len(part.inputs.tensors) ==
                    len(base.inputs.tensors) and all(
                        torch.equal(x, y) for x, y in zip(part.inputs.tensors,
                                                          base.inputs.tensors, strict=True)))
            if not same:
                raise InputError("Parts of one explanation must come from the same images "
                                 "and the same roles.")
            for name in ("attribution", "sensitivity", "repair"):
                if getattr(part, name) is not None:
                    fields[name] = getattr(part, name)
                    if name in part.timings_ms:
                        timings[name] = part.timings_ms[name]
        expl = replace(base, **fields, timings_ms=timings)
        return replace(expl, summary=tuple(_summarize(expl)))

    def explain_triplet(self, ref: Any, a: Any, b: Any, *,
                        attribution: str | None = "integrated_gradients",
                        steps: int | None = None, patch: int = 32, top_k: int = 5,
                        progress: Progress | None = None, value_range: str | None = None,
                        attribution_params: dict | None = None) -> TripletExplanation:
        """Explain a 2AFC decision: which of A and B is closer to REF, by how much and why."""
        from .triplet import explain_triplet

        if attribution is not None:
            from .attribution import get_method

            get_method(attribution)
        prep = self.prepare(ref, a, b, value_range=value_range, labels=["REF", "A", "B"])
        return explain_triplet(self, prep, attribution=attribution, steps=steps, patch=patch,
                               top_k=top_k, progress=progress,
                               attribution_params=attribution_params)


def _summarize(expl: Explanation) -> list[str]:
    from .summary import summarize

    align = expl.inputs.align
    ta, tb = (expl.b, expl.a) if expl.swapped else (expl.a, expl.b)
    return summarize(expl.decomposition, attribution=expl.attribution,
                     sensitivity=expl.sensitivity, repair=expl.repair,
                     perceptual=expl.backbone.perceptual,
                     aligned=align.policy if any(align.changed) else None,
                     identical=bool(torch.equal(ta, tb)),
                     explained="A" if expl.swapped else "B")


def _swap_activations(dec: Decomposition) -> Decomposition:
    """With roles swapped the breakdown is computed as (B, A): put A's activations back
    under ``activation_a`` so the field names keep meaning image A and image B."""
    layers = tuple(replace(lay, top_channels=tuple(
        replace(c, activation_a=c.activation_b, activation_b=c.activation_a)
        for c in lay.top_channels)) for lay in dec.layers)
    return replace(dec, layers=layers)


def _source_name(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    name = getattr(source, "name", None)
    return os.path.basename(name) if isinstance(name, str) else None

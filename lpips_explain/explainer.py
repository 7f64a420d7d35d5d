"""The Explainer: one object that loads LPIPS once and answers distance, explain and triplet."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lpips_explain import notices
from lpips_explain.analyses.explanation import (
    RANDOM_TRUNK_WARNING,
    SCHEMA,
    Explanation,
    join_parts,
    summary_of,
    swap_activations,
)
from lpips_explain.core.decompose import Decomposition, decompose_encoded
from lpips_explain.core.model import LpipsNet, ReferenceScorer, build_lpips
from lpips_explain.core.trunks import check_min_size
from lpips_explain.core.weights import WeightsInfo
from lpips_explain.errors import InputError, lookup
from lpips_explain.intake import align as _align
from lpips_explain.intake import images
from lpips_explain.intake.images import LoadedImage
from lpips_explain.intake.prepared import PreparedInputs, anomalies
from lpips_explain.notices import Notice

if TYPE_CHECKING:  # imported lazily at run time: they pull in Captum, scikit-image
    from lpips_explain.analyses.colorspace import ColorspaceRow
    from lpips_explain.analyses.diagnostics import Check
    from lpips_explain.analyses.robust import RobustReport
    from lpips_explain.analyses.triplet import TripletExplanation
    from lpips_explain.engines.audit import AuditResult

__all__ = ["RANDOM_TRUNK_WARNING", "SCHEMA", "Explainer", "Explanation", "PreparedInputs"]

Progress = Callable[[int, int, str], None]


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
        lookup("size policy", size_policy, {p: p for p in _align.SIZE_POLICIES})
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
            check_min_size(im.size, self.net, label=f"image {label} ({im.name})")
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
        tensors, align = _align.align_images(loaded, size_policy or self.size_policy, labels)
        check_min_size(align.size, self.net, label="the aligned images")
        warnings = [Notice(notices.IMAGE, f"{lab}: {w}")
                    for im, lab in zip(loaded, labels, strict=True) for w in im.warnings]
        warnings += [Notice(notices.ALIGNMENT, n) for n in align.notes]
        warnings += anomalies(tensors, labels)
        if not self.perceptual:
            warnings.insert(0, notices.random_trunk())
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
            from lpips_explain.analyses.attribution import get_method

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
        from lpips_explain.analyses.repair import check_patch

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
            decomposition = swap_activations(decomposition)
        warnings = list(prep.warnings)
        if swap:
            warnings.append(Notice(notices.ROLES_SWAPPED,
                                   "Roles swapped: B is the reference and A is explained."))
        attr = sens = rep = None
        if attribution is not None:
            from lpips_explain.analyses.attribution import attribute

            roles = ("b", "a") if swap else ("a", "b")  # (reference, explained), as ta, tb
            attr = timer.run("attribution", lambda: attribute(
                self.model, ta, tb, attribution, steps=steps, progress=progress,
                seed=self.seed, roles=roles, **(attribution_params or {})))
        if sensitivity:
            from lpips_explain.analyses.sensitivity import sensitivity as run_sensitivity

            sens = timer.run("sensitivity", lambda: run_sensitivity(
                self.model, ta, tb, scorer=scorer, seed=self.seed, progress=progress))
        if repair:
            from lpips_explain.analyses.repair import repair as run_repair

            rep = timer.run("repair", lambda: run_repair(
                self.model, ta, tb, patch=patch, scorer=scorer, progress=progress))
        expl = Explanation(decomposition, prep, self.weights_info, self.model.lin_file, attr,
                           sens, rep, (), tuple(warnings), dict(timer.ms), swapped=swap)
        return replace(expl, summary=tuple(summary_of(expl)))

    def combine(self, base: Explanation, *parts: Explanation) -> Explanation:
        """One explanation from parts computed separately on the same inputs.

        The app caches the attribution, the sensitivity and the repair apart, so that
        changing one option recomputes one part; this puts them together again (and
        rebuilds the summary from all of them). Each part's non-empty attribution,
        sensitivity and repair replace the base's.
        """
        return join_parts(base, *parts)

    def explain_triplet(self, ref: Any, a: Any, b: Any, *,
                        attribution: str | None = "integrated_gradients",
                        steps: int | None = None, patch: int = 32, top_k: int = 5,
                        progress: Progress | None = None, value_range: str | None = None,
                        attribution_params: dict | None = None) -> TripletExplanation:
        """Explain a 2AFC decision: which of A and B is closer to REF, by how much and why."""
        from lpips_explain.analyses.triplet import explain_triplet

        if attribution is not None:
            from lpips_explain.analyses.attribution import get_method

            get_method(attribution)
        prep = self.prepare(ref, a, b, value_range=value_range, labels=["REF", "A", "B"])
        return explain_triplet(self.model, prep, seed=self.seed, attribution=attribution,
                               steps=steps, patch=patch, top_k=top_k, progress=progress,
                               attribution_params=attribution_params)

    # -- checks -------------------------------------------------------------------------
    def self_checks(self, a: torch.Tensor, b: torch.Tensor, *,
                    ig_steps: int | None = None) -> list[Check]:
        """Live self-checks of the maths and the weights on one prepared pair."""
        from lpips_explain.analyses.diagnostics import self_checks

        return self_checks(self.model, a, b, seed=self.seed, ig_steps=ig_steps)

    def colorspace_dependence(self, a: torch.Tensor, b: torch.Tensor,
                              spaces: Sequence[str] | None = None) -> list[ColorspaceRow]:
        """How d(A, B) changes when both images are re-rendered through other colour spaces."""
        from lpips_explain.analyses.colorspace import colorspace_dependence

        return colorspace_dependence(self.model, a, b, spaces)

    def robust_score(self, pairs: Sequence[tuple[str, Any, Any]], *,
                     fallback: str = "psnr") -> RobustReport:
        """LPIPS over many (label, a, b) pairs, refusals kept, a pixel metric beside each."""
        from lpips_explain.analyses.robust import robust_score

        return robust_score(pairs, lambda la, lb: float(self.distance(la, lb)),
                            size_policy=self.size_policy, max_pixels=self.max_pixels,
                            fallback=fallback)

    # -- audits ---------------------------------------------------------------------------
    def audit(self, source: Any, out_dir: str | os.PathLike, *, engine: str = "local",
              ray_address: str | None = None, explain_top: int = 3, workers: int | None = None,
              batch_size: int = 16, concurrency: int | None = None, top: int = 10,
              explain_options: dict | None = None,
              progress: Progress | None = None) -> AuditResult:
        """Audit many pairs or judged triplets: a CSV (``a,b[,id,...]`` or
        ``ref,p0,p1,judge[,id,...]``) or a folder with ``a/`` and ``b/``.

        Writes ``out_dir/audit.parquet`` (one row per input row), ``summary.json``,
        ``audit.html`` and, for the top ``explain_top`` rows of each finding, a full
        explanation under ``explained/<row>/`` (``explain_options`` go to ``explain`` or
        ``explain_triplet``, e.g. ``{"steps": 8}``). A restart with the same arguments
        resumes: finished rows and explanations are not computed again.
        """
        from lpips_explain.engines.audit import finish_audit, run_audit
        from lpips_explain.errors import LpipsExplainError
        from lpips_explain.output.report import write_explanation, write_triplet

        if isinstance(explain_top, bool) or not isinstance(explain_top, int) or explain_top < 0:
            raise InputError(f"explain_top must be an integer >= 0, got {explain_top!r}.")
        opts = dict(explain_options or {})
        if explain_top and opts.get("attribution", "integrated_gradients") is not None:
            from lpips_explain.analyses.attribution import get_method

            get_method(opts.get("attribution", "integrated_gradients"))  # fail before the work
        run = run_audit(source, out_dir, model=self.model, size_policy=self.size_policy,
                        max_pixels=self.max_pixels, engine=engine,  # type: ignore[arg-type]
                        ray_address=ray_address, workers=workers, batch_size=batch_size,
                        concurrency=concurrency, top=top, progress=progress)
        targets = run.targets(explain_top)
        links: dict[str, str] = {}
        failed: dict[str, str] = {}
        for k, (_, rid) in enumerate(targets):
            if progress:
                progress(k, len(targets), "Explaining the findings")
            row, dest = run.row(rid), run.explanation_dir(rid)
            if run.explained_before(rid, opts):
                links[rid] = run.link(rid)  # explained by an earlier run of the same audit
                continue
            try:
                if run.table.kind == "pairs":
                    write_explanation(self.explain(*row.images, **opts), dest)
                else:
                    write_triplet(self.explain_triplet(*row.images, **opts), dest)
            except LpipsExplainError as exc:
                failed[rid] = str(exc)
                continue
            run.mark_explained(rid, opts)
            links[rid] = run.link(rid)
        if progress and targets:
            progress(len(targets), len(targets), "Explaining the findings")
        return finish_audit(run, links, failed)


def _source_name(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    name = getattr(source, "name", None)
    return os.path.basename(name) if isinstance(name, str) else None

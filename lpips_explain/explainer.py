"""The Explainer: one object that loads LPIPS once and answers distance, explain and triplet."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from lpips_explain import notices
from lpips_explain.analyses.pair.explanation import (
    RANDOM_TRUNK_WARNING,
    SCHEMA,
    Explanation,
    explains,
    join_parts,
    summary_of,
    swap_activations,
)
from lpips_explain.analyses.pair.repair import REPAIR_POINTS, resolve_patch
from lpips_explain.core import budget, tiling
from lpips_explain.core.cache import FeatureCache, shared_cache
from lpips_explain.core.decompose import Decomposition, decompose_encoded
from lpips_explain.core.geometry import geometry_of
from lpips_explain.core.model import LpipsNet, ReferenceScorer, build_lpips
from lpips_explain.core.modes import EXACT, Mode, mode_net
from lpips_explain.core.trunks import check_min_size
from lpips_explain.core.weights import WeightsInfo
from lpips_explain.errors import InputError, lookup
from lpips_explain.intake import align as _align
from lpips_explain.intake import images
from lpips_explain.intake.images import LoadedImage
from lpips_explain.intake.prepared import PreparedInputs, anomalies
from lpips_explain.notices import Notice
from lpips_explain.validation import Progress, integer, optional_integer

if TYPE_CHECKING:  # imported lazily at run time: they pull in Captum, scikit-image
    from lpips_explain.analyses.attribution import Attribution
    from lpips_explain.analyses.calibration import Calibration, JudgmentFeatures
    from lpips_explain.analyses.calibration.domain_gap import DomainGap
    from lpips_explain.analyses.checks.diagnostics import Check
    from lpips_explain.analyses.checks.faithfulness import Faithfulness
    from lpips_explain.analyses.pair.colorspace import ColorspaceRow
    from lpips_explain.analyses.pair.robust import RobustReport
    from lpips_explain.analyses.pair.second_opinions import SecondOpinions
    from lpips_explain.analyses.pair.triplet import TripletExplanation
    from lpips_explain.audit.run import AuditResult

__all__ = ["RANDOM_TRUNK_WARNING", "SCHEMA", "Explainer", "Explanation", "PreparedInputs"]


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
                 max_pixels: int | None = None, progress: bool = False,
                 precision: str = "fp32", device: str = "cpu",
                 max_memory: int | str | None = None,
                 feature_cache: FeatureCache | str | None = "shared"):
        lookup("size policy", size_policy, {p: p for p in _align.SIZE_POLICIES})
        seed = integer(seed, "seed", minimum=0, maximum=2**63 - 1)
        self.model: LpipsNet = build_lpips(net, version, backbone_weights, seed,
                                           lin_weights=lin_weights, progress=progress)
        # Forward passes (distances, breakdowns, sweeps, repairs) run on self.fast in the chosen
        # mode; fp32 on the CPU is self.model itself. Gradients always use self.model (exact).
        self.fast: LpipsNet
        self.mode: Mode
        self.fast, self.mode = mode_net(self.model, precision, device)
        self.size_policy = size_policy
        self.max_pixels = max_pixels
        self.seed = seed
        # Memory budget in bytes for one comparison's tensors (core/budget.py); large pairs
        # are computed exactly in tiles, what cannot fit is refused before any work. Without
        # one named (here or $LPIPS_EXPLAIN_MAX_MEMORY), max_memory is the ceiling (half the
        # memory available) and the tileable routes are planned within budget.default_budget.
        named = (budget.named_max_memory() if max_memory is None
                 else budget.parse_bytes(max_memory))
        self.memory_named = named is not None
        self.max_memory = named if named is not None else budget.default_max_memory()
        # Encoded references (core/cache.py): "shared" is the process-wide cache, None none.
        self.feature_cache: FeatureCache | None = (
            shared_cache() if isinstance(feature_cache, str) and feature_cache == "shared"
            else feature_cache)
        if not (self.feature_cache is None or isinstance(self.feature_cache, FeatureCache)):
            raise InputError(f"feature_cache must be 'shared', None or a FeatureCache, got "
                             f"{feature_cache!r}.")
        self._lock = threading.Lock()
        # DISTS and ST-LPIPS networks (second opinions), built on first use and shared by
        # every thread (the app shares one Explainer between sessions).
        self._backbone_setting = backbone_weights
        self._metric_models: dict[tuple[str, str], Any] = {}
        self._metric_lock = threading.Lock()

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
            warnings.insert(0, notices.random_trunk(self.weights_info.warning))
        if not self.model.lin_info.official:
            warnings.insert(0, Notice(notices.CUSTOM_HEADS, self.model.lin_info.notice_text))
        return PreparedInputs(tuple(loaded), tuple(tensors), align, tuple(warnings))

    def scorer(self, reference: torch.Tensor) -> ReferenceScorer:
        """f_ref(x) = d(reference, x), with the reference encoded once (or found in the
        feature cache: bit-identical input and the same model key)."""
        if self.feature_cache is None:
            return ReferenceScorer(self.fast, reference)
        return ReferenceScorer(self.fast, reference,
                               encoded=self.feature_cache.encode(self.fast, reference))

    # -- distance -----------------------------------------------------------------
    def distance(self, a: Any, b: Any, *, value_range: str | None = None) -> float | list[float]:
        """LPIPS d(a, b); with a list as ``b``, one distance per candidate (a encoded once)."""
        if isinstance(b, (list, tuple)):
            if not b:
                return []
            prep = self.prepare(a, *b, value_range=value_range,
                                labels=["reference"] + [f"candidate {i}" for i in range(len(b))])
            return self._distances(prep.tensors[0], prep.tensors[1:])
        prep = self.prepare(a, b, value_range=value_range)
        ta, tb = prep.tensors[0], prep.tensors[1]
        return self._distances(ta, [tb])[0]

    def decompose(self, a: Any, b: Any, *, top_k: int = 5,
                  value_range: str | None = None) -> Decomposition:
        """The exact layer / channel / spatial breakdown of d(a, b).

        Pairs whose untiled estimate exceeds the memory budget are computed in tiles
        (``Decomposition.tiling`` says how; maps are block means, ``display_factor``).
        """
        prep = self.prepare(a, b, value_range=value_range)
        return self._decompose(prep.tensors[0], prep.tensors[1], top_k)

    # -- memory ---------------------------------------------------------------------
    def tile_budget(self, size: tuple[int, int], *, explanation: bool = False) -> int:
        """The budget the distance and its breakdown of a pair of ``size`` are planned in:
        ``max_memory`` when one was named, else budget.default_budget (the image pair plus a
        per-trunk allowance, at most ``max_memory``). ``explanation``: the breakdown of an
        explanation, whose other parts (sweeps, repairs, gradients) run whole images within
        ``max_memory`` anyway: without a budget named it is planned within that ceiling too
        (untiled up to it: exact maps at layer resolution and one pass instead of two)."""
        if self.memory_named or explanation:
            return self.max_memory
        return budget.default_budget(self.net, size, self.max_memory)

    def memory_plan(self, size: tuple[int, int], *, kind: str = "decompose",
                    top_k: int = 5, explanation: bool = False) -> budget.MemoryPlan:
        """How a pair of images of ``size`` (height, width) will run within
        :meth:`tile_budget`: untiled, or in tiles (with the estimate of each). Raises
        MemoryBudgetError when even the smallest tiles cannot fit. ``kind``: "distance" or
        "decompose"; ``top_k``: channels whose maps are kept (0: none); ``explanation``:
        an explanation's breakdown (see :meth:`tile_budget`)."""
        limit = self.tile_budget(size, explanation=explanation)
        if kind == "distance":  # distances are scored against the encoded reference
            return budget.plan_memory(self.model, size, limit, kind="score")
        maps = 1 + 3 * max(0, int(top_k))  # block maps per layer
        return budget.plan_memory(self.model, size, limit, kind=kind, maps=maps)

    def _distances(self, ref: torch.Tensor, candidates: Sequence[torch.Tensor]) -> list[float]:
        """d(ref, c) for each candidate: bit-identical ones are exactly 0; large pairs tiled;
        the rest scored in batches against the reference encoded once (feature cache)."""
        out: list[float | None] = [0.0 if torch.equal(ref, c) else None for c in candidates]
        todo = [i for i, v in enumerate(out) if v is None]
        if not todo:
            return [float(v) for v in out]  # type: ignore[arg-type]
        plan = self.memory_plan(tuple(ref.shape[-2:]), kind="distance")
        if plan.tiled:
            for i in todo:
                out[i] = tiling.tiled_distance(self.model, ref, candidates[i], plan)
        else:
            scores = self.scorer(ref).score_batches(torch.cat([candidates[i] for i in todo]),
                                                    batch_size=self._score_batch(plan.size)
                                                    ).tolist()
            for i, d in zip(todo, scores, strict=True):
                out[i] = d
        return [float(v) for v in out]  # type: ignore[arg-type]

    def _score_batch(self, size: tuple[int, int], kind: str = "score") -> int:
        """The largest batch (up to budget.SCORE_BATCH) of whole images that ``kind``
        ("score": repair and equivalents; "sweep": the sensitivity, with PSNR and SSIM) runs
        within the memory budget (1 when none does: the caller checked that one fits).
        Smaller batches give the same distances; they only take longer."""
        batch = budget.SCORE_BATCH
        geom = geometry_of(self.model)
        while batch > 1 and budget.untiled_bytes(geom, *size, kind, batch) > self.max_memory:
            batch //= 2
        return batch

    def _check_parts_fit(self, size: tuple[int, int], attribution: str | None,
                         sensitivity: bool, repair: bool,
                         attribution_params: dict | None = None) -> None:
        """Refuse, before any work, explanation parts that run whole images in batches
        (they cannot be tiled) when even one image at a time exceeds the memory budget (the
        sensitivity and the repair then run in the largest batches that fit:
        :meth:`_score_batch`)."""
        if attribution is not None:
            batch = int((attribution_params or {}).get("internal_batch_size",
                                                        budget.GRADIENT_BATCH))
            budget.check_fits(self.model, size, self.max_memory, "gradient", max(1, batch),
                              "Attribution")
        for wanted, kind, what in ((sensitivity, "sweep", "Sensitivity"),
                                   (repair, "score", "Repair")):
            if wanted:
                budget.check_fits(self.model, size, self.max_memory, kind, 1, what)

    def _decompose(self, ta: torch.Tensor, tb: torch.Tensor, top_k: int,
                   scorer: ReferenceScorer | None = None, *,
                   channel_maps: bool = True, explanation: bool = False) -> Decomposition:
        """decompose_encoded(ta, tb), or the tiled decomposition when it cannot fit untiled
        (``channel_maps=False``: without the top channels' maps, one pass over the tiles;
        ``explanation``: planned as an explanation's breakdown, :meth:`tile_budget`)."""
        plan = self.memory_plan(tuple(ta.shape[-2:]), kind="decompose",
                                top_k=top_k if channel_maps else 0, explanation=explanation)
        if plan.tiled:
            return tiling.tiled_decomposition(self.model, ta, tb, plan, top_k,
                                              channel_maps=channel_maps)
        scorer = scorer if scorer is not None else self.scorer(ta)
        return decompose_encoded(self.fast, scorer.ref, tb, top_k)[0]

    # -- explanations ---------------------------------------------------------------
    def explain(self, a: Any, b: Any, *, attribution: str | None = "integrated_gradients",
                steps: int | None = None, sensitivity: bool = True, repair: bool = True,
                patch: int | None = None, top_k: int = 5, progress: Progress | None = None,
                value_range: str | None = None, swap: bool = False,
                attribution_params: dict | None = None,
                repair_orders: Sequence[str] | None = None,
                equivalents: bool = True,
                metrics: Sequence[str] | str | None = None,
                channel_maps: bool = True,
                repair_points: int | None = REPAIR_POINTS,
                explanation_plan: bool | None = None) -> Explanation:
        """Explain d(a, b): breakdown, attribution of B, counterfactuals, repair and a summary.

        ``metrics``: the second opinions beside LPIPS ("lpips", "stlpips", "dists", "ssim",
        "psnr" or "all"; see :meth:`second_opinions`); None (the default) computes none and
        the result has no ``second_opinions``.

        ``attribution=None``, ``sensitivity=False``, ``repair=False`` and
        ``equivalents=False`` skip those parts (the fast first view). ``equivalents``: the
        strengths of JPEG, blur, noise and a shift of the reference that are as far from it
        as the other image (analyses.pair.equivalents). With ``swap=True`` the roles are
        exchanged (attribute A).
        ``patch``: the repair's patch size in px; None: 32, or for images that 32 px would cut
        into more than 1024 patches the smallest size that keeps within them (a notice says
        so; analyses.pair.repair.resolve_patch).
        ``repair_orders`` are the repair orders tried (the best is shown): "single_gain",
        "greedy" (the true greedy search: slower) and "ranking" (by the attribution map);
        None: single_gain, plus ranking when an attribution is computed (repair.default_orders).
        The attribution carries a per-pair deletion check of its map (``deletion``: about 16
        patches against 8 seeded random orders, analyses.checks.faithfulness.deletion_check).
        ``channel_maps=False``: the top channels' maps of a tiled pair are left out (None;
        the JSON has none), which saves the second pass over the tiles; the channels and
        their terms are the same.
        ``repair_points``: each repair order's curve is evaluated at about this many values
        of k, then refined around the goal to one patch (every point a real distance; the
        notes say how many steps were checked for monotonicity); None evaluates every k
        (one trunk pass per patch and order: 13x slower on a 600x400 pair).
        ``explanation_plan``: how the breakdown is planned when no memory budget is named.
        True: within the ceiling (:meth:`tile_budget` with ``explanation=True``: untiled up
        to half the memory available), as the parts that run whole images are anyway; False:
        within the bounded default, as :meth:`decompose` (large pairs in tiles); None (the
        default): True when any such part is asked for (attribution, sensitivity, repair,
        equivalents), else False, so a breakdown alone (the CLI's ``distance``) stays
        within the bounded default.
        """
        timer = _Timer()
        if attribution is not None:
            from lpips_explain.analyses.attribution import get_method

            get_method(attribution)  # an unknown name fails before any work
        prep = timer.run("load", lambda: self.prepare(a, b, value_range=value_range))
        return self.explain_prepared(prep, attribution=attribution, steps=steps,
                                     sensitivity=sensitivity, repair=repair, patch=patch,
                                     top_k=top_k, progress=progress, swap=swap,
                                     attribution_params=attribution_params, timer=timer,
                                     repair_orders=repair_orders, equivalents=equivalents,
                                     metrics=metrics, channel_maps=channel_maps,
                                     repair_points=repair_points,
                                     explanation_plan=explanation_plan)

    def explain_prepared(self, prep: PreparedInputs, *, attribution: str | None,
                         steps: int | None, sensitivity: bool, repair: bool,
                         patch: int | None,
                         top_k: int, progress: Progress | None, swap: bool = False,
                         attribution_params: dict | None = None,
                         timer: _Timer | None = None,
                         repair_orders: Sequence[str] | None = None,
                         equivalents: bool = True,
                         metrics: Sequence[str] | str | None = None,
                         channel_maps: bool = True,
                         repair_points: int | None = REPAIR_POINTS,
                         breakdown: Explanation | None = None,
                         explanation_plan: bool | None = None) -> Explanation:
        """:meth:`explain` on a pair already prepared (:meth:`prepare`).

        ``breakdown``: an explanation of this very pair and these roles computed earlier
        (e.g. the app's first, breakdown-only part); its decomposition is reused instead of
        running the trunk over both images again (the same numbers: a part joined to its
        base keeps the base's decomposition anyway). Refused when it is another pair's or
        other roles'.
        """
        timer = timer or _Timer()
        if metrics is not None:
            from lpips_explain.analyses.pair.second_opinions import check_metrics

            metrics = check_metrics(metrics)  # an unknown name fails before any work
        # Every option is checked before any slow work.
        patch, patch_note = resolve_patch(patch, prep.size) if repair else (patch, None)
        repair_orders = _repair_orders(repair, repair_orders, attribution)
        steps = optional_integer(steps, "steps (None: adaptive)", minimum=1)
        repair_points = optional_integer(repair_points, "repair_points (None: every step)",
                                         minimum=2)
        a, b = prep.tensors[0], prep.tensors[1]
        # ta is the reference, tb the explained image (B unless the roles are swapped).
        ta, tb = (b, a) if swap else (a, b)
        reused = (self._reused_decomposition(breakdown, prep, swap) if breakdown is not None
                  else None)
        self._check_parts_fit(prep.size, attribution, sensitivity, repair, attribution_params)
        if explanation_plan is None:  # parts that run whole images: planned at the ceiling
            explanation_plan = attribution is not None or sensitivity or repair or equivalents
        plan = self.memory_plan(prep.size, top_k=top_k if channel_maps else 0,
                                explanation=explanation_plan)
        eq_batch = self._equivalents_batch(prep.size) if equivalents else 0
        scorer = (None if plan.tiled and not (sensitivity or repair or eq_batch)
                  else self.scorer(ta))
        if reused is not None:
            decomposition = reused
        else:
            decomposition = timer.run("decompose", lambda: self._decompose(
                ta, tb, top_k, scorer, channel_maps=channel_maps,
                explanation=explanation_plan))
            if swap:
                decomposition = swap_activations(decomposition)
        warnings = list(prep.warnings)
        if decomposition.tiling is not None:
            warnings.append(Notice(notices.TILED, tiling.tiling_note(decomposition)))
        if patch_note is not None:
            warnings.append(Notice(notices.PATCH, patch_note))
        if swap:
            warnings.append(Notice(notices.ROLES_SWAPPED,
                                   "Roles swapped: B is the reference and A is explained."))
        attr = sens = rep = None
        if attribution is not None:
            attr = self._checked_attribution(
                ta, tb, attribution, steps=steps, swap=swap, scorer=scorer, timer=timer,
                progress=progress, params=attribution_params or {})
        if sensitivity:
            from lpips_explain.analyses.pair.sensitivity import sensitivity as run_sensitivity

            second, reason = self.geometry_second()
            sens = timer.run("sensitivity", lambda: run_sensitivity(
                self.fast, ta, tb, scorer=scorer, seed=self.seed, progress=progress,
                batch_size=self._score_batch(prep.size, "sweep"),
                second=second, second_reason=reason, second_cache=self.feature_cache))
        if repair:
            from lpips_explain.analyses.pair.repair import repair as run_repair

            ranking = attr.signed if attr is not None and "ranking" in repair_orders else None
            rep = timer.run("repair", lambda: run_repair(
                self.fast, ta, tb, patch=patch, scorer=scorer, progress=progress,
                batch_size=self._score_batch(prep.size),
                orders=repair_orders, ranking=ranking, max_points=repair_points,
                ranking_label=attr.label if attr is not None else "map"))
        eqs = None
        if eq_batch:
            from lpips_explain.analyses.pair.equivalents import equivalents as run_equivalents

            # Distortions of the reference (ta), as far from it as the explained image (tb).
            eqs = timer.run("equivalents", lambda: run_equivalents(
                self.fast, ta, tb, target=decomposition.distance, scorer=scorer,
                seed=self.seed, batch_size=eq_batch, progress=progress))
        elif equivalents:
            warnings.append("The distortion equivalents were not computed: scoring whole "
                            "images of this size one at a time exceeds the memory budget.")
        opinions = None
        if metrics is not None:
            opinions = timer.run("second_opinions", lambda: self._second_opinions(
                ta, tb, decomposition, metrics, top_k=top_k, sensitivity=sens,
                explained="A" if swap else "B"))
        expl = Explanation(decomposition, prep, self.weights_info, self.model.lin_file, attr,
                           sens, rep, (), tuple(warnings), dict(timer.ms), swapped=swap,
                           lin_heads=self.model.lin_info, equivalents=eqs,
                           second_opinions=opinions)
        return self._finished(expl)

    # -- second opinions ---------------------------------------------------------------
    def second_opinions(self, a: Any, b: Any, *, metrics: Sequence[str] | str | None = None,
                        top_k: int = 5, value_range: str | None = None) -> SecondOpinions:
        """LPIPS beside ST-LPIPS (the same trunk where it exists: alex or vgg), DISTS, SSIM
        and PSNR on the pair, each on its own scale, with a sentence where the numbers
        support one (analyses.pair.second_opinions). ``metrics``: which ones (None or
        "all": every one; LPIPS is always included). A metric that cannot run (weights not
        installed, an image below its minimum size) carries its ``error``; the others are
        still computed. DISTS and ST-LPIPS networks are built once per Explainer."""
        from lpips_explain.analyses.pair.second_opinions import check_metrics

        wanted = check_metrics(metrics)
        prep = self.prepare(a, b, value_range=value_range)
        ta, tb = prep.tensors[0], prep.tensors[1]
        dec = self._decompose(ta, tb, top_k)
        return self._second_opinions(ta, tb, dec, wanted, top_k=top_k)

    def opinions_of(self, expl: Explanation, metrics: Sequence[str] | str | None = None
                    ) -> SecondOpinions:
        """The second opinions on an explanation's pair and roles, its LPIPS breakdown (and
        sensitivity, if computed) reused: the app computes them as a part of their own."""
        from lpips_explain.analyses.pair.second_opinions import check_metrics

        return self._second_opinions(expl.reference, expl.explained, expl.decomposition,
                                     check_metrics(metrics), top_k=len(
                                         expl.decomposition.layers[0].top_channels)
                                     if expl.decomposition.layers else 5,
                                     sensitivity=expl.sensitivity,
                                     explained=expl.explained_name)

    def _second_opinions(self, ta: torch.Tensor, tb: torch.Tensor, dec: Decomposition,
                         metrics: Sequence[str], *, top_k: int,
                         sensitivity: Any = None, explained: str = "B") -> SecondOpinions:
        from lpips_explain.analyses.pair.second_opinions import second_opinions

        mode = self.mode if dec.tiling is None else EXACT
        # DISTS and ST-LPIPS have no tiled form: they run where LPIPS's own breakdown would
        # run untiled within the bounded budget (an explanation's breakdown may be planned
        # within the larger ceiling, which is not an estimate of their passes).
        size = (int(ta.shape[-2]), int(ta.shape[-1]))
        plan = self.memory_plan(size, kind="decompose", top_k=top_k)
        too_large = None
        if dec.tiling is not None or plan.tiled:
            too_large = (f"at {size[0]}x{size[1]} px an untiled pass exceeds the memory "
                         f"budget of {budget.format_bytes(plan.budget)}")
            if not self.memory_named:
                too_large += " (set one with --max-memory or $LPIPS_EXPLAIN_MAX_MEMORY)"
        return second_opinions(ta, tb, dec, metrics=metrics,
                               lpips_perceptual=self.perceptual and self.model.lin_info.official,
                               lpips_mode=mode, model=self.metric_model, top_k=top_k,
                               cache=self.feature_cache, sensitivity=sensitivity,
                               too_large=too_large, explained=explained)

    def geometry_second(self) -> tuple[Any, str | None]:
        """(ST-LPIPS on this Explainer's trunk, None) for the geometric table of the
        sensitivity, or (None, why not): the trunk is squeeze (ST-LPIPS ships alex and vgg),
        LPIPS's trunk is random or unverified (a published ST-LPIPS beside it would not
        compare like with like), or ST-LPIPS's weights are not installed."""
        from lpips_explain.analyses.pair.second_opinions import STLPIPS_NETS
        from lpips_explain.errors import LpipsExplainError

        if self.net not in STLPIPS_NETS:
            return None, (f"ST-LPIPS ships only {' and '.join(STLPIPS_NETS)} trunks, not "
                          f"{self.net}: there is no ST-LPIPS on the same trunk to compare.")
        if not self.perceptual:
            what = ("random weights" if self.weights_info.spec == "random"
                    else "an unverified weights file")
            return None, (f"LPIPS runs on a trunk with {what}: the published ST-LPIPS "
                          f"beside it would not compare like with like.")
        try:
            return self.metric_model("stlpips", self.net), None
        except LpipsExplainError as exc:
            return None, f"ST-LPIPS could not be loaded: {exc}"

    def metric_model(self, metric: str, net: str = "vgg") -> Any:
        """The DISTS (``net`` vgg) or ST-LPIPS (alex, vgg) network, built on first use and
        kept (thread-safe). DISTS runs on this Explainer's trunk setting when it is a VGG16
        one (``random`` stays random: not a perceptual metric), else on the published
        ImageNet VGG16. A missing weights file raises WeightsUnavailableError (not kept:
        an install takes effect at the next call)."""
        key = (metric, net)
        with self._metric_lock:
            model = self._metric_models.get(key)
            if model is None:
                if metric == "dists":
                    from lpips_explain.core.dists import build_dists

                    setting = self._backbone_setting
                    trunk = (setting if setting == "random" or (setting is not None
                                                                and self.net == "vgg")
                             else "imagenet")
                    model = build_dists(trunk, self.seed, progress=False)
                elif metric == "stlpips":
                    from lpips_explain.core.stlpips import build_stlpips

                    model = build_stlpips(net)
                else:
                    raise InputError(f"{metric!r} has no network of its own: DISTS and "
                                     f"ST-LPIPS do.")
                self._metric_models[key] = model
        return model

    def _equivalents_batch(self, size: tuple[int, int]) -> int:
        """How many whole images the distortion equivalents score at once; 0 (they are left
        out, and the warnings say so) where even one at a time exceeds the memory budget."""
        batch = self._score_batch(size)
        if budget.untiled_bytes(geometry_of(self.model), *size, "score", batch) > self.max_memory:
            return 0
        return batch

    @staticmethod
    def _reused_decomposition(breakdown: Explanation, prep: PreparedInputs,
                              swap: bool) -> Decomposition:
        """The decomposition of ``breakdown`` when it explains ``prep`` in these roles."""
        if not explains(breakdown, prep, swap):
            raise InputError("The breakdown to reuse must come from the same images and the "
                             "same roles.")
        return breakdown.decomposition

    def _checked_attribution(self, ta: torch.Tensor, tb: torch.Tensor, method: str, *,
                             steps: int | None, swap: bool, scorer: ReferenceScorer | None,
                             timer: _Timer, progress: Progress | None,
                             params: dict) -> Attribution:
        """The attribution map of tb against ta, with its deletion check on this pair: is the
        map's ranking better than chance? (a coarse deletion test against seeded random
        orders, analyses.checks.faithfulness.deletion_check)."""
        from lpips_explain.analyses.attribution import attribute
        from lpips_explain.analyses.checks.faithfulness import deletion_check

        roles = ("b", "a") if swap else ("a", "b")  # (reference, explained), as ta, tb
        attr = timer.run("attribution", lambda: attribute(
            self.model, ta, tb, method, steps=steps, progress=progress, seed=self.seed,
            roles=roles, **params))
        if attr.vanishing:
            return attr
        check_scorer = scorer if scorer is not None else self.scorer(ta)
        size = (int(ta.shape[-2]), int(ta.shape[-1]))
        check = timer.run("attribution_check", lambda: deletion_check(
            self.fast, ta, tb, attr.signed, seed=self.seed, scorer=check_scorer,
            batch_size=self._score_batch(size), progress=progress))
        return replace(attr, deletion=check)

    def _finished(self, expl: Explanation) -> Explanation:
        """The explanation labelled with its mode and given its summary."""
        if expl.decomposition.tiling is None:
            expl = self.with_mode(expl)
        else:  # tiles always run the exact fp32 network; only the sweeps used self.fast
            expl = self.with_mode(expl, parts=" and ".join(
                name for name, part in (("sweeps", expl.sensitivity), ("repairs", expl.repair),
                                        ("distortion equivalents", expl.equivalents))
                if part is not None),
                exact_parts="the distance and its breakdown (computed in tiles)")
        return replace(expl, summary=tuple(summary_of(expl)))

    def combine(self, base: Explanation, *parts: Explanation) -> Explanation:
        """One explanation from parts computed separately on the same inputs.

        The app caches the attribution, the sensitivity and the repair apart, so that
        changing one option recomputes one part; this puts them together again (and
        rebuilds the summary from all of them). Each part's non-empty attribution,
        sensitivity and repair replace the base's; the parts' notices are kept
        (analyses.pair.explanation.join_parts).
        """
        return join_parts(base, *parts)

    def explain_triplet(self, ref: Any, a: Any, b: Any, *,
                        attribution: str | None = "integrated_gradients",
                        steps: int | None = None, patch: int | None = None, top_k: int = 5,
                        progress: Progress | None = None, value_range: str | None = None,
                        attribution_params: dict | None = None,
                        metrics: Sequence[str] | str | None = None) -> TripletExplanation:
        """Explain a 2AFC decision: which of A and B is closer to REF, by how much and why.

        ``metrics``: each metric's own 2AFC choice beside LPIPS's ("lpips", "stlpips",
        "dists", "ssim", "psnr" or "all"; see :meth:`choices_of`); None (the default)
        computes none and the result has no ``metric_choices``. ``patch``: the flip's patch
        size, None as in :meth:`explain`.
        """
        from lpips_explain.analyses.pair.triplet import explain_triplet

        if metrics is not None:
            from lpips_explain.analyses.pair.second_opinions import check_metrics

            metrics = check_metrics(metrics)  # an unknown name fails before any work
        if attribution is not None:
            from lpips_explain.analyses.attribution import get_method

            get_method(attribution)
        prep = self.prepare(ref, a, b, value_range=value_range, labels=["REF", "A", "B"])
        budget.check_fits(self.model, prep.size, self.max_memory, "decompose", 1,
                          "The triplet explanation")
        self._check_parts_fit(prep.size, attribution, False, False, attribution_params)
        # The flip's repair scores in batches of SCORE_BATCH (analyses.pair.triplet).
        budget.check_fits(self.model, prep.size, self.max_memory, "score", budget.SCORE_BATCH,
                          "The triplet's flip")
        tri = self.with_mode(explain_triplet(
            self.model, prep, seed=self.seed, attribution=attribution, steps=steps, patch=patch,
            top_k=top_k, progress=progress, attribution_params=attribution_params,
            fast=self.fast))
        return tri if metrics is None else self.choices_of(tri, metrics)

    def choices_of(self, tri: TripletExplanation,
                   metrics: Sequence[str] | str | None = None) -> TripletExplanation:
        """The triplet with each metric's 2AFC choice and margin on its own scale, and the
        layers (LPIPS, ST-LPIPS) or stages (DISTS) that drive it (analyses.pair.
        metric_choices); LPIPS's breakdowns are reused. ``metrics``: as for
        :meth:`second_opinions` (None or "all": every one). A metric that cannot run carries
        its ``error``; the others are still given. The summary opens with the
        disagreement between the perceptual metrics when there is one."""
        from lpips_explain.analyses.pair.metric_choices import metric_choices
        from lpips_explain.analyses.pair.second_opinions import check_metrics
        from lpips_explain.analyses.pair.triplet import with_metric_choices

        ref, a, b = tri.inputs.tensors[:3]
        top_k = (len(tri.decomposition_a.layers[0].top_channels)
                 if tri.decomposition_a.layers else 5)
        choices = metric_choices(
            ref, a, b, tri.decomposition_a, tri.decomposition_b,
            metrics=check_metrics(metrics),
            lpips_perceptual=self.perceptual and self.model.lin_info.official,
            model=self.metric_model, top_k=top_k, cache=self.feature_cache)
        return with_metric_choices(tri, choices)

    def with_mode(self, result: Any, *, parts: str | None = None,
                  exact_parts: str = "") -> Any:
        """The result labelled with the mode its forward passes ran in (and a notice if
        approximate); attribution maps are always exact fp32.

        ``parts``: which parts ran in this mode when not all did (tiled runs use the exact
        network); ``""`` when none did, and the result is labelled exact fp32 on the CPU.
        """
        mode = self.mode if parts != "" else EXACT
        warnings = tuple(result.warnings)
        if not mode.exact:
            text = mode.notice if parts is None else mode.notice_for(parts, exact_parts)
            warnings = (Notice(notices.APPROXIMATE, text), *warnings)
        return replace(result, mode=mode, warnings=warnings)

    # -- checks -------------------------------------------------------------------------
    def self_checks(self, a: torch.Tensor, b: torch.Tensor, *,
                    ig_steps: int | None = None) -> list[Check]:
        """Live self-checks of the maths and the weights on one prepared pair."""
        from lpips_explain.analyses.checks.diagnostics import self_checks

        return self_checks(self.model, a, b, seed=self.seed, ig_steps=ig_steps)

    def colorspace_dependence(self, a: torch.Tensor, b: torch.Tensor,
                              spaces: Sequence[str] | None = None) -> list[ColorspaceRow]:
        """How d(A, B) changes when both images are re-rendered through other colour spaces."""
        from lpips_explain.analyses.pair.colorspace import colorspace_dependence

        return colorspace_dependence(self.model, a, b, spaces)

    def robust_score(self, pairs: Sequence[tuple[str, Any, Any]], *,
                     fallback: str = "psnr") -> RobustReport:
        """LPIPS over many (label, a, b) pairs, refusals kept, a pixel metric beside each."""
        from lpips_explain.analyses.pair.robust import robust_score

        return robust_score(pairs, lambda la, lb: float(self.distance(la, lb)),
                            size_policy=self.size_policy, max_pixels=self.max_pixels,
                            fallback=fallback)

    # -- audits ---------------------------------------------------------------------------
    def audit(self, source: Any, out_dir: str | os.PathLike, *, engine: str = "local",
              ray_address: str | None = None, explain_top: int = 3, workers: int | None = None,
              batch_size: int = 16, concurrency: int | None = None, top: int = 10,
              explain_options: dict | None = None,
              progress: Progress | None = None,
              metrics: Sequence[str] | None = None) -> AuditResult:
        """Audit many pairs or judged triplets: a CSV (``a,b[,id,...]`` or
        ``ref,p0,p1,judge[,id,...]``) or a folder with ``a/`` and ``b/``.

        Writes ``out_dir/audit.parquet`` (one row per input row), ``summary.json``,
        ``audit.html`` and, for the top ``explain_top`` rows of each finding, a full
        explanation under ``explained/<row>/`` (``explain_options`` go to ``explain`` or
        ``explain_triplet``, e.g. ``{"steps": 8}``). A restart with the same arguments
        resumes: finished rows and explanations are not computed again. ``metrics``: the
        optional metric columns, ``stlpips`` and/or ``dists`` (the networks of
        :meth:`metric_model`, as :meth:`second_opinions` uses them; default none).
        """
        from lpips_explain.audit.run import run_audit
        from lpips_explain.audit.settings import AuditSettings

        wanted = AuditSettings(self.net, metrics=tuple(metrics or ())).metrics
        stlpips = "vgg" if self.net == "vgg" else "alex"
        models = {m: self.metric_model(m, stlpips if m == "stlpips" else "vgg")
                  for m in wanted}

        opts = dict(explain_options or {})

        def explain_row(kind: str, images: tuple[str, ...]) -> Any:
            return (self.explain if kind == "pairs" else self.explain_triplet)(*images, **opts)

        return run_audit(source, out_dir, model=self.model, size_policy=self.size_policy,
                         max_pixels=self.max_pixels, cache=self.feature_cache,
                         engine=engine,  # type: ignore[arg-type]
                         ray_address=ray_address, workers=workers, batch_size=batch_size,
                         concurrency=concurrency, top=top, explain_row=explain_row,
                         explain_top=explain_top, explain_options=opts, progress=progress,
                         metrics=wanted, metric_models=models,
                         scorer=None if self.mode.exact else self.fast, mode=self.mode)

    # -- calibration and domain gap -----------------------------------------------------
    def judgment_features(self, judgments: Any, *, size: int | None = None,
                          progress: Progress | None = None,
                          cancel: Callable[[], bool] | None = None) -> JudgmentFeatures:
        """Read 2AFC judgments (a CSV, a BAPPS folder or a read JudgmentSet) and run the frozen
        trunk over every triplet once; bad rows are refused with their reason, never raised."""
        from lpips_explain.analyses.calibration import extract_features
        from lpips_explain.intake.judgments import read_judgments

        return extract_features(self.model, read_judgments(judgments), size=size,
                                max_pixels=self.max_pixels, progress=progress, cancel=cancel)

    def calibrate(self, judgments: Any, *, init: str = "released", recipe: str = "auto",
                  epochs: int | None = None, decay_epochs: int | None = None,
                  lr: float | None = None, batch_size: int | None = None,
                  val_fraction: float = 0.2, patience: int | None = None, seed: int = 0,
                  size: int | None = None, progress: Progress | None = None,
                  on_epoch: Callable[[Any], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> Calibration:
        """Fit the lin heads to 2AFC judgments with the official loss and optimiser, trunk
        frozen.

        ``judgments``: a CSV (``ref,p0,p1,judge[,mask]``), a BAPPS folder, a JudgmentSet, or
        the JudgmentFeatures of :meth:`judgment_features` (the cached trunk pass). ``init``
        "released" starts from the official heads, "scratch" from random ones. ``recipe``
        "auto" chooses the schedule from the set's size, "official" is the published one
        (5 + 5 epochs at lr 1e-4, batch 50); ``epochs``, ``decay_epochs``, ``lr``,
        ``batch_size`` and ``patience`` (0: never stop early) override it when given. The
        result's ``state_dict()`` is in the official layout (``lin{i}.model.1.weight``).
        """
        from lpips_explain.analyses.calibration import (
            INITS,
            RECIPES,
            JudgmentFeatures,
            calibrate,
        )

        lookup("calibration init", init, INITS)  # an unknown name fails before any work
        lookup("calibration recipe", recipe, RECIPES)
        if not isinstance(judgments, JudgmentFeatures):
            judgments = self.judgment_features(judgments, size=size, progress=progress,
                                               cancel=cancel)
        return calibrate(self.model, judgments, init=init, recipe=recipe, epochs=epochs,
                         decay_epochs=decay_epochs, lr=lr, batch_size=batch_size,
                         val_fraction=val_fraction, patience=patience, seed=seed,
                         progress=progress, on_epoch=on_epoch, cancel=cancel)

    def domain_gap(self, set_a: Any, set_b: Any, *, permutations: int = 1000, seed: int = 0,
                   size: int | None = None, judgments: Any = None,
                   progress: Progress | None = None) -> DomainGap:
        """How far image set B is from set A in the trunk's unit-normalised features, per
        layer (mean/std shift, MMD with a permutation p-value), plus checks of the data.

        Each set: a folder (recursive), a zip archive (bytes or path), or a list of images.
        ``judgments`` (optional: a CSV, BAPPS folder, JudgmentSet or JudgmentFeatures) is
        counted for the "judgments available" check.
        """
        from lpips_explain.analyses.calibration import JudgmentFeatures
        from lpips_explain.analyses.calibration.domain_gap import domain_gap, encode_set
        from lpips_explain.intake.files import collect_images
        from lpips_explain.intake.judgments import read_judgments
        from lpips_explain.validation import integer

        integer(permutations, "permutations", minimum=0)
        if size is not None:
            integer(size, "size", minimum=1)
        n_judgments = None
        if isinstance(judgments, JudgmentFeatures):
            n_judgments = judgments.n_used
        elif judgments is not None:
            n_judgments = len(read_judgments(judgments).rows)
        stats = []
        for source, label in ((set_a, "A"), (set_b, "B")):
            name, items, skipped = collect_images(source, label)
            shown = label if name == label else f"{label} ({name})"
            stats.append(encode_set(self.model, shown, items, size=size,
                                    max_pixels=self.max_pixels, skipped=skipped,
                                    progress=progress))
        return domain_gap(self.model, stats[0], stats[1], permutations=permutations, seed=seed,
                          size=size, n_judgments=n_judgments)

    def faithfulness(self, a: Any, b: Any, *, methods: Sequence[str] | None = None,
                     patch: int | None = None, seed: int | None = None,
                     random_orders: int = 8,
                     steps: int | None = None, randomisation: bool = True,
                     progress: Progress | None = None,
                     value_range: str | None = None) -> Faithfulness:
        """Is each attribution map of B faithful? Deletion curves against seeded random
        orders and the best repair order, cascading randomisation (on a private copy of
        the network) and the correlation with plain |B - A|. See analyses.checks.faithfulness.
        ``patch``: the deletion curves' patch size, None as in :meth:`explain`."""
        from lpips_explain.analyses.checks.faithfulness import DEFAULT_METHODS, faithfulness

        prep = self.prepare(a, b, value_range=value_range)
        return faithfulness(self.model, prep, methods=methods or DEFAULT_METHODS, patch=patch,
                            seed=self.seed if seed is None else seed,
                            random_orders=random_orders, steps=steps,
                            randomisation=randomisation, progress=progress)


def _source_name(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    name = getattr(source, "name", None)
    return os.path.basename(name) if isinstance(name, str) else None


def _repair_orders(repair: bool, orders: Sequence[str] | None,
                   attribution: str | None) -> Sequence[str]:
    """The repair orders to try (by default both single-patch gain and, with a map, ranking
    by the map), checked before any slow work (the patch size is: resolve_patch)."""
    from lpips_explain.analyses.pair.repair import check_orders, default_orders

    if orders is None:
        orders = default_orders(attribution is not None)
    if not repair:
        return orders
    orders = check_orders(orders)
    if "ranking" in orders and attribution is None:
        raise InputError("The 'ranking' repair order ranks patches by the attribution "
                         "map: name an attribution method too.")
    return orders

"""Explaining a pair and a triplet: the breakdown, attribution with its deletion check,
sensitivity, repair, distortion equivalents, second opinions and the summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from lpips_explain import notices
from lpips_explain.analyses.pair.explanation import (
    Explanation,
    explains,
    join_parts,
    summary_of,
    swap_activations,
)
from lpips_explain.analyses.pair.repair import REPAIR_POINTS, resolve_patch
from lpips_explain.core import budget, tiling
from lpips_explain.core.decompose import Decomposition
from lpips_explain.core.model import ReferenceScorer
from lpips_explain.errors import InputError
from lpips_explain.explainer.base import Timer
from lpips_explain.explainer.opinions import Opinions
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.notices import Notice
from lpips_explain.validation import Progress, optional_integer

if TYPE_CHECKING:  # imported at run time only where used (Captum, scikit-image, ...)
    from lpips_explain.analyses.attribution import Attribution
    from lpips_explain.analyses.pair.equivalents import Equivalent
    from lpips_explain.analyses.pair.repair import Repair
    from lpips_explain.analyses.pair.sensitivity import Sensitivity
    from lpips_explain.analyses.pair.triplet import TripletExplanation


class PairExplanations(Opinions):
    """Explanations of a pair (every part, or the parts asked for) and of a 2AFC triplet."""

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
        timer = Timer()
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
                         timer: Timer | None = None,
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
        timer = timer or Timer()
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
        warnings = _explanation_notices(prep, decomposition, patch_note, swap)
        attr = sens = rep = eqs = opinions = None
        if attribution is not None:
            attr = self._checked_attribution(
                ta, tb, attribution, steps=steps, swap=swap, scorer=scorer, timer=timer,
                progress=progress, params=attribution_params or {})
        if sensitivity:
            sens = timer.run("sensitivity", lambda: self._sensitivity(ta, tb, scorer, progress))
        if repair:
            rep = timer.run("repair", lambda: self._repair(
                ta, tb, scorer, progress, patch=patch, orders=repair_orders, attr=attr,
                max_points=repair_points))
        if eq_batch:
            eqs = timer.run("equivalents", lambda: self._equivalents(
                ta, tb, scorer, progress, target=decomposition.distance, batch_size=eq_batch))
        elif equivalents:
            warnings.append("The distortion equivalents were not computed: scoring whole "
                            "images of this size one at a time exceeds the memory budget.")
        if metrics is not None:
            opinions = timer.run("second_opinions", lambda: self._second_opinions(
                ta, tb, decomposition, metrics, top_k=top_k, sensitivity=sens,
                explained="A" if swap else "B"))
        expl = Explanation(decomposition, prep, self.weights_info, self.model.lin_file, attr,
                           sens, rep, (), tuple(warnings), dict(timer.ms), swapped=swap,
                           lin_heads=self.model.lin_info, equivalents=eqs,
                           second_opinions=opinions)
        return self._finished(expl)

    def _sensitivity(self, ta: torch.Tensor, tb: torch.Tensor, scorer: ReferenceScorer | None,
                     progress: Progress | None) -> Sensitivity:
        """The counterfactual sweeps of tb against ta, with ST-LPIPS's geometric table."""
        from lpips_explain.analyses.pair.sensitivity import sensitivity

        second, reason = self.geometry_second()
        return sensitivity(self.fast, ta, tb, scorer=scorer, seed=self.seed, progress=progress,
                           batch_size=self._score_batch(tuple(ta.shape[-2:]), "sweep"),
                           second=second, second_reason=reason, second_cache=self.feature_cache)

    def _repair(self, ta: torch.Tensor, tb: torch.Tensor, scorer: ReferenceScorer | None,
                progress: Progress | None, *, patch: int | None, orders: Sequence[str],
                attr: Attribution | None, max_points: int | None) -> Repair:
        """The patch repair of tb towards ta in ``orders`` (ranking by the map when given)."""
        from lpips_explain.analyses.pair.repair import repair

        ranking = attr.signed if attr is not None and "ranking" in orders else None
        return repair(self.fast, ta, tb, patch=patch, scorer=scorer, progress=progress,
                      batch_size=self._score_batch(tuple(ta.shape[-2:])), orders=orders,
                      ranking=ranking, max_points=max_points,
                      ranking_label=attr.label if attr is not None else "map")

    def _equivalents(self, ta: torch.Tensor, tb: torch.Tensor, scorer: ReferenceScorer | None,
                     progress: Progress | None, *, target: float,
                     batch_size: int) -> tuple[Equivalent, ...]:
        """Distortions of the reference (ta), as far from it as the explained image (tb)."""
        from lpips_explain.analyses.pair.equivalents import equivalents

        return equivalents(self.fast, ta, tb, target=target, scorer=scorer, seed=self.seed,
                           batch_size=batch_size, progress=progress)

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
                             timer: Timer, progress: Progress | None,
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


def _explanation_notices(prep: PreparedInputs, decomposition: Decomposition,
                         patch_note: str | None, swap: bool) -> list:
    """The inputs' notices, then how the breakdown ran (tiles), the patch size chosen and
    the roles."""
    warnings: list = list(prep.warnings)
    if decomposition.tiling is not None:
        warnings.append(Notice(notices.TILED, tiling.tiling_note(decomposition)))
    if patch_note is not None:
        warnings.append(Notice(notices.PATCH, patch_note))
    if swap:
        warnings.append(Notice(notices.ROLES_SWAPPED,
                               "Roles swapped: B is the reference and A is explained."))
    return warnings


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

"""Second opinions: DISTS and ST-LPIPS networks built once per Explainer, and the
other metrics on a pair beside LPIPS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lpips_explain.analyses.pair.explanation import (
    Explanation,
)
from lpips_explain.core import budget
from lpips_explain.core.decompose import Decomposition
from lpips_explain.core.modes import EXACT
from lpips_explain.errors import InputError
from lpips_explain.explainer.base import ExplainerBase

if TYPE_CHECKING:  # imported at run time only where used (Captum, scikit-image, ...)
    from lpips_explain.analyses.pair.second_opinions import SecondOpinions


class Opinions(ExplainerBase):
    """Other perceptual metrics beside LPIPS on the same pair (DISTS, ST-LPIPS, SSIM, PSNR)."""

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

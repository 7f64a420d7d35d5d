"""Checks on one pair: live self-checks, colour-space dependence, scoring with refusals
kept, and the faithfulness of the attribution maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lpips_explain.explainer.base import ExplainerBase
from lpips_explain.validation import Progress

if TYPE_CHECKING:  # imported at run time only where used (Captum, scikit-image, ...)
    from lpips_explain.analyses.checks.diagnostics import Check
    from lpips_explain.analyses.checks.faithfulness import Faithfulness
    from lpips_explain.analyses.pair.colorspace import ColorspaceRow
    from lpips_explain.analyses.pair.robust import RobustReport


class Checks(ExplainerBase):
    """Checks of the maths, the weights and the maps on one pair."""

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

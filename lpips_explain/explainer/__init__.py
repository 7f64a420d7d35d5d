"""The Explainer: one object that loads LPIPS once and answers distance, explain and triplet.

The facade is one class, written in rooms by job (each a class the next one builds on):

- ``base``: LPIPS built once; images loaded and aligned, the memory budget, distances and
  exact breakdowns, the mode label (:class:`ExplainerBase`);
- ``opinions``: DISTS, ST-LPIPS, SSIM and PSNR beside LPIPS (:class:`Opinions`);
- ``pair``: explanations of a pair and of a 2AFC triplet (:class:`PairExplanations`);
- ``checks``: self-checks, colour spaces, refusals kept, faithfulness of the maps
  (:class:`Checks`);
- ``sets``: audits, calibration of the lin heads, domain gaps (:class:`ManyImages`).
"""

from __future__ import annotations

from lpips_explain.analyses.pair.explanation import RANDOM_TRUNK_WARNING, SCHEMA, Explanation
from lpips_explain.explainer.checks import Checks
from lpips_explain.explainer.sets import ManyImages
from lpips_explain.intake.prepared import PreparedInputs

__all__ = ["RANDOM_TRUNK_WARNING", "SCHEMA", "Explainer", "Explanation", "PreparedInputs"]


class Explainer(ManyImages, Checks):
    """LPIPS with explanations. Build once, then call distance / explain / explain_triplet.

    One Explainer may be shared between threads: plain forwards touch no state, and
    hook-using attribution methods run on a private copy of the network.
    """

"""Explaining one pair (or one triplet) of images: the explanation and its parts.

``explanation`` (the :class:`Explanation` the facade returns), ``repair`` (which patches,
put back, close the distance), ``sensitivity`` (the distance under each perturbation),
``perturbations`` (the registry of distortions), ``equivalents`` (which distortion of each
kind reaches the same distance), ``triplet`` (which of two candidates is closer, and why),
``summary`` (the prose), ``categories`` and ``map_scale`` (the shipped tables of distance
categories and map colour limits, read through ``tables``), ``quality`` (PSNR, SSIM),
``colorspace`` and ``robust`` (the pair scored another way).

The names below are the package's; the modules ``repair``, ``sensitivity``, ``equivalents``
and ``map_scale`` keep their own names (their main function is ``repair.repair`` and so on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpips_explain import lazy

if TYPE_CHECKING:
    from lpips_explain.analyses.pair.categories import Category, categorize, category_text
    from lpips_explain.analyses.pair.colorspace import ColorspaceRow, colorspace_dependence
    from lpips_explain.analyses.pair.equivalents import Equivalent
    from lpips_explain.analyses.pair.explanation import Explanation, category_of, summary_of
    from lpips_explain.analyses.pair.map_scale import MapScale, hottest_window, scale_for
    from lpips_explain.analyses.pair.perturbations import (
        PERTURBATIONS,
        Perturbation,
        get_perturbation,
    )
    from lpips_explain.analyses.pair.quality import psnr, ssim
    from lpips_explain.analyses.pair.repair import Repair
    from lpips_explain.analyses.pair.robust import RobustReport, robust_score
    from lpips_explain.analyses.pair.sensitivity import Sensitivity, Sweep
    from lpips_explain.analyses.pair.summary import summarize
    from lpips_explain.analyses.pair.triplet import TripletExplanation, explain_triplet

# Each name and the module that defines it, imported on first use: importing one module of
# the package (say quality, for the audit) does not load the others and what they import.
_WHERE = {
    "Category": "categories",
    "ColorspaceRow": "colorspace",
    "Equivalent": "equivalents",
    "Explanation": "explanation",
    "MapScale": "map_scale",
    "PERTURBATIONS": "perturbations",
    "Perturbation": "perturbations",
    "Repair": "repair",
    "RobustReport": "robust",
    "Sensitivity": "sensitivity",
    "Sweep": "sensitivity",
    "TripletExplanation": "triplet",
    "categorize": "categories",
    "category_of": "explanation",
    "category_text": "categories",
    "colorspace_dependence": "colorspace",
    "explain_triplet": "triplet",
    "get_perturbation": "perturbations",
    "hottest_window": "map_scale",
    "psnr": "quality",
    "robust_score": "robust",
    "scale_for": "map_scale",
    "ssim": "quality",
    "summarize": "summary",
    "summary_of": "explanation",
}
__all__ = [
    "PERTURBATIONS",
    "Category",
    "ColorspaceRow",
    "Equivalent",
    "Explanation",
    "MapScale",
    "Perturbation",
    "Repair",
    "RobustReport",
    "Sensitivity",
    "Sweep",
    "TripletExplanation",
    "categorize",
    "category_of",
    "category_text",
    "colorspace_dependence",
    "explain_triplet",
    "get_perturbation",
    "hottest_window",
    "psnr",
    "robust_score",
    "scale_for",
    "ssim",
    "summarize",
    "summary_of",
]


__getattr__, __dir__ = lazy.exports(__name__, _WHERE)

"""Explaining one pair (or one triplet) of images: the explanation and its parts.

``explanation`` (the :class:`Explanation` the facade returns), ``repair`` (which patches,
put back, close the distance), ``sensitivity`` (the distance under each perturbation),
``perturbations`` (the registry of distortions), ``equivalents`` (which distortion of each
kind reaches the same distance), ``triplet`` (which of two candidates is closer, and why),
``summary`` (the prose), ``categories`` and ``map_scale`` (the shipped tables of distance
categories and map colour limits, read through ``tables``), ``quality`` (PSNR, SSIM),
``colorspace`` and ``robust`` (the pair scored another way).
"""

from lpips_explain.analyses.pair.categories import Category, categorize
from lpips_explain.analyses.pair.colorspace import ColorspaceRow, colorspace_dependence
from lpips_explain.analyses.pair.equivalents import Equivalent, equivalents
from lpips_explain.analyses.pair.explanation import Explanation, category_of, summary_of
from lpips_explain.analyses.pair.map_scale import MapScale, hottest_window, map_scale, scale_for
from lpips_explain.analyses.pair.perturbations import PERTURBATIONS, Perturbation, get_perturbation
from lpips_explain.analyses.pair.quality import psnr, ssim
from lpips_explain.analyses.pair.repair import Repair, repair
from lpips_explain.analyses.pair.robust import RobustReport, robust_score
from lpips_explain.analyses.pair.sensitivity import Sensitivity, sensitivity
from lpips_explain.analyses.pair.summary import summarize
from lpips_explain.analyses.pair.triplet import TripletExplanation, explain_triplet

__all__ = [
    "PERTURBATIONS", "Category", "ColorspaceRow", "Equivalent", "Explanation", "MapScale",
    "Perturbation", "Repair", "RobustReport", "Sensitivity", "TripletExplanation",
    "categorize", "category_of", "colorspace_dependence", "equivalents", "explain_triplet",
    "get_perturbation", "hottest_window", "map_scale", "psnr", "repair", "robust_score",
    "scale_for", "sensitivity", "ssim", "summarize", "summary_of",
]

"""lpips-explain: see why LPIPS says what it says (exact breakdowns, attributions, counterfactuals).

The public names load on first use (PEP 562), so that light commands such as
``lpips-explain weights`` do not pay for the whole engine's imports.
"""

from __future__ import annotations

from lpips_explain import lazy

__version__ = "0.1.0"

_WHERE = {
    "ChannelDetail": "lpips_explain.core.decompose",
    "Decomposition": "lpips_explain.core.decompose",
    "LayerBreakdown": "lpips_explain.core.decompose",
    "Mode": "lpips_explain.core.modes",
    "ModeUnavailableError": "lpips_explain.core.modes",
    "SCHEMA": "lpips_explain.explainer",
    "Explainer": "lpips_explain.explainer",
    "Explanation": "lpips_explain.explainer",
    "PreparedInputs": "lpips_explain.explainer",
    "LoadedImage": "lpips_explain.intake.images",
    "load_image": "lpips_explain.intake.images",
    **{name: "lpips_explain.errors" for name in (
        "ArchiveError", "ComputationError", "CorruptImageError", "EmptyInputError",
        "ImageTooLargeError", "ImageTooSmallError", "InputError", "LpipsExplainError",
        "NotAnImageError", "SizeMismatchError", "UnknownOptionError", "ValueRangeError",
        "WeightsError", "WeightsMismatchError", "WeightsUnavailableError")},
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy.exports(__name__, _WHERE)


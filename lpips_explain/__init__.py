"""lpips-explain: see why LPIPS says what it says (exact breakdowns, attributions, counterfactuals)."""

from lpips_explain.core.decompose import ChannelDetail, Decomposition, LayerBreakdown
from lpips_explain.core.modes import Mode, ModeUnavailableError
from lpips_explain.errors import (
    ComputationError,
    CorruptImageError,
    EmptyInputError,
    ImageTooLargeError,
    ImageTooSmallError,
    InputError,
    LpipsExplainError,
    NotAnImageError,
    SizeMismatchError,
    UnknownOptionError,
    ValueRangeError,
    WeightsError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from lpips_explain.explainer import SCHEMA, Explainer, Explanation, PreparedInputs
from lpips_explain.intake.images import LoadedImage, load_image

__version__ = "0.1.0"

__all__ = [
    "SCHEMA",
    "ChannelDetail",
    "ComputationError",
    "CorruptImageError",
    "Decomposition",
    "EmptyInputError",
    "Explainer",
    "Explanation",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "InputError",
    "LayerBreakdown",
    "LoadedImage",
    "LpipsExplainError",
    "Mode",
    "ModeUnavailableError",
    "NotAnImageError",
    "PreparedInputs",
    "SizeMismatchError",
    "UnknownOptionError",
    "ValueRangeError",
    "WeightsError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "load_image",
]

"""lpips-explain: see why LPIPS says what it says (exact breakdowns, attributions, counterfactuals)."""

from .decompose import ChannelDetail, Decomposition, LayerBreakdown
from .errors import (
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
from .explainer import SCHEMA, Explainer, Explanation, PreparedInputs
from .images import LoadedImage, load_image

__version__ = "0.1.0"

__all__ = [
    "SCHEMA",
    "ChannelDetail",
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

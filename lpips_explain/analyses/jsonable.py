"""Numbers as JSON takes them: JSON has no NaN or Inf, so those become ``null``."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["finite_or_none", "json_floats"]


def finite_or_none(value: float | None) -> float | None:
    """The value as a float, or None for None, NaN and Inf (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def json_floats(values: np.ndarray) -> list[float | None]:
    """Every value as a float, NaN and Inf as None."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]

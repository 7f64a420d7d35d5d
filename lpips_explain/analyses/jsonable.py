"""What every result's JSON shares: the header (schema, kind, trunk) and numbers as JSON
takes them (JSON has no NaN or Inf, so those become ``null``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lpips_explain.core.weights import WeightsInfo

__all__ = ["SCHEMA", "finite_or_none", "header", "json_floats"]

#: The schema of the JSON of one pair's results (explain, triplet, faithfulness, calibrate,
#: domain-gap); the audit, weights and profile outputs have their own.
SCHEMA = "lpips-explain/1"


def header(kind: str, net: str, version: str, backbone: WeightsInfo) -> dict[str, Any]:
    """The keys every result's JSON opens with: ``schema``, ``kind``, ``net``, ``version``
    and ``backbone`` (the trunk's weights, how they were verified, whether perceptual)."""
    return {"schema": SCHEMA, "kind": kind, "net": net, "version": version,
            "backbone": backbone.to_dict()}


def finite_or_none(value: float | None) -> float | None:
    """The value as a float, or None for None, NaN and Inf (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def json_floats(values: np.ndarray) -> list[float | None]:
    """Every value as a float, NaN and Inf as None."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]

"""Results as strict JSON text: numpy and torch values to plain types, NaN and Inf to null.

Kept apart from the HTML report so that commands printing JSON never import plotly."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["dumps", "jsonable", "to_json"]


def jsonable(obj: Any) -> Any:
    """``obj`` as plain Python JSON types: numpy to lists/scalars, NaN and Inf to None."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # a torch tensor
        return jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    raise TypeError(f"Cannot turn a {type(obj).__name__} into JSON; expected numbers, strings, "
                    f"lists, dicts, numpy values or an object with to_dict().")


def dumps(data: Any) -> str:
    return json.dumps(jsonable(data), indent=2, allow_nan=False)


def to_json(result: Any) -> str:
    """The result's ``to_dict()`` as strict JSON text (NaN and Inf become null)."""
    data = result if isinstance(result, Mapping) else result.to_dict()
    return dumps(data)

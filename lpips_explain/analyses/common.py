"""Helpers every analysis shares: argument checks, the reference scorer, number formats."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.trunks import check_min_size
from lpips_explain.errors import InputError
from lpips_explain.intake.tensors import check_tensor, check_tensor_pair

# progress(done, total, what): called by long analyses; the CLI draws a bar, the app a widget.
Progress = Callable[[int, int, str], None]


def check_image(x: object, what: str) -> Tensor:
    return check_tensor(x, f"image {what}")


def check_pair(net: LpipsNet, a: object, b: object,
               names: tuple[str, str] = ("A", "B")) -> tuple[Tensor, Tensor]:
    """Two image tensors of one size, big enough for ``net``'s trunk, on A's device and dtype."""
    a, b = check_tensor_pair(a, b, names)
    check_min_size((int(a.shape[-2]), int(a.shape[-1])), net.spec.name, label="image size")
    return a, b.to(device=a.device, dtype=a.dtype)


def scorer_for(net: LpipsNet, a: Tensor, scorer: ReferenceScorer | None) -> ReferenceScorer:
    if scorer is None:
        return ReferenceScorer(net, a)
    if scorer.net is not net:
        raise InputError("The scorer was built on a different network; pass scorer=None "
                         "or one built with ReferenceScorer(net, a).")
    ref = scorer.reference
    if ref.shape != a.shape or not torch.equal(ref, a.to(device=ref.device, dtype=ref.dtype)):
        raise InputError("The scorer was built for a different reference image than A; pass "
                         "scorer=None or one built with ReferenceScorer(net, a).")
    return scorer


def check_int(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def pct(x: float) -> str:
    """A share as a percentage that never rounds a non-zero share to 0%."""
    if x == 0 or x >= 0.01:
        return f"{x:.0%}"
    return f"{100 * x:.2g}%"


def finite_or_none(value: float | None) -> float | None:
    """The value as a float, or None for None, NaN and Inf (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def json_floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def two_afc(d0: object, d1: object, judge: object) -> np.ndarray:
    """The official 2AFC score per triplet (lpips.score_2afc_dataset):
    (d0<d1)(1-g) + (d1<d0)g + 0.5[d0==d1], with g the share of people who chose p1."""
    d0, d1, g = (np.asarray(v, dtype=np.float64) for v in (d0, d1, judge))
    return (d0 < d1) * (1 - g) + (d1 < d0) * g + (d0 == d1) * 0.5

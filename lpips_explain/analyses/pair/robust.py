"""Robust scoring: LPIPS over many pairs with refusals kept, a pixel metric beside, and demo cases."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from lpips_explain.analyses.jsonable import finite_or_none as _finite_or_none
from lpips_explain.analyses.pair.quality import psnr, ssim
from lpips_explain.errors import LpipsExplainError, lookup
from lpips_explain.intake.align import align_pair
from lpips_explain.intake.images import LoadedImage, load_image
from lpips_explain.intake.tensors import to_uint8

__all__ = ["FALLBACKS", "RobustItem", "RobustReport", "demo_pairs", "robust_score"]

FALLBACKS: tuple[str, ...] = ("psnr", "ssim")
_FALLBACK_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM"}



@dataclass(frozen=True)
class RobustItem:
    """One pair: LPIPS, or why LPIPS refused it, and a different metric reported beside it."""

    label: str
    lpips: float | None  # None exactly when LPIPS refused (``refused`` holds why)
    refused: str | None
    fallback_name: str
    fallback: float | None  # the fallback metric's value (PSNR may be inf for identical images)
    fallback_error: str | None
    refused_type: str | None = None  # the error class, e.g. "ImageTooSmallError"

    def to_dict(self) -> dict:
        return {"label": self.label, "lpips": self.lpips, "refused": self.refused,
                "refused_type": self.refused_type, "fallback_name": self.fallback_name,
                "fallback": _finite_or_none(self.fallback),
                "fallback_infinite": self.fallback is not None and math.isinf(self.fallback),
                "fallback_error": self.fallback_error}


@dataclass(frozen=True)
class RobustReport:
    """LPIPS over many pairs, with refusals kept as refusals and a fallback metric beside them."""

    items: tuple[RobustItem, ...]
    successes: int
    refusals: int
    fallback_name: str
    note: str

    def to_dict(self) -> dict:
        return {"items": [it.to_dict() for it in self.items], "successes": self.successes,
                "refusals": self.refusals, "fallback_name": self.fallback_name,
                "note": self.note}


def _value_range_for(source: Any) -> str | None:
    # Float arrays and tensors do not say their range; robust scoring reads them as [0, 1].
    if isinstance(source, np.ndarray) and source.dtype.kind == "f":
        return "[0,1]"
    if isinstance(source, Tensor) and source.is_floating_point():
        return "[0,1]"
    return None


def _fallback_value(metric: str, a: LoadedImage, b: LoadedImage, policy: str) -> float:
    ta, tb, _ = align_pair(a, b, policy)
    fn = psnr if metric == "psnr" else ssim
    return float(fn(ta, tb)[0])


def robust_score(pairs: Sequence[tuple[str, Any, Any]], score: Callable[[LoadedImage, LoadedImage], float],
                 *, size_policy: str = "resize", max_pixels: int | None = None,
                 fallback: str = "psnr") -> RobustReport:
    """Score every (label, a, b) pair with LPIPS, keeping refusals, with a fallback metric beside.

    ``a`` and ``b`` are anything :func:`images.load_image` accepts; float arrays and tensors
    are read as [0, 1]. LPIPS refusals (any :class:`LpipsExplainError`) are recorded with their
    message, never replaced: the fallback metric (PSNR or SSIM, on the images aligned with the
    explainer's size policy) is reported in its own field, and is ``None`` with an error only
    when the images cannot even be decoded or compared.
    """
    lookup("fallback metric", fallback, {f: f for f in FALLBACKS})
    items = []
    for label, a, b in pairs:
        loaded: list[LoadedImage] = []
        decode_error: LpipsExplainError | None = None
        decode_msg = None
        for src, which in ((a, "A"), (b, "B")):
            try:
                loaded.append(load_image(src, value_range=_value_range_for(src),
                                                max_pixels=max_pixels))
            except LpipsExplainError as exc:
                decode_error, decode_msg = exc, f"Image {which}: {exc}"
                break
        if decode_error is not None:
            items.append(RobustItem(label, None, decode_msg, fallback, None, decode_msg,
                                    type(decode_error).__name__))
            continue
        la, lb = loaded
        lp = refused = refused_type = None
        try:
            lp = float(score(la, lb))
        except LpipsExplainError as exc:
            refused, refused_type = str(exc), type(exc).__name__
        fb = fb_err = None
        try:
            fb = _fallback_value(fallback, la, lb, size_policy)
        except LpipsExplainError as exc:
            fb_err = str(exc)
        items.append(RobustItem(label, lp, refused, fallback, fb, fb_err, refused_type))
    name = _FALLBACK_LABELS[fallback]
    note = (f"{name} is a different metric from LPIPS (it compares pixels, not learned "
            f"features, and its scale runs the other way: higher means more similar). It is "
            f"reported beside LPIPS, never in its place: where LPIPS refused a pair, that pair "
            f"has no LPIPS number.")
    successes = sum(it.lpips is not None for it in items)
    refusals = sum(it.refused is not None for it in items)
    return RobustReport(tuple(items), successes, refusals, fallback, note)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _decoded_or_stand_in(data: bytes, seed: int) -> np.ndarray:
    """The image as H x W x 3 uint8, or a smooth synthetic 64 x 64 stand-in if it cannot be read."""
    try:
        return to_uint8(load_image(data).tensor)
    except LpipsExplainError:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:64, 0:64] / 63.0
        base = np.stack([yy, xx, 1 - (yy + xx) / 2], axis=-1) + 0.05 * rng.random((64, 64, 3))
        return (np.clip(base, 0, 1) * 255).round().astype(np.uint8)


def _centre_crop(arr: np.ndarray, side: int) -> np.ndarray:
    h, w = arr.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(arr[top: top + side, left: left + side])


def demo_pairs(a_bytes: bytes, b_bytes: bytes) -> list[tuple[str, Any, Any]]:
    """The uploaded pair plus built-in problem cases made in memory, for :func:`robust_score`.

    Cases: a 16 x 16 centre crop of both (too small for the alex and squeeze trunks), a
    truncated PNG, an empty file, a constant grey image, and a float array holding NaN.
    """
    a_img = _decoded_or_stand_in(a_bytes, 1)
    b_img = _decoded_or_stand_in(b_bytes, 2)
    small = 16
    png_a = _png(a_img)
    corrupt = png_a[: max(60, len(png_a) // 2)]  # header intact, image data cut short
    grey = np.full(b_img.shape, 128, dtype=np.uint8)
    nan_arr = a_img.astype(np.float32) / 255.0
    nan_arr[: max(1, nan_arr.shape[0] // 4), : max(1, nan_arr.shape[1] // 4)] = np.nan
    return [
        ("uploaded pair: A vs B", a_bytes, b_bytes),
        (f"{small}x{small} centre crops of A and B (too small for alex and squeeze)",
         _png(_centre_crop(a_img, small)), _png(_centre_crop(b_img, small))),
        ("truncated PNG (corrupt) vs B", corrupt, b_bytes),
        ("empty file (0 bytes) vs B", b"", b_bytes),
        ("constant grey image vs B", _png(grey), b_bytes),
        ("float array with NaN values vs B", nan_arr, b_bytes),
    ]

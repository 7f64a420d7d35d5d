"""Image intake's shared checks and pixel helpers: value ranges, the pixel cap, the background.

Used by both :mod:`~lpips_explain.intake.arrays` (arrays and tensors) and the Pillow
decoding (:mod:`~lpips_explain.intake.colour_modes`, :mod:`~lpips_explain.intake.decode`): stated
value ranges mapped to [0, 1] (values outside, NaN and Inf refused, never clamped),
transparency composited over a background, the pixel cap checked before any decoding.
"""

from __future__ import annotations

import os

import torch

from lpips_explain import errors
from lpips_explain.errors import ImageTooLargeError, InputError, ValueRangeError
from lpips_explain.intake.tensors import format_size as _px
from lpips_explain.validation import counted, integer

DEFAULT_MAX_PIXELS: int = 40_000_000
MAX_PIXELS_ENV: str = "LPIPS_EXPLAIN_MAX_PIXELS"
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "[0,1]": (0.0, 1.0),
    "[-1,1]": (-1.0, 1.0),
    "[0,255]": (0.0, 255.0),
}

# Float rounding noise tolerated at the edges of a stated range, in units of the range span.
_RANGE_TOL = 1e-6
_RANGE_CHOICES = ", ".join(f'"{k}"' for k in VALUE_RANGES)


def max_pixels_from_env() -> int:
    """The pixel cap: ``$LPIPS_EXPLAIN_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(
            f"{MAX_PIXELS_ENV}={raw!r} is not a positive whole number of pixels; "
            f"set it to e.g. {DEFAULT_MAX_PIXELS} or unset it."
        )
    return value


def resolve_cap(max_pixels: int | None) -> int:
    """The pixel cap to use: ``max_pixels`` checked, or the environment's when it is None."""
    if max_pixels is None:
        return max_pixels_from_env()
    return integer(max_pixels, "max_pixels", minimum=1)


def check_cap(size: tuple[int, int], cap: int) -> None:
    """Refuse an image of ``size`` (height, width) with more than ``cap`` pixels."""
    pixels = size[0] * size[1]
    if pixels > cap:
        raise ImageTooLargeError(
            f"The image is {_px(size)} ({pixels:,} pixels), over the cap of {cap:,} pixels. "
            f"Use a smaller image, or raise the cap with max_pixels= or the environment "
            f"variable {MAX_PIXELS_ENV} if you have the memory for it."
        )


def range_of(value_range: str | None) -> tuple[float, float] | None:
    """The (low, high) of a named value range, None for None; an unknown name is refused."""
    if value_range is None:
        return None
    return errors.lookup("value range", value_range, VALUE_RANGES)  # type: ignore[return-value]


def check_finite(t: torch.Tensor, what: str) -> None:
    """Refuse a float tensor holding NaN or Inf, saying how many of each."""
    if not t.is_floating_point():
        return
    n_nan = int(torch.isnan(t).sum())
    n_inf = int(torch.isinf(t).sum())
    if n_nan or n_inf:
        kinds = []
        if n_nan:
            kinds.append(counted(n_nan, "NaN value"))
        if n_inf:
            kinds.append(counted(n_inf, "Inf value"))
        raise ValueRangeError(
            f"The {what} holds {' and '.join(kinds)}; replace them with finite values "
            f"before loading (they are never clamped or dropped silently)."
        )


def normalise(t: torch.Tensor, lo: float, hi: float, range_name: str, what: str) -> torch.Tensor:
    """Map values in [lo, hi] to [0, 1]; refuse anything outside, NaN or Inf."""
    if t.dtype == torch.uint8 and (lo, hi) == (0.0, 255.0):
        # Every uint8 value is in [0, 255] and t / 255 is already in [0, 1]: the scans and
        # the clamp below would change nothing (the same float32 values, 2-3x faster).
        return t.to(torch.float32).div_(255.0)
    check_finite(t, what)
    work = torch.float64 if t.dtype in (torch.float64, torch.int32, torch.int64) else torch.float32
    if t.numel():
        vmin, vmax = float(t.min()), float(t.max())
        tol = _RANGE_TOL * (hi - lo) if t.is_floating_point() else 0.0
        if vmin < lo - tol or vmax > hi + tol:
            raise ValueRangeError(
                f"The {what} has values from {vmin:g} to {vmax:g}, outside its stated range "
                f"{range_name}. Pass the value_range that matches the data ({_RANGE_CHOICES}); "
                f"values are never clamped or rescaled silently."
            )
    # In place on one fresh copy: the same values as (t - lo) / (hi - lo), without two more
    # full-size temporaries (a 16 MP image is 192 MB in float32).
    out = t.to(work, copy=True).sub_(lo).div_(hi - lo)
    # Only float rounding noise (checked above) can fall outside [0, 1] here.
    return out.clamp_(0.0, 1.0).to(torch.float32)


def composite(
    chw: torch.Tensor, background: tuple[int, int, int], notes: list[str], what: str
) -> torch.Tensor:
    """Flatten a 4xHxW (RGBA in [0, 1]) tensor onto ``background``; note it if alpha mattered."""
    rgb, alpha = chw[:3], chw[3:4]
    if float(alpha.min()) < 1.0 - _RANGE_TOL:
        bg = torch.tensor([c / 255.0 for c in background], dtype=torch.float32).view(3, 1, 1)
        rgb = rgb * alpha + bg * (1.0 - alpha)
        notes.append(
            f"The {what} has transparency: its alpha channel was dropped by compositing "
            f"over the background RGB{tuple(background)}."
        )
    return rgb.clamp(0.0, 1.0)


def finish(chw: torch.Tensor) -> torch.Tensor:
    """CxHxW in [0, 1] with C in (1, 3) -> contiguous float32 1x3xHxW."""
    if chw.shape[0] == 1:
        chw = chw.expand(3, -1, -1)
    return chw.unsqueeze(0).to(torch.float32).contiguous().detach()


def check_background(background: tuple[int, int, int]) -> None:
    """Refuse a background that is not three integers in 0..255."""
    ok = (
        isinstance(background, (tuple, list))
        and len(background) == 3
        and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in background
        )
    )
    if not ok:
        raise InputError(
            f"background must be three integers in 0..255 (an RGB colour), got {background!r}."
        )

"""Images handed in as numpy arrays or torch tensors, checked and mapped to CxHxW in [0, 1].

Their shape says where the channels are (arrays: first or last; tensors: first), their
dtype or the stated ``value_range`` says the range of their values.
"""

from __future__ import annotations

import numpy as np
import torch

from lpips_explain.errors import EmptyInputError, InputError
from lpips_explain.intake.pixels import VALUE_RANGES, check_cap, check_finite, composite, normalise


def _from_channels(
    t: torch.Tensor,
    channels_last: bool,
    value_range: str | None,
    background: tuple[int, int, int],
    what: str,
    notes: list[str],
) -> torch.Tensor:
    """Shared path of arrays and tensors: t is 2-D or 3-D with channels first/last."""
    if t.dtype == torch.bool:
        raise InputError(
            f"The {what} is boolean; convert it to numbers (e.g. uint8 0/255 or float 0/1) "
            f"and state its value_range."
        )
    if t.dtype.is_complex:
        raise InputError(f"The {what} is complex-valued; pass real numbers.")
    if t.numel() == 0:
        raise EmptyInputError(f"The {what} is empty (shape {tuple(t.shape)}).")
    if t.ndim == 2:
        t = t.unsqueeze(0)
    elif channels_last:
        t = t.permute(2, 0, 1)
    if t.shape[0] not in (1, 3, 4):
        raise InputError(f"The {what} has {t.shape[0]} channels; expected 1, 3 or 4.")

    lo, hi, range_name = _value_range(t, value_range, what)
    if t.dtype == torch.uint16:
        t = t.to(torch.int32)  # uint16 has few torch kernels; int32 holds it exactly
    t = normalise(t, lo, hi, range_name, what)
    if t.shape[0] == 4:
        t = composite(t, background, notes, what)
    return t


def _value_range(t: torch.Tensor, value_range: str | None, what: str) -> tuple[float, float, str]:
    """(low, high, name) of the values: as stated, or implied by uint8 or uint16; else refused."""
    if value_range is not None:
        lo, hi = VALUE_RANGES[value_range]
        range_name = value_range
    elif t.dtype == torch.uint8:
        lo, hi, range_name = 0.0, 255.0, "[0,255] (implied by uint8)"
    elif t.dtype == torch.uint16:
        lo, hi, range_name = 0.0, 65535.0, "[0,65535] (implied by uint16)"
    else:
        check_finite(t, what)
        span = f"{float(t.min()):g} to {float(t.max()):g}"
        raise InputError(
            f"The {what} has dtype {str(t.dtype).removeprefix('torch.')} (values {span}), "
            f'which does not say its value range. Pass value_range="[0,1]", "[-1,1]" or '
            f'"[0,255]" to state it.'
        )
    return lo, hi, range_name


def from_numpy(
    arr: np.ndarray,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str]:
    """A numpy array (HxW, HxWxC, CxHxW or 1x...) as CxHxW in [0, 1], and its mode label."""
    what = "array"
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise InputError(
                f"The array has shape {arr.shape}: a batch of {arr.shape[0]} images. "
                f"Pass one image per call."
            )
        arr = arr[0]
    if arr.ndim == 2:
        channels_last = False
    elif arr.ndim == 3:
        if arr.shape[0] in (1, 3) and arr.shape[-1] not in (3, 4):
            channels_last = False
        elif arr.shape[-1] in (1, 3, 4):
            channels_last = True
        else:
            raise InputError(
                f"Cannot tell the channels of an array of shape {arr.shape}; pass HxW, "
                f"HxWx1, HxWx3, HxWx4 (channels last) or 1xHxW, 3xHxW (channels first)."
            )
    else:
        raise InputError(
            f"The array has {arr.ndim} dimensions (shape {arr.shape}); pass HxW, HxWxC or CxHxW."
        )
    if arr.dtype.kind not in "biuf":
        raise InputError(f"The array has dtype {arr.dtype}; pass numbers (uint8, uint16 or float).")
    h, w = (arr.shape[:2] if channels_last else arr.shape[-2:]) if arr.ndim == 3 else arr.shape
    check_cap((int(h), int(w)), cap)
    if arr.dtype.kind == "u" and arr.dtype.itemsize > 2:
        arr = arr.astype(np.int64)
    elif arr.dtype.byteorder not in ("=", "|") or arr.dtype == np.float16:
        arr = arr.astype(arr.dtype.newbyteorder("=") if arr.dtype != np.float16 else np.float32)
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()  # torch.from_numpy warns on read-only memory
    t = torch.from_numpy(arr)
    return _from_channels(t, channels_last, value_range, background, what, notes), "array"


def from_tensor(
    t: torch.Tensor,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str]:
    """A torch tensor (HxW, CxHxW or 1xCxHxW) as CxHxW in [0, 1], and its mode label."""
    what = "tensor"
    t = t.detach()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise InputError(
                f"The tensor has shape {tuple(t.shape)}: a batch of {t.shape[0]} images. "
                f"Pass one image per call."
            )
        t = t[0]
    if t.ndim == 3 and t.shape[0] not in (1, 3, 4):
        raise InputError(
            f"The tensor has shape {tuple(t.shape)}; tensors are channels first: pass HxW, "
            f"1xHxW, 3xHxW, 4xHxW or 1xCxHxW (use .permute(2, 0, 1) on an HxWxC tensor)."
        )
    if t.ndim not in (2, 3):
        raise InputError(
            f"The tensor has {t.ndim} dimensions (shape {tuple(t.shape)}); pass HxW, CxHxW or 1xCxHxW."
        )
    check_cap((int(t.shape[-2]), int(t.shape[-1])), cap)
    t = t.to("cpu")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    return _from_channels(t, False, value_range, background, what, notes), "tensor"

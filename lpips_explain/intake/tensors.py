"""The engine's checks on tensors it is handed directly, and conversion for display."""

from __future__ import annotations

import numpy as np
import torch

from lpips_explain.errors import InputError, SizeMismatchError, ValueRangeError


def format_size(size: tuple[int, int]) -> str:
    """Write an (height, width) tuple the way people read image sizes: WIDTHxHEIGHT px."""
    return f"{size[1]}x{size[0]} px"


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """1x3xHxW or 3xHxW in [0, 1] -> HxWx3 uint8 (rounded; clamped, for display and saving)."""
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"to_uint8 takes a torch tensor, got {type(tensor).__name__}.")
    t = tensor.detach().to("cpu", torch.float32)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise InputError(
            f"to_uint8 takes a 1x3xHxW or 3xHxW tensor, got shape {tuple(tensor.shape)}."
        )
    return (t.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()



def check_tensor(x: object, what: str = "the image", *, batch: bool = False) -> torch.Tensor:
    """Refuse anything but a float image tensor in [0, 1]: 1x3xHxW (or Nx3xHxW with batch).

    The one check every engine function applies to tensors it is handed directly (the
    intake, ``load_image``, is for everything a user supplies). A 3xHxW tensor gets a batch
    axis (single images only). Returns the tensor detached, as float32.
    """
    shape = "N x 3 x H x W" if batch else "1 x 3 x H x W"
    if not isinstance(x, torch.Tensor):
        raise InputError(f"Expected {what} as a torch.Tensor of shape {shape} in [0, 1], got "
                         f"{type(x).__name__}; load images with lpips_explain.load_image.")
    t = x.detach()
    if t.ndim == 3 and not batch:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[1] != 3 or t.shape[0] < 1 or (not batch and t.shape[0] != 1):
        raise InputError(f"Expected {what} of shape {shape}, got {tuple(x.shape)}.")
    if not t.is_floating_point():
        raise InputError(f"Expected {what} as a floating-point tensor in [0, 1], got {t.dtype}.")
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueRangeError(f"{what[:1].upper()}{what[1:]} holds NaN or Inf values.")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueRangeError(f"Expected {what} values in [0, 1], got [{lo:.4g}, {hi:.4g}]; "
                              f"convert it to [0, 1] first.")
    return t


def check_tensor_pair(a: object, b: object, names: tuple[str, str] = ("A", "B")) -> tuple[torch.Tensor, torch.Tensor]:
    """Two images as :func:`check_tensor`, of one size."""
    ta, tb = check_tensor(a, f"image {names[0]}"), check_tensor(b, f"image {names[1]}")
    if ta.shape != tb.shape:
        raise SizeMismatchError(
            f"Images {names[0]} and {names[1]} differ in size ({format_size(tuple(ta.shape[-2:]))} and "
            f"{format_size(tuple(tb.shape[-2:]))}); bring them to one size first "
            f"(Explainer.prepare applies the size policy).")
    return ta, tb

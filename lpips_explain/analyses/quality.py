"""Classical full-reference quality scores (PSNR, SSIM) from scikit-image, to set beside LPIPS."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import Tensor

from lpips_explain import errors
from lpips_explain.intake.tensors import check_tensor

__all__ = ["psnr", "ssim"]

_SSIM_WIN = 7  # scikit-image's default window


def _to_hwc(x: object, what: str) -> np.ndarray:
    """Check an N x 3 x H x W tensor in [0, 1] and return it as float64 N x H x W x 3."""
    t = check_tensor(x, what, batch=True)
    return t.to(torch.float64).permute(0, 2, 3, 1).numpy()


def _pair(reference: Tensor, candidates: Tensor) -> tuple[np.ndarray, np.ndarray]:
    ref = _to_hwc(reference, "the reference")
    cand = _to_hwc(candidates, "the candidates")
    if ref.shape[0] != 1:
        raise errors.InputError(
            f"Expected one reference image (1 x 3 x H x W), got a batch of {ref.shape[0]}."
        )
    if ref.shape[1:3] != cand.shape[1:3]:
        raise errors.SizeMismatchError(
            f"The reference is {ref.shape[1]}x{ref.shape[2]} (HxW) but the candidates are "
            f"{cand.shape[1]}x{cand.shape[2]}; resize them to the same size first."
        )
    return ref[0], cand


def psnr(reference: Tensor, candidates: Tensor) -> np.ndarray:
    """PSNR in dB of each candidate against the reference, with a data range of 1.

    ``reference`` is 1 x 3 x H x W, ``candidates`` N x 3 x H x W, both in [0, 1]; returns N
    float64 values. A candidate identical to the reference scores ``inf`` (JSON writers turn it
    into ``None``).
    """
    ref, cand = _pair(reference, candidates)
    # An exact match divides by a zero MSE: inf is the intended answer, not a warning.
    with np.errstate(divide="ignore"):
        values = [peak_signal_noise_ratio(ref, c, data_range=1.0) for c in cand]
    return np.asarray(values, dtype=np.float64)


def ssim(reference: Tensor, candidates: Tensor) -> np.ndarray:
    """Mean SSIM of each candidate against the reference (scikit-image, RGB, data range 1).

    ``reference`` is 1 x 3 x H x W, ``candidates`` N x 3 x H x W, both in [0, 1]; returns N
    float64 values, 1 for identical images. The window is scikit-image's default 7 x 7; images
    with a side shorter than 7 px use the largest odd window that fits (3 or 5), and images with
    a side shorter than 3 px are refused with :class:`~lpips_explain.errors.InputError`.
    """
    ref, cand = _pair(reference, candidates)
    side = min(ref.shape[0], ref.shape[1])
    if side < 3:
        raise errors.InputError(
            f"SSIM needs images at least 3 px on each side, got {ref.shape[0]}x{ref.shape[1]}."
        )
    win = min(_SSIM_WIN, side if side % 2 == 1 else side - 1)
    values = [
        structural_similarity(ref, c, win_size=win, channel_axis=-1, data_range=1.0) for c in cand
    ]
    return np.asarray(values, dtype=np.float64)

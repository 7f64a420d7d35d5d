"""Classical full-reference quality scores (PSNR, SSIM) in torch, batched, to set beside LPIPS.

SSIM is the Gaussian SSIM of Wang et al. (2004): an 11 x 11 Gaussian window with sigma 1.5,
K1 = 0.01, K2 = 0.03, data range 1, population (not sample) covariances, the mean taken over
the positions where the whole window fits, then over the three RGB channels. It is computed
by the ``pytorch-msssim`` library on whole batches; it equals scikit-image's
``structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1, channel_axis=-1)`` to float32 rounding (tests/analyses/pair/test_quality.py checks it).
PSNR is 10 log10(1 / MSE) over all pixels and channels, as scikit-image's
``peak_signal_noise_ratio(a, b, data_range=1)``, with the MSE summed in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import Tensor

from lpips_explain import errors
from lpips_explain.core.budget import SWEEP_SSIM_PIXELS
from lpips_explain.intake.tensors import check_tensor

__all__ = ["SSIM_DESCRIPTION", "SSIM_SIGMA", "SSIM_WINDOW", "psnr", "psnr_pairs", "ssim", "ssim_pairs"]

SSIM_WINDOW = 11  # Gaussian window side, px (Wang et al. 2004)
SSIM_SIGMA = 1.5
SSIM_DESCRIPTION = (f"SSIM: Gaussian {SSIM_WINDOW}x{SSIM_WINDOW} window, sigma {SSIM_SIGMA} "
                    "(Wang et al. 2004), RGB mean, data range 1")


def _checked(t: object, what: str, trusted: bool) -> Tensor:
    """An N x 3 x H x W batch: checked by check_tensor, or, when ``trusted`` and it is a
    float32 tensor of that shape, taken as it is (values not scanned)."""
    if (trusted and isinstance(t, Tensor) and t.ndim == 4 and t.shape[1] == 3
            and t.dtype == torch.float32):
        return t.detach()
    return check_tensor(t, what, batch=True)


def _pair(reference: object, candidates: object, trusted: bool = False
          ) -> tuple[Tensor, Tensor]:
    """Check a 1 x 3 x H x W reference and N x 3 x H x W candidates in [0, 1].

    ``trusted`` skips the value scans (range, NaN, Inf) of float32 tensors the engine made
    itself (the sensitivity's checked B and its clamped variants); shapes are always checked.
    """
    ref = _checked(reference, "the reference", trusted)
    cand = _checked(candidates, "the candidates", trusted)
    if ref.shape[0] != 1:
        raise errors.InputError(
            f"Expected one reference image (1 x 3 x H x W), got a batch of {ref.shape[0]}."
        )
    if ref.shape[-2:] != cand.shape[-2:]:
        raise errors.SizeMismatchError(
            f"The reference is {ref.shape[-2]}x{ref.shape[-1]} (HxW) but the candidates are "
            f"{cand.shape[-2]}x{cand.shape[-1]}; resize them to the same size first."
        )
    return ref, cand


def psnr(reference: Tensor, candidates: Tensor, *, trusted: bool = False) -> np.ndarray:
    """PSNR in dB of each candidate against the reference, with a data range of 1.

    ``reference`` is 1 x 3 x H x W, ``candidates`` N x 3 x H x W, both in [0, 1]; returns N
    float64 values. A candidate identical to the reference scores ``inf`` (JSON writers turn it
    into ``None``).
    """
    ref, cand = _pair(reference, candidates, trusted)
    diff = cand.to(torch.float64) - ref.to(torch.float64)
    mse = (diff * diff).flatten(1).mean(dim=1).numpy()
    # An exact match divides by a zero MSE: inf is the intended answer, not a warning.
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)


def ssim(reference: Tensor, candidates: Tensor, *, trusted: bool = False) -> np.ndarray:
    """Mean Gaussian SSIM of each candidate against the reference (see the module docstring).

    ``reference`` is 1 x 3 x H x W, ``candidates`` N x 3 x H x W, both in [0, 1]; returns N
    float64 values, 1 for identical images. Images with a side shorter than the 11 px window
    are refused with :class:`~lpips_explain.errors.InputError`.
    """
    ref, cand = _pair(reference, candidates, trusted)
    n = int(cand.shape[0])
    return _ssim_batched(ref.to(torch.float32).expand(n, -1, -1, -1), cand.to(torch.float32))


def _ssim_batched(x: Tensor, y: Tensor) -> np.ndarray:
    """Mean SSIM over channels of ``x[i]`` against ``y[i]`` (N x C x H x W each), computed
    :data:`~lpips_explain.core.budget.SWEEP_SSIM_PIXELS` pixels per channel at a time, so
    that the working set (about a dozen float32 planes per image channel) stays bounded
    whatever the image size. Images with a side shorter than the window are refused."""
    n, _, h, w = (int(v) for v in y.shape)
    if min(h, w) < SSIM_WINDOW:
        raise errors.InputError(
            f"SSIM (Gaussian {SSIM_WINDOW}x{SSIM_WINDOW} window) needs images at least "
            f"{SSIM_WINDOW} px on each side, got {h}x{w}."
        )
    return np.concatenate([_ssim_planes(x[i: i + step], y[i: i + step])
                           for i, step in _chunks(n, h, w)])


def _chunks(n: int, h: int, w: int) -> list[tuple[int, int]]:
    """(start, length) of the chunks of ``n`` images of h x w px SSIM filters together."""
    step = max(1, SWEEP_SSIM_PIXELS // max(1, h * w))
    return [(i, min(step, n - i)) for i in range(0, n, step)]


def _ssim_planes(x: Tensor, y: Tensor) -> np.ndarray:
    """Mean SSIM over channels for a few images (k x C x H x W each): k values."""
    k, c, h, w = (int(v) for v in y.shape)
    # Every (image, channel) plane becomes one channel of a single channels_last image: the
    # library's depthwise Gaussian blur then runs ~2x faster on the CPU than with k x C planes
    # in NCHW, with the same numbers (each plane is filtered on its own either way).
    x = x.cpu().reshape(1, k * c, h, w).contiguous(memory_format=torch.channels_last)
    y = y.cpu().reshape(1, k * c, h, w).contiguous(memory_format=torch.channels_last)
    win = _gauss_window().repeat(k * c, 1, 1, 1)
    with torch.no_grad():
        per_plane = _planes(x, y, win)
    return per_plane.view(k, c).to(torch.float64).mean(dim=1).numpy()


def _gauss_window() -> Tensor:
    """The 1-D Gaussian (11 taps, sigma 1.5, sum 1) as pytorch-msssim builds it, 1x1x1x11."""
    return _fspecial_gauss_1d(SSIM_WINDOW, SSIM_SIGMA).view(1, 1, 1, SSIM_WINDOW)


def _planes(x: Tensor, y: Tensor, win: Tensor) -> Tensor:
    """SSIM of each channel plane of x against y (1 x P x H x W each): P values."""
    # The library's public ssim() averages its channels; here the channels are planes of
    # different images, so its per-channel routine is called (pytorch-msssim is pinned).
    per_channel, _ = _ssim(x, y, data_range=1.0, win=win, size_average=False, K=(0.01, 0.03))
    return per_channel[0]


def _pairs(a: object, b: object, trusted: bool = False) -> tuple[Tensor, Tensor]:
    """Check two N x 3 x H x W batches in [0, 1] of one shape (image i against image i).

    ``trusted`` skips the value scans (range, NaN, Inf) for tensors the intake made itself
    (decoded images are float32 in [0, 1] by construction); shapes are always checked.
    """
    x, y = _checked(a, "the first images", trusted), _checked(b, "the second images", trusted)
    if x.shape != y.shape:
        raise errors.SizeMismatchError(
            f"The two batches differ in shape ({tuple(x.shape)} and {tuple(y.shape)}); pair "
            f"images of one size.")
    return x, y


def psnr_pairs(a: Tensor, b: Tensor, *, trusted: bool = False) -> np.ndarray:
    """PSNR in dB of ``a[i]`` against ``b[i]`` (N x 3 x H x W each), as :func:`psnr`."""
    x, y = _pairs(a, b, trusted)
    diff = x.cpu().to(torch.float64) - y.cpu().to(torch.float64)
    mse = (diff * diff).flatten(1).mean(dim=1).numpy()
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)


def ssim_pairs(a: Tensor, b: Tensor, *, trusted: bool = False) -> np.ndarray:
    """Mean Gaussian SSIM of ``a[i]`` against ``b[i]`` (N x 3 x H x W each), as :func:`ssim`:
    many different pairs in one batched pass (the audit's rows)."""
    x, y = _pairs(a, b, trusted)
    return _ssim_batched(x, y)

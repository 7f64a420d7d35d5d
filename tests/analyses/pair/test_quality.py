"""PSNR and Gaussian SSIM in torch against scikit-image with the matching options (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lpips_explain import errors
from lpips_explain.analyses.pair import perturbations as P
from lpips_explain.analyses.pair import quality


def _textured(h: int = 40, w: int = 48, seed: int = 0, n: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    base = torch.stack([0.5 + 0.3 * torch.sin(xx * (0.3 + 0.2 * c) + yy * 0.4) for c in range(3)])
    return (base + 0.2 * (torch.rand(n, 3, h, w, generator=g) - 0.5)).clamp(0, 1)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).double().numpy()


def _sk_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(_np(a), _np(b), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0, channel_axis=-1)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    ref = _textured()
    cands = torch.cat([
        ref,  # identical
        P.apply("gaussian_blur", ref, 1.5),
        P.apply("jpeg", ref, 15),
        P.apply("gaussian_noise", ref, 0.2, seed=3),
        _textured(seed=7),  # unrelated texture
        torch.zeros_like(ref),  # flat black: the C1/C2 constants carry it
        ref.flip(-1),
    ])
    return ref, cands


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_ssim_matches_skimage_gaussian_in_one_batch(batch):
    ref, cands = batch
    got = quality.ssim(ref, cands)
    want = np.array([_sk_ssim(ref[0], c) for c in cands])
    assert got.dtype == np.float64 and got.shape == (len(cands),)
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)
    assert got[0] == pytest.approx(1.0, abs=1e-6)
    assert (got[1:] < 0.999).all()  # the test would notice a metric that ignores its input


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_psnr_matches_skimage_and_is_inf_for_identical(batch):
    ref, cands = batch
    got = quality.psnr(ref, cands)
    assert got.dtype == np.float64 and np.isinf(got[0])
    with np.errstate(divide="ignore"):
        want = np.array([peak_signal_noise_ratio(_np(ref[0]), _np(c), data_range=1.0)
                         for c in cands])
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-9)


def test_batch_results_do_not_depend_on_batching():
    ref = _textured(seed=1)
    cands = _textured(seed=2, n=5)
    whole = quality.ssim(ref, cands)
    alone = np.concatenate([quality.ssim(ref, cands[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(whole, alone, atol=1e-7, rtol=0)


def test_ssim_in_chunks_equals_one_pass(monkeypatch):
    """Large batches are filtered SWEEP_SSIM_PIXELS at a time (bounded memory): the chunked
    answer, pairwise too, equals the one-pass answer."""
    ref = _textured(seed=3)
    cands = _textured(seed=4, n=7)
    whole, pairs = quality.ssim(ref, cands), quality.ssim_pairs(ref.expand_as(cands), cands)
    h, w = ref.shape[-2:]
    monkeypatch.setattr(quality, "SWEEP_SSIM_PIXELS", 3 * h * w)  # chunks of 3, 3, 1
    assert quality._chunks(7, h, w) == [(0, 3), (3, 3), (6, 1)]
    np.testing.assert_allclose(quality.ssim(ref, cands), whole, atol=1e-7, rtol=0)
    np.testing.assert_allclose(quality.ssim_pairs(ref.expand_as(cands), cands), pairs,
                               atol=1e-7, rtol=0)


def test_smallest_image_is_the_window_and_smaller_is_refused():
    x, y = _textured(11, 13), _textured(11, 13, seed=5)
    assert quality.ssim(x, y)[0] == pytest.approx(_sk_ssim(x[0], y[0]), abs=2e-6)
    with pytest.raises(errors.InputError, match="11"):
        quality.ssim(_textured(10, 32), _textured(10, 32))


def test_quality_rejects_bad_pairs():
    img = _textured()
    with pytest.raises(errors.SizeMismatchError):
        quality.psnr(img, _textured(16, 16))
    with pytest.raises(errors.InputError):
        quality.ssim(_textured(n=2), img)
    with pytest.raises(errors.ValueRangeError):
        quality.psnr(img, img + 1.0)

"""Tests for the perturbation registry (PSNR/SSIM: tests/analyses/pair/test_quality.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torchvision.transforms.v2 import functional as tvf

from lpips_explain import errors
from lpips_explain.analyses.pair import perturbations as P

# torchvision 0.29 deprecates its JPEG codec (used by the "jpeg" perturbation) in favour of
# TorchCodec; the pinned version still ships it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)

NAMES = list(P.PERTURBATIONS)


def _textured(h: int = 32, w: int = 32, seed: int = 0, n: int = 1) -> torch.Tensor:
    """Colourful mix of sinusoids and fine noise, kept away from 0 and 1 so nothing clips at rest."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    rows = []
    for k in range(n):
        chans = [
            0.5 + 0.25 * torch.sin(xx * (0.5 + 0.2 * c + 0.1 * k) + yy * (0.3 + 0.1 * c))
            for c in range(3)
        ]
        img = torch.stack(chans) + 0.15 * (torch.rand(3, h, w, generator=g) - 0.5)
        rows.append(img)
    return torch.stack(rows).clamp(0.05, 0.95).contiguous()


@pytest.fixture
def img() -> torch.Tensor:
    return _textured()


def _high_freq_energy(x: torch.Tensor) -> float:
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return float((dx**2).mean() + (dy**2).mean())


# --- registry behaviour --------------------------------------------------------------------


def test_registry_has_the_fixed_names_in_order():
    assert NAMES == [
        "brightness",
        "contrast",
        "gamma",
        "saturation",
        "hue",
        "gaussian_blur",
        "gaussian_noise",
        "jpeg",
        "rotation",
        "translation",
        "scale",
    ]
    assert {n for n, p in P.PERTURBATIONS.items() if p.geometric} == {
        "rotation",
        "translation",
        "scale",
    }
    for name, _ in P.GEOMETRIC_TABLE:
        assert P.get_perturbation(name).geometric


@pytest.mark.parametrize("name", NAMES)
def test_identity_strength_returns_the_input(name, img):
    p = P.PERTURBATIONS[name]
    before = img.clone()
    out = p.apply(img, p.identity, torch.Generator().manual_seed(1))
    assert torch.equal(out, img)
    assert out is not img
    assert torch.equal(img, before)


@pytest.mark.parametrize("name", NAMES)
def test_default_strength_changes_image_and_keeps_format(name, img):
    p = P.PERTURBATIONS[name]
    before = img.clone()
    out = P.apply(name, img, p.default)
    assert out.shape == img.shape
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - img).abs().mean()) > 5e-3
    assert torch.equal(img, before)
    assert p.range[0] <= p.default <= p.range[1]
    assert p.range[0] <= p.identity <= p.range[1]


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_one_by_one(name):
    x = _textured(n=2, seed=3)
    p = P.PERTURBATIONS[name]
    strength = p.default
    out = p.apply(x, strength, torch.Generator().manual_seed(5))
    if name == "gaussian_noise":
        # Images draw from one generator in turn: image 1 sees the state image 0 left behind.
        g = torch.Generator().manual_seed(5)
        singles = [p.apply(x[i : i + 1], strength, g) for i in range(2)]
    else:
        singles = [
            p.apply(x[i : i + 1], strength, torch.Generator().manual_seed(5)) for i in range(2)
        ]
    torch.testing.assert_close(out, torch.cat(singles), atol=1e-6, rtol=0)


def test_sweep_values_start_at_identity_and_reach_the_far_end():
    blur = P.get_perturbation("gaussian_blur")
    assert blur.sweep_values(6) == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    jpeg = P.get_perturbation("jpeg")
    vals = jpeg.sweep_values()
    assert len(vals) == 7 and vals[0] == 100.0 and vals[-1] == 5.0
    assert all(v == int(v) for v in vals) and vals == sorted(vals, reverse=True)
    # Tie between the two ends of a symmetric range goes to the default's side.
    assert P.get_perturbation("saturation").sweep_values(3) == pytest.approx([1.0, 0.5, 0.0])
    assert P.get_perturbation("hue").sweep_values(3) == pytest.approx([0.0, 0.25, 0.5])
    assert P.get_perturbation("gamma").sweep_values(3) == pytest.approx([1.0, 1.5, 2.0])
    assert blur.sweep_values(1) == [0.0]
    with pytest.raises(errors.InputError):
        blur.sweep_values(0)


def test_unknown_name_gets_did_you_mean(img):
    with pytest.raises(errors.UnknownOptionError, match="Did you mean 'gaussian_blur'"):
        P.get_perturbation("gausian_blur")
    with pytest.raises(errors.UnknownOptionError, match="Did you mean 'rotation'"):
        P.apply("rotaton", img, 1.0)


@pytest.mark.parametrize(
    "bad",
    [torch.rand(3, 8, 8), torch.rand(1, 1, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8)],
)
def test_rejects_wrong_shape_or_dtype(bad):
    with pytest.raises(errors.InputError):
        P.apply("brightness", bad, 1.2)


def test_rejects_out_of_range_values_and_strengths(img):
    with pytest.raises(errors.ValueRangeError):
        P.apply("brightness", img * 2.0, 1.2)
    with pytest.raises(errors.ValueRangeError):
        P.apply("brightness", torch.full((1, 3, 4, 4), float("nan")), 1.2)
    for name, strength in [
        ("gaussian_blur", -1.0),
        ("jpeg", 0.0),
        ("jpeg", 101.0),
        ("hue", 0.7),
        ("scale", 0.0),
        ("gamma", 0.0),
        ("gaussian_noise", -0.1),
        ("rotation", float("inf")),
        ("brightness", "bright"),
    ]:
        with pytest.raises(errors.InputError):
            P.apply(name, img, strength)


# --- monotonic effects ---------------------------------------------------------------------


def test_blur_removes_high_frequencies_monotonically(img):
    energies = [_high_freq_energy(P.apply("gaussian_blur", img, s)) for s in (0, 0.5, 1, 2, 4)]
    assert all(a > b for a, b in itertools.pairwise(energies))
    assert energies[-1] < 0.2 * energies[0]


def test_blur_on_tiny_image_caps_the_kernel():
    x = _textured(4, 4)
    out = P.apply("gaussian_blur", x, 5.0)
    assert out.shape == x.shape
    assert float((out - x).abs().mean()) > 1e-3


def test_noise_grows_with_std(img):
    diffs = [
        float((P.apply("gaussian_noise", img, s) - img).abs().mean())
        for s in (0.01, 0.05, 0.1, 0.2)
    ]
    assert all(a < b for a, b in itertools.pairwise(diffs))
    # Before clamping bites, mean |N(0, s)| is s * sqrt(2/pi).
    assert diffs[0] == pytest.approx(0.01 * math.sqrt(2 / math.pi), rel=0.1)


def test_jpeg_error_grows_as_quality_drops(img):
    errs = [float(((P.apply("jpeg", img, q) - img) ** 2).mean()) for q in (95, 75, 50, 25, 10, 2)]
    assert all(a < b for a, b in itertools.pairwise(errs))


def test_jpeg_rounds_quality(img):
    assert torch.equal(P.apply("jpeg", img, 49.6), P.apply("jpeg", img, 50))


# --- geometry ------------------------------------------------------------------------------


def test_rotation_by_90_is_rot90_counter_clockwise():
    x = _textured(16, 16)
    out = P.apply("rotation", x, 90.0)
    torch.testing.assert_close(out, torch.rot90(x, k=1, dims=(-2, -1)), atol=1e-5, rtol=0)
    out = P.apply("rotation", x, -90.0)
    torch.testing.assert_close(out, torch.rot90(x, k=-1, dims=(-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(24, 24), (20, 32)])
def test_geometry_matches_torchvision_affine_in_the_interior(shape):
    x = _textured(*shape, seed=7)
    bil = tvf.InterpolationMode.BILINEAR
    cases = [
        ("rotation", 30.0, tvf.rotate(x, 30.0, interpolation=bil)),
        ("translation", 2.5, tvf.affine(x, 0.0, [2.5, 2.5], 1.0, [0.0, 0.0], interpolation=bil)),
        ("scale", 1.5, tvf.affine(x, 0.0, [0, 0], 1.5, [0.0, 0.0], interpolation=bil)),
    ]
    h, w = shape
    for name, strength, expected in cases:
        out = P.apply(name, x, strength)
        # Compare a central window that every case samples from inside the image.
        sl = (..., slice(h // 2 - 4, h // 2 + 4), slice(w // 2 - 4, w // 2 + 4))
        torch.testing.assert_close(out[sl], expected[sl], atol=1e-4, rtol=0, msg=name)


@pytest.mark.parametrize("k", [1, 3, -2])
def test_integer_translation_moves_pixels_right_and_down(k):
    x = _textured(20, 20)
    out = P.apply("translation", x, float(k))
    m = abs(k)
    src = x[..., m : 20 - 2 * m, m : 20 - 2 * m]
    dst = out[..., m + k : 20 - 2 * m + k, m + k : 20 - 2 * m + k]
    torch.testing.assert_close(dst, src, atol=1e-5, rtol=0)


def test_geometric_borders_are_mirrored_not_black():
    x = torch.full((1, 3, 16, 16), 0.8)
    for name, strength in [("rotation", 30.0), ("translation", 5.0), ("scale", 0.5)]:
        torch.testing.assert_close(P.apply(name, x, strength), x, atol=1e-5, rtol=0)


# --- randomness and batches ----------------------------------------------------------------


def test_noise_is_seeded(img):
    a = P.apply("gaussian_noise", img, 0.1, seed=11)
    b = P.apply("gaussian_noise", img, 0.1, seed=11)
    c = P.apply("gaussian_noise", img, 0.1, seed=12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    p = P.get_perturbation("gaussian_noise")
    assert torch.equal(p.apply(img, 0.1), P.apply("gaussian_noise", img, 0.1, seed=0))


def test_perturb_batch_rows_equal_individual_calls(img):
    items = [
        ("gaussian_noise", 0.1),
        ("jpeg", 20.0),
        ("rotation", 5.0),
        ("gaussian_noise", 0.1),
        ("brightness", 1.0),
        ("translation", 1.0),
    ]
    batch = P.perturb_batch(img, items, seed=4)
    assert batch.shape == (len(items), 3, 32, 32)
    for k, (name, strength) in enumerate(items):
        assert torch.equal(batch[k : k + 1], P.apply(name, img, strength, seed=4)), name
    # Two noise rows with the same seed are the same noise, not consecutive draws.
    assert torch.equal(batch[0], batch[3])
    assert torch.equal(batch[4], img[0])
    assert P.perturb_batch(img, [], seed=4).shape == (0, 3, 32, 32)
    with pytest.raises(errors.InputError):
        P.perturb_batch(_textured(n=2), items)

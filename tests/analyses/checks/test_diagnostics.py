"""Diagnostics and colour-space dependence: self-checks, robust scoring, input report."""

from __future__ import annotations

import colorsys
import copy
import io
import math

import numpy as np
import pytest
import torch
from conftest import smooth_image, to_uint8
from PIL import Image

from lpips_explain.analyses.checks import diagnostics
from lpips_explain.analyses.pair import colorspace, robust
from lpips_explain.errors import InputError, UnknownOptionError


def png_bytes(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(t)).save(buf, format="PNG")
    return buf.getvalue()


def by_name(checks, prefix: str):
    found = [c for c in checks if c.name.startswith(prefix)]
    assert len(found) == 1, [c.name for c in checks]
    return found[0]


# ---------------------------------------------------------------------------- colour spaces


def test_render_rgb_is_identity(pair):
    a, _ = pair
    assert torch.equal(colorspace.render_as_rgb(a, "rgb"), a)


def test_render_hsv_of_pure_red():
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    out = colorspace.render_as_rgb(red, "hsv")
    assert out.shape == red.shape
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 1.0]), atol=1e-6)


def test_render_lab_of_white():
    out = colorspace.render_as_rgb(torch.ones(1, 3, 8, 8), "lab")
    assert float(out[0, 0].min()) == pytest.approx(1.0, abs=1e-4)  # L = 100
    mid = 128.0 / 255.0  # a = b = 0 on the fixed range [-128, 127]
    assert float((out[0, 1:] - mid).abs().max()) < 0.01


def test_render_yuv_uses_fixed_ranges():
    grey = torch.full((1, 3, 4, 4), 0.25)
    out = colorspace.render_as_rgb(grey, "yuv")
    # Grey has Y = 0.25 and no chroma: U and V sit in the middle of their ranges.
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.25, 0.5, 0.5]), atol=1e-4)


def test_render_unknown_space_suggests():
    with pytest.raises(UnknownOptionError, match="Did you mean 'hsv'"):
        colorspace.render_as_rgb(torch.zeros(1, 3, 4, 4), "hsl")


def test_render_refuses_out_of_range():
    with pytest.raises(InputError):
        colorspace.render_as_rgb(torch.full((1, 3, 4, 4), 2.0), "lab")


# Independent renderings from the textbook formulas (no scikit-image): each channel of the
# converted image mapped into [0, 1] by the space's fixed nominal range, then clamped.
_NOMINAL = {"lab": ((0.0, 100.0), (-128.0, 127.0), (-128.0, 127.0)),
            "hsv": ((0.0, 1.0), (0.0, 1.0), (0.0, 1.0)),
            "yuv": ((0.0, 1.0), (-0.436, 0.436), (-0.615, 0.615))}


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (D65) to CIE L*a*b*: IEC 61966-2-1 linearisation, sRGB->XYZ, CIE 1976 f(t)."""
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _hsv(rgb: np.ndarray) -> np.ndarray:
    flat = [colorsys.rgb_to_hsv(*px) for px in rgb.reshape(-1, 3)]
    return np.array(flat).reshape(rgb.shape)


def _yuv(rgb: np.ndarray) -> np.ndarray:
    """Analogue BT.601 YUV: U and V scaled so that they reach +-0.436 and +-0.615."""
    y = rgb @ np.array([0.299, 0.587, 0.114])
    u = 0.436 / (1 - 0.114) * (rgb[..., 2] - y)
    v = 0.615 / (1 - 0.299) * (rgb[..., 0] - y)
    return np.stack([y, u, v], axis=-1)


def textbook_render(x: torch.Tensor, space: str) -> torch.Tensor:
    if space == "rgb":
        return x.clone()
    rgb = x[0].permute(1, 2, 0).double().numpy()
    conv = {"lab": _lab, "hsv": _hsv, "yuv": _yuv}[space](rgb)
    lo, hi = (np.array(v) for v in zip(*_NOMINAL[space], strict=True))
    out = np.clip((conv - lo) / (hi - lo), 0, 1)
    return torch.from_numpy(out).permute(2, 0, 1)[None].float()


@pytest.mark.parametrize("space", ["lab", "hsv", "yuv"])
def test_render_matches_textbook_formulas(pair, space):
    a, _ = pair
    ours = colorspace.render_as_rgb(a, space)
    assert ours.shape == a.shape and ours.dtype == a.dtype
    assert float((ours - textbook_render(a, space)).abs().max()) < 1e-4


def test_colorspace_dependence(random_explainer, pair):
    a, b = pair
    rows = random_explainer.colorspace_dependence(a, b)
    assert [r.space for r in rows] == ["rgb", "lab", "hsv", "yuv"]
    # oracle: each pair rendered by the textbook formulas and scored one at a time
    plain = random_explainer.distance(a, b, value_range="[0,1]")
    for r in rows:
        expected = random_explainer.distance(textbook_render(a, r.space),
                                             textbook_render(b, r.space), value_range="[0,1]")
        assert r.distance == pytest.approx(expected, rel=1e-3), r.space
        assert r.change == pytest.approx(expected - plain, abs=1e-3 * expected), r.space
        assert r.image_a.shape == (64, 64, 3) and r.image_a.dtype == np.uint8
        np.testing.assert_allclose(r.image_b, to_uint8(textbook_render(b, r.space)), atol=1)
    assert rows[0].distance == pytest.approx(plain, rel=1e-5)
    assert any(abs(r.change) > 1e-3 * plain for r in rows[1:])  # the spaces really differ
    d = rows[2].to_dict()
    assert set(d) == {"space", "description", "distance", "change"}


def test_colorspace_without_rgb_still_measures_change(random_explainer, pair):
    a, b = pair
    full = {r.space: r for r in random_explainer.colorspace_dependence(a, b)}
    (hsv,) = random_explainer.colorspace_dependence(a, b, spaces=["hsv"])
    assert hsv.change == pytest.approx(full["hsv"].change, rel=1e-4)


# ---------------------------------------------------------------------------- self-checks


def test_self_checks_pass_on_normal_pair(random_explainer, pair):
    a, b = pair
    checks = random_explainer.self_checks(a, b)
    assert all(c.passed for c in checks), [(c.name, c.detail) for c in checks if not c.passed]
    names = " | ".join(c.name for c in checks)
    for word in ("identity", "symmetry", "decomposition", "parity", "lin weights",
                 "integrated gradients"):
        assert word in names
    parity = by_name(checks, "parity")
    assert parity.value is not None and 0.0 <= parity.value <= 1e-5  # it really ran
    lin = by_name(checks, "lin weights")
    assert "exactly 0" in lin.detail and lin.value == 0.0
    ig = by_name(checks, "integrated gradients")
    assert ig.value is not None and ig.value <= 0.01
    assert all(isinstance(c.to_dict()["detail"], str) for c in checks)


def test_self_checks_catch_negative_head(random_explainer, pair):
    a, b = pair
    broken = copy.copy(random_explainer)
    broken.model = copy.deepcopy(random_explainer.model)
    broken.model.head1.mul_(-1)
    checks = broken.self_checks(a, b, ig_steps=8)
    lin = by_name(checks, "lin weights")
    assert not lin.passed
    assert "negative" in lin.detail and lin.value > 0
    # The official package, with its own heads, disagrees with the broken model too.
    assert not by_name(checks, "parity").passed
    # The shared model is untouched.
    assert float(random_explainer.model.head1.min()) >= 0


def test_self_checks_skip_ig_on_identical_pair(random_explainer, pair):
    a, _ = pair
    ig = by_name(random_explainer.self_checks(a, a.clone(), ig_steps=4),
                 "integrated gradients")
    assert ig.status == "skipped" and not ig.passed  # skipped is not passed (issue 8)
    assert ig.value is None and "vanish" in ig.detail


# ---------------------------------------------------------------------------- robust scoring


@pytest.fixture(scope="module")
def demo(random_explainer, pair):
    a, b = pair
    a_bytes, b_bytes = png_bytes(a), png_bytes(b)
    pairs = robust.demo_pairs(a_bytes, b_bytes)
    return pairs, random_explainer.robust_score(pairs), a_bytes, b_bytes


def _item(report, word):
    found = [it for it in report.items if word in it.label]
    assert len(found) == 1
    return found[0]


def test_robust_counts_and_no_fallback_in_lpips(demo):
    pairs, report, _, _ = demo
    assert len(report.items) == len(pairs) == 6
    assert report.successes + report.refusals == len(pairs)
    assert report.successes == 2  # the uploaded pair and constant grey
    for it in report.items:
        assert (it.lpips is None) == (it.refused is not None)
        assert it.fallback_name == "psnr"
    assert "never in its place" in report.note
    assert report.to_dict()["items"][0]["lpips"] == report.items[0].lpips


def test_robust_normal_pair_matches_distance(demo, random_explainer):
    _, report, a_bytes, b_bytes = demo
    it = _item(report, "uploaded")
    assert it.lpips == random_explainer.distance(a_bytes, b_bytes)
    assert it.fallback is not None and math.isfinite(it.fallback)


def test_robust_too_small_refused_with_psnr(demo):
    _, report, _, _ = demo
    it = _item(report, "16x16")
    assert it.lpips is None
    assert it.refused_type == "ImageTooSmallError"
    assert "needs at least 31x31 px" in it.refused
    assert it.fallback is not None and math.isfinite(it.fallback) and it.fallback_error is None


@pytest.mark.parametrize("word", ["truncated", "empty", "NaN"])
def test_robust_undecodable_has_no_numbers(demo, word):
    _, report, _, _ = demo
    it = _item(report, word)
    assert it.lpips is None and it.refused
    assert it.fallback is None and it.fallback_error
    expected = {"truncated": "CorruptImageError", "empty": "EmptyInputError",
                "NaN": "ValueRangeError"}[word]
    assert it.refused_type == expected


def test_robust_constant_and_ssim(random_explainer, pair):
    _, b = pair
    grey = np.full((64, 64, 3), 128, np.uint8)
    report = random_explainer.robust_score([("grey", grey, png_bytes(b))],
                                      fallback="ssim")
    (it,) = report.items
    assert it.lpips is not None and it.lpips > 0 and it.refused is None
    assert it.fallback_name == "ssim" and -1.0 <= it.fallback < 0.5
    with pytest.raises(UnknownOptionError):
        random_explainer.robust_score([], fallback="mse")


def test_robust_fallback_aligns_sizes(random_explainer):
    a = smooth_image(64, 64, 3)
    big = torch.nn.functional.interpolate(a, size=(80, 80), mode="bilinear",
                                          align_corners=False).clamp(0, 1)
    (it,) = random_explainer.robust_score(
                                     [("sizes", png_bytes(a), png_bytes(big))]).items
    assert it.lpips is not None and it.fallback is not None and it.fallback > 25


# ---------------------------------------------------------------------------- input report


def test_input_report_flags_constant_and_resized(random_explainer):
    grey = np.full((64, 64, 3), 100, np.uint8)
    other = to_uint8(smooth_image(80, 96, 4))
    prep = random_explainer.prepare(grey, other)
    rows = diagnostics.input_report(prep)
    assert [r["label"] for r in rows] == ["A", "B"]
    a, b = rows
    assert a["constant"] and not b["constant"]
    assert a["std"] == 0.0 and a["min"] == a["max"] == pytest.approx(100 / 255)
    assert not a["resized_or_cropped"] and b["resized_or_cropped"]
    assert b["original_size"] == "96x80" and b["compared_size"] == "64x64"
    assert any("resized" in w for w in b["warnings"])
    assert any("constant" in w for w in a["warnings"])
    assert a["finite"] and b["finite"] and not a["converted"]
    assert a["mode"] == "array"


def test_input_report_flags_converted_mode(random_explainer, pair):
    a, b = pair
    buf = io.BytesIO()
    Image.fromarray(to_uint8(a)).convert("L").save(buf, format="PNG")
    rows = diagnostics.input_report(random_explainer.prepare(buf.getvalue(), png_bytes(b)))
    assert rows[0]["mode"] == "L" and rows[0]["converted"]
    assert rows[1]["mode"] == "RGB" and not rows[1]["converted"]
    assert rows[0]["format"] == "PNG"

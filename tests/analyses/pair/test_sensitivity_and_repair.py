"""Tests for the counterfactuals: perturbation sensitivity and patch repair, checked against
direct, one-image-at-a-time evaluations with the plain two-image forward."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lpips_explain import errors
from lpips_explain.analyses.pair import perturbations as P
from lpips_explain.analyses.pair import quality, repair, sensitivity
from lpips_explain.core.model import ReferenceScorer, build_lpips

# torchvision 0.29 deprecates its JPEG codec (used by the "jpeg" perturbation); the pin ships it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)

TOL = 1e-6


def _textured(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Colourful sinusoids plus fine noise, kept off 0 and 1 so perturbations do not clip."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    img = torch.stack([0.5 + 0.25 * torch.sin(xx * (0.5 + 0.2 * c) + yy * (0.3 + 0.1 * c))
                       for c in range(3)])
    img = img + 0.15 * (torch.rand(3, h, w, generator=g) - 0.5)
    return img.clamp(0.05, 0.95)[None].contiguous()


@pytest.fixture(scope="module")
def net():
    return build_lpips("alex", "0.1", "random", seed=0, progress=False)


@pytest.fixture(scope="module")
def pair():
    a = _textured(64, 64, seed=0)
    b = a.clone()
    b[..., 8:40, 16:56] = P.apply("gaussian_noise", a, 0.3, seed=5)[..., 8:40, 16:56]
    b = P.apply("gaussian_blur", b, 1.5)
    return a, b


def _d(net, a: torch.Tensor, x: torch.Tensor) -> float:
    """The plain two-image forward: re-encodes both images, no scorer involved."""
    with torch.no_grad():
        return float(net(a, x)[0])


def _repaired(a, b, order, grid, patch, k):
    """B with the first k patches of `order` replaced by A's, built independently of the module."""
    x = b.clone()
    for p in order[:k]:
        r, c = divmod(int(p), grid[1])
        x[..., r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = \
            a[..., r * patch:(r + 1) * patch, c * patch:(c + 1) * patch]
    return x


# --- repair -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coarse_repair(net, pair):
    a, b = pair
    # 64 patches of 8 px with 9 points: the curve is coarse and needs the half-point refinement.
    return repair.repair(net, a, b, patch=8, max_points=9, batch_size=7)


def test_repair_curve_points_are_true_distances(net, pair, coarse_repair):
    a, b = pair
    r = coarse_repair
    assert r.grid == (8, 8)
    assert r.curve_steps[0] == 0 and r.curve_steps[-1] == 64
    assert r.curve_area[0] == 0.0 and r.curve_area[-1] == pytest.approx(1.0, abs=1e-12)
    assert r.curve_distance[0] == pytest.approx(_d(net, a, b), abs=TOL)
    assert r.base_distance == pytest.approx(_d(net, a, b), abs=TOL)
    assert r.base_distance > 0.02  # (random trunks give small distances)
    assert 0.0 <= r.curve_distance[-1] <= 1e-7
    # A coarse point, the refined point just before the half point, and the half point.
    half_i = int(np.flatnonzero(r.curve_area == r.half_area)[0])
    for i in (len(r.curve_steps) // 2 + 1, half_i - 1, half_i):
        k = int(r.curve_steps[i])
        x = _repaired(a, b, r.order, r.grid, r.patch, k)
        assert r.curve_distance[i] == pytest.approx(_d(net, a, x), abs=TOL), k
        assert r.curve_area[i] == pytest.approx(k * 64 / (64 * 64), abs=1e-12)


def test_repair_single_patch_gains_equal_occlusion(net, pair, coarse_repair):
    a, b = pair
    r = coarse_repair
    base = _d(net, a, b)
    for p in (0, 27, int(r.order[0])):
        x = _repaired(a, b, [p], r.grid, r.patch, 1)
        rr, cc = divmod(p, r.grid[1])
        assert r.gains[rr, cc] == pytest.approx(base - _d(net, a, x), abs=TOL)
    flat = r.gains.ravel()
    assert np.all(np.diff(flat[r.order]) <= 0)  # greedy order: descending single-patch gain
    assert sorted(r.order.tolist()) == list(range(64))


def test_repair_half_area_is_exact_at_patch_resolution(coarse_repair):
    r = coarse_repair
    half = r.base_distance / 2
    # Coarse pass alone would be k = 0, 8, ..., 64: more points than that means it refined.
    assert len(r.curve_steps) > 9
    assert np.all(np.diff(r.curve_steps) > 0)
    first = int(np.argmax(r.curve_distance <= half))
    assert r.curve_distance[first] <= half
    assert np.all(r.curve_distance[:first] > half)
    assert r.half_area == r.curve_area[first]
    k = int(r.curve_steps[first])
    assert r.curve_steps[first - 1] == k - 1  # the patch before the half point was evaluated
    assert f"({k} of 64 patches of 8 px," in r.headline
    assert f"{r.half_area:.0%}" in r.headline


def test_repair_all_points_when_they_fit(net, pair):
    a, b = pair
    calls = []
    r = repair.repair(net, a, b, patch=16, max_points=33,
                  progress=lambda done, total, label: calls.append((done, total, label)))
    assert r.curve_steps.tolist() == list(range(17))
    assert calls[-1][0] == calls[-1][1] == 1 + 16 + 16
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_repair_non_divisible_size_covers_every_pixel(net):
    a = _textured(70, 90, seed=1)
    b = P.apply("brightness", a, 1.3)
    r = repair.repair(net, a, b, patch=32)
    assert r.grid == (3, 3) and r.size == (70, 90)
    assert r.mask(9).all() and not r.mask(0).any()
    counts = np.bincount(_ids(r).ravel(), minlength=9)
    assert counts.sum() == 70 * 90 and counts[8] == 6 * 26  # the corner patch is 6 x 26 px
    assert r.curve_area[-1] == pytest.approx(1.0, abs=1e-12)
    assert torch.equal(r.repaired_image(a, b, 1.0), a)
    assert torch.equal(r.repaired_image(a, b, 0.0), b)
    assert r.curve_distance[-1] <= 1e-7
    # The corner patch, smaller than the rest, has the gain of its own direct evaluation.
    x = b.clone()
    x[..., 64:, 64:] = a[..., 64:, 64:]
    assert r.gains[2, 2] == pytest.approx(_d(net, a, b) - _d(net, a, x), abs=TOL)
    gm = r.gain_map((70, 90))
    assert gm.shape == (70, 90)
    assert gm[69, 89] == r.gains[2, 2] and gm[0, 0] == r.gains[0, 0] and gm[40, 70] == r.gains[1, 2]
    assert any("not a multiple of 32" in n for n in r.notes)


def _ids(r: repair.Repair) -> np.ndarray:
    rows = np.arange(r.size[0]) // r.patch
    cols = np.arange(r.size[1]) // r.patch
    return rows[:, None] * r.grid[1] + cols[None, :]


def test_repaired_image_covers_the_requested_area(net, pair, coarse_repair):
    a, b = pair
    r = coarse_repair
    x = r.repaired_image(a, b, 0.1)  # 10% of 64 equal patches: the first 7 (10.9%)
    assert torch.equal(x, _repaired(a, b, r.order, r.grid, r.patch, 7))


def test_repair_reports_a_non_monotonic_curve_without_smoothing(net):
    a = _textured(64, 64, seed=0)
    b = P.apply("brightness", a, 1.3)
    r = repair.repair(net, a, b, patch=8)
    rises = [(i, j) for j in range(len(r.curve_distance)) for i in range(j)
             if r.curve_distance[j] > r.curve_distance[i] + 1e-6]
    assert r.non_monotonic and rises
    assert any("not monotonic" in n for n in r.notes)
    # The rise is real: both images evaluated directly keep the same order.
    i, j = rises[0]
    di = _d(net, a, _repaired(a, b, r.order, r.grid, r.patch, int(r.curve_steps[i])))
    dj = _d(net, a, _repaired(a, b, r.order, r.grid, r.patch, int(r.curve_steps[j])))
    assert dj > di
    json.dumps(r.to_dict(), allow_nan=False)


def test_repair_of_identical_images(net):
    a = _textured(64, 64, seed=2)
    r = repair.repair(net, a, a.clone(), patch=32)
    assert r.half_area is None and r.base_distance <= 1e-7
    assert np.all(np.abs(r.curve_distance) <= 1e-7)
    d = r.to_dict()
    assert d["half_area"] is None and d["curve"][0] == {"area": 0.0, "distance": d["base_distance"],
                                                        "steps": 0}


@pytest.mark.parametrize("patch", [0, -3, 65, 2.5, True])
def test_repair_rejects_bad_patch_sizes(net, pair, patch):
    a, b = pair
    with pytest.raises(errors.InputError, match="patch"):
        repair.repair(net, a, b, patch=patch)


def test_repair_and_sensitivity_reject_mismatched_inputs(net, pair):
    a, _ = pair
    with pytest.raises(errors.InputError, match="64x64"):
        repair.repair(net, a, _textured(64, 72))
    with pytest.raises(errors.InputError, match="64x64"):
        sensitivity.sensitivity(net, a, _textured(72, 64))
    with pytest.raises(errors.InputError, match="different reference"):
        repair.repair(net, a, a, scorer=ReferenceScorer(net, _textured(64, 64, seed=9)))
    with pytest.raises(errors.InputError, match="at least 31x31 px"):
        repair.repair(net, _textured(24, 64), _textured(24, 64), patch=8)
    with pytest.raises(errors.UnknownOptionError, match="gaussian_blur"):
        sensitivity.sensitivity(net, a, a, transforms=["gaussian_blurr"])


# --- sensitivity --------------------------------------------------------------------------


def test_sweeps_equal_one_by_one_evaluation(net, pair):
    a, b = pair
    seed = 3
    calls = []
    s = sensitivity.sensitivity(net, a, b, transforms=["gaussian_noise", "brightness"],
                       sweep=["gaussian_noise", "jpeg", "rotation"], sweep_points=4, seed=seed,
                       batch_size=3, progress=lambda *c: calls.append(c))
    assert [sw.transform for sw in s.sweeps] == ["gaussian_noise", "jpeg", "rotation"]
    base = _d(net, a, b)
    assert s.base_distance == pytest.approx(base, abs=TOL)
    for sw in s.sweeps:
        assert sw.strengths.tolist() == P.get_perturbation(sw.transform).sweep_values(4)
        assert len(sw.distances) == len(sw.psnr) == len(sw.ssim) == 4
        for k, strength in enumerate(sw.strengths):
            x = P.apply(sw.transform, b, float(strength), seed=seed)
            assert sw.distances[k] == pytest.approx(_d(net, a, x), abs=TOL), (sw.transform, k)
            assert sw.psnr[k] == pytest.approx(quality.psnr(a, x)[0], abs=1e-9)
            # SSIM filters in float32 with the planes of a chunk together: which images share
            # a chunk moves the last bits (1.6e-9 seen), so float32's precision is the bound.
            assert sw.ssim[k] == pytest.approx(quality.ssim(a, x)[0], abs=1e-7)
    noise = s.items[0]
    assert noise.transform == "gaussian_noise" and noise.strength == 0.05
    x = P.apply("gaussian_noise", b, 0.05, seed=seed)
    d_noise = _d(net, a, x)
    assert noise.distance == pytest.approx(d_noise, abs=TOL)
    # the change against two direct evaluations, d(A, noisy B) - d(A, B)
    assert noise.change == pytest.approx(d_noise - base, abs=2 * TOL)
    assert abs(noise.change) > 10 * TOL  # a change that the check above can tell from 0
    # A different seed draws different noise: the seed really reaches the noise row.
    other = P.apply("gaussian_noise", b, 0.05, seed=seed + 1)
    assert abs(_d(net, a, other) - noise.distance) > 1e-6
    assert calls[-1][0] == calls[-1][1] and all(c[2] == "sensitivity" for c in calls)
    assert len(calls) == math.ceil(calls[-1][1] / 3)


def test_sensitivity_of_identical_images(net):
    a = _textured(64, 64, seed=4)
    s = sensitivity.sensitivity(net, a, a.clone(), sweep=())
    assert abs(s.base_distance) <= 1e-7
    assert s.sweeps == ()
    assert [i.transform for i in s.items] == list(P.PERTURBATIONS)
    for item in s.items:
        p = P.get_perturbation(item.transform)
        assert item.strength == p.default
        x = P.apply(item.transform, a, p.default, seed=0)
        d_x = _d(net, a, x)
        assert item.distance == pytest.approx(d_x, abs=TOL), item.transform
        # the change against two direct evaluations, d(A, perturbed A) - d(A, A)
        assert item.change == pytest.approx(d_x - _d(net, a, a.clone()), abs=2 * TOL)
        assert item.geometric == p.geometric
    top = max(s.items, key=lambda i: abs(i.change))
    assert s.most_sensitive == top.transform
    assert top.distance > 0


def test_geometric_rows_are_the_table(net, pair):
    a, b = pair
    s = sensitivity.sensitivity(net, a, b, transforms=["hue"], sweep=[])
    assert tuple((g.transform, g.strength) for g in s.geometric) == P.GEOMETRIC_TABLE
    assert all(g.geometric for g in s.geometric)
    for g in s.geometric:  # every row against a direct evaluation
        x = P.apply(g.transform, b, g.strength)
        assert g.distance == pytest.approx(_d(net, a, x), abs=TOL)
    rows = s.rows()
    assert [r["group"] for r in rows] == ["default"] + ["geometric"] * len(P.GEOMETRIC_TABLE)
    assert {"transform", "strength", "distance"} <= set(rows[0])
    d = s.to_dict()
    assert d["most_sensitive"] == "hue" and len(d["geometric"]) == len(P.GEOMETRIC_TABLE)
    json.dumps(d, allow_nan=False)


def test_identity_sweep_point_has_no_psnr(net, pair):
    a, _ = pair
    s = sensitivity.sensitivity(net, a, a.clone(), transforms=[], sweep=["contrast"], sweep_points=3)
    sw = s.sweeps[0]
    assert sw.strengths[0] == 1.0 and math.isnan(sw.psnr[0]) and math.isfinite(sw.psnr[1])
    assert s.to_dict()["sweeps"][0]["psnr"][0] is None
    assert s.most_sensitive is None


def test_sweep_over_a_chosen_range(net, pair):
    a, b = pair
    sens = sensitivity.sensitivity(net, a, b, transforms=(), sweep=["gaussian_blur", "jpeg"],
                          ranges={"gaussian_blur": (0.5, 2.5), "jpeg": (10, 50)},
                          sweep_points=5, geometric=False)
    assert sens.items == () and sens.geometric == ()
    blur, jpeg = sens.sweeps
    np.testing.assert_allclose(blur.strengths, np.linspace(0.5, 2.5, 5))
    assert jpeg.strengths.tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]
    for sw in (blur, jpeg):
        for s, d in zip(sw.strengths, sw.distances, strict=True):
            assert _d(net, a, P.apply(sw.transform, b, float(s))) == pytest.approx(d, abs=1e-6)
    with pytest.raises(errors.UnknownOptionError):
        sensitivity.sensitivity(net, a, b, transforms=(), sweep=(), ranges={"blurr": (0, 1)})

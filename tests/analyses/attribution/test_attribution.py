"""Tests for the Captum attributions on the pair-aware scorer: oracles, completeness, threads."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from helpers import run_concurrently

from lpips_explain.analyses import attribution as A
from lpips_explain.analyses.attribution.integrated import captum_gradient
from lpips_explain.core.model import ReferenceScorer, build_lpips
from lpips_explain.errors import ComputationError, InputError, LpipsExplainError, UnknownOptionError

METHODS = list(A.METHODS)


@pytest.fixture(scope="module")
def net():
    return build_lpips("alex", "0.1", "random", seed=0, progress=False)


def _smooth(h: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random texture: 8x8 noise upsampled bilinearly."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 8, h // 8, generator=g)
    return F.interpolate(low, size=(h, h), mode="bilinear", align_corners=False).clamp(0, 1)


def _blur(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    kernel = torch.ones(3, 1, k, k) / (k * k)
    return F.conv2d(F.pad(x, (k // 2,) * 4, mode="replicate"), kernel, groups=3).clamp(0, 1)


@pytest.fixture(scope="module")
def pair():
    a = _smooth(64, 1)
    return a, _blur(a)


@pytest.fixture(scope="module")
def rough_pair():
    """A pair far enough apart that gradients and windows matter."""
    return _smooth(64, 2), _smooth(64, 3)


def _grad(net, ref, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ReferenceScorer(net, ref)(x).sum(), x)
    return g[0].double().numpy()


# --- registry and errors ---------------------------------------------------------------


def test_registry_keys_and_specs():
    assert set(METHODS) == {"saliency", "input_x_gradient", "delta_x_gradient",
                            "integrated_gradients", "smoothgrad", "occlusion", "layer_gradcam"}
    assert [m for m in METHODS if A.METHODS[m].uses_hooks] == ["layer_gradcam"]
    assert [m for m in METHODS if A.METHODS[m].complete] == ["integrated_gradients"]
    assert [m for m in METHODS if not A.METHODS[m].gradient_based] == ["occlusion"]
    for name, spec in A.METHODS.items():
        assert spec.name == name and spec.cost and spec.label and callable(spec.runner)
        assert "positive" in spec.description.lower()
        assert spec.sign_note.startswith("Positive values")
        assert spec.completeness in ("exact", "first_order", "none")
    assert A.get_method("occlusion").defaults["window"] == 16


@pytest.mark.parametrize("rule", A.IG_RULES)
def test_every_listed_ig_rule_runs(net, pair, rule):
    r = A.attribute(net, *pair, steps=2, rule=rule)
    assert r.params["rule"] == rule and np.isfinite(r.total)


def test_unknown_method_did_you_mean(net, pair):
    with pytest.raises(UnknownOptionError, match="Did you mean 'integrated_gradients'"):
        A.attribute(net, *pair, "integrated_gradient")
    with pytest.raises(UnknownOptionError, match="Did you mean 'smoothgrad'"):
        A.get_method("smoothgrads")


@pytest.mark.parametrize(("method", "kwargs", "match"), [
    ("smoothgrad", {"window": 8}, "Accepted: samples, stdev"),
    ("saliency", {"samples": 3}, "Accepted: none"),
    ("integrated_gradients", {"steps": 0}, "steps must be"),
    ("occlusion", {"window": 0}, "window must be"),
    ("occlusion", {"window": 65}, "window must be"),
    ("occlusion", {"window": 8, "stride": 9}, "stride must be"),
    ("smoothgrad", {"samples": 0}, "samples must be"),
    ("saliency", {"steps": 8}, "integrated_gradients only"),
    ("saliency", {"internal_batch_size": 0}, "internal_batch_size"),
    ("layer_gradcam", {"layer": 7}, "out of range"),
    ("layer_gradcam", {"baseline": "mean"}, "Grad-CAM baseline"),
    ("integrated_gradients", {"map_tolerance": -0.1}, "map_tolerance must be"),
    ("saliency", {"roles": ("a",)}, "roles must be"),
])
def test_bad_parameters_refused(net, pair, method, kwargs, match):
    with pytest.raises(InputError, match=match):
        A.attribute(net, *pair, method, **kwargs)


def test_bad_layer_name_and_rule(net, pair):
    with pytest.raises(UnknownOptionError, match="Did you mean 'relu3'"):
        A.attribute(net, *pair, "layer_gradcam", layer="relu33")
    with pytest.raises(UnknownOptionError, match="integration rule"):
        A.attribute(net, *pair, "integrated_gradients", steps=4, rule="simpson")


def test_bad_images_refused(net, pair):
    a, b = pair
    with pytest.raises(InputError, match="differ in size"):
        A.attribute(net, a, b[..., :48, :48], "saliency")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        A.attribute(net, a, b * 2, "saliency")
    with pytest.raises(InputError, match="at least"):
        A.attribute(net, a[..., :20, :20], b[..., :20, :20], "saliency")


# --- oracles ---------------------------------------------------------------------------


def test_ig_adaptive_completeness(net, pair):
    a, b = pair
    r = A.attribute(net, a, b)  # default: integrated gradients, adaptive steps
    with torch.no_grad():
        d = float(ReferenceScorer(net, a)(b)[0])
    assert r.method == "integrated_gradients" and r.target == "b"
    assert r.distance == pytest.approx(d, rel=1e-6) and d > 1e-4
    assert r.relative_gap is not None and r.relative_gap <= 0.01
    assert r.total == pytest.approx(r.per_channel.sum(), abs=1e-12)
    assert r.total == pytest.approx(r.signed.sum(), abs=1e-12)
    assert r.completeness_gap == pytest.approx(abs(r.total - d), abs=1e-9)
    # Captum's convergence delta tells the same story as our own float64 sum.
    assert abs(abs(r.convergence_delta) - r.completeness_gap) < 1e-6
    assert r.params["adaptive"] is True and r.params["rule"] == "nested_trapezoid"
    assert r.params["steps"] == r.steps_tried[-1] and 8 <= r.params["steps"] <= 128
    assert not r.vanishing


def test_nested_trapezoid_is_captums_trapezoid_rescaled(net, rough_pair):
    """Oracle: Captum's riemann_trapezoid with m points weighs each by 1/m (its step sizes),
    so its map is the true trapezoid rule over m - 1 intervals times (m - 1) / m."""
    a, b = rough_pair
    for n in (1, 4, 16):
        ours = A.attribute(net, a, b, steps=n)
        assert ours.params["rule"] == "nested_trapezoid" and ours.params["gradient_evaluations"] == n
        cap = IntegratedGradients(ReferenceScorer(net, a)).attribute(
            b.clone().requires_grad_(True), baselines=a, n_steps=n + 1,
            method="riemann_trapezoid")[0].detach().double().numpy() * (n + 1) / n
        # float32 gradients batched differently (Captum: all points at once; ours: 8 at a time)
        np.testing.assert_allclose(ours.per_channel, cap, rtol=0, atol=1e-5 * np.abs(cap).max())


def test_the_gradient_at_the_reference_is_zero(net, rough_pair):
    """Why the nested trapezoid never evaluates the path's start: d(ref, .) has its minimum 0
    there, so every squared feature difference has zero gradient."""
    a, b = rough_pair
    grad = captum_gradient(ReferenceScorer(net, a))
    g0, g1 = grad(a.clone()), grad(b.clone())
    assert float(g1.abs().max()) > 1e-6
    assert float(g0.abs().max()) <= 1e-6 * float(g1.abs().max())


def test_nested_sizes_reuse_every_gradient(net, rough_pair, monkeypatch):
    a, b = rough_pair
    evaluated: list[int] = []
    real = net.score_encoded

    def counting(ref, x):
        if torch.is_grad_enabled():
            evaluated.append(int(x.shape[0]))
        return real(ref, x)

    monkeypatch.setattr(net, "score_encoded", counting)
    # A tolerance no map meets, so every size up to 32 is tried.
    r = A.attribute(net, a, b, map_tolerance=1e-12, max_steps=32)
    assert r.steps_tried == (8, 16, 32)
    assert sum(evaluated) == 32 == r.params["gradient_evaluations"]
    evaluated.clear()
    gl = A.attribute(net, a, b, map_tolerance=1e-12, max_steps=32, rule="gausslegendre")
    assert sum(evaluated) == 8 + 16 + 32 == gl.params["gradient_evaluations"]
    monkeypatch.undo()
    # Reuse changes nothing: the map equals a fresh 32-interval run, and the change reported
    # for 32 is the relative L1 distance to a fresh 16-interval map.
    fresh, m16 = (A.attribute(net, a, b, steps=n).per_channel for n in (32, 16))
    np.testing.assert_allclose(r.per_channel, fresh, rtol=0, atol=1e-5 * np.abs(fresh).max())
    change = np.abs(r.per_channel - m16).sum() / np.abs(r.per_channel).sum()
    assert r.convergence.map_changes[2] == pytest.approx(change, rel=1e-4) and change > 0


def test_ig_escalates_and_reports(net, rough_pair):
    a, b = rough_pair
    r = A.attribute(net, a, b, target_gap=1e-6, max_steps=16)
    assert r.steps_tried == (8, 16) and r.params["steps"] == 16
    assert any("not met" in n for n in r.notes)
    fixed = A.attribute(net, a, b, steps=4)
    assert fixed.steps_tried == (4,) and fixed.params["adaptive"] is False
    # A 16-point trapezoid rule is closer to completeness than a 4-point one.
    assert r.completeness_gap < fixed.completeness_gap


def test_saliency_matches_autograd(net, rough_pair):
    a, b = rough_pair
    g = _grad(net, a, b)
    r = A.attribute(net, a, b, "saliency")
    np.testing.assert_allclose(r.per_channel, g, atol=1e-6, rtol=0)
    assert np.abs(g).max() > 1e-4  # the oracle is not trivially zero
    np.testing.assert_allclose(r.signed, g.sum(0), atol=1e-6, rtol=0)
    np.testing.assert_allclose(r.magnitude, np.abs(g).sum(0), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(r.positive, np.maximum(r.signed, 0))


def test_input_x_gradient_matches(net, rough_pair):
    a, b = rough_pair
    expected = b[0].double().numpy() * _grad(net, a, b)
    r = A.attribute(net, a, b, "input_x_gradient")
    np.testing.assert_allclose(r.per_channel, expected, atol=1e-6, rtol=0)


def test_occlusion_window_is_distance_drop(net, rough_pair):
    a, b = rough_pair
    r = A.attribute(net, a, b, "occlusion", window=16, stride=16)
    assert r.per_channel is None and r.signed.shape == (64, 64)
    assert r.params == {"window": 16, "stride": 16, "windows": 16}
    scorer = ReferenceScorer(net, a)
    with torch.no_grad():
        d = float(scorer(b)[0])
        for i, j in [(0, 0), (1, 2), (3, 1)]:
            ys, xs = slice(16 * i, 16 * i + 16), slice(16 * j, 16 * j + 16)
            patched = b.clone()
            patched[..., ys, xs] = a[..., ys, xs]
            drop = d - float(scorer(patched)[0])
            block = r.signed[ys, xs]
            np.testing.assert_allclose(block, drop, atol=1e-6, rtol=0)
    assert np.abs(r.signed).max() > 1e-4


def test_layer_gradcam_all_layers_and_no_hooks(net, rough_pair):
    a, b = rough_pair
    for i, name in enumerate(net.spec.layer_names):
        r = A.attribute(net, a, b, "layer_gradcam", layer=name)
        assert r.per_channel is None and r.signed.shape == (64, 64)
        assert np.isfinite(r.signed).all() and np.abs(r.signed).max() > 0
        assert r.params["layer"] == name and r.params["layer_index"] == i
    assert A.attribute(net, a, b, "layer_gradcam").params["layer"] == "relu5"
    for module in net.modules():
        assert not module._forward_hooks and not module._backward_hooks
        assert not module._forward_pre_hooks and not module._backward_pre_hooks
    # The private copy's ReLUs were made out-of-place; the shared net's are untouched.
    assert any(getattr(m, "inplace", False) for m in net.modules())


def test_layer_gradcam_matches_manual(net, rough_pair):
    """Oracle for classic Grad-CAM (baseline="zero"): sum_c mean_hw(dd/dA_c) * A_c at the
    tap, upsampled bilinearly (the default baseline: tests/analyses/attribution/test_attribution_findings.py)."""
    a, b = rough_pair
    twin = copy.deepcopy(net)
    store = {}
    layer = twin.features[twin.spec.taps[2]]
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    d = ReferenceScorer(twin, a)(b.clone().requires_grad_(True)).sum()
    (g,) = torch.autograd.grad(d, store["a"])
    handle.remove()
    cam = (g.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(1, keepdim=True)
    up = F.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
    r = A.attribute(net, a, b, "layer_gradcam", layer=2, baseline="zero")
    np.testing.assert_allclose(r.signed, up.detach().double().numpy(), atol=1e-7, rtol=1e-5)


def test_smoothgrad_seeded_and_leaves_global_rng(net, rough_pair):
    a, b = rough_pair
    state = torch.get_rng_state()
    r1 = A.attribute(net, a, b, "smoothgrad", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    # Oracle: SmoothGrad's definition, the mean gradient at x + stdev * noise_i, noise_i the
    # i-th draw of a generator seeded with the seed; the batch size does not matter.
    gen = torch.Generator().manual_seed(3)
    noisy = [b + 0.05 * torch.randn(b.shape, generator=gen) for _ in range(8)]
    expected = np.mean([_grad(net, a, x) for x in noisy], axis=0)
    np.testing.assert_allclose(r1.per_channel, expected, atol=1e-6, rtol=0)
    one_by_one = A.attribute(net, a, b, "smoothgrad", seed=3, internal_batch_size=1)
    np.testing.assert_allclose(one_by_one.per_channel, r1.per_channel, atol=1e-6, rtol=0)
    r2 = A.attribute(net, a, b, "smoothgrad", seed=3)
    r3 = A.attribute(net, a, b, "smoothgrad", seed=4)
    np.testing.assert_array_equal(r1.per_channel, r2.per_channel)
    assert not np.allclose(r1.per_channel, r3.per_channel)
    assert r1.params == {"samples": 8, "stdev": 0.05, "seed": 3}
    # SmoothGrad is a blurred saliency map: close to it, not equal.
    sal = A.attribute(net, a, b, "saliency").signed
    assert np.corrcoef(sal.ravel(), r1.signed.ravel())[0, 1] > 0.3


def test_roles_are_the_callers(net, rough_pair):
    """The caller passes (reference, explained) and names them; nothing re-derives a swap."""
    a, b = rough_pair
    fwd = A.attribute(net, a, b, steps=16)
    rev = A.attribute(net, b, a, steps=16, roles=("b", "a"))
    assert (fwd.reference, fwd.target) == ("a", "b") and (rev.reference, rev.target) == ("b", "a")
    assert rev.to_dict()["target"] == "a" and rev.to_dict()["reference"] == "b"
    assert rev.distance == pytest.approx(fwd.distance, rel=1e-5)
    assert rev.relative_gap < 0.01
    assert not np.allclose(rev.signed, fwd.signed)
    r = A.attribute(net, b, a, "saliency", roles=("b", "a"))
    np.testing.assert_allclose(r.per_channel, _grad(net, b, a), atol=1e-6, rtol=0)
    assert "swap" not in A.attribute.__kwdefaults__


# --- degenerate pairs ------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_identical_images_vanish(net, pair, method):
    a = pair[0]
    r = A.attribute(net, a, a.clone(), method, **({"steps": 4} if "integrated" in method else {}))
    assert r.distance == 0.0 and r.vanishing and r.blank_cause is None
    for m in (r.per_channel, r.signed, r.magnitude, r.positive):
        assert m is None or np.isfinite(m).all()
    assert "identical" in r.notes[0] and f"{A.VANISHING_DISTANCE:g}" in r.notes[0]
    # "gradient" is not said of occlusion, which uses none
    assert ("gradient" in r.notes[0].lower()) == A.METHODS[method].gradient_based
    if method != "smoothgrad":  # smoothgrad's own noise moves it off the reference
        assert np.abs(r.signed).max() < 1e-9
    assert r.relative_gap is None


@pytest.mark.parametrize("method", METHODS)
def test_black_candidate_is_finite(net, method):
    ref = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    black = torch.zeros_like(ref)
    r = A.attribute(net, ref, black, method, **({"steps": 8} if "integrated" in method else {}))
    assert r.distance > 0.01
    for m in (r.per_channel, r.signed, r.magnitude, r.positive):
        assert m is None or np.isfinite(m).all()
    assert np.isfinite(r.total)
    if method == "input_x_gradient":  # 0 x gradient: blank, but not a vanishing gradient
        assert not r.vanishing and r.blank and "black" in r.notes[0]
        assert r.blank_cause == r.notes[0]
    else:
        assert not r.vanishing and np.abs(r.signed).max() > 0


# --- contract details -------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_progress_inputs_and_dict(net, rough_pair, method):
    a, b = rough_pair
    a0, b0 = a.clone(), b.clone()
    calls = []
    kw = {"steps": 8} if "integrated" in method else {}
    r = A.attribute(net, a, b, method, progress=lambda *c: calls.append(c),
                    internal_batch_size=2, **kw)
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(0 <= d <= t for d, t, _ in calls)
    if method in ("integrated_gradients", "smoothgrad", "occlusion"):
        assert len(calls) > 1  # reported as it went, not only at the end
    assert torch.equal(a, a0) and torch.equal(b, b0)
    assert not a.requires_grad and not b.requires_grad
    d = json.loads(json.dumps(r.to_dict()))
    assert {"method", "params", "target", "sum", "distance", "completeness_gap",
            "relative_gap", "vanishing", "notes"} <= set(d)
    assert d["map_total"] == r.total and d["method"] == method
    # only a complete method's sum is reported as "sum" (comparable with the distance)
    comparable = method in ("integrated_gradients", "delta_x_gradient")
    assert d["sum"] == (r.total if comparable else None)
    assert (d["sum_ratio"] is None) == (not comparable)
    assert (d["completeness_gap"] is None) == (method != "integrated_gradients")
    assert (d["convergence"] is None) == (method != "integrated_gradients")
    assert d["label"] == A.METHODS[method].label and d["sign_note"] in d["notes"]
    for m in (r.signed, r.magnitude, r.positive):
        assert m.dtype == np.float64 and m.shape == (64, 64)


def test_threads_match_solo_runs(net):
    pairs = [(_smooth(64, 10 + k), _blur(_smooth(64, 10 + k), 3 + 2 * (k % 2))) for k in range(4)]
    calls = [("layer_gradcam", {"layer": 1}), ("integrated_gradients", {"steps": 8}),
             ("smoothgrad", {"seed": 7})]

    def run(k):
        return [A.attribute(net, *pairs[k], m, **kw) for m, kw in calls]

    solo = [run(k) for k in range(4)]
    results = run_concurrently(run, 4)
    for k in range(4):
        for alone, together in zip(solo[k], results[k], strict=True):
            np.testing.assert_allclose(together.signed, alone.signed, atol=1e-6, rtol=0)
            assert together.distance == pytest.approx(alone.distance, abs=1e-7)
    # Different pairs give different maps (the comparison above is not vacuous).
    assert not np.allclose(solo[0][1].signed, solo[1][1].signed)


def test_non_finite_map_is_a_computation_error(net, rough_pair):
    """A NaN map is the tool's failure on valid input: not an InputError (exit 2)."""
    broken = copy.deepcopy(net)
    broken.head0.fill_(float("nan"))
    with pytest.raises(ComputationError, match="not a problem with the images") as info:
        A.attribute(broken, *rough_pair, "saliency")
    assert not isinstance(info.value, InputError) and isinstance(info.value, LpipsExplainError)
    assert info.value.exit_code == 1


def test_empty_backbone_setting_is_bad_input():
    from lpips_explain.core.weights import load_trunk
    from lpips_explain.errors import WeightsError

    with pytest.raises(InputError, match="setting is empty") as info:
        load_trunk("alex", "  ")
    assert not isinstance(info.value, WeightsError) and info.value.exit_code == 2

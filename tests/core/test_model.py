"""Parity with the official lpips package, exact sums, finite gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ASSETS, official_model, official_trunk_state, smooth_image

from lpips_explain.core.decompose import decompose, decompose_encoded
from lpips_explain.core.model import ReferenceScorer, build_lpips
from lpips_explain.core.trunks import TRUNKS

NETS = ["alex", "vgg", "squeeze"]
VERSIONS = ["0.1", "0.0"]


def _natural(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    im = Image.open(ASSETS / "originals" / "coffee.png").convert("RGB").resize((w, h))
    a = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255
    b = torch.flip(a, dims=[3]) * 0.7 + 0.3 * a  # a real, structured change
    return a, b


def _ours_from_official(official, net: str, version: str, tmp_path, full_model: bool):
    """Write the official trunk as a torchvision state_dict file and load it into ours."""
    state = official_trunk_state(official)
    if full_model:
        state = {f"features.{k}": v for k, v in state.items()}
        state["classifier.1.weight"] = torch.zeros(2, 2)  # a full model has more than features
    path = tmp_path / f"{net}-{version}-{'full' if full_model else 'features'}.pth"
    torch.save(state, path)
    return build_lpips(net, version, str(path))


CASES = [
    ("natural", 64, 96),
    ("random", 48, 48),
    ("random", 70, 53),
]


@pytest.mark.parametrize("net", ["alex", pytest.param("vgg", marks=pytest.mark.slow), "squeeze"])
@pytest.mark.parametrize("version", VERSIONS)
def test_parity_with_official(net, version, tmp_path):
    official = official_model(net, version)
    ours = _ours_from_official(official, net, version, tmp_path, full_model=(version == "0.1"))
    # the trunk really came from the file (whether such a file counts as perceptual is the
    # SHA-256 policy of core/weights, tested with it)
    assert ours.weights_info.spec != "random" and ours.weights_info.file.endswith(".pth")
    for kind, h, w in CASES:
        if kind == "natural":
            a, b = _natural(h, w)
        else:
            g = torch.Generator().manual_seed(h * w)
            a, b = torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)
        with torch.no_grad():
            official.spatial = False
            d_off, per_layer = official(a * 2 - 1, b * 2 - 1, retPerLayer=True)
            # the official spatial maps: the same model (its forward reads the flag), so no
            # second trunk has to be built
            official.spatial = True
            sp_off, sp_layers = official(a * 2 - 1, b * 2 - 1, retPerLayer=True)
            d_plain = ours(a, b)
        dec = decompose(ours, a, b)
        assert abs(dec.distance - float(d_off)) < 1e-5, (kind, h, w)
        assert abs(float(d_plain) - float(d_off)) < 1e-5
        for lay, off in zip(dec.layers, per_layer, strict=True):
            assert abs(lay.distance - float(off)) < 1e-5
        summed = dec.spatial_map(None, "bilinear")
        assert summed.shape == (h, w)
        np.testing.assert_allclose(summed, sp_off[0, 0].numpy(), atol=1e-5)
        for i, off in enumerate(sp_layers):
            np.testing.assert_allclose(dec.spatial_map(i, "bilinear"), off[0, 0].numpy(),
                                       atol=1e-5)


def test_decomposition_sums_exactly(random_explainer, pair):
    dec = decompose(random_explainer.model, *pair)
    assert dec.distance > 0
    assert abs(sum(lay.distance for lay in dec.layers) - dec.distance) <= 1e-6 * dec.distance
    assert abs(sum(lay.share for lay in dec.layers) - 1) < 1e-9
    for lay in dec.layers:
        assert abs(lay.contributions.sum() - lay.distance) <= 1e-6 * lay.distance
        # the layer-resolution map is computed separately from the channel terms
        assert abs(lay.spatial.mean() - lay.distance) <= 1e-6 * lay.distance
        assert abs(dec.spatial_map(lay.index, "mean_preserving").mean() - lay.distance) \
            <= 1e-6 * lay.distance
        # zero-weight channels contribute exactly nothing
        assert np.all(lay.contributions[lay.zero_weight_channels] == 0)
        top = lay.top_channels
        assert [c.contribution for c in top] == sorted(lay.contributions, reverse=True)[:len(top)]
        for c in top:
            assert abs(c.weight * c.diff_map.mean() - c.contribution) <= 1e-9
    # alex v0.1 really has zero weights: the decomposition must say so
    assert sum(lay.zero_weight_channels.size for lay in dec.layers) > 0


def test_bilinear_map_mean_is_only_approximate(random_explainer, pair):
    dec = decompose(random_explainer.model, *pair)
    gaps = [abs(dec.spatial_map(lay.index, "bilinear").mean() - lay.distance) / lay.distance
            for lay in dec.layers]
    exact = [abs(dec.spatial_map(lay.index, "mean_preserving").mean() - lay.distance)
             / lay.distance for lay in dec.layers]
    assert max(gaps) > 1e-5  # bilinear (the official map) is only approximately mean-preserving
    assert max(exact) < 1e-9


def test_batch_against_one_reference_equals_pairs(random_explainer):
    net = random_explainer.model
    ref = smooth_image(64, 64, 5)
    cands = torch.cat([smooth_image(64, 64, s) for s in (6, 7, 8)])
    scorer = ReferenceScorer(net, ref)
    batched = decompose_encoded(net, scorer.ref, cands)
    for i in range(3):
        single = decompose(net, ref, cands[i: i + 1])
        assert abs(batched[i].distance - single.distance) < 1e-6
        with torch.no_grad():
            assert abs(float(scorer(cands[i: i + 1])) - single.distance) < 1e-6
    # one-to-many through the public API encodes the reference once and agrees with pairs
    many = random_explainer.distance(ref, list(cands.split(1)), value_range="[0,1]")
    pairs = [random_explainer.distance(ref, c, value_range="[0,1]") for c in cands.split(1)]
    np.testing.assert_allclose(many, pairs, atol=1e-6)


def test_symmetry_and_identity(random_explainer, pair):
    a, b = pair
    dab = random_explainer.distance(a, b, value_range="[0,1]")
    dba = random_explainer.distance(b, a, value_range="[0,1]")
    assert dab > 0 and abs(dab - dba) < 1e-7
    assert random_explainer.distance(a, a, value_range="[0,1]") == 0.0


@pytest.mark.parametrize("net", NETS)
def test_gradients_finite_at_identity_and_zero_features(net):
    model = build_lpips(net, "0.1", "random")
    ref = smooth_image(32, 32, 3)  # the smallest size all three trunks take
    for cand in (ref.clone(), torch.zeros_like(ref), torch.ones_like(ref)):
        x = cand.clone().requires_grad_(True)
        d = ReferenceScorer(model, ref)(x).sum()
        (g,) = torch.autograd.grad(d, x)
        assert torch.isfinite(g).all()
        if torch.equal(cand, ref):
            assert float(g.abs().max()) == 0.0
    # all-zero feature vectors on both sides: the official eps-outside-sqrt form gives NaN here
    black = torch.zeros(1, 3, 32, 32, requires_grad=True)
    d = model(black, torch.zeros(1, 3, 32, 32))
    (g,) = torch.autograd.grad(d.sum(), black)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("net", NETS)
def test_minimum_sizes_are_real(net):
    model = build_lpips(net, "0.1", "random")
    m = TRUNKS[net].min_size
    with torch.no_grad():
        model(torch.rand(1, 3, m, m), torch.rand(1, 3, m, m))
        model(torch.rand(1, 3, m, 3 * m), torch.rand(1, 3, m, 3 * m))
        with pytest.raises(RuntimeError):
            model(torch.rand(1, 3, m - 1, m - 1), torch.rand(1, 3, m - 1, m - 1))


def test_random_trunk_is_seeded():
    a = build_lpips("alex", "0.1", "random", seed=1)
    b = build_lpips("alex", "0.1", "random", seed=1)
    c = build_lpips("alex", "0.1", "random", seed=2)
    wa, wb, wc = (m.features[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert not a.weights_info.perceptual


def test_weights_frozen_and_inputs_untouched(random_explainer, pair):
    a, b = pair
    a0, b0 = a.clone(), b.clone()
    random_explainer.explain(a, b, attribution="saliency", sensitivity=False, repair=False,
                             value_range="[0,1]")
    assert torch.equal(a, a0) and torch.equal(b, b0)
    assert not a.requires_grad and not b.requires_grad
    assert all(not p.requires_grad for p in random_explainer.model.parameters())


def test_inference_in_place_leaves_inputs_and_reference_alone_and_changes_no_number():
    """Without gradients the features are normalised and differenced in place (core/model:
    normalize_, layer_maps): the same numbers to the bit as the out-of-place path, the
    reference and the images untouched."""
    from lpips_explain.core.model import normalize, normalize_

    model = build_lpips("alex", "0.1", "random")
    ref, x = smooth_image(48, 64, 1), torch.rand(3, 3, 48, 64, generator=torch.Generator()
                                                 .manual_seed(2))
    f = torch.randn(2, 8, 5, 6).relu()
    f[0, :, 0, 0] = 0  # a zero feature vector stays 0, not NaN
    assert torch.equal(normalize_(f.clone()), normalize(f))
    scorer = ReferenceScorer(model, ref)
    kept_ref, kept_x = [r.clone() for r in scorer.ref], x.clone()
    with torch.no_grad():
        fast = scorer(x)
        again = scorer(x)
        pairs = model(x, ref.expand(3, -1, -1, -1))
    tracked_x = x.clone().requires_grad_(True)
    slow = scorer(tracked_x)  # autograd records: the out-of-place path
    assert torch.equal(fast, again) and torch.equal(fast, slow.detach())
    # The pair path (one pass over both, differenced in place too) agrees to round-off.
    torch.testing.assert_close(pairs, fast, rtol=1e-6, atol=1e-9)
    assert all(torch.equal(r, k) for r, k in zip(scorer.ref, kept_ref, strict=True))
    assert torch.equal(x, kept_x)

"""The anchored verdict and the sentences about the image (issue 20, items 1 and 2).

Oracles: the shipped anchor table against a recomputation on the real trunk; region shares
against plain numpy sums over the map; kinds of change against pairs built to be that kind.
"""

from __future__ import annotations

import re
import statistics

import numpy as np
import pytest
import torch
from conftest import REPO, smooth_image

from lpips_explain.analyses.pair import anchors, categories, regions
from lpips_explain.analyses.pair import perturbations as P
from lpips_explain.analyses.pair.summary import describe_image
from lpips_explain.intake.images import load_image
from lpips_explain.output.scale import scale_html

PCT = re.compile(r"(\d+(?:\.\d+)?)%")


# --- the fixed scale ---------------------------------------------------------------------------


def test_shipped_anchors_are_the_median_of_their_images_and_the_top_follows_its_rule():
    table = anchors.load_table()["tables"]
    assert {"alex/0.1", "vgg/0.1"} <= set(table)
    for key, entry in table.items():
        limits = tuple(categories.load_table()["tables"][key]["limits"])
        marks = entry["markers"]
        for m in marks:
            assert m["distance"] == pytest.approx(statistics.median(m["per_image"].values()))
        assert entry["top"] == anchors.nice_top(limits, [m["distance"] for m in marks])
        assert entry["top"] >= max(m["distance"] for m in marks)


def test_one_anchor_recomputed_on_the_real_trunk(real_alex):
    """JPEG q10 of the bundled astronaut on the published alex v0.1: the stored distance."""
    entry = anchors.load_table()["tables"]["alex/0.1"]
    stored = next(m for m in entry["markers"] if m["label"] == "JPEG q10")
    x = load_image(REPO / "assets" / "originals" / "astronaut.png").tensor
    y = P.apply("jpeg", x, 10.0, seed=0)
    d = float(categories.distances(real_alex.fast, [(x, y)])[0])
    assert d == pytest.approx(stored["per_image"]["astronaut.png"], abs=1e-4)


def _positions(html_text: str, cls: str) -> list[str]:
    return re.findall(rf'class="{cls}"[^>]*?left:([\d.]+)%', html_text)


def test_the_scale_is_the_same_for_two_different_pairs():
    anchor = anchors.anchor_for("alex", "0.1", perceptual=True,
                                limits=(0.0676, 0.266, 0.459))
    assert anchor is not None
    near = scale_html([("d", 0.084)], anchor.limits, anchor)
    far = scale_html([("d", 0.38)], anchor.limits, anchor)
    # segments and familiar-distortion ticks sit at the same places for both pairs
    for cls in ("seg", "tick"):
        assert _positions(near, cls) == _positions(far, cls) and _positions(near, cls)
    # the pair's marker sits at d / top of the fixed scale, so the two differ
    (p_near,), (p_far,) = _positions(near, "mark"), _positions(far, "mark")
    assert float(p_near) == pytest.approx(100 * 0.084 / anchor.top, abs=0.01)
    assert float(p_far) == pytest.approx(100 * 0.38 / anchor.top, abs=0.01)
    # a distance beyond the scale is drawn at its end and says so
    beyond = scale_html([("d", anchor.top * 2)], anchor.limits, anchor)
    assert float(_positions(beyond, "mark")[0]) == 100.0 and "beyond the scale" in beyond


def test_no_anchor_for_a_trunk_that_is_not_the_published_one():
    assert anchors.anchor_for("alex", "0.1", perceptual=False) is None
    anchor, why = anchors.anchor_of("alex", "0.1", type("B", (), {"perceptual": False})())
    assert anchor is None and "not the verified published one" in why
    text = scale_html([("d", 0.3)], (), None, why)
    assert "No fixed scale" in text and "tick" not in text


# --- where the distance is -------------------------------------------------------------------


def _share(z: np.ndarray, t: float, b: float, left: float, r: float) -> float:
    h, w = z.shape
    return float(z[round(t * h):round(b * h), round(left * w):round(r * w)].sum() / z.sum())


def test_the_named_region_holds_the_share_it_states():
    rng = np.random.default_rng(0)
    z = rng.uniform(0.0, 0.1, (60, 80))
    z[:30, :40] += 1.0  # the top-left quarter
    found = regions.where(z)
    assert found.concentrated and found.region.name == "top-left quarter"
    stated = float(PCT.search(found.sentence).group(1)) / 100
    assert stated == pytest.approx(_share(z, 0, 0.5, 0, 0.5), abs=0.005)
    assert "top-left quarter" in found.sentence


def test_an_even_map_is_called_spread_with_its_busiest_quarter():
    z = np.ones((40, 40))
    z[20:, 20:] *= 1.1
    found = regions.where(z)
    assert not found.concentrated and "spread over the whole image" in found.sentence
    stated = float(PCT.search(found.sentence).group(1)) / 100
    assert stated == pytest.approx(_share(z, 0.5, 1, 0.5, 1), abs=0.005)


def test_the_sentence_about_a_real_pair_matches_its_map(random_explainer):
    a = smooth_image(64, 64, 1)
    b = a.clone()
    b[..., 32:, 32:] = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expl = random_explainer.explain(a, b, sensitivity=False, repair=False, attribution=None,
                                    value_range="[0,1]", equivalents=False)
    heat = expl.decomposition.spatial_map(None, "bilinear")
    found = regions.where(heat)
    lo, hi, left, right = regions.REGIONS[found.region.name]
    stated = float(PCT.search(found.sentence).group(1)) / 100
    assert stated == pytest.approx(_share(heat, lo, hi, left, right), abs=0.005)
    assert found.sentence in expl.summary
    assert "bottom-right" in found.region.name or "bottom" in found.region.name or \
        "right" in found.region.name


# --- the kind of change ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return load_image(REPO / "assets" / "originals" / "chelsea.png").tensor


def _kind(a, b, random_explainer):
    dec = random_explainer.explain(a, b, sensitivity=False, repair=False, attribution=None,
                                   value_range="[0,1]", equivalents=False).decomposition
    return regions.change_kind(a, b, dec)


def test_kinds_of_change_read_off_their_numbers(photo, random_explainer):
    shifted = torch.roll(photo, shifts=(3, -5), dims=(2, 3))  # 3 down, 5 left
    k = _kind(photo, shifted, random_explainer)
    assert k.kind == "misalignment" and k.shift == (5, -3)  # moving B back: right 5, up 3
    assert "5 px right and 3 px up" in k.sentence and k.align_gain >= regions.ALIGN_GAIN
    blur = P.apply("gaussian_blur", photo, 2.0)
    k = _kind(photo, blur, random_explainer)
    assert k.kind == "detail lost" and k.detail_ratio <= regions.LOST
    assert f"{k.detail_ratio:.0%}" in k.sentence
    noise = P.apply("gaussian_noise", photo, 0.1, seed=0)
    k = _kind(photo, noise, random_explainer)
    assert k.kind == "detail added" and k.detail_ratio >= regions.ADDED
    jpeg = P.apply("jpeg", photo, 10.0)
    k = _kind(photo, jpeg, random_explainer)
    assert k.kind == "blocky compression" and k.block_ratio >= regions.BLOCKY
    hue = P.apply("hue", photo, 0.15)
    k = _kind(photo, hue, random_explainer)
    assert k.kind == "colour" and k.chroma_change >= regions.COLOUR * k.luma_change
    assert f"{k.chroma_change:.1f}" in k.sentence


def test_tone_is_the_image_s_brightness_or_contrast_not_a_per_pixel_difference(
        photo, random_explainer):
    brighter = (photo + 20 / 255).clamp(0, 1)
    k = _kind(photo, brighter, random_explainer)
    assert k.kind == "tone" and k.level_change >= regions.TONE
    assert f"B is {k.level_change:.1f} brighter on average" in k.sentence
    grey = photo.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    flat = (grey - grey.mean()) * 0.6 + grey.mean()  # contrast 40% lower, the same average
    k = _kind(grey, flat, random_explainer)
    assert k.kind == "tone" and abs(k.level_change) < regions.TONE
    assert k.contrast_ratio <= 1 / regions.CONTRAST
    assert f"its contrast is {1 - k.contrast_ratio:.0%} lower" in k.sentence
    # Two views of a scene: the top half moved 6 px one way, the bottom half the other. Every
    # pixel changes (a mean absolute difference past the tone limit), no single shift aligns
    # both, and the tone is the same: not "brightness or contrast".
    h = photo.shape[-2] // 2
    views = torch.cat([torch.roll(photo[..., :h, :], 6, dims=3),
                       torch.roll(photo[..., h:, :], -6, dims=3)], dim=2)
    k = _kind(photo, views, random_explainer)
    assert k.luma_change >= regions.TONE and k.align_gain < regions.ALIGN_GAIN
    assert k.kind in ("fine texture", "structure"), k


def test_sentences_about_the_image_carry_no_layer_ids(photo, random_explainer):
    blur = P.apply("gaussian_blur", photo, 2.0)
    expl = random_explainer.explain(photo, blur, sensitivity=False, repair=False,
                                    attribution=None, value_range="[0,1]", equivalents=False)
    said = describe_image(expl.decomposition, expl.reference, expl.explained)
    assert len(said) == 2 and all(s in expl.summary for s in said)
    assert not any(re.search(r"relu|conv|channel|lin weight", s) for s in said)


def test_the_sentences_are_computed_once_per_pair_of_images(photo, random_explainer,
                                                             monkeypatch):
    """The page asks for them several times a run: the rule runs once per decomposition and
    pair of images, and another pair (or other roles) gets its own sentences."""
    from lpips_explain.analyses.pair import summary

    jpeg = P.apply("jpeg", photo, 10.0)
    expl = random_explainer.explain(photo, jpeg, sensitivity=False, repair=False,
                                    attribution=None, value_range="[0,1]", equivalents=False)
    dec = expl.decomposition
    runs = []
    rule = summary.change_kind
    monkeypatch.setattr(summary, "change_kind", lambda *a, **k: runs.append(1) or rule(*a, **k))
    first = describe_image(dec, photo, jpeg)
    assert describe_image(dec, photo, jpeg) == first and len(runs) == 1
    assert first[1] == rule(photo, jpeg, dec).sentence  # what the rule says, not a stale one
    swapped = describe_image(dec, jpeg, photo, reference="B", explained="A")
    assert len(runs) == 2 and swapped[1] == rule(jpeg, photo, dec, reference_name="B",
                                                 explained_name="A").sentence
    assert swapped != first
    # a copy of the images is another pair of objects: computed for them, the same words
    assert describe_image(dec, photo.clone(), jpeg.clone()) == first and len(runs) == 3


# --- the repair in words -----------------------------------------------------------------------


def test_repair_sentence_names_the_repaired_area_and_region(random_explainer):
    a = smooth_image(64, 64, 3)
    b = a.clone()
    b[..., :32, :32] = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expl = random_explainer.explain(a, b, sensitivity=False, repair=True, attribution=None,
                                    value_range="[0,1]", equivalents=False,
                                    patch=16)
    rep = expl.repair
    said = regions.repair_sentence(rep)
    assert said in expl.summary
    if rep.half_area is None:
        assert said.startswith("No repair tried halves the distance")
        return
    assert said.startswith(f"Restoring {rep.half_area:.0%} of B's area")
    i = int(np.flatnonzero(rep.curve_area == rep.half_area)[0])
    mask = rep.mask(int(rep.curve_steps[i]))
    assert f"to {rep.curve_distance[i]:.4f}" in said
    if "mostly the" in said:
        name = re.search(r"mostly the ([a-z-]+ [a-z]+)", said).group(1)
        lo, hi, left, right = regions.REGIONS[name]
        stated = float(PCT.findall(said)[1]) / 100
        assert stated == pytest.approx(_share(mask.astype(float), lo, hi, left, right),
                                       abs=0.005)


# --- the faithfulness badge --------------------------------------------------------------------


def test_the_badge_states_the_deletion_check_both_ways(random_explainer):
    from dataclasses import replace

    from lpips_explain.analyses.attribution import attribute
    from lpips_explain.analyses.checks.faithfulness import deletion_check
    from lpips_explain.ui.explain_where import faithfulness_state

    net = random_explainer.model
    a = smooth_image(64, 64, 41)
    b = a.clone()
    b[..., 0:32, 16:48] = (b[..., 0:32, 16:48]
                           + 0.4 * (smooth_image(32, 32, 42) - 0.5)).clamp(0, 1)
    attr = attribute(net, a, b, "occlusion")
    states = {}
    for sign in (1.0, -1.0):
        check = deletion_check(net, a, b, sign * attr.signed)
        state, words = faithfulness_state(replace(attr, deletion=check))
        assert (state == "passes") == check.better_than_random
        assert f"{check.auc:.3f}" in words and f"{check.random_auc:.3f}" in words
        states[sign] = state
    assert states == {1.0: "passes", -1.0: "fails"}
    assert faithfulness_state(replace(attr, deletion=None)) is None


def test_pooled_attribution_keeps_the_sum_and_scales_both_views():
    from lpips_explain.output.figures import percentile_limit, pooled_attribution

    complete = type("A", (), {"signed": np.full((16, 16), 0.01), "completeness": "exact",
                              "distance": 2.56})()
    full, text, _ = pooled_attribution(complete, "signed", 8)
    assert full[0, 0] == pytest.approx(25.0) and "of the distance" in text  # 0.64 of 2.56
    rng = np.random.default_rng(2)
    signed = rng.normal(0, 1, (40, 36))
    attr = type("A", (), {"signed": signed, "magnitude": np.abs(signed)})()
    for view in ("signed", "magnitude"):
        full, text, bar = pooled_attribution(attr, view, 8)
        assert full.shape == signed.shape and "8x8 px blocks" in text and "%" in bar
        # every block's value is its exact sum as a percent of the total
        raw = getattr(attr, view)
        assert full[0, 0] == pytest.approx(100 * raw[:8, :8].sum() / np.abs(raw).sum())
        lim = percentile_limit(full)
        assert 0 < lim <= np.abs(full).max()


def test_the_where_sentence_holds_one_full_size_map_at_a_time(random_explainer):
    """The summed map is added up one layer at a time and where() copies it only for NaN:
    a 16 MP pair once peaked 1.4 GB above its images here (five full-size maps at once).
    numpy's allocations are traced; the upsampled layers come from torch (not traced), so
    the limits count what numpy adds beside them."""
    import tracemalloc

    a = torch.rand(1, 3, 600, 800, generator=torch.Generator().manual_seed(3))
    b = (a + 0.1 * torch.rand(a.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    dec = random_explainer.decompose(a, b, value_range="[0,1]")
    one_map = 600 * 800 * 8  # float64
    tracemalloc.start()
    try:
        heat = dec.spatial_map(None, "bilinear")
        _, summed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        found = regions.where(heat)
        _, where_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stacked = np.sum([dec.spatial_map(lay.index, "bilinear") for lay in dec.layers], axis=0)
    assert np.array_equal(heat, stacked)  # the same sums, in the same order
    assert summed_peak < 0.5 * one_map, summed_peak  # no stack of the five maps
    assert where_peak < 0.5 * one_map, where_peak  # no copy of the map
    assert found is not None and 0 < found.region.share <= 1

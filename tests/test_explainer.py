"""The public Explainer contract: explain, explain_triplet, JSON keys, threads.

(The CLI's files for explain and triplet are checked in-process in test_cli.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ASSETS, smooth_image, triplet_tensors
from helpers import run_concurrently

from lpips_explain import Explainer, InputError, UnknownOptionError, notices
from lpips_explain.output.report import to_json

R = "[0,1]"
JSON_KEYS = ("schema", "distance", "net", "version", "backbone", "inputs", "layers",
             "attribution", "sensitivity", "repair", "summary", "warnings", "timings_ms")


@pytest.fixture(scope="module")
def full(full_explanation):
    """explain(a, b, patch=16) with every part, shared with the other test files."""
    return full_explanation


def test_full_explanation_fills_every_key(full):
    data = json.loads(to_json(full))
    for key in JSON_KEYS:
        assert key in data and data[key] is not None, key
    assert data["backbone"]["perceptual"] is False
    assert {"weights", "perceptual"} <= set(data["backbone"])
    assert {"a", "b", "size", "policy"} <= set(data["inputs"])
    assert {"method", "sum", "completeness_gap"} <= set(data["attribution"])
    assert data["sensitivity"] and {"transform", "strength", "distance"} <= set(
        data["sensitivity"][0])
    assert {"patch", "curve"} <= set(data["repair"]) and data["repair"]["curve"]
    assert data["summary"] and all(isinstance(s, str) for s in data["summary"])
    assert set(data["timings_ms"]) >= {"decompose", "attribution", "sensitivity", "repair"}


def test_ig_completeness_within_one_percent(full):
    attr = full.attribution
    assert attr.method == "integrated_gradients"
    assert abs(attr.total - float(attr.per_channel.sum())) < 1e-6
    assert abs(attr.distance - full.distance) < 1e-6
    assert attr.relative_gap <= 0.01
    assert "steps" in attr.params


def test_repair_curve_is_real_and_ends_at_zero(full, random_explainer):
    rep = full.repair
    assert rep.curve_distance[0] == pytest.approx(full.distance, abs=1e-6)
    assert rep.curve_distance[-1] <= 1e-7
    k = len(rep.curve_area) // 2
    repaired = rep.repaired_image(full.a, full.b, float(rep.curve_area[k]))
    with torch.no_grad():
        direct = float(random_explainer.model(full.a, repaired))
    assert direct == pytest.approx(float(rep.curve_distance[k]), abs=1e-6)


def test_identical_images(random_explainer):
    a = smooth_image(64, 64, 9)
    for method in ("integrated_gradients", "saliency", "occlusion"):
        expl = random_explainer.explain(a, a.clone(), attribution=method, value_range=R,
                                        sensitivity=False, patch=32)
        assert expl.distance == 0.0
        attr = expl.attribution
        assert attr.vanishing and np.all(np.isfinite(attr.signed))
        assert np.all(attr.signed == 0)
        # occlusion uses no gradient: it says the images are identical, not that gradients vanish
        said = "identical" if method == "occlusion" else "vanish"
        assert any(said in n.lower() for n in attr.notes)
        for lay in expl.decomposition.layers:
            assert np.all(lay.spatial == 0)
        assert notices.of_code(expl.warnings, notices.IDENTICAL_IMAGES)
        assert any(said in s for s in expl.summary)
        assert expl.repair.half_area is None  # nothing to repair
        json.loads(to_json(expl))  # no NaN sneaks into the JSON


def test_fast_view_skips_slow_parts(random_explainer, pair):
    expl = random_explainer.explain(*pair, attribution=None, sensitivity=False, repair=False,
                                    value_range=R)
    assert expl.attribution is None and expl.sensitivity is None and expl.repair is None
    data = expl.to_dict()
    assert data["attribution"]["method"] is None and data["sensitivity"] == []


def test_swap_explains_the_other_image(random_explainer, pair):
    a, b = pair
    normal = random_explainer.explain(a, b, attribution="saliency", sensitivity=False,
                                      repair=False, value_range=R)
    swapped = random_explainer.explain(a, b, attribution="saliency", sensitivity=False,
                                       repair=False, value_range=R, swap=True)
    assert swapped.distance == pytest.approx(normal.distance, abs=1e-6)
    assert not np.allclose(swapped.attribution.signed, normal.attribution.signed)
    assert notices.of_code(swapped.warnings, notices.ROLES_SWAPPED)
    # the explained image is A: every label says so
    assert swapped.attribution.target == "a" and normal.attribution.target == "b"
    data = swapped.to_dict()
    assert data["explained"] == "a" and data["attribution"]["target"] == "a"
    # activation_a still means image A's features, whichever image is the reference
    for lay_n, lay_s in zip(normal.decomposition.layers, swapped.decomposition.layers,
                            strict=True):
        by_index = {c.index: c for c in lay_n.top_channels}
        for c in lay_s.top_channels:
            if c.index in by_index:
                np.testing.assert_array_equal(c.activation_a, by_index[c.index].activation_a)
                np.testing.assert_array_equal(c.activation_b, by_index[c.index].activation_b)
    small = [smooth_image(48, 48, s) for s in (1, 2)]  # the sensitivity table, cheaper
    full = random_explainer.explain(*small, attribution=None, repair=False, value_range=R,
                                    swap=True)
    assert any("tried on A" in line for line in full.summary)
    assert not any("tried on B" in line for line in full.summary)


def test_unknown_method_fails_before_work(random_explainer, pair):
    with pytest.raises(UnknownOptionError, match="Did you mean 'saliency'"):
        random_explainer.explain(*pair, attribution="salency", value_range=R)


def test_triplet_margin_is_split_exactly(random_explainer):
    ref, a, b = triplet_tensors()  # B differs from REF in two 16 px patches only
    tri = random_explainer.explain_triplet(ref, a, b, attribution="saliency", patch=16,
                                           value_range=R)
    assert tri.distance_a == pytest.approx(random_explainer.distance(ref, a, value_range=R),
                                           abs=1e-6)
    assert tri.closer == "a" and tri.margin > 0
    assert sum(lay.margin for lay in tri.layers) == pytest.approx(tri.margin, abs=1e-9)
    data = json.loads(to_json(tri))
    for key in ("distance_a", "distance_b", "closer", "margin", "layers", "flip"):
        assert key in data
    assert {"name", "distance_a", "distance_b", "margin"} <= set(data["layers"][0])
    flip = tri.flip
    assert flip.exists and flip.repaired == "b"
    # the flip is real: rebuild the repaired loser and score it directly
    repaired = tri.repair.repaired_image(ref, b, flip.area)
    with torch.no_grad():
        d_after = float(random_explainer.model(ref, repaired))
    assert d_after == pytest.approx(flip.distance_after, abs=1e-6)
    assert d_after < tri.distance_a
    assert flip.patches <= 2  # B's two changed patches are all there is to repair
    if flip.patches > 1:  # and it is the smallest greedy one
        assert tri.repair.curve_distance[flip.patches - 1] >= tri.distance_a


def test_triplet_integrated_gradients_add_up_to_each_candidate_s_distance(random_explainer):
    """The triplet's default method (the page's tests use saliency, the cheapest): each
    candidate's map is integrated from REF and adds up to that candidate's own distance."""
    ref, a, b = triplet_tensors()
    tri = random_explainer.explain_triplet(ref, a, b, value_range=R)
    for attr, d in ((tri.attribution_a, tri.distance_a), (tri.attribution_b, tri.distance_b)):
        assert attr.method == "integrated_gradients" and attr.reference == "ref"
        assert attr.distance == pytest.approx(d, abs=1e-6)
        assert attr.completeness == "exact" and attr.relative_gap <= 0.01
        assert float(np.sum(attr.signed)) == pytest.approx(attr.total, rel=1e-6)


def test_triplet_tie(random_explainer):
    ref = smooth_image(64, 64, 30)
    a = smooth_image(64, 64, 31)
    tri = random_explainer.explain_triplet(ref, a, a.clone(), attribution=None, value_range=R)
    assert tri.closer == "tie" and not tri.flip.exists


def test_explanations_identical_alone_and_in_threads(random_explainer):
    pairs = [(smooth_image(48, 48, 40 + i), smooth_image(48, 48, 50 + i)) for i in range(4)]
    methods = ["layer_gradcam", "integrated_gradients", "smoothgrad", "occlusion"]

    def run(i):
        # every run has hooks or plain forwards in flight next to the others; the
        # sensitivity table (the costliest part) runs in two of the four
        return random_explainer.explain(*pairs[i], attribution=methods[i], steps=None
                                        if methods[i] != "integrated_gradients" else 8,
                                        sensitivity=i % 2 == 1, repair=True, patch=24,
                                        value_range=R)

    alone = [run(i) for i in range(4)]
    together = run_concurrently(run, 4)
    for x, y in zip(alone, together, strict=True):
        assert x.distance == y.distance
        np.testing.assert_allclose(x.attribution.signed, y.attribution.signed, atol=1e-6)
        np.testing.assert_allclose(x.repair.curve_distance, y.repair.curve_distance, atol=1e-7)
        if x.sensitivity is not None:
            assert [i.distance for i in x.sensitivity.items] == pytest.approx(
                [i.distance for i in y.sensitivity.items], abs=1e-7)
    assert sum(x.sensitivity is not None for x in together) == 2


def test_distance_of_bad_inputs_are_input_errors(random_explainer):
    with pytest.raises(InputError, match="value_range"):
        random_explainer.distance(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    with pytest.raises(InputError):
        random_explainer.distance(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20),
                                  value_range=R)


def test_refusals_name_the_image(random_explainer, tmp_path):
    from lpips_explain import EmptyInputError, ImageTooSmallError

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = ASSETS / "originals" / "coffee.png"
    with pytest.raises(EmptyInputError, match=r"^Image B \(empty\.png\): "):
        random_explainer.distance(good, empty)
    tiny = tmp_path / "tiny.png"
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tiny)
    with pytest.raises(ImageTooSmallError) as exc:
        random_explainer.explain_triplet(tiny, good, good)
    assert str(exc.value).startswith("The image REF (tiny.png) is 20x20 px")
    assert str(exc.value).count("tiny.png") == 1  # named once, not prefixed twice


def test_option_errors_keep_their_class_and_come_early(random_explainer, pair):
    a, b = pair
    with pytest.raises(UnknownOptionError, match=r"value range.*Did you mean"):
        random_explainer.distance(a, b, value_range="[0,1 ]")
    for seed in (-1, 2**64, "x", 1.5):
        with pytest.raises(InputError, match="seed"):
            Explainer("alex", "0.1", "random", seed=seed)
    big = smooth_image(256, 256, 3)
    with pytest.raises(InputError, match="at least 8 px"):
        random_explainer.explain(big, big, patch=1, value_range=R, attribution="saliency")
    with pytest.raises(InputError, match="steps"):
        random_explainer.explain(a, b, steps=0, value_range=R)


def test_summary_claims_come_from_numbers_not_names(random_explainer, tmp_path):
    from PIL import Image

    src = Image.open(ASSETS / "originals" / "rocket.png").resize((96, 96))
    src.save(tmp_path / "identical_twin.png")
    src.resize((80, 72)).save(tmp_path / "small.png")
    expl = random_explainer.explain(tmp_path / "identical_twin.png", tmp_path / "small.png",
                                    attribution=None, sensitivity=False, repair=False)
    assert expl.distance > 0
    assert not any("pixel-identical" in s for s in expl.summary)
    assert any("resized" in s for s in expl.summary)
    same = random_explainer.explain(tmp_path / "small.png", tmp_path / "small.png",
                                    attribution=None, sensitivity=False, repair=False)
    assert any("pixel-identical" in s for s in same.summary)


def test_triplet_flags_identical_candidates(random_explainer):
    ref, a = smooth_image(64, 64, 60), smooth_image(64, 64, 61)
    tri = random_explainer.explain_triplet(ref, a, a.clone(), attribution=None, value_range=R)
    assert notices.of_code(tri.warnings, notices.IDENTICAL_IMAGES)


def test_combine_parts_equals_one_call(random_explainer):
    a = smooth_image(48, 48, 1)
    b = (a + 0.15 * (smooth_image(48, 48, 2) - 0.5)).clamp(0, 1)
    kw = {"value_range": R, "patch": 16}
    one = random_explainer.explain(a, b, attribution="saliency", **kw)
    base = random_explainer.explain(a, b, attribution=None, sensitivity=False, repair=False,
                                    **kw)
    parts = [random_explainer.explain(a, b, attribution="saliency", sensitivity=False,
                                      repair=False, **kw),
             random_explainer.explain(a, b, attribution=None, repair=False, **kw),
             random_explainer.explain(a, b, attribution=None, sensitivity=False, **kw)]
    combined = random_explainer.combine(base, *parts)
    assert combined.summary == one.summary
    np.testing.assert_array_equal(combined.attribution.signed, one.attribution.signed)
    np.testing.assert_array_equal(combined.repair.curve_distance, one.repair.curve_distance)
    assert combined.sensitivity.rows() == one.sensitivity.rows()
    other = random_explainer.explain(b, a, attribution="saliency", sensitivity=False,
                                     repair=False, **kw)
    with pytest.raises(InputError, match="same images"):
        random_explainer.combine(base, other)


def test_triplet_alignment_notes_use_triplet_names(random_explainer, tmp_path):
    from PIL import Image

    src = Image.open(ASSETS / "originals" / "chelsea.png").resize((96, 96))
    src.save(tmp_path / "ref.png")
    src.save(tmp_path / "a.png")
    src.resize((64, 64)).save(tmp_path / "b.png")
    tri = random_explainer.explain_triplet(tmp_path / "ref.png", tmp_path / "a.png",
                                           tmp_path / "b.png", attribution=None, patch=64)
    notes = " ".join(tri.inputs.align.notes)
    assert "REF (ref.png)" in notes and "C (" not in notes
    assert tri.summary[0].endswith(f"= {tri.margin:+.4f}.")


def test_constant_image_is_flagged(random_explainer):
    grey = torch.full((1, 3, 64, 64), 128 / 255)
    expl = random_explainer.explain(grey, smooth_image(64, 64, 70), attribution=None,
                                    sensitivity=False, repair=False, value_range=R)
    assert [n.text[:7] for n in notices.of_code(expl.warnings, notices.CONSTANT_IMAGE)] == ["Image A"]

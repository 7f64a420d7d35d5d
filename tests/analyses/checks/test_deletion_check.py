"""The per-pair deletion check an explanation carries (``attribution.deletion``): is the shown
map's ranking of regions better than seeded random orders on this pair?

Oracles: distances of hand-repaired images from plain two-image forwards, patch sums by
slicing, the seeded random orders drawn again. The real (published) alex trunk where the
meaning is tested; the seeded random trunk where only structure is.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, assert_clean, installed_trunk, png_bytes, smooth_image
from streamlit.testing.v1 import AppTest

from lpips_explain import Explainer
from lpips_explain.analyses.attribution import DeletionCheck, attribute
from lpips_explain.analyses.checks import faithfulness as fa
from lpips_explain.analyses.pair.summary import describe_deletion, summarize

ASSETS = REPO / "assets"


@pytest.fixture(scope="module")
def real_alex() -> Explainer:
    installed_trunk("alex")  # fails (never skips) when the published trunk is not installed
    ex = Explainer("alex", "0.1")
    assert ex.perceptual, ex.weights_info.reason
    return ex


@pytest.fixture(scope="module")
def jpeg_pair(real_alex) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled default pair (astronaut, JPEG q10) at 128 px: cheap, and real content."""
    manifest = json.loads((ASSETS / "samples.json").read_text())
    pair = next(p for p in manifest["pairs"] if p["id"] == manifest["default_pair"])
    prep = real_alex.prepare(ASSETS / pair["a"], ASSETS / pair["b"])
    a, b = (F.interpolate(t, size=(128, 128), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0, 1) for t in prep.tensors)
    return a, b


def _d(net, a: torch.Tensor, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(net(a, x)[0])  # both images through the trunk: not the batched scorer


def _curve_by_hand(net, a, b, order, patch: int) -> tuple[np.ndarray, float]:
    """(d / d(A, B) after the first k patches of B replaced by A's, k = 0..n; the AUC)."""
    h, w = a.shape[-2:]
    cols = math.ceil(w / patch)
    x = b.clone()
    base = _d(net, a, b)
    dists = [base]
    areas = [0.0]
    done = 0
    for p in order:
        r, c = divmod(int(p), cols)
        sl = (..., slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch))
        x[sl] = a[sl]
        done += x[sl][0, 0].numel()
        dists.append(_d(net, a, x))
        areas.append(done / (h * w))
    y = np.array(dists) / base
    s = np.array(areas)
    return y, float(np.sum((s[1:] - s[:-1]) * (y[1:] + y[:-1]) / 2))


def _order_by_hand(signed: np.ndarray, patch: int) -> np.ndarray:
    h, w = signed.shape
    sums = [signed[r:r + patch, c:c + patch].sum() for r in range(0, h, patch)
            for c in range(0, w, patch)]
    return np.argsort(-np.array(sums), kind="stable")


# --------------------------------------------------------------------------- the real trunk


def test_check_auc_is_the_area_under_real_distances(real_alex, jpeg_pair):
    a, b = jpeg_pair
    net = real_alex.model
    signed = attribute(net, a, b, "saliency").signed
    check = fa.deletion_check(net, a, b, signed, seed=5)
    assert check.patch == fa.check_patch_size((128, 128)) and check.grid == (4, 4)
    order = _order_by_hand(signed, check.patch)
    y, auc = _curve_by_hand(net, a, b, order, check.patch)
    assert check.base_distance == pytest.approx(_d(net, a, b), rel=1e-5)
    np.testing.assert_allclose(check.distance / check.base_distance, y, atol=1e-5)
    assert check.auc == pytest.approx(auc, abs=1e-5)
    # The random orders are the seeded ones, and their AUCs real too (two re-measured).
    rng = np.random.default_rng(5)
    perms = [rng.permutation(16) for _ in range(fa.CHECK_RANDOM_ORDERS)]
    for i in (0, fa.CHECK_RANDOM_ORDERS - 1):
        assert check.random_aucs[i] == pytest.approx(
            _curve_by_hand(net, a, b, perms[i], check.patch)[1], abs=1e-5)
    # The verdict and its counts agree with the numbers.
    assert check.better_than_random == bool(check.auc < check.random_aucs.min())
    assert check.beaten_by == int((check.random_aucs <= check.auc).sum())
    assert check.random_auc == pytest.approx(float(np.mean(check.random_aucs)))
    assert check.random_spread == pytest.approx(float(np.std(check.random_aucs)))
    assert check.evaluations == 1 + 16 * (1 + fa.CHECK_RANDOM_ORDERS)


@pytest.mark.slow  # over 2 s on the 2-core machine: the whole suite only
def test_on_the_real_trunk_a_faithful_map_beats_random_and_its_reverse_does_not(
        real_alex, jpeg_pair):
    a, b = jpeg_pair
    net = real_alex.model
    ig = attribute(net, a, b, "integrated_gradients").signed
    good = fa.deletion_check(net, a, b, ig)
    worst = fa.deletion_check(net, a, b, -ig)  # the same map, least important patch first
    assert good.better_than_random and good.beaten_by == 0
    assert not worst.better_than_random and worst.auc > worst.random_auc
    assert worst.beaten_by == worst.random_aucs.size
    # The explanation's own check is this one, on the map it shows.
    expl = real_alex.explain(a, b, attribution="integrated_gradients", sensitivity=False,
                             repair=False, value_range="[0,1]")
    shown = expl.attribution.deletion
    assert shown.auc == pytest.approx(good.auc, abs=1e-6)
    np.testing.assert_allclose(shown.random_aucs, good.random_aucs, atol=1e-6)
    assert not describe_deletion(expl.attribution, warn_only=True)
    assert not any("no better than random" in s for s in expl.summary)


# --------------------------------------------------------------------------- structure


@pytest.fixture(scope="module")
def small_pair() -> tuple[torch.Tensor, torch.Tensor]:
    a = smooth_image(64, 64, 41)
    b = a.clone()
    b[..., 0:32, 16:48] = (b[..., 0:32, 16:48] + 0.4 * (smooth_image(32, 32, 42) - 0.5)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("size", [(64, 64), (64, 128), (100, 70)])
def test_check_grid_has_about_the_asked_number_of_patches(random_explainer, size):
    patch = fa.check_patch_size(size)
    n = math.ceil(size[0] / patch) * math.ceil(size[1] / patch)
    assert 16 <= n <= 24, (size, patch, n)
    a = smooth_image(*size, 7)
    b = smooth_image(*size, 8)
    check = fa.deletion_check(random_explainer.model, a, b, np.ones(size), random_orders=3)
    assert check.grid == (math.ceil(size[0] / patch), math.ceil(size[1] / patch))
    assert check.evaluations == 1 + n * 4 and check.random_aucs.size == 3
    assert check.area[-1] == pytest.approx(1.0) and check.distance[-1] <= 1e-6


def test_explanation_carries_the_check_of_its_map_in_the_json(random_explainer, small_pair):
    a, b = small_pair
    ex = random_explainer
    for swap in (False, True):
        expl = ex.explain(a, b, attribution="saliency", sensitivity=False, repair=False,
                          value_range="[0,1]", swap=swap)
        attr = expl.attribution
        ref, target = (b, a) if swap else (a, b)
        again = fa.deletion_check(ex.fast, ref, target, attr.signed, seed=ex.seed)
        d = json.loads(json.dumps(expl.to_dict(), allow_nan=False))["attribution"]["deletion"]
        assert {"auc", "random_auc", "random_spread", "better_than_random", "beaten_by",
                "patch", "grid", "evaluations", "seconds"} <= set(d)
        assert d["auc"] == pytest.approx(again.auc, abs=1e-9)
        assert d["random_aucs"] == pytest.approx(list(again.random_aucs), abs=1e-9)
        assert d["random_auc"] == pytest.approx(float(np.mean(d["random_aucs"])))
        assert d["better_than_random"] == (d["auc"] < min(d["random_aucs"]))
        assert d["curve"][0]["distance"] == pytest.approx(expl.distance, rel=1e-5)
        assert "attribution_check" in expl.timings_ms


def test_default_repair_orders_add_the_maps_ranking_when_a_map_is_computed(
        random_explainer, small_pair):
    from lpips_explain.analyses.pair.repair import patch_sums, ranked

    a, b = small_pair
    ex = random_explainer
    expl = ex.explain(a, b, attribution="occlusion", sensitivity=False, repair=True, patch=16,
                      value_range="[0,1]")
    tried = {o.name: o for o in expl.repair.orders_tried}
    assert list(tried) == ["single_gain", "ranking"]
    # The ranking is the shown map's, and the best of the two is shown.
    expected = ranked(patch_sums(expl.attribution.signed, (64, 64), 16))
    assert tried["ranking"].order.tolist() == expected.tolist()
    best = min(tried.values(), key=lambda o: (o.goal_area if o.goal_area is not None
                                              else math.inf, o.auc))
    assert expl.repair.order_name == best.name
    # Without an attribution, single-patch gain alone; a named order is kept as named.
    alone = ex.explain(a, b, attribution=None, sensitivity=False, repair=True, patch=16,
                       value_range="[0,1]")
    assert [o.name for o in alone.repair.orders_tried] == ["single_gain"]
    named = ex.explain(a, b, attribution="saliency", sensitivity=False, repair=True, patch=16,
                       value_range="[0,1]", repair_orders=("single_gain",))
    assert [o.name for o in named.repair.orders_tried] == ["single_gain"]


def test_identical_images_have_no_check(random_explainer, small_pair):
    a, _ = small_pair
    expl = random_explainer.explain(a, a.clone(), attribution="saliency", sensitivity=False,
                                    repair=False, value_range="[0,1]")
    assert expl.attribution.vanishing and expl.attribution.deletion is None
    assert expl.to_dict()["attribution"]["deletion"] is None
    assert describe_deletion(expl.attribution) == []


def test_summary_says_so_with_the_numbers_only_when_no_better_than_random(random_explainer,
                                                                           small_pair):
    a, b = small_pair
    net = random_explainer.model
    attr = attribute(net, a, b, "occlusion")
    good = fa.deletion_check(net, a, b, attr.signed)
    bad = fa.deletion_check(net, a, b, -attr.signed)
    assert good.better_than_random and not bad.better_than_random
    dec = random_explainer.decompose(a, b, value_range="[0,1]")
    lines_bad = summarize(dec, attribution=replace(attr, deletion=bad), perceptual=False)
    lines_good = summarize(dec, attribution=replace(attr, deletion=good), perceptual=False)
    said = [s for s in lines_bad if "no better than random" in s]
    assert len(said) == 1
    assert f"{bad.auc:.3f}" in said[0] and f"lowest {bad.random_min:.3f}" in said[0]
    assert f"{bad.beaten_by} of {bad.random_aucs.size} random orders" in said[0]
    assert not any("random order" in s for s in lines_good)
    # The positive sentence exists for the page, with its own numbers.
    assert f"{good.auc:.3f}" in describe_deletion(replace(attr, deletion=good))[0]


def test_a_check_on_identical_distances_is_never_better_than_random():
    flat = DeletionCheck(16, (4, 4), 0.0, 0.0, np.zeros(8), np.linspace(0, 1, 17),
                         np.zeros(17))
    assert not flat.better_than_random


# --------------------------------------------------------------------------- the page


def _note_script() -> None:
    from dataclasses import replace

    from conftest import smooth_image

    from lpips_explain import Explainer
    from lpips_explain.analyses.attribution import attribute
    from lpips_explain.analyses.checks.faithfulness import deletion_check
    from lpips_explain.ui.explain_where import deletion_note

    ex = Explainer("alex", "0.1", "random", seed=0)
    a = smooth_image(64, 64, 41)
    b = a.clone()
    b[..., 0:32, 16:48] = (b[..., 0:32, 16:48] + 0.4 * (smooth_image(32, 32, 42) - 0.5)).clamp(0, 1)
    attr = attribute(ex.model, a, b, "occlusion")
    for sign in (1.0, -1.0):
        deletion_note(replace(attr, deletion=deletion_check(ex.model, a, b, sign * attr.signed)))


def test_the_note_is_a_warning_only_for_a_map_no_better_than_random(random_explainer,
                                                                    small_pair):
    a, b = small_pair
    net = random_explainer.model
    attr = attribute(net, a, b, "occlusion")
    good = describe_deletion(replace(attr, deletion=fa.deletion_check(net, a, b, attr.signed)))
    bad = describe_deletion(replace(attr, deletion=fa.deletion_check(net, a, b, -attr.signed)))
    at = AppTest.from_function(_note_script, default_timeout=120).run()
    assert_clean(at)
    assert [w.value for w in at.warning] == bad
    assert good[0] in [c.value for c in at.caption]


@pytest.mark.app
def test_explain_page_shows_the_shown_maps_check(random_trunk_env, reference):
    a_png, b_png = png_bytes(1), png_bytes(1, shift=0.3)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
    at.session_state["sb_method"] = "saliency"
    at.run()
    at.file_uploader(key="upload_a").set_value(("a.png", a_png, "image/png"))
    at.file_uploader(key="upload_b").set_value(("b.png", b_png, "image/png"))
    at.run()
    at.segmented_control(key="where_view").set_value("attribution").run()
    assert_clean(at)
    prep = reference.prepare(a_png, b_png)
    ta, tb = prep.tensors
    attr = attribute(reference.model, ta, tb, "saliency", seed=reference.seed)
    check = fa.deletion_check(reference.fast, ta, tb, attr.signed, seed=reference.seed)
    expected = describe_deletion(replace(attr, deletion=check))[0]
    shown = ([w.value for w in at.warning] if not check.better_than_random
             else [c.value for c in at.caption])
    assert expected in shown, (expected, shown)

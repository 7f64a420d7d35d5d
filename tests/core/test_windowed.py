"""core/windowed.py: copies of B with one box from A, scored on windows, equal whole passes.

Oracle: the same copies built pixel by pixel and scored whole by the network (and, for the
repair, the repair's own whole-pass route forced on)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smooth_image

from lpips_explain.analyses.pair import repair as rp
from lpips_explain.analyses.pair.repair import scoring
from lpips_explain.analyses.pair.repair.curves import coarse_steps
from lpips_explain.analyses.pair.repair.patches import patch_boxes
from lpips_explain.core.model import ReferenceScorer, build_lpips
from lpips_explain.core.modes import Mode, ModeNet
from lpips_explain.core.windowed import WindowedScorer, supports


@pytest.fixture(scope="module")
def nets():
    return {(n, v): build_lpips(n, v, "random", seed=0, progress=False)
            for n, v in (("alex", "0.1"), ("vgg", "0.1"), ("alex", "0.0"))}


def _pair(h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = smooth_image(h, w, seed)
    g = torch.Generator().manual_seed(seed + 1)
    b = (a + 0.15 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    return a, b


def _whole(net, a, b, boxes) -> np.ndarray:
    scorer = ReferenceScorer(net, a)
    out = []
    for y0, y1, x0, x1 in boxes:
        x = b.clone()
        x[..., y0:y1, x0:x1] = a[..., y0:y1, x0:x1]
        with torch.no_grad():
            out.append(float(scorer(x)[0]))
    return np.array(out)


@pytest.mark.parametrize("key", [("alex", "0.1"), ("vgg", "0.1"), ("alex", "0.0")])
@pytest.mark.parametrize(("h", "w"), [(96, 96), (75, 110)])
def test_windowed_scores_equal_whole_passes(nets, key, h, w):
    net = nets[key]
    a, b = _pair(h, w, 5)
    # corners, edges, the middle, a 1-pixel box and boxes of different sizes in one batch
    boxes = [(0, 16, 0, 16), (h - 16, h, w - 16, w), (0, 9, w - 23, w), (h - 30, h, 0, 7),
             (40, 56, 33, 49), (50, 51, 60, 61), (10, 45, 20, 30)]
    local = WindowedScorer(net, ReferenceScorer(net, a).ref, b)
    got = local.score(a, boxes).numpy()
    want = _whole(net, a, b, boxes)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
    # the gains (what repairs rank by) too, against their own scale
    with torch.no_grad():
        base = float(ReferenceScorer(net, a)(b)[0])
    gains, want_gains = base - got, base - want
    assert np.abs(want_gains).max() > 1e-4
    np.testing.assert_allclose(gains, want_gains, rtol=0, atol=1e-4 * np.abs(want_gains).max())
    assert local.distance() == pytest.approx(base, rel=1e-5)
    assert 0 < local.cost(boxes) < 1


def test_boxes_outside_the_image_and_other_trunks_are_refused(nets):
    net = nets[("alex", "0.1")]
    a, b = _pair(64, 64, 2)
    local = WindowedScorer(net, ReferenceScorer(net, a).ref, b)
    with pytest.raises(ValueError, match="not inside the image"):
        local.score(a, [(0, 70, 0, 8)])
    assert local.score(a, []).numel() == 0
    squeeze = build_lpips("squeeze", "0.1", "random", seed=0, progress=False)
    assert supports(net) and not supports(squeeze)  # Fire modules: scored whole
    with pytest.raises(ValueError, match="score the copies whole"):
        WindowedScorer(squeeze, squeeze.encode(a), b)
    # a fast mode's network runs its passes elsewhere: never windowed
    fast = ModeNet(net, Mode("fp32", "cpu"))
    assert not supports(fast)
    with pytest.raises(ValueError, match="exact fp32 model only"):
        WindowedScorer(fast, net.encode(a), b)


def _count_whole(monkeypatch, net) -> list[int]:
    seen: list[int] = []
    real = net.score_encoded

    def counting(ref, x):
        seen.append(int(x.shape[0]))
        return real(ref, x)

    monkeypatch.setattr(net, "score_encoded", counting)
    return seen


@pytest.mark.parametrize("orders", [("single_gain",),
                                    pytest.param(("greedy",), marks=pytest.mark.slow)])
def test_repair_on_windows_equals_repair_on_whole_passes(nets, monkeypatch, orders):
    net = nets[("alex", "0.1")]
    a, b = _pair(256, 256, 9)
    kw = {"patch": 64, "orders": orders, "greedy_budget": 40}
    windowed = rp.repair(net, a, b, **kw)
    seen = _count_whole(monkeypatch, net)
    monkeypatch.setattr(scoring, "LOCAL_MAX_COST", -1.0)  # force the whole-pass route
    whole = rp.repair(net, a, b, **kw)
    monkeypatch.undo()
    seen_windowed = _count_whole(monkeypatch, net)
    again = rp.repair(net, a, b, **kw)
    # the windowed route scored only B (and the curve) whole, not the 16 single patches
    assert sum(seen) - sum(seen_windowed) >= 16
    for r in (windowed, again):
        np.testing.assert_allclose(r.gains, whole.gains, rtol=0,
                                   atol=1e-4 * np.abs(whole.gains).max())
        assert r.base_distance == pytest.approx(whole.base_distance, rel=1e-6)
        assert list(r.order) == list(whole.order)
        np.testing.assert_allclose(r.curve_distance, whole.curve_distance, rtol=1e-5)


def test_small_images_keep_whole_passes(nets, monkeypatch):
    """Where the windows cover most of each map, whole passes are cheaper and are used."""
    net = nets[("alex", "0.1")]
    a, b = _pair(64, 64, 4)
    boxes = patch_boxes((64, 64), 32, (2, 2))
    assert WindowedScorer(net, net.encode(a), b).cost(boxes) > rp.LOCAL_MAX_COST
    seen = _count_whole(monkeypatch, net)
    rp.repair(net, a, b, patch=32)
    assert sum(seen) >= 1 + 4  # B and the four single patches went through whole passes


@pytest.mark.parametrize("key", [("alex", "0.1"), ("vgg", "0.1"), ("alex", "0.0")])
def test_a_chain_of_takes_equals_whole_passes_and_leaves_its_source_alone(nets, key):
    """take() keeps each copy: the k-th distance is the image with the first k boxes from A,
    scored whole; copy() gives a chain of its own (the scorer it came from is unchanged)."""
    net = nets[key]
    a, b = _pair(96, 120, 11)
    start = WindowedScorer(net, ReferenceScorer(net, a).ref, b)
    before = start.distance()
    boxes = [(0, 30, 0, 40), (60, 96, 80, 120), (30, 60, 40, 80), (31, 33, 0, 120)]
    chain = start.copy()
    got = [chain.take(a, box) for box in boxes]
    x, want = b.clone(), []
    scorer = ReferenceScorer(net, a)
    for y0, y1, x0, x1 in boxes:
        x[..., y0:y1, x0:x1] = a[..., y0:y1, x0:x1]
        with torch.no_grad():
            want.append(float(scorer(x)[0]))
    assert len(set(want)) == len(want)  # every box changes the distance
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
    assert chain.distance() == got[-1]
    # after the chain, a one-box score starts from the last copy, not from B
    extra = (70, 80, 0, 20)
    x[..., 70:80, 0:20] = a[..., 70:80, 0:20]
    with torch.no_grad():
        assert float(chain.score(a, [extra])[0]) == pytest.approx(float(scorer(x)[0]), rel=1e-5)
    assert start.distance() == before
    assert float(start.score(a, [boxes[0]])[0]) == pytest.approx(want[0], rel=1e-5)


@pytest.mark.slow  # over 2 s on the 2-core machine (2026-12-07 16:20): the whole suite only
def test_deletion_curves_on_chains_equal_whole_passes(nets, monkeypatch):
    """order_curves runs each order as a chain of windowed steps where windows are cheap; its
    curves are the whole-pass route's, and no point goes through a whole pass."""
    net = nets[("alex", "0.1")]
    a, b = _pair(256, 384, 3)
    rng = np.random.default_rng(0)
    orders = [rng.permutation(24) for _ in range(2)]
    seen = _count_whole(monkeypatch, net)
    base, chained = rp.order_curves(net, a, b, orders, patch=64)
    assert sum(seen) == 0  # B and every point on windows
    monkeypatch.setattr(scoring, "LOCAL_MAX_COST", -1.0)  # force the whole-pass route
    whole_base, whole = rp.order_curves(net, a, b, orders, patch=64)
    # B once, then every point but the last of each order: with all 24 patches taken the
    # copy is A, whose distance is 0 without a pass
    assert sum(seen) == 1 + 23 * 2
    assert all(w_dist[-1] == 0.0 for _, w_dist in whole)
    assert base == pytest.approx(whole_base, rel=1e-6)
    for (area, dist), (w_area, w_dist) in zip(chained, whole, strict=True):
        np.testing.assert_array_equal(area, w_area)
        assert area[0] == 0 and area[-1] == 1 and len(dist) == 25
        np.testing.assert_allclose(dist, w_dist, rtol=1e-5, atol=1e-7)


def test_small_images_keep_whole_passes_for_deletion_curves(nets, monkeypatch):
    """Where a walk would cost more than whole passes, every point is a whole pass."""
    net = nets[("alex", "0.1")]
    a, b = _pair(96, 96, 4)
    seen = _count_whole(monkeypatch, net)
    rp.order_curves(net, a, b, [np.arange(9)], patch=32)
    assert sum(seen) == 1 + 8  # the last point is A: 0 without a pass


@pytest.mark.slow  # about 3 s: the whole suite only
def test_the_refining_walk_finds_the_goal_step_of_the_whole_pass_route(nets, monkeypatch):
    """repair(max_points=...) walks the bracket around the goal on windows (one patch more a
    step, up to the first point reaching it) where that costs fewer whole passes than the
    refining rounds: the same goal step, the same distances where both measured."""
    net = nets[("alex", "0.1")]
    a, b = _pair(384, 384, 6)
    kw = {"patch": 32, "max_points": 8}
    seen = _count_whole(monkeypatch, net)
    walked = rp.repair(net, a, b, **kw)
    walked_passes = sum(seen)
    # the curve's whole-pass route (the single patches stay on windows either way)
    monkeypatch.setattr(scoring.RepairBatches, "walk_cost", lambda self, boxes: None)
    whole = rp.repair(net, a, b, **kw)
    whole_curve = sum(seen) - walked_passes
    # whole passes for the coarse points only (B's pass is the windows'; the last, every
    # patch taken, is A: 0 without a pass), then the walk
    assert walked_passes == len(coarse_steps(144, 8)) - 2 < whole_curve
    assert walked.curve_distance[-1] == 0.0 and walked.curve_steps[-1] == 144
    w_steps, o_steps = list(walked.curve_steps), list(whole.curve_steps)
    assert walked.orders_tried[0].goal_steps == whole.orders_tried[0].goal_steps
    assert len(w_steps) > len(o_steps) - 4  # the walk measured its bracket densely
    common = sorted(set(w_steps) & set(o_steps))
    assert len(common) >= 8
    wd = dict(zip(w_steps, walked.curve_distance, strict=True))
    od = dict(zip(o_steps, whole.curve_distance, strict=True))
    np.testing.assert_allclose([wd[k] for k in common], [od[k] for k in common], rtol=1e-5)


def test_a_local_edit_scores_only_the_patches_it_touched(nets, monkeypatch):
    """B is A with one 40x40 square changed: the repair runs windows only for the patches
    that square touches, every other patch's gain is 0 exactly (its copy is B), and every
    point with the square's patches all taken is 0 exactly (its copy is A), with no pass.
    The same gains and curve as the whole-pass route."""
    net = nets[("alex", "0.1")]
    a = smooth_image(192, 256, 8)
    b = a.clone()
    b[..., 70:110, 100:140] = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    touched = {r * 8 + c for r in (2, 3) for c in (3, 4)}  # 32 px patches, 6 x 8 grid
    boxes_seen: list[int] = []
    real_score = WindowedScorer.score

    def counting(self, source, boxes):
        boxes_seen.append(len(boxes))
        return real_score(self, source, boxes)

    monkeypatch.setattr(WindowedScorer, "score", counting)
    whole_seen = _count_whole(monkeypatch, net)
    got = rp.repair(net, a, b, patch=32, max_points=8)
    assert sum(boxes_seen) == len(touched)  # the single patches: the square's four only
    gains = got.gains.ravel()
    assert set(np.flatnonzero(gains != 0.0)) <= touched
    assert np.all(gains[[i for i in range(48) if i not in touched]] == 0.0)
    # the curve: past the square's patches the copy is A
    first_zero = int(np.flatnonzero(got.curve_distance == 0.0)[0])
    assert got.curve_steps[first_zero] <= len(touched)
    assert np.all(got.curve_distance[first_zero:] == 0.0)
    assert sum(whole_seen) < len(coarse_steps(48, 8)) - 1  # coarse points past it: no pass

    # the whole-pass route (windows and skips off) gives the same numbers
    monkeypatch.setattr(scoring, "LOCAL_MAX_COST", -1.0)
    monkeypatch.setattr(scoring, "_moves", lambda a, image, box: True)
    with torch.no_grad():
        scorer = ReferenceScorer(net, a)
        want = np.array([float(scorer(b)[0]) - float(scorer(x)[0]) for x in (
            torch.where(torch.from_numpy(np.kron(np.eye(48)[i].reshape(6, 8),
                                                 np.ones((32, 32))) > 0), a, b)
            for i in sorted(touched))])
    np.testing.assert_allclose(gains[sorted(touched)], want, rtol=1e-5, atol=1e-8)
    whole = rp.repair(net, a, b, patch=32, max_points=8)
    assert whole.orders_tried[0].goal_steps == got.orders_tried[0].goal_steps
    np.testing.assert_allclose(whole.gains.ravel(), gains, rtol=1e-5, atol=1e-8)

"""The Explain page's parts (ui/explain.py) as engine calls: what each computes, outside
Streamlit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import smooth_image

from lpips_explain.analyses.pair.repair import REPAIR_POINTS
from lpips_explain.errors import InputError
from lpips_explain.output import imaging
from lpips_explain.ui import controls, explain


@pytest.mark.slow  # over 2 s on the 2-core machine (2026-12-07 16:20): the whole suite only
def test_the_page_s_repair_is_the_engine_s_on_fewer_points_with_the_same_goal(
        random_explainer):
    a = smooth_image(192, 256, 3)
    b = (a + 0.2 * (smooth_image(192, 256, 4) - 0.5)).clamp(0, 1)
    opts = dataclasses.replace(controls.default_options(), patch=16)  # 12 x 16 patches
    prep = random_explainer.prepare(a, b, value_range="[0,1]")
    page = explain.compute_part(random_explainer, prep, opts, False, "repair", None).repair

    def engine(points: int):
        return random_explainer.explain(a, b, value_range="[0,1]", attribution=None,
                                        sensitivity=False, equivalents=False, patch=16,
                                        repair_points=points).repair

    same, full = engine(explain.APP_REPAIR_POINTS), engine(REPAIR_POINTS)
    assert explain.APP_REPAIR_POINTS < REPAIR_POINTS
    assert page.curve_steps.tolist() == same.curve_steps.tolist()
    assert page.curve_distance.tolist() == same.curve_distance.tolist()
    # Fewer trunk passes than the CLI's curve, every point a distance the CLI's run finds
    # too where both evaluated the same step, and (the curve falls monotonically near the
    # goal here) the same goal step and headline.
    assert page.orders_tried[0].evaluations < full.orders_tried[0].evaluations
    full_at = dict(zip(full.curve_steps.tolist(), full.curve_distance.tolist(), strict=True))
    shared = [k for k in page.curve_steps.tolist() if k in full_at]
    assert len(shared) >= 3
    for k, d in zip(page.curve_steps.tolist(), page.curve_distance.tolist(), strict=True):
        if k in full_at:
            assert abs(d - full_at[k]) <= 1e-6 * max(full.base_distance, 1e-9)
    assert page.half_area == full.half_area and page.headline == full.headline
    assert f"the {len(page.curve_steps)} evaluated steps of 193" in " ".join(page.notes)


def test_parts_reuse_the_page_s_breakdown_and_refuse_another_pair_s(random_explainer,
                                                                    monkeypatch):
    a = smooth_image(96, 128, 5)
    b = (a + 0.2 * (smooth_image(96, 128, 6) - 0.5)).clamp(0, 1)
    opts = controls.default_options()
    prep = random_explainer.prepare(a, b, value_range="[0,1]")
    fast = explain.compute_part(random_explainer, prep, opts, False, "breakdown", None)
    calls = []
    real = type(random_explainer)._decompose
    monkeypatch.setattr(type(random_explainer), "_decompose",
                        lambda self, *args, **kw: calls.append(1) or real(self, *args, **kw))
    own = explain.compute_part(random_explainer, prep, opts, False, "equivalents", None)
    assert calls == [1]  # without a breakdown the part runs its own
    reused = explain.compute_part(random_explainer, prep, opts, False, "equivalents", None,
                                  fast)
    assert calls == [1]  # with one, the trunk does not run over both images again
    assert reused.decomposition is fast.decomposition
    assert "decompose" not in reused.timings_ms and "decompose" in own.timings_ms
    # The same part: the equivalents search aims at the same distance and finds the same.
    assert [e.to_dict() for e in reused.equivalents] == [e.to_dict() for e in own.equivalents]
    joined = explain.join(fast, [reused])
    assert joined.equivalents == reused.equivalents and joined.decomposition is fast.decomposition
    # A breakdown of another pair, or of the other roles, is refused before any work.
    other = random_explainer.prepare(b, a, value_range="[0,1]")
    with pytest.raises(InputError, match="same images"):
        explain.compute_part(random_explainer, other, opts, False, "repair", None, fast)
    with pytest.raises(InputError, match="same roles"):
        explain.compute_part(random_explainer, prep, opts, True, "repair", None, fast)


def test_the_card_draws_large_photographs_at_display_size_and_small_ones_unchanged():
    rng = np.random.default_rng(0)
    edges = (0.25, 0.25, 0.5, 0.5)
    small = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    heat = rng.random((200, 300))
    # At most CARD_SIDE a side: the very image the page drew before, pixel for pixel.
    before = imaging.outline(imaging.overlay_image(small, heat, zmax=0.9), edges)
    assert np.array_equal(explain.card_map(small, heat, edges, 0.9), before)
    big = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    big_heat = np.zeros((1500, 2000))
    big_heat[:750, :1000] = 1.0  # all the distance in the top-left quarter
    shown = explain.card_map(big, big_heat, edges, 1.0)
    assert shown.shape == (360, 480, 3)  # 2000 px wide -> 480, the aspect kept
    # The map survives the averaging: coloured where the distance is, grey elsewhere.
    grey = np.ptp(shown[300:, 300:].astype(int), axis=2).max()
    coloured = np.ptp(shown[20:150, 20:100].astype(int), axis=2).mean()
    assert grey == 0 and coloured > 30

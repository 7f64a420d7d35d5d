"""The "where" map over the photo: legible (grey photo, map fading in with its value), on a
stated scale that compares across pairs on the real trunk, and drawn with the same pixels and
colour bar by the app, the compare layer and the PNG summary."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import ASSETS
from PIL import Image

from lpips_explain.analyses.pair import map_scale as ms
from lpips_explain.errors import InputError
from lpips_explain.explainer import Explainer
from lpips_explain.output import figures as plots
from lpips_explain.output import imaging, palette, static

H, W = 48, 64


def _photo(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (H, W, 3)).copy()


def _ramp() -> np.ndarray:
    """A map rising from 0 (left) to 1 (right)."""
    return np.broadcast_to(np.linspace(0.0, 1.0, W), (H, W)).copy()


def _saturation(px: np.ndarray) -> float:
    """HSV saturation: 0 for a grey, 1 for a pure colour."""
    top = int(px.max())
    return (top - int(px.min())) / top if top else 0.0


def _decoded(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert(
        "RGB"))


def _bar_trace(fig: go.Figure) -> go.Scatter:
    return next(t for t in fig.data if isinstance(t, go.Scatter) and t.marker.showscale)


def _bar_rgb(scale) -> np.ndarray:
    return np.array([[int(v) for v in c[4:-1].split(",")] for _, c in scale], np.uint8)


# --- legibility ------------------------------------------------------------------------------


def test_overlay_is_grey_where_nothing_happens_and_saturated_at_the_maximum():
    # An orange photo: the colour that made the astronaut's suit read as "hot".
    img = _photo((230, 110, 30))
    out = imaging.overlay_image(img, _ramp(), opacity=0.8)
    low, mid, high = out[H // 2, 0], out[H // 2, W // 2], out[H // 2, -1]
    assert _saturation(low) == 0  # value 0: the photo only, in grey, none of its orange
    assert low.tolist() == imaging.grey_photo(img)[H // 2, 0].tolist()
    assert _saturation(low) < _saturation(mid) < _saturation(high)
    # further from the photo's grey as the value grows: more opaque
    base = imaging.grey_photo(img)[H // 2, 0].astype(int)
    shifts = [int(np.abs(px.astype(int) - base).sum()) for px in (low, mid, high)]
    assert shifts[0] == 0 < shifts[1] < shifts[2]
    alpha = imaging.fade_alpha(np.array([0.0, 0.5, 1.0]))
    assert alpha[0] == 0 and alpha[0] < alpha[1] < alpha[2] == 1


def test_signed_overlay_is_grey_at_zero_and_coloured_at_both_ends():
    img = _photo((230, 110, 30))
    z = np.broadcast_to(np.linspace(-1.0, 1.0, W - 1), (H, W - 1)).copy()
    out = imaging.overlay_image(img[:, : W - 1], z, symmetric=True)
    centre, lo, hi = out[0, (W - 1) // 2], out[0, 0], out[0, -1]
    assert _saturation(centre) == 0
    assert hi[0] > hi[2] and lo[2] > lo[0]  # red raises, blue lowers


# --- the scale ----------------------------------------------------------------------------------


def test_nice_limit_rounds_up_to_two_digits():
    for v, want in ((0.8851, 0.89), (0.0123, 0.013), (1.3, 1.3), (12.01, 13.0)):
        assert ms.nice_limit(v) == pytest.approx(want)
        assert ms.nice_limit(v) >= v


def test_shipped_table_covers_the_published_trunks_and_their_layers(random_explainer):
    table = ms.load_table()["tables"]
    for net in ("alex", "vgg"):
        entry = table[ms.key(net, "0.1")]
        assert entry[ms.SUMMED] > 0 and entry["pairs"] > 10
        assert entry["max"] >= entry[ms.SUMMED]  # a percentile, not the maximum
    layers = [lay.name for lay in random_explainer.explain(
        _photo((90, 90, 90)), _photo((100, 90, 90)), attribution=None, sensitivity=False,
        repair=False).decomposition.layers]
    assert sorted(table["alex/0.1"]["layers"]) == sorted(layers)


def test_fixed_scale_gives_equal_values_equal_colours_across_pairs():
    img = _photo((120, 140, 90))
    a = np.full((H, W), 0.1)
    a[10:20, 10:20] = 0.3
    b = np.full((H, W), 0.3)
    b[30:40, 30:40] = 0.8  # a pair with a much hotter spot elsewhere
    fixed = [ms.map_scale(m, "alex", "0.1", perceptual=True) for m in (a, b)]
    assert fixed[0].fixed and fixed[0].limit == fixed[1].limit
    ca = imaging.overlay_image(img, a, zmax=fixed[0].limit)[15, 15]
    cb = imaging.overlay_image(img, b, zmax=fixed[1].limit)[5, 5]  # both at value 0.3
    assert ca.tolist() == cb.tolist()
    # On each pair's own scale the same value gets different colours (the old behaviour).
    own = [ms.map_scale(m, "alex", "0.1", perceptual=False, reason="random") for m in (a, b)]
    assert not own[0].fixed and own[0].limit == 0.3 and own[1].limit == 0.8
    assert (imaging.overlay_image(img, a, zmax=own[0].limit)[15, 15].tolist()
            != imaging.overlay_image(img, b, zmax=own[1].limit)[5, 5].tolist())


def test_colour_bar_range_is_the_one_the_caption_states(random_explainer):
    rng = np.random.default_rng(0)
    a = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    expl = random_explainer.explain(a, b, attribution=None, sensitivity=False, repair=False)
    dec = expl.decomposition
    img = imaging.as_uint8_image(expl.explained)
    scale = ms.scale_for(expl)
    assert not scale.fixed  # a random trunk: the pair's own maximum, said so
    heat = dec.spatial_map(None, "bilinear")
    assert scale.limit == pytest.approx(float(heat.max()))
    fig = plots.spatial_map_figure(dec, img, scale=scale)
    bar = _bar_trace(fig)
    assert bar.marker.cmin == 0 and bar.marker.cmax == pytest.approx(scale.limit)
    cap = plots.caption_of(fig)
    assert f"0 to its maximum {scale.limit:.3g}" in cap and "own scale" in cap
    fixed = ms.MapScale(0.89, True, "alex", "0.1", ms.SUMMED, "test")
    fig = plots.spatial_map_figure(dec, img, scale=fixed)
    assert _bar_trace(fig).marker.cmax == pytest.approx(0.89)
    assert "fixed scale 0 to 0.89 for alex v0.1" in plots.caption_of(fig)
    layer = dec.layers[2].name
    fig = plots.spatial_map_figure(dec, img, layer=layer, upsample="none",
                                   scale=ms.scale_for(expl, layer, "none"))
    assert _bar_trace(fig).marker.cmax == pytest.approx(float(dec.layers[2].spatial.max()))
    assert f"layer {layer}" in plots.caption_of(fig)


# --- the hottest window ----------------------------------------------------------------------


def test_hottest_window_is_the_best_window_by_brute_force():
    rng = np.random.default_rng(3)
    heat = rng.random((24, 32)) * 0.1
    heat[14:20, 20:28] += 1.0  # the hot spot, bottom right
    hot = ms.hottest_window(heat)
    assert (hot.height, hot.width) == (6, 8) and hot.area == pytest.approx(48 / 768)
    sums = {(t, left): heat[t:t + 6, left:left + 8].sum()
            for t in range(24 - 6 + 1) for left in range(32 - 8 + 1)}
    best = max(sums, key=sums.get)
    assert (hot.top, hot.left) == best == (14, 20)
    assert hot.share == pytest.approx(sums[best] / heat.sum())
    x0, y0, x1, y1 = hot.edges
    assert (x0, y0, x1, y1) == pytest.approx((20 / 32, 14 / 24, 28 / 32, 20 / 24))
    with pytest.raises(InputError):
        ms.hottest_window(heat, fraction=0)


def test_outline_draws_the_box_edges_and_nothing_inside():
    img = _photo((120, 120, 120))
    out = imaging.outline(img, (0.25, 0.25, 0.75, 0.75))
    changed = np.any(out != img, axis=2)
    assert changed[H // 4, W // 2] and changed[H // 2, W // 4]  # top and left edges
    assert not changed[H // 2, W // 2]  # the inside shows the map
    assert not changed[2, 2] and not changed[-2, -2]  # the outside too
    assert out[H // 4, W // 2].tolist() == [0x1b, 0x1b, 0x22]  # the dark line


def test_spatial_map_figure_outlines_the_hottest_window(random_explainer):
    rng = np.random.default_rng(2)
    a = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    b = a.copy()
    b[:16, -16:] = 255 - b[:16, -16:]  # only the top-right corner changes
    expl = random_explainer.explain(a, b, attribution=None, sensitivity=False, repair=False)
    fig = plots.spatial_map_figure(expl.decomposition, imaging.as_uint8_image(expl.explained))
    rects = [sh for sh in fig.layout.shapes if sh.type == "rect"]
    assert rects
    centre_x = (rects[0].x0 + rects[0].x1) / 2
    centre_y = (rects[0].y0 + rects[0].y1) / 2
    assert centre_x > W / 2 and centre_y < H / 2  # the box sits on the changed corner
    assert "The box" in plots.caption_of(fig)


# --- one mapping everywhere -------------------------------------------------------------------


def test_app_figure_png_and_compare_layer_draw_the_same_overlay():
    rng = np.random.default_rng(1)
    img = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    heat = rng.random((H, W)) * 0.7
    want = imaging.overlay_image(img, heat, zmax=0.5, opacity=0.8)
    # the app's plotly figure draws exactly these pixels (lossless PNG) ...
    fig = plots.heatmap_overlay(img, heat, title=None, zmax=0.5, opacity=0.8)
    photo = next(t for t in fig.data if isinstance(t, go.Image))
    assert np.array_equal(_decoded(photo.source), want)
    hover = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert np.array_equal(np.asarray(hover.z), heat)  # hover answers with the true values
    # ... and the PNG summary's map panel the same pixels and the same colour bar.
    mfig = static._new_figure(4, 3)
    ax = mfig.add_subplot()
    bar = static._map_axis(mfig, ax, img, heat, "t", cmap=palette.AMOUNT, zmax=0.5)
    assert np.array_equal(np.asarray(ax.images[0].get_array()), want)
    app_bar = _bar_rgb(_bar_trace(fig).marker.colorscale)
    mappable = bar.mappable
    assert mappable.norm.vmin == 0 and mappable.norm.vmax == 0.5
    t = np.linspace(0, 1, len(app_bar))
    png_bar = (np.asarray(mappable.cmap(t))[:, :3] * 255).round().astype(int)
    assert np.abs(png_bar - app_bar.astype(int)).max() <= 2
    # The compare view's layer: the same colours and alpha, over the photo turned grey.
    layer = imaging.map_rgba(heat, fade=True, zmax=0.5).astype(float)
    alpha = 0.8 * layer[..., 3:] / 255
    blended = (1 - alpha) * imaging.grey_photo(img) + alpha * layer[..., :3]
    assert np.abs(blended - want).max() <= 2


def test_attribution_map_is_drawn_over_the_grey_photo_too(full_explanation):
    attr = full_explanation.attribution
    img = imaging.as_uint8_image(full_explanation.explained)
    fig = plots.attribution_figure(attr, img, view="signed")
    drawn = _decoded(next(t for t in fig.data if isinstance(t, go.Image)).source)
    signed = np.asarray(attr.signed, dtype=np.float64)
    m = imaging.shared_limit(signed, symmetric=True)
    assert np.array_equal(drawn, imaging.overlay_image(img, signed, symmetric=True, zmax=m))
    assert not np.array_equal(drawn, imaging.overlay_image(img, signed, symmetric=True, zmax=m,
                                                         grey=False))


# --- the real trunk -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(real_alex) -> Explainer:
    return real_alex


def _sample(ex: Explainer, sample_id: str):
    pairs = {p["id"]: p for p in json.loads((ASSETS / "samples.json").read_text())["pairs"]}
    p = pairs[sample_id]
    return ex.explain(ASSETS / p["a"], ASSETS / p["b"], attribution=None, sensitivity=False,
                      repair=False)


def test_real_trunk_maps_compare_on_one_scale(real):
    blur, shift = _sample(real, "coffee_blur"), _sample(real, "rocket_shift")
    assert blur.distance > 1.5 * shift.distance
    scales = [ms.scale_for(e) for e in (blur, shift)]
    assert all(s.fixed for s in scales) and scales[0].limit == scales[1].limit
    assert scales[0].limit == ms.load_table()["tables"]["alex/0.1"][ms.SUMMED]

    def coverage(expl, limit: float) -> float:
        """The mean opacity of the map over the photo: how alarming it looks."""
        heat = expl.decomposition.spatial_map(None, "bilinear")
        return float(imaging.fade_alpha(np.clip(heat / limit, 0, 1)).mean())

    # On the fixed scale the smaller distance looks calmer, by more than on each pair's own
    # maximum (where both reach the top colour somewhere).
    fixed_ratio = coverage(blur, scales[0].limit) / coverage(shift, scales[1].limit)
    own = [float(e.decomposition.spatial_map(None, "bilinear").max()) for e in (blur, shift)]
    own_ratio = coverage(blur, own[0]) / coverage(shift, own[1])
    assert fixed_ratio > 1.3 and fixed_ratio > 1.2 * own_ratio
    hottest = [imaging.fade_alpha(np.array([m / scales[0].limit]))[0] for m in own]
    assert hottest[0] > hottest[1]  # the blur's worst spot is drawn stronger than the shift's
    fig = plots.spatial_map_figure(blur.decomposition, imaging.as_uint8_image(blur.explained),
                                   scale=scales[0])
    assert f"fixed scale 0 to {scales[0].limit:.2g} for alex v0.1" in plots.caption_of(fig)

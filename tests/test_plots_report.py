"""Tests of lpips_explain.plots and lpips_explain.report: a random-trunk explanation, stand-ins."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import plotly.offline
import pytest
import torch
from PIL import Image

from lpips_explain.analyses.triplet import Flip, TripletExplanation
from lpips_explain.core.decompose import decompose_encoded
from lpips_explain.output import figures as plots
from lpips_explain.output import report, static

H = W = 64
# A src= or href= attribute that loads something from the network (quoted or not).
EXTERNAL_REF = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


# ----------------------------------------------------------------------------- stand-ins


def fake_attribution(target: str = "b", *, vanishing: bool = False) -> SimpleNamespace:
    rng = np.random.default_rng(3)
    per_channel = rng.normal(size=(3, H, W))
    signed = per_channel.sum(0)
    magnitude = np.abs(per_channel).sum(0)
    ns = SimpleNamespace(
        method="integrated_gradients", params={"steps": 8}, target=target,
        per_channel=per_channel, signed=signed, magnitude=magnitude,
        positive=np.clip(signed, 0, None), total=float(signed.sum()), distance=0.25,
        completeness_gap=float("nan"), relative_gap=np.float64(np.inf), vanishing=vanishing,
        notes=("a note",))
    ns.to_dict = lambda: {"method": ns.method, "params": ns.params, "target": ns.target,
                          "sum": np.float32(ns.total), "distance": ns.distance,
                          "completeness_gap": ns.completeness_gap,
                          "relative_gap": ns.relative_gap, "vanishing": np.bool_(vanishing),
                          "notes": list(ns.notes)}
    return ns


def fake_item(transform: str, strength: float, change: float, geometric: bool,
              base: float) -> SimpleNamespace:
    return SimpleNamespace(transform=transform, label=transform.title(), unit="px",
                           strength=strength, distance=base + change, change=change,
                           psnr=None if change == 0 else 30.0, ssim=0.9, geometric=geometric)


def fake_sensitivity(base: float) -> SimpleNamespace:
    items = (fake_item("blur", 1.0, 0.05, False, base), fake_item("noise", 0.1, -0.01, False, base))
    geometric = (fake_item("shift", 1.0, 0.02, True, base),)
    sweep = SimpleNamespace(transform="blur", label="Blur", unit="px",
                            strengths=np.array([0.0, 1.0, 2.0]),
                            distances=np.array([base, base + 0.05, base + 0.1]),
                            psnr=np.array([np.nan, 30.0, 25.0]), ssim=np.array([1.0, 0.9, 0.8]))
    sens = SimpleNamespace(base_distance=base, items=items, geometric=geometric,
                           sweeps=(sweep,), most_sensitive="blur")
    sens.rows = lambda: [{"transform": i.transform, "strength": i.strength,
                          "distance": i.distance, "psnr": i.psnr} for i in items + geometric]
    sens.to_dict = lambda: {"base_distance": base, "items": sens.rows(), "sweeps": [
        {"strengths": sweep.strengths, "psnr": sweep.psnr}]}
    sweep.to_dict = lambda: {"transform": "blur", "strengths": sweep.strengths,
                             "distances": sweep.distances, "psnr": sweep.psnr,
                             "ssim": sweep.ssim}
    return sens


def fake_repair(base: float) -> SimpleNamespace:
    area = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    dist = np.array([base, 0.4 * base, 0.45 * base, 0.1 * base, 0.0])  # one rise: 0.4 -> 0.45
    gains = np.array([[0.3, 0.1], [0.05, 0.02]]) * base
    rep = SimpleNamespace(
        patch=32, grid=(2, 2), base_distance=base, gains=gains, order=np.array([0, 1, 2, 3]),
        curve_area=area, curve_distance=dist, curve_steps=np.arange(5), non_monotonic=True,
        half_area=0.25, headline="Half of the distance lies in 25% of the image area.",
        notes=("not monotonic",))
    rep.gain_map = lambda size: np.kron(gains, np.ones((size[0] // 2, size[1] // 2)))
    rep.to_dict = lambda: {"patch": 32, "curve": [{"area": a, "distance": d}
                                                  for a, d in zip(area, dist, strict=True)]}
    return rep


# ----------------------------------------------------------------------------- fixtures


def _images(seed: int, n: int) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        coarse = torch.rand(1, 3, 8, 8, generator=g)
        t = torch.nn.functional.interpolate(coarse, size=(H, W), mode="bilinear")
        out.append((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def explainer():
    from lpips_explain import Explainer

    return Explainer(backbone_weights="random")


@pytest.fixture(scope="module")
def fast(explainer):
    a, b = _images(0, 2)
    return explainer.explain(a, b, attribution=None, sensitivity=False, repair=False)


@pytest.fixture(scope="module")
def full(fast):
    d = fast.distance
    return dataclasses.replace(fast, attribution=fake_attribution(),
                               sensitivity=fake_sensitivity(d), repair=fake_repair(d))


@pytest.fixture(scope="module")
def triplet(explainer):
    prep = explainer.prepare(*_images(1, 3), labels=["REF", "A", "B"])
    ref, a, b = prep.tensors
    with torch.no_grad():
        ref_feats = explainer.model.encode(ref)
    dec_a, dec_b = decompose_encoded(explainer.model, ref_feats,
                                     torch.cat([a, b]), 3)
    loser = "b" if dec_a.distance < dec_b.distance else "a"
    flip = Flip(loser, True, 2, 4, 0.5, 0.3, 0.1, 0.2, 32, "Replacing 2 of 4 patches flips it.")
    return TripletExplanation(prep, dec_a, dec_b, None, fake_attribution("b"), flip,
                              explainer.weights_info, fake_repair(0.3), prep.warnings,
                              ("LPIPS finds one closer.", flip.statement))


# ----------------------------------------------------------------------------- plots


def test_waterfall_adds_up_and_ends_in_total(fast):
    dec = fast.decomposition
    fig = plots.layer_waterfall(dec)
    wf = fig.data[0]
    assert isinstance(wf, go.Waterfall)
    assert list(wf.measure) == ["relative"] * len(dec.layers) + ["total"]
    assert abs(sum(wf.y[:-1]) - dec.distance) < 1e-9
    assert wf.y[-1] == pytest.approx(dec.distance)
    assert list(wf.x[:-1]) == [lay.name for lay in dec.layers]
    assert "exactly" in fig.layout.title.text


def test_heatmap_overlay_keeps_row_zero_at_the_top():
    image = np.zeros((20, 30, 3), np.uint8)
    heat = np.zeros((20, 30))
    heat[0, :] = 1.0  # the top row is hot
    fig = plots.heatmap_overlay(image, heat, title="t", caption="cap")
    hm = next(t for t in fig.data if isinstance(t, go.Heatmap))
    z = np.asarray(hm.z)
    assert np.array_equal(z, heat)  # not flipped
    row = int(np.unravel_index(np.argmax(z), z.shape)[0])
    ys = np.asarray(hm.y)
    assert ys[row] == ys.min() == 0  # hot row sits at y = 0 ...
    assert fig.layout.yaxis.autorange == "reversed"  # ... which is drawn at the top
    assert fig.layout.yaxis.scaleanchor == "x"
    assert fig.layout.meta["caption"] == "cap"
    assert hm.opacity == pytest.approx(0.55)


def test_heatmap_overlay_coarse_map_spans_the_image_and_symmetric_centres():
    image = np.zeros((64, 64, 3), np.uint8)
    heat = np.array([[-2.0, 1.0], [0.5, 0.0]])
    fig = plots.heatmap_overlay(image, heat, title="t", symmetric=True)
    hm = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert list(hm.x) == [15.5, 47.5] and list(hm.y) == [15.5, 47.5]
    # symmetric about 0, clipped at the 99.5th percentile of |value| so outliers keep contrast
    m = float(np.percentile(np.abs(heat), 99.5))
    assert hm.zmid == 0 and hm.zmin == -m and hm.zmax == m and 0 < m <= 2


def test_spatial_map_figure_names_layer_and_upsampling(fast):
    dec = fast.decomposition
    img = plots.as_uint8_image(fast.b)
    lay = dec.layers[1]
    fig = plots.spatial_map_figure(dec, img, layer=lay.name, upsample="none")
    hm = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert np.asarray(hm.z).shape == lay.resolution
    cap = fig.layout.meta["caption"]
    assert lay.name in cap and "none" in cap and f"{lay.distance:.4f}" in cap and "equal" in cap
    fig = plots.spatial_map_figure(dec, img, layer=None, upsample="mean_preserving")
    assert "all layers summed" in fig.layout.title.text
    assert np.asarray(next(t for t in fig.data if isinstance(t, go.Heatmap)).z).shape == (H, W)


def test_channel_grid_titles_and_maps(fast):
    lay = fast.decomposition.layers[0]
    fig = plots.channel_grid(lay, which="activation_b")
    heats = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heats) == len(lay.top_channels)
    assert np.array_equal(np.asarray(heats[0].z), lay.top_channels[0].activation_b)
    titles = [a.text for a in fig.layout.annotations]
    assert any(t.startswith(f"ch {lay.top_channels[0].index}<br>") for t in titles)
    from lpips_explain.errors import UnknownOptionError

    with pytest.raises(UnknownOptionError):
        plots.channel_grid(lay, which="activations")


def test_attribution_figure_completeness_and_vanishing():
    img = np.zeros((H, W, 3), np.uint8)
    attr = fake_attribution(vanishing=True)
    attr.completeness_gap, attr.relative_gap = 0.001, 0.004
    fig = plots.attribution_figure(attr, img, view="signed")
    assert "completeness gap" in fig.layout.title.text and "0.40%" in fig.layout.title.text
    assert any("vanish" in a.text for a in fig.layout.annotations)
    hm = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert hm.zmid == 0
    attr2 = fake_attribution()
    attr2.completeness_gap = None
    fig2 = plots.attribution_figure(attr2, img, view="magnitude")
    assert "completeness" not in fig2.layout.title.text
    assert not any("vanish" in (a.text or "") for a in fig2.layout.annotations)


def test_sensitivity_bars_and_sweep():
    sens = fake_sensitivity(0.2)
    fig = plots.sensitivity_bars(sens)
    bar = fig.data[0]
    assert list(bar.x) == [0.05, -0.01, 0.02]
    assert len(set(bar.y)) == 3 and "1 px" in bar.y[0]
    assert "0.2000" in fig.layout.title.text
    sw = plots.sweep_figure(sens.sweeps[0])
    assert [t.yaxis for t in sw.data] == ["y", "y2", "y3"]
    assert all("markers" in t.mode for t in sw.data)
    assert sw.data[1].y[0] is None  # infinite PSNR is a gap, not a number


def test_repair_curve_is_the_raw_curve(full):
    rep = full.repair
    fig = plots.repair_curve(rep)
    tr = fig.data[0]
    assert np.array_equal(np.asarray(tr.x), rep.curve_area)
    assert np.array_equal(np.asarray(tr.y), rep.curve_distance)
    assert tr.line.shape == "linear" and "markers" in tr.mode
    rise = fig.data[1]
    assert list(rise.x[:2]) == [0.25, 0.5]  # the one rising segment is marked
    shapes = fig.layout.shapes
    assert any(s.y0 == pytest.approx(rep.base_distance / 2) for s in shapes)
    assert any(s.x0 == pytest.approx(0.25) for s in shapes)
    assert fig.layout.title.text == rep.headline


def test_triplet_margin_chart(triplet):
    fig = plots.triplet_margin_chart(triplet)
    bar = fig.data[0]
    assert list(bar.x)[-1] == "total"
    assert bar.y[-1] == pytest.approx(triplet.margin)
    for m, c in zip(bar.y, bar.marker.color, strict=True):
        assert c == (plots.FAVOUR_A if m > 0 else plots.FAVOUR_B if m < 0 else plots.NEUTRAL)


def test_comparison_figure_slider_flicks(fast):
    a, b = plots.as_uint8_image(fast.a), plots.as_uint8_image(fast.b)
    fig = plots.comparison_figure(a, b)
    assert len(fig.data) == 4
    steps = fig.layout.sliders[0].steps
    assert [s.args[0]["visible"] for s in steps] == [[True, True, True, False],
                                                     [True, True, False, True]]
    assert all(t.source.startswith("data:image/png;base64,") for t in fig.data)


def test_summary_png_with_and_without_optional_parts(fast, full, triplet):
    for result, fn in ((fast, static.summary_png), (full, static.summary_png),
                       (triplet, static.triplet_png)):
        data = fn(result)
        im = Image.open(io.BytesIO(data))
        assert im.format == "PNG" and im.size[0] > 500


# ----------------------------------------------------------------------------- report


SECTION_7_KEYS = ["schema", "distance", "net", "version", "backbone", "inputs", "layers",
                  "attribution", "sensitivity", "repair", "summary", "warnings", "timings_ms"]


def test_to_json_strict_and_complete(fast, full):
    for result in (fast, full):
        d = json.loads(report.to_json(result))
        assert all(k in d for k in SECTION_7_KEYS)
        assert {"weights", "perceptual"} <= d["backbone"].keys()
        assert {"a", "b", "size", "policy"} <= d["inputs"].keys()
        assert d["distance"] == pytest.approx(result.distance)
    d = json.loads(report.to_json(full))
    assert d["attribution"]["completeness_gap"] is None  # NaN
    assert d["attribution"]["relative_gap"] is None  # np.inf
    assert d["attribution"]["vanishing"] is False
    assert d["sweeps"][0]["psnr"] == [None, 30.0, 25.0]
    assert report.jsonable({"x": np.array([1.5, np.nan]), "y": np.int64(3)}) == {
        "x": [1.5, None], "y": 3}
    with pytest.raises(TypeError):
        report.jsonable(object())


def test_to_json_triplet(triplet):
    d = json.loads(report.to_json(triplet))
    assert d["kind"] == "triplet" and d["margin"] == pytest.approx(triplet.margin)


def _strip_plotly(page: str) -> str:
    bundle = plotly.offline.get_plotlyjs()
    assert page.count(bundle) == 1  # plotly.js inlined exactly once
    return page.replace(bundle, "")


def _assert_offline(page: str, rest: str) -> None:
    # plotly.js itself holds a few href="https://..." strings (attribution links of map
    # tiles, used only by map traces) and a topojson URL default (geo traces only); they
    # are data inside the script, not resources the page loads. Outside the bundle there
    # must be no URL at all, and nowhere a tag that loads a script or stylesheet.
    assert not EXTERNAL_REF.search(rest)
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"<script[^>]*\ssrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert not re.search(r"url\(\s*[\"']?\s*(?:https?:)?//", page, re.IGNORECASE)


def test_html_report_is_self_contained(full):
    import html

    page = report.html_report(full)
    rest = _strip_plotly(page)
    _assert_offline(page, rest)
    assert f"{full.distance:.4f}" in rest
    for sentence in full.summary:
        assert html.escape(sentence) in rest
    assert rest.count('class="plotly-graph-div"') >= 6
    assert full.repair.headline in rest


def test_html_triplet_report_is_self_contained(triplet):
    page = report.html_triplet_report(triplet)
    rest = _strip_plotly(page)
    _assert_offline(page, rest)
    assert triplet.flip.statement in rest and f"{triplet.margin:+.4f}" in rest


def test_write_explanation_files(full, tmp_path):
    files = report.write_explanation(full, tmp_path / "out")
    root = tmp_path / "out"
    listed = json.loads((root / "explanation.json").read_text())["files"]
    assert listed == {k: p.relative_to(root).as_posix() for k, p in files.items()}
    for path in files.values():
        assert path.is_file() and path.stat().st_size > 0
    dec = full.decomposition
    for lay in dec.layers:
        arr = np.load(root / f"maps/spatial_{lay.name}.npy")
        assert arr.shape == lay.resolution
        assert arr.mean() == pytest.approx(lay.distance, rel=1e-9)
    for name in ("spatial_sum_bilinear", "spatial_sum_mean_preserving", "attribution_signed",
                 "attribution_magnitude", "repair_gain"):
        assert np.load(files[name]).shape == (H, W)
        assert Image.open(files[f"{name}_png"]).size == (W, H)
    assert np.load(files["spatial_sum_mean_preserving"]).mean() == pytest.approx(dec.distance)
    assert Image.open(files["summary_png"]).format == "PNG"
    assert "report.html" in listed.values() and "explanation.json" in listed.values()


def test_write_explanation_without_optional_parts(fast, tmp_path):
    files = report.write_explanation(fast, tmp_path, maps=False)
    assert sorted(p.name for p in files.values()) == ["explanation.json", "report.html",
                                                      "summary.png"]
    assert not (tmp_path / "maps").exists()


def test_write_triplet_files(triplet, tmp_path):
    files = report.write_triplet(triplet, tmp_path)
    listed = json.loads((tmp_path / "triplet.json").read_text())["files"]
    assert set(listed) == set(files)
    assert "attribution_a_signed" not in files  # A had no attribution in this stand-in
    assert np.load(files["attribution_b_signed"]).shape == (H, W)
    assert np.load(files["spatial_a_sum_bilinear"]).shape == (H, W)
    assert Image.open(files["summary_png"]).format == "PNG"

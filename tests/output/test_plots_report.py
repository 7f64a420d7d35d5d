"""Tests of lpips_explain.output (figures, static, report) on real results: random trunk, 64 px.

Every result here comes from the engine (Explainer.explain, explain_triplet, sensitivity,
repair), never from hand-made stand-ins, so the JSON and figure tests see what users get.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re

import numpy as np
import plotly.graph_objects as go
import plotly.offline
import pytest
import torch
from conftest import to_uint8, triplet_tensors
from PIL import Image

from lpips_explain.analyses.pair import perturbations as P
from lpips_explain.analyses.pair import repair, sensitivity
from lpips_explain.analyses.pair.summary import perturbation_words
from lpips_explain.output import figures as plots
from lpips_explain.output import imaging, palette, report, static

H = W = 64
# A src= or href= attribute that loads something from the network (quoted or not).
EXTERNAL_REF = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


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
def explainer(random_explainer):
    return random_explainer  # alex, v0.1, random trunk, seed 0


@pytest.fixture(scope="module")
def fast(explainer):
    """The fast first view: breakdown only."""
    a, b = _images(0, 2)
    return explainer.explain(a, b, attribution=None, sensitivity=False, repair=False)


@pytest.fixture(scope="module")
def full(full_explanation):
    """Every part: adaptive integrated gradients, sensitivity with sweeps, 16 px repair."""
    return full_explanation


@pytest.fixture(scope="module")
def saliency(explainer):
    """Saliency: a method without a completeness measure."""
    a, b = _images(0, 2)
    return explainer.explain(a, b, attribution="saliency", sensitivity=False,
                             repair=False).attribution


@pytest.fixture(scope="module")
def identical(explainer):
    """A against itself: vanishing gradients, a zero distance and infinite PSNRs."""
    (a,) = _images(5, 1)
    return explainer.explain(a, a.copy(), attribution="integrated_gradients", repair=False)


def _triplet_images() -> list[np.ndarray]:
    return [to_uint8(t) for t in triplet_tensors(H)]


@pytest.fixture(scope="module")
def triplet(explainer):
    """A is a mild change of REF, B a strong one in two patches; both attributed."""
    return explainer.explain_triplet(*_triplet_images(), attribution="saliency", patch=16)


@pytest.fixture(scope="module")
def triplet_plain(explainer):
    """The same triplet without attribution maps."""
    return explainer.explain_triplet(*_triplet_images(), attribution=None, patch=32)


@pytest.fixture(scope="module")
def rising_repair(explainer):
    """A real repair whose curve rises somewhere (brightened textured image, 8 px patches)."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32), indexing="ij")
    g = torch.Generator().manual_seed(0)
    a = torch.stack([0.5 + 0.25 * torch.sin(xx * (0.5 + 0.2 * c) + yy * (0.3 + 0.1 * c))
                     for c in range(3)])
    a = (a + 0.15 * (torch.rand(3, H, W, generator=g) - 0.5)).clamp(0.05, 0.95)[None]
    rep = repair.repair(explainer.model, a, P.apply("brightness", a, 1.3), patch=8)
    assert rep.non_monotonic  # the case this fixture exists for (see test_counterfactual)
    return rep


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
    # an overlay: the (grey) photo shows through where the map is 0, the map covers the rest
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(
        next(t for t in fig.data if isinstance(t, go.Image)).source.split(",", 1)[1]))))[..., :3]
    assert np.array_equal(drawn[1:], imaging.grey_photo(image)[1:])
    assert not np.array_equal(drawn[0], imaging.grey_photo(image)[0])


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
    img = imaging.as_uint8_image(fast.b)
    lay = dec.layers[1]
    fig = plots.spatial_map_figure(dec, img, layer=lay.name, upsample="none")
    hm = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert np.asarray(hm.z).shape == lay.resolution
    cap = fig.layout.meta["caption"]
    assert lay.name in cap and "own resolution" in cap and f"{lay.distance:.4f}" in cap and "equal" in cap
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


def test_attribution_figure_completeness_and_vanishing(full, identical, saliency):
    img = imaging.as_uint8_image(full.explained)
    attr = full.attribution  # integrated gradients: completeness is measured
    assert attr.completeness_gap is not None and attr.relative_gap is not None
    fig = plots.attribution_figure(attr, img, view="signed")
    title = fig.layout.title.text
    assert "completeness gap" in title and f"{attr.completeness_gap:.2e}" in title
    assert f"({100 * attr.relative_gap:.2f}%)" in title
    assert not any("vanish" in (a.text or "") for a in fig.layout.annotations)
    hm = next(t for t in fig.data if isinstance(t, go.Heatmap))
    assert hm.zmid == 0 and np.array_equal(np.asarray(hm.z), attr.signed)
    # A against itself: the gradients vanish and the figure says so instead of a blank map.
    same = identical.attribution
    assert same.vanishing
    fig = plots.attribution_figure(same, imaging.as_uint8_image(identical.b), view="signed")
    assert any("vanish" in (a.text or "") for a in fig.layout.annotations)
    # saliency has no completeness measure: no gap in the title
    assert saliency.completeness_gap is None and not saliency.vanishing
    fig2 = plots.attribution_figure(saliency, img, view="magnitude")
    assert "completeness" not in fig2.layout.title.text
    assert not any("vanish" in (a.text or "") for a in fig2.layout.annotations)
    hm2 = next(t for t in fig2.data if isinstance(t, go.Heatmap))
    assert np.array_equal(np.asarray(hm2.z), saliency.magnitude)


def test_sensitivity_bars_and_sweep(full, explainer):
    sens = full.sensitivity
    fig = plots.sensitivity_bars(sens)
    bar = fig.data[0]
    # every measured change once: a geometric-table row equal to a default row is not repeated
    defaults = {(it.transform, float(it.strength)) for it in sens.items}
    rows = list(sens.items) + [g for g in sens.geometric
                               if (g.transform, float(g.strength)) not in defaults]
    assert list(bar.x) == pytest.approx([it.change for it in rows])
    assert len(set(bar.y)) == len(rows)
    for label, it in zip(bar.y, rows, strict=True):
        assert it.label in label and f"{it.strength:g}" in label
    assert f"{sens.base_distance:.4f}" in fig.layout.title.text
    # The title names the longest bar: the same answer as the summary and the headline.
    longest = max(rows, key=lambda it: abs(it.change))
    assert sens.largest == longest
    assert perturbation_words(longest.transform, longest.strength) in fig.layout.title.text
    assert any(perturbation_words(longest.transform, longest.strength) in s
               for s in full.summary if "moves the distance most" in s)
    # names for people, never ids ("gaussian_blur"); the legend above the bars, where the
    # x axis's title (below them) cannot run into it
    assert not any("_" in str(t) for t in (*bar.y, fig.layout.title.text))
    assert fig.layout.legend.y >= 1 and fig.layout.legend.yanchor == "bottom"
    sweep = sens.sweeps[0]
    sw = plots.sweep_figure(sweep)
    assert [t.yaxis for t in sw.data] == ["y", "y2", "y3"]
    assert all("markers" in t.mode for t in sw.data)
    assert list(sw.data[0].y) == pytest.approx(list(sweep.distances))
    assert list(sw.data[2].y) == pytest.approx(list(sweep.ssim))
    # identity strength on identical images: PSNR is infinite, drawn as a gap, not a number
    a = full.a
    same = sensitivity.sensitivity(explainer.model, a, a.clone(), transforms=[], sweep=["contrast"],
                          sweep_points=3, geometric=False).sweeps[0]
    assert math.isnan(same.psnr[0]) and math.isfinite(same.psnr[1])
    gap = plots.sweep_figure(same)
    assert gap.data[1].y[0] is None and gap.data[1].y[1] == pytest.approx(same.psnr[1])


def _drawn_segments(fig: go.Figure) -> set[tuple[float, float]]:
    """(x0, x1) of every segment of the trace(s) that mark where the distance rises (the
    None gaps between segments are skipped)."""
    out = set()
    for t in fig.data[1:]:
        if isinstance(t, go.Scatter) and t.x is not None and "rise" in (t.name or "").lower():
            xs = list(t.x)
            out |= {(xs[i], xs[i + 1]) for i in range(len(xs) - 1)
                    if xs[i] is not None and xs[i + 1] is not None}
    return out


def test_repair_curve_is_the_raw_curve(rising_repair, full):
    for rep in (rising_repair, full.repair):
        fig = plots.repair_curve(rep)
        tr = fig.data[0]
        assert np.array_equal(np.asarray(tr.x), rep.curve_area)
        assert np.array_equal(np.asarray(tr.y), rep.curve_distance)
        assert tr.line.shape == "linear" and "markers" in tr.mode
        # found here from the curve itself: a step up is marked as a rise; a step down to a
        # new lowest distance is not
        a, d = rep.curve_area, rep.curve_distance
        drawn = _drawn_segments(fig)
        for j in range(1, len(d)):
            seg = (float(a[j - 1]), float(a[j]))
            if d[j] > d[j - 1] + 1e-7:
                assert seg in drawn, j
            elif d[j] <= d[:j].min():
                assert seg not in drawn, j
        shapes = fig.layout.shapes
        assert any(s.y0 == pytest.approx(rep.base_distance / 2) for s in shapes)
        if rep.half_area is not None:
            assert any(s.x0 == pytest.approx(rep.half_area) for s in shapes)
        assert fig.layout.title.text.replace("<br>", " ") == rep.headline
    assert _drawn_segments(plots.repair_curve(rising_repair))  # the rise really is drawn


def test_triplet_margin_chart(triplet):
    fig = plots.triplet_margin_chart(triplet)
    bar = fig.data[0]
    assert list(bar.x)[-1] == "total"
    assert bar.y[-1] == pytest.approx(triplet.margin)
    for m, c in zip(bar.y, bar.marker.color, strict=True):
        assert c == (palette.FAVOUR_A if m > 0 else palette.FAVOUR_B if m < 0 else palette.NEUTRAL)


def test_comparison_figure_slider_flicks(fast):
    a, b = imaging.as_uint8_image(fast.a), imaging.as_uint8_image(fast.b)
    fig = plots.comparison_figure(a, b)
    assert len(fig.data) == 4
    steps = fig.layout.sliders[0].steps
    assert [s.args[0]["visible"] for s in steps] == [[True, True, True, False],
                                                     [True, True, False, True]]
    assert all(t.source.startswith("data:image/png;base64,") for t in fig.data)


@pytest.mark.slow  # over 2 s on the 2-core machine: the whole suite only
def test_summary_png_with_and_without_optional_parts(fast, full, triplet):
    for result, fn in ((fast, static.summary_png), (full, static.summary_png),
                       (triplet, static.triplet_png)):
        data = fn(result)
        im = Image.open(io.BytesIO(data))
        assert im.format == "PNG" and im.size[0] > 500


# ----------------------------------------------------------------------------- report


SECTION_7_KEYS = ["schema", "distance", "net", "version", "backbone", "inputs", "layers",
                  "attribution", "sensitivity", "repair", "summary", "warnings", "timings_ms"]


def test_to_json_strict_and_complete(fast, full, identical):
    for result in (fast, full, identical):
        text = report.to_json(result)
        d = json.loads(text)  # strict: no NaN or Infinity tokens
        assert "NaN" not in text and "Infinity" not in text
        assert all(k in d for k in SECTION_7_KEYS)
        assert {"weights", "perceptual"} <= d["backbone"].keys()
        assert {"a", "b", "size", "policy"} <= d["inputs"].keys()
        assert d["distance"] == pytest.approx(result.distance)
        assert d["inputs"]["size"] == [H, W]
    d = json.loads(report.to_json(full))
    attr = full.attribution
    assert d["attribution"]["method"] == "integrated_gradients"
    assert d["attribution"]["sum"] == pytest.approx(attr.total)
    assert d["attribution"]["completeness_gap"] == pytest.approx(attr.completeness_gap)
    assert [row["distance"] for row in d["sensitivity"]] == pytest.approx(
        [it.distance for it in (*full.sensitivity.items, *full.sensitivity.geometric)])
    assert [p["distance"] for p in d["repair"]["curve"]] == pytest.approx(
        list(full.repair.curve_distance))
    # Infinite PSNR (the identity point of every sweep on identical images) becomes null.
    d = json.loads(report.to_json(identical))
    for sweep, row in zip(identical.sensitivity.sweeps, d["sweeps"], strict=True):
        assert math.isnan(sweep.psnr[0]) and row["psnr"][0] is None
        assert row["psnr"][1:] == pytest.approx(list(sweep.psnr[1:]))
    assert d["attribution"]["vanishing"] is True and d["distance"] == 0.0
    assert report.jsonable({"x": np.array([1.5, np.nan]), "y": np.int64(3),
                            "z": np.float32(np.inf), "w": np.bool_(True)}) == {
        "x": [1.5, None], "y": 3, "z": None, "w": True}
    with pytest.raises(TypeError):
        report.jsonable(object())


def test_to_json_triplet(triplet):
    d = json.loads(report.to_json(triplet))
    assert d["kind"] == "triplet" and d["margin"] == pytest.approx(triplet.margin)
    assert d["closer"] == triplet.closer == "a"  # the mild change is closer
    assert sum(lay["margin"] for lay in d["layers"]) == pytest.approx(d["margin"], abs=1e-9)
    assert d["attribution"]["b"]["method"] == "saliency"
    assert d["flip"]["exists"] == triplet.flip.exists and d["flip"]["repaired"] == "b"


def _strip_plotly(page: str) -> str:
    """The page less its embedded plotly.js, which travels gzip-compressed and base64-encoded
    in one script block and must unpack to exactly the bundle plotly ships."""
    import base64
    import gzip

    blocks = re.findall(r'<script id="lx-plotly-gz" type="application/octet-stream">'
                        r"([A-Za-z0-9+/=]+)</script>", page)
    assert len(blocks) == 1  # plotly.js embedded exactly once
    assert gzip.decompress(base64.b64decode(blocks[0])).decode() == \
        plotly.offline.get_plotlyjs()
    return page.replace(blocks[0], "")


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
    page = report.html_report(full)
    rest = _strip_plotly(page)
    _assert_offline(page, rest)
    assert f"{full.distance:.4f}" in rest
    for sentence in full.summary:
        assert html.escape(sentence) in rest
    assert rest.count('class="plotly-graph-div"') >= 6
    assert html.escape(full.repair.headline) in rest


def test_html_report_opens_on_the_card_with_the_images(full):
    page = _strip_plotly(report.html_report(full))
    card = re.search(r'<section class="card" id="card">(.*?)</section>', page, re.S)
    assert card is not None
    first_chart = page.index('class="plotly-graph-div"')
    # The first section is the card: the distance, then A, B and the map as images, before
    # any chart or other section.
    assert card.start() < first_chart and card.start() < page.index("<h2>")
    assert card.group(1).count("<img ") == 3
    assert f"{full.distance:.4f}" in card.group(1)
    # The random trunk's state, in its one short line, from the one source.
    assert html.escape(full.backbone.state.short) in card.group(1)
    # The sweeps (one chart each) sit behind a <details>, after the main figures.
    details = page.index('<details class="more">')
    assert details > first_chart
    assert all(page.index(f"Sweep: {html.escape(s.label)}") > details
               for s in full.sensitivity.sweeps)
    # Captions in words: no raw parameter dumps.
    text = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert not re.search(r"\b(rule|target_gap|map_tolerance|max_steps)=", text)


def test_attribution_settings_in_words(full):
    attr = full.attribution
    words = plots.attribution_settings_text(attr.method, attr.params)
    assert f"{attr.params['steps']} points" in words
    assert "=" not in words and "_" not in words
    caption = plots.caption_of(plots.attribution_figure(attr, to_uint8(full.b)))
    assert words in caption and "target_gap" not in caption


def test_second_opinions_in_the_report_and_the_png(explainer, monkeypatch):
    a, b = _images(0, 2)
    expl = explainer.explain(a, b, attribution=None, sensitivity=False, repair=False,
                             metrics=("lpips", "ssim", "psnr"))
    ops = expl.second_opinions
    assert ops is not None and [o.metric for o in ops.opinions] == ["lpips", "ssim", "psnr"]
    page = _strip_plotly(report.html_report(expl))
    section = page[page.index("<h2>Second opinions</h2>"):page.index("<h2>In plain words</h2>")]
    for o in ops.opinions:  # each on its own scale, with its scale said
        assert f"<td>{html.escape(o.label)}</td>" in section
        assert f"<td>{html.escape(o.value_text())}</td>" in section
    assert f"{expl.distance:.4f}" in section
    for sentence in ops.sentences:
        assert html.escape(sentence) in section
    # The PNG's text block: the same values line and the same sentences as the app.
    drawn: list[str] = []
    monkeypatch.setattr(static, "_text_block",
                        lambda ax, lines, width=150: drawn.extend(lines) or ax.set_axis_off())
    static.summary_png(expl)
    assert f"Second opinions (each on its own scale): {ops.values_text()}." in drawn
    assert all(s in drawn for s in ops.sentences)


@pytest.mark.slow
def test_html_report_is_lean_for_a_512_px_pair(explainer):
    """Under 3 MB for a 512 px pair: photos and maps are downsampled (and say so), and a
    report without warnings has no empty "None." section."""
    import base64

    a, b = (np.asarray(Image.fromarray(im).resize((512, 512), Image.Resampling.BILINEAR))
            for im in _images(7, 2))
    expl = explainer.explain(a, b, attribution="saliency", sensitivity=False, repair=False)
    page = report.html_report(expl)
    assert len(page.encode("utf-8")) < 3_000_000
    assert "None." not in page
    assert f"downsampled to at most {report.IMAGE_SIDE} px (from 512x512)" in page
    sides = []
    for uri in re.findall(r"data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)", page):
        sides.append(max(Image.open(io.BytesIO(base64.b64decode(uri))).size))
    assert sides and max(sides) <= report.IMAGE_SIDE


def test_html_triplet_report_is_self_contained(triplet):
    page = report.html_triplet_report(triplet)
    rest = _strip_plotly(page)
    _assert_offline(page, rest)
    assert html.escape(triplet.flip.statement) in rest and f"{triplet.margin:+.4f}" in rest


@pytest.mark.slow  # over 2 s on the 2-core machine: the whole suite only
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


@pytest.mark.slow  # over 2 s on the 2-core machine (2026-12-07 16:20): the whole suite only
def test_write_triplet_files(triplet, triplet_plain, tmp_path):
    files = report.write_triplet(triplet, tmp_path / "t")
    listed = json.loads((tmp_path / "t" / "triplet.json").read_text())["files"]
    assert set(listed) == set(files)
    for name, attr in (("a", triplet.attribution_a), ("b", triplet.attribution_b)):
        np.testing.assert_array_equal(np.load(files[f"attribution_{name}_signed"]), attr.signed)
    bilinear = np.load(files["spatial_a_sum_bilinear"])
    assert bilinear.shape == (H, W)
    np.testing.assert_allclose(bilinear, triplet.decomposition_a.spatial_map(None, "bilinear"))
    assert Image.open(files["summary_png"]).format == "PNG"
    plain = report.write_triplet(triplet_plain, tmp_path / "p")
    assert not any(name.startswith("attribution_") for name in plain)
    assert np.load(plain["spatial_b_sum_bilinear"]).shape == (H, W)

"""Second opinions on one pair (analyses/pair/second_opinions.py, Explainer.second_opinions,
explain(metrics=...), CLI --metrics, the Explain page's line): the records equal the engines'
own numbers, a metric that cannot run is reported while the others show, and each sentence
appears exactly when its thresholds are met.

Needs the installed published trunks and the DISTS / ST-LPIPS files; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, assert_clean
from PIL import Image

from lpips_explain.analyses.pair import second_opinions as so
from lpips_explain.analyses.pair.quality import psnr, ssim
from lpips_explain.cli import main as cli_main
from lpips_explain.core import metric_files
from lpips_explain.core.decompose import decompose
from lpips_explain.errors import InputError

ASTRONAUT = REPO / "assets" / "originals" / "astronaut.png"
R01 = "[0,1]"
CHELSEA = REPO / "assets" / "originals" / "chelsea.png"


def photo(path: Path, size: int = 128) -> torch.Tensor:
    im = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255


def texture(seed: int, size: int = 96) -> torch.Tensor:
    """One sample of a stationary random texture (blurred noise, fixed mean and contrast):
    two seeds differ pixel by pixel and match in statistics."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(1, 3, size + 8, size + 8, generator=g), 3, 1)
    x = (x - x.mean()) / x.std() * 0.15 + 0.5
    return x[..., :size, :size].clamp(0, 1)


@pytest.fixture(scope="module")
def explainer(real_alex):
    return real_alex


@pytest.fixture(scope="module")
def shifted():
    a = photo(ASTRONAUT)
    return a, torch.roll(a, 2, dims=3)  # a 2 px shift


def by_metric(ops) -> dict:
    return {o.metric: o for o in ops.opinions}


@pytest.mark.slow
def test_records_equal_the_engines_numbers(explainer, shifted):
    ops = explainer.second_opinions(*shifted, value_range=R01)
    a, b = explainer.prepare(*shifted, value_range=R01).tensors  # what the engines saw
    assert ops.metrics == so.METRICS
    got = by_metric(ops)
    assert all(o.error is None for o in ops.opinions), [o.error for o in ops.opinions]
    assert got["lpips"].distance == pytest.approx(decompose(explainer.model, a, b).distance,
                                                  rel=1e-6)
    st = explainer.metric_model("stlpips", "alex")
    assert got["stlpips"].net == "alex"
    assert got["stlpips"].distance == pytest.approx(st.compare(a, b).distance, rel=1e-6)
    assert sum(lay["distance"] for lay in got["stlpips"].layers) == pytest.approx(
        got["stlpips"].distance, rel=1e-6)
    ds = explainer.metric_model("dists", "vgg")
    ref = ds.compare(a, b)
    assert got["dists"].distance == pytest.approx(ref.distance, rel=1e-9)
    assert sum(s["texture"] + s["structure"] for s in got["dists"].stages) == pytest.approx(
        ref.distance, rel=1e-9)
    assert got["ssim"].distance == pytest.approx(float(ssim(a, b)[0]), rel=1e-9)
    assert got["psnr"].distance == pytest.approx(float(psnr(a, b)[0]), rel=1e-9)
    assert got["ssim"].higher_is_closer and got["psnr"].higher_is_closer
    assert not got["dists"].higher_is_closer
    # built once per Explainer
    assert explainer.metric_model("dists", "vgg") is ds
    rec = got["dists"].to_dict()
    assert {"metric", "net", "distance", "stages", "perceptual", "mode", "error"} <= set(rec)
    assert {"metric", "net", "distance", "layers", "perceptual", "mode"} <= set(
        got["stlpips"].to_dict())


@pytest.mark.slow
def test_shift_sentence_appears_for_a_small_shift(explainer, shifted):
    a, b = shifted
    expl = explainer.explain(a, b, attribution=None, repair=False, equivalents=False,
                             metrics="all", value_range=R01)
    ops = by_metric(expl.second_opinions)
    gap = so.stlpips_gap(ops["lpips"], ops["stlpips"])
    assert gap >= so.STLPIPS_GAP and ops["lpips"].distance >= so.LPIPS_SHIFT_FLOOR
    sentence = ops["stlpips"].sentence
    assert sentence.startswith(f"ST-LPIPS is {gap:.0%} lower than LPIPS")
    assert "misalignment" in sentence
    # backed by the geometric row of the sensitivity table
    row = next(r for r in expl.sensitivity.geometric
               if (r.transform, r.strength) == so.SHIFT_ROW)
    assert f"{row.change:+.4f}" in sentence
    assert sentence in expl.summary
    assert ops["dists"].sentence is None  # a shift keeps DISTS's structure terms low
    d = json.loads(json.dumps(expl.to_dict(), default=str))
    assert [r["metric"] for r in d["second_opinions"]] == list(so.METRICS)


@pytest.mark.slow
def test_texture_sentence_for_two_samples_of_one_texture(explainer):
    a, b = texture(1), texture(2)
    ops = by_metric(explainer.second_opinions(a, b, value_range=R01))
    dists = ops["dists"]
    assert dists.texture_fraction <= so.DISTS_TEXTURE_SMALL
    assert dists.structure_fraction >= so.DISTS_STRUCTURE_LARGE
    assert ops["lpips"].distance >= so.LPIPS_TEXTURE_FLOOR
    assert dists.sentence.startswith("DISTS's texture terms are small")
    assert "match in statistics" in dists.sentence


@pytest.mark.slow
def test_no_sentence_when_nothing_stands_out(explainer):
    a = photo(CHELSEA)
    g = torch.Generator().manual_seed(0)
    b = (a + 0.08 * torch.randn(a.shape, generator=g)).clamp(0, 1)  # noise: all agree
    ops = explainer.second_opinions(a, b, value_range=R01)
    assert ops.sentences == ()
    assert explainer.second_opinions(a, a, value_range=R01).sentences == ()  # identical


def _opinion(metric, distance, **kw):
    return so.Opinion(metric, "alex", distance, **kw)


def test_sentence_thresholds_exactly():
    lp = _opinion("lpips", 0.2)
    at = _opinion("stlpips", 0.2 * (1 - so.STLPIPS_GAP))
    below = _opinion("stlpips", 0.2 * (1 - so.STLPIPS_GAP) + 1e-3)
    assert so.shift_sentence(lp, at) is not None
    assert so.shift_sentence(lp, below) is None
    small = _opinion("lpips", so.LPIPS_SHIFT_FLOOR * 0.99)
    assert so.shift_sentence(small, _opinion("stlpips", 0.0)) is None
    ds = _opinion("dists", 0.2, texture_fraction=so.DISTS_TEXTURE_SMALL,
                  structure_fraction=so.DISTS_STRUCTURE_LARGE)
    assert so.texture_sentence(lp, ds) is not None
    assert so.texture_sentence(lp, _opinion("dists", 0.2, texture_fraction=0.21,
                                            structure_fraction=0.9)) is None
    assert so.texture_sentence(lp, _opinion("dists", 0.2, texture_fraction=0.1,
                                            structure_fraction=0.39)) is None
    assert so.texture_sentence(_opinion("lpips", 0.09), ds) is None
    failed = so.Opinion("stlpips", "alex", None, error="missing", error_type="X")
    assert so.shift_sentence(lp, failed) is None


def test_metric_names_are_checked():
    assert so.check_metrics(["dists"]) == ("lpips", "dists")
    assert so.check_metrics(["ST-LPIPS", "psnr"]) == ("lpips", "stlpips", "psnr")
    assert so.check_metrics("all") == so.METRICS
    with pytest.raises(InputError, match="Unknown metric"):
        so.check_metrics(["lpips", "fsim"])


def test_missing_weights_are_reported_per_metric(real_alex, monkeypatch, tmp_path):
    from lpips_explain import Explainer

    ex = Explainer("alex", "0.1", "imagenet")  # its own: nothing built yet
    monkeypatch.setattr(metric_files, "_package_file", lambda f: None)
    monkeypatch.setattr(metric_files, "metrics_dir", lambda: tmp_path)
    a = photo(CHELSEA, 64)
    ops = by_metric(ex.second_opinions(a, torch.roll(a, 2, 3), value_range=R01))
    for m in ("dists", "stlpips"):
        assert ops[m].error_type == "WeightsUnavailableError" and ops[m].distance is None
        assert "weights install" in ops[m].error and ops[m].exit_code == 3
    for m in ("lpips", "ssim", "psnr"):
        assert ops[m].error is None and ops[m].distance is not None


@pytest.mark.slow
def test_too_small_images_are_reported_per_metric():
    from lpips_explain import Explainer
    from lpips_explain.core import published

    if not published.installed_file("vgg").is_file():
        pytest.fail("the published vgg trunk is not installed (lpips-explain weights install)")
    ex = Explainer("vgg", "0.1", "imagenet")  # LPIPS vgg runs at 16 px, DISTS needs 17
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 16, 16, generator=g)
    ops = by_metric(ex.second_opinions(a, (a * 0.9).clamp(0, 1), value_range=R01))
    assert ops["dists"].error_type == "ImageTooSmallError" and "17x17" in ops["dists"].error
    assert ops["stlpips"].error_type == "ImageTooSmallError" and ops["stlpips"].net == "vgg"
    assert ops["lpips"].error is None and ops["ssim"].error is None


def _png(path: Path, t: torch.Tensor) -> str:
    Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return str(path)


@pytest.mark.slow
def test_cli_metrics(tmp_path, capsys):
    a = photo(CHELSEA, 64)
    pa, pb = _png(tmp_path / "a.png", a), _png(tmp_path / "b.png", torch.roll(a, 2, 3))
    assert cli_main(["distance", pa, pb, "--json", "--quiet"]) == 0
    assert "second_opinions" not in json.loads(capsys.readouterr().out)  # default unchanged
    assert cli_main(["distance", pa, pb, "--json", "--quiet", "--metrics", "lpips",
                     "dists", "stlpips"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [r["metric"] for r in d["second_opinions"]] == ["lpips", "stlpips", "dists"]
    assert d["second_opinions"][2]["stages"] and d["second_opinions"][1]["layers"]
    assert cli_main(["distance", pa, pb, "--quiet", "--metrics", "all"]) == 0
    out = capsys.readouterr().out
    assert "second opinions (each on its own scale)" in out and "PSNR" in out
    assert cli_main(["distance", pa, pb, "--quiet", "--metrics", "bogus"]) == 2


@pytest.mark.slow
def test_cli_one_missing_metric_sets_the_exit_code(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(metric_files, "_package_file", lambda f: None)
    monkeypatch.setattr(metric_files, "metrics_dir", lambda: tmp_path)
    a = photo(CHELSEA, 64)
    pa, pb = _png(tmp_path / "a.png", a), _png(tmp_path / "b.png", torch.roll(a, 2, 3))
    assert cli_main(["distance", pa, pb, "--json", "--quiet", "--metrics", "dists"]) == 3
    d = json.loads(capsys.readouterr().out)
    assert d["second_opinions"][1]["error_type"] == "WeightsUnavailableError"
    # more than one asked: reported, not an exit code
    assert cli_main(["distance", pa, pb, "--json", "--quiet", "--metrics", "all"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {r["metric"]: r["error"] is None for r in d["second_opinions"]} == {
        "lpips": True, "stlpips": False, "dists": False, "ssim": True, "psnr": True}


@pytest.mark.app
@pytest.mark.slow
def test_explain_page_shows_the_second_opinions(random_trunk_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
    at.session_state["sb_method"] = "saliency"
    at.run()
    assert_clean(at)
    line = [m.value for m in at.markdown if m.value.startswith("**Second opinions**")]
    assert len(line) == 1, [m.value for m in at.markdown][:10]
    for label in ("LPIPS", "ST-LPIPS", "DISTS", "SSIM", "PSNR"):
        assert label in line[0]

"""The triplet's second opinions and honesty (analyses/pair/metric_choices.py, the
too-close rule of analyses/pair/triplet.py, explain_triplet(metrics=...), the CLI triplet)
and the geometric table under ST-LPIPS (analyses/pair/sensitivity.py).

Oracles: the reference ``stlpips-pytorch`` package (ST-LPIPS values), the engines' own
single-pair results (DISTS, SSIM, PSNR), exact sums (layer and stage margins add up to the
margin), and direct reweightings of the layer margins for the too-close rule. Needs the
installed published alex trunk and the ST-LPIPS / DISTS files; nothing is downloaded.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, smooth_image, to_uint8
from PIL import Image

from lpips_explain.analyses.pair import metric_choices as mc
from lpips_explain.analyses.pair import perturbations as P
from lpips_explain.analyses.pair import sensitivity as sens_mod
from lpips_explain.analyses.pair import triplet as tr
from lpips_explain.analyses.pair.quality import psnr, ssim
from lpips_explain.cli import main as cli_main
from lpips_explain.errors import WeightsUnavailableError

ASTRONAUT = REPO / "assets" / "originals" / "astronaut.png"
R01 = "[0,1]"


def photo(path: Path, size: int = 96) -> torch.Tensor:
    im = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255


def noisy(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def explainer(real_alex):
    return real_alex


@pytest.fixture(scope="module")
def disagreeing(explainer):
    """REF, A = REF shifted by 2 px, B = REF with noise: LPIPS (not shift-tolerant) prefers
    B, while ST-LPIPS and DISTS prefer the shifted A."""
    ref = photo(ASTRONAUT)
    a, b = torch.roll(ref, 2, dims=3), noisy(ref, 0.05)
    tri = explainer.explain_triplet(ref, a, b, attribution=None, patch=16, value_range=R01,
                                    metrics="all")
    return tri


@pytest.fixture(scope="module")
def stlpips_reference():
    stl = pytest.importorskip("stlpips_pytorch.stlpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stl.LPIPS(net="alex", variant="shift_tolerant", verbose=False).eval()


# --- each metric's choice -----------------------------------------------------------------------


@pytest.mark.slow
def test_choices_equal_the_reference_values(explainer, disagreeing, stlpips_reference):
    tri = disagreeing
    ref, a, b = tri.inputs.tensors
    ch = {c.metric: c for c in tri.metric_choices.choices}
    assert tuple(ch) == ("lpips", "stlpips", "dists", "ssim", "psnr")
    assert all(c.ok for c in ch.values()), [c.error for c in ch.values()]
    # LPIPS: the triplet's own distances; its layer margins add up to the margin.
    assert (ch["lpips"].value_a, ch["lpips"].value_b) == (tri.distance_a, tri.distance_b)
    assert ch["lpips"].margin == pytest.approx(tri.margin, abs=1e-12)
    # ST-LPIPS against the reference package (inputs in [-1, 1]).
    with torch.no_grad():
        want = [float(stlpips_reference(2 * ref - 1, 2 * x - 1).flatten()[0]) for x in (a, b)]
    assert ch["stlpips"].value_a == pytest.approx(want[0], rel=1e-5)
    assert ch["stlpips"].value_b == pytest.approx(want[1], rel=1e-5)
    # DISTS against its engine on each pair alone (the engine is checked against the
    # reference package in tests/core/test_second_opinions.py).
    ds = explainer.metric_model("dists", "vgg")
    assert ch["dists"].value_a == pytest.approx(ds.compare(ref, a).distance, rel=1e-6)
    assert ch["dists"].value_b == pytest.approx(ds.compare(ref, b).distance, rel=1e-6)
    for metric in ("lpips", "stlpips", "dists"):  # part margins add up exactly
        c = ch[metric]
        assert sum(p["margin"] for p in c.parts) == pytest.approx(c.margin, abs=1e-9)
        sign = 1 if c.choice == "a" else -1
        assert all(sign * d["margin"] > 0 for d in c.drivers)
        assert sum(d["share"] for d in c.drivers) == pytest.approx(1.0)
        assert [d["margin"] for d in c.drivers] == sorted(
            (d["margin"] for d in c.drivers), key=lambda m: -sign * m)
    assert ch["dists"].texture_margin + ch["dists"].structure_margin == pytest.approx(
        ch["dists"].margin, abs=1e-9)
    # SSIM and PSNR: higher is closer, so the margin is value_a - value_b.
    for metric, fn in (("ssim", ssim), ("psnr", psnr)):
        va, vb = float(fn(ref, a)[0]), float(fn(ref, b)[0])
        assert ch[metric].higher_is_closer
        assert (ch[metric].value_a, ch[metric].value_b) == (pytest.approx(va, abs=1e-7),
                                                            pytest.approx(vb, abs=1e-7))
        assert ch[metric].choice == ("a" if va > vb else "b")


@pytest.mark.slow
def test_disagreement_is_the_headline(disagreeing):
    tri = disagreeing
    ch = {c.metric: c for c in tri.metric_choices.choices}
    # The premise, from the numbers: LPIPS prefers B, ST-LPIPS and DISTS prefer A.
    assert ch["lpips"].choice == "b" and ch["stlpips"].choice == "a" == ch["dists"].choice
    head = tri.metric_choices.headline
    assert head == "The metrics disagree: LPIPS prefers B; ST-LPIPS and DISTS prefer A."
    assert tri.summary[0] == head  # the disagreement comes first
    d = json.loads(json.dumps(tri.to_dict(), allow_nan=False))
    assert d["metric_headline"] == head
    assert [r["choice"] for r in d["metric_choices"][:3]] == ["b", "a", "a"]
    assert {"verdict", "closer", "margin", "flip"} <= set(d)  # the old keys stay


def test_no_headline_when_the_metrics_agree():
    def choice(metric, va, vb):
        return mc.MetricChoice(metric, "alex", va, vb)

    agree = mc.MetricChoices((choice("lpips", 0.1, 0.3), choice("stlpips", 0.05, 0.2),
                              choice("dists", 0.1, 0.15)))
    assert not agree.disagree and agree.headline is None
    assert agree.agreement == "LPIPS, ST-LPIPS and DISTS all prefer A."
    # SSIM and PSNR disagreeing with LPIPS is no headline (pixel formulas).
    pixels = mc.MetricChoices((choice("lpips", 0.1, 0.3),
                               mc.MetricChoice("ssim", None, 0.4, 0.9, higher_is_closer=True)))
    assert pixels.get("ssim").choice == "b" and pixels.headline is None
    # A metric that could not run takes no side.
    failed = mc.MetricChoices((choice("lpips", 0.1, 0.3),
                               mc.MetricChoice("dists", "vgg", None, None, error="missing")))
    assert failed.headline is None and failed.get("dists").choice is None
    # A tie is a side of its own.
    tie = mc.MetricChoices((choice("lpips", 0.1, 0.3), choice("dists", 0.2, 0.2)))
    assert tie.headline == "The metrics disagree: LPIPS prefers A; DISTS finds A and B tied."


def test_a_metric_that_cannot_run_is_reported_and_the_others_shown(random_explainer):
    from conftest import triplet_tensors

    ref, a, b = triplet_tensors()
    tri = random_explainer.explain_triplet(ref, a, b, attribution=None, patch=16,
                                           value_range=R01)
    assert tri.metric_choices is None and "metric_choices" not in tri.to_dict()

    def missing(metric, net):
        raise WeightsUnavailableError(f"{metric} {net} is not installed (test).")

    got = mc.metric_choices(ref, a, b, tri.decomposition_a, tri.decomposition_b,
                            metrics="all", model=missing)
    ch = {c.metric: c for c in got.choices}
    assert ch["stlpips"].error_type == ch["dists"].error_type == "WeightsUnavailableError"
    assert ch["stlpips"].choice is None and ch["stlpips"].to_dict()["margin"] is None
    assert ch["lpips"].ok and ch["ssim"].ok and ch["psnr"].ok
    assert ch["lpips"].choice == tri.closer


# --- too close to call --------------------------------------------------------------------------


def _margin_after_reweighting(tri, eps: float) -> float:
    """The margin with agreeing layers scaled by (1 - eps), dissenting ones by (1 + eps)."""
    sign = 1 if tri.margin > 0 else -1
    return sum(lay.margin * (1 - eps if sign * lay.margin > 0 else 1 + eps)
               for lay in tri.layers)


def test_reweight_to_flip_is_exact(random_explainer):
    ref = smooth_image(64, 64, 21)
    a = (ref + 0.3 * (smooth_image(64, 64, 22) - 0.5)).clamp(0, 1)
    b = (ref + 0.12 * (smooth_image(64, 64, 23) - 0.5)).clamp(0, 1)
    tri = random_explainer.explain_triplet(ref, a, b, attribution=None, patch=16,
                                           value_range=R01)
    eps = tri.reweight_to_flip
    assert 0 < eps <= 1
    sign = np.sign(tri.margin)
    assert np.sign(_margin_after_reweighting(tri, eps * 0.99)) == sign
    assert np.sign(_margin_after_reweighting(tri, min(1.0, eps * 1.01))) == -sign or eps == 1


def test_too_close_rule_boundary_both_sides(random_explainer, monkeypatch):
    ref = smooth_image(64, 64, 21)
    a = (ref + 0.3 * (smooth_image(64, 64, 22) - 0.5)).clamp(0, 1)
    b = (ref + 0.12 * (smooth_image(64, 64, 23) - 0.5)).clamp(0, 1)
    tri = random_explainer.explain_triplet(ref, a, b, attribution=None, patch=16,
                                           value_range=R01)
    tri = replace(tri, flip=replace(tri.flip, patches=3))  # the patch half of the rule: off
    eps = tri.reweight_to_flip
    monkeypatch.setattr(tr, "TOO_CLOSE_REWEIGHT", eps)  # at the limit: too close
    assert tri.verdict == "too_close"
    assert any("reweighting the layers by" in r for r in tri.too_close_reasons)
    assert tri.to_dict()["verdict"] == "too_close"
    monkeypatch.setattr(tr, "TOO_CLOSE_REWEIGHT", eps * 0.999)  # just below: decided
    assert tri.verdict == tri.closer.upper() and tri.too_close_reasons == ()
    # One patch: a single patch of a grid of at least ONE_PATCH_MIN_GRID flips it.
    one = replace(tri, flip=replace(tri.flip, exists=True, patches=1,
                                    total_patches=tr.ONE_PATCH_MIN_GRID))
    assert one.verdict == "too_close" and one.to_dict()["too_close"]["one_patch_flip"]
    for flip in (replace(tri.flip, exists=True, patches=2, total_patches=64),
                 replace(tri.flip, exists=True, patches=1,
                         total_patches=tr.ONE_PATCH_MIN_GRID - 1)):
        assert replace(tri, flip=flip).verdict == tri.closer.upper()
    # The summary says it, from the same numbers.
    monkeypatch.setattr(tr, "TOO_CLOSE_REWEIGHT", eps)
    summary = tr.triplet_summary(tri)
    assert any(s.startswith("Too close to call: reweighting the layers by") for s in summary)


def test_flip_is_one_sentence_with_the_method_apart(random_explainer):
    from conftest import triplet_tensors

    tri = random_explainer.explain_triplet(*triplet_tensors(), attribution=None, patch=16,
                                           value_range=R01)
    flip = tri.flip
    assert flip.exists
    assert flip.sentence.count(". ") == 0 and flip.sentence.endswith(".")
    assert f"{flip.patches} of {flip.total_patches} patches" in flip.sentence
    assert f"{flip.distance_after:.4f}" in flip.sentence
    assert "order" not in flip.sentence and "single-patch gain" in flip.method
    assert "a smaller repair may exist" in flip.method
    d = flip.to_dict()
    assert d["sentence"] == flip.sentence and d["method"] == flip.method
    assert flip.sentence in tri.summary and flip.statement not in tri.summary


@pytest.mark.slow  # over 2 s on the 2-core machine: the whole suite only
def test_cli_triplet_verdict_and_metrics(tmp_path, capsys):
    ref, a, b = (smooth_image(64, 64, s) for s in (21, 22, 23))
    b = (ref + 0.1 * (b - 0.5)).clamp(0, 1)
    a = (ref + 0.3 * (a - 0.5)).clamp(0, 1)
    paths = []
    for name, t in (("ref", ref), ("a", a), ("b", b)):
        p = tmp_path / f"{name}.png"
        Image.fromarray(to_uint8(t)).save(p)
        paths.append(str(p))
    base = ["triplet", *paths, "--attribution", "none", "--patch", "16", "--quiet",
            "--backbone-weights", "random"]
    code = cli_main([*base, "--out", str(tmp_path / "o1"), "--metrics", "lpips", "ssim",
                     "--json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0
    assert d["verdict"] in ("A", "B", "too_close")
    assert d["verdict"] == ("too_close" if d["too_close"]["reasons"] else d["closer"].upper())
    assert [r["metric"] for r in d["metric_choices"]] == ["lpips", "ssim"]
    assert d["metric_choices"][0]["margin"] == pytest.approx(d["margin"])
    code = cli_main([*base, "--out", str(tmp_path / "o2"), "--metrics", "lpips", "psnr"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("verdict: ")
    assert "each metric's choice" in out and "PSNR" in out
    saved = json.loads((tmp_path / "o2" / "triplet.json").read_text())
    assert saved["metric_choices"][1]["metric"] == "psnr"


# --- the geometric table under ST-LPIPS ----------------------------------------------------------


@pytest.mark.slow
def test_geometric_stlpips_equals_the_reference(explainer, stlpips_reference):
    a = photo(ASTRONAUT)
    b = noisy(a, 0.03)
    expl = explainer.explain(a, b, attribution=None, repair=False, equivalents=False,
                             value_range=R01)
    sens = expl.sensitivity
    sec = sens.geometric_second
    assert sec.ok and sec.net == "alex" and sec.perceptual
    ta, tb = expl.reference, expl.explained
    with torch.no_grad():
        base = float(stlpips_reference(2 * ta - 1, 2 * tb - 1).flatten()[0])
        assert sec.base_distance == pytest.approx(base, rel=1e-5)
        for k, g in enumerate(sens.geometric):
            x = P.apply(g.transform, tb, g.strength)
            want = float(stlpips_reference(2 * ta - 1, 2 * x - 1).flatten()[0])
            assert sec.distances[k] == pytest.approx(want, rel=1e-5), g
    d = expl.to_dict()
    geo = [r for r in d["sensitivity"] if r["group"] == "geometric"]
    assert [r["stlpips_distance"] for r in geo] == list(sec.distances)
    assert d["geometric_stlpips"]["available"] and d["geometric_stlpips"]["net"] == "alex"
    # The sentence exactly when a row supports it (checked against the rule here).
    supported = [(g, sec.change(k)) for k, g in enumerate(sens.geometric)
                 if g.change >= sens_mod.GEOMETRIC_FLOOR
                 and sec.change(k) <= sens_mod.GEOMETRIC_RATIO * g.change]
    sentence = sens.geometric_comparison("B")
    if supported:
        g, st = supported[0]
        assert sentence.endswith(f"adds {g.change:.3f} to LPIPS but only {st:.3f} to "
                                 f"ST-LPIPS (alex).")
    else:
        assert sentence is None
    assert d["geometric_stlpips"]["sentence"] == sentence


def test_geometric_sentence_rule_both_sides(random_explainer, pair):
    a, b = pair
    sens = sens_mod.sensitivity(random_explainer.model, a, b, transforms=[], sweep=[])
    rows = sens.geometric
    assert [(g.transform, g.strength) for g in rows] == list(P.GEOMETRIC_TABLE)
    # A hypothetical ST-LPIPS column placed at the rule's boundary, row by row.
    lpips_change = [g.change for g in rows]
    k = int(np.argmax(lpips_change))
    assert lpips_change[k] >= sens_mod.GEOMETRIC_FLOOR
    for ratio, said in ((sens_mod.GEOMETRIC_RATIO, True), (sens_mod.GEOMETRIC_RATIO * 1.01,
                                                           False)):
        dist = [1.0 + (ratio * c if i == k else c) for i, c in enumerate(lpips_change)]
        sec = sens_mod.GeometricSecond("stlpips", "alex", 1.0, tuple(dist))
        got = replace(sens, geometric_second=sec).geometric_comparison("B")
        assert (got is not None) == said, (ratio, got)
        if said:
            assert f"adds {lpips_change[k]:.3f} to LPIPS" in got


def test_geometric_stlpips_unavailable_says_why(random_explainer, pair):
    a, b = pair
    expl = random_explainer.explain(a, b, attribution=None, repair=False, equivalents=False,
                                    value_range=R01)
    sec = expl.sensitivity.geometric_second
    assert not sec.ok and "random weights" in sec.reason and sec.distances == ()
    d = expl.to_dict()
    assert d["geometric_stlpips"]["available"] is False
    assert d["geometric_stlpips"]["sentence"] is None
    assert all(r["stlpips_distance"] is None for r in d["sensitivity"]
               if r["group"] == "geometric")
    json.dumps(d, allow_nan=False)
    # Missing weights: the reason is the loader's message.
    got = sens_mod.geometric_second(None, a, b, P.GEOMETRIC_TABLE,
                                    reason="ST-LPIPS could not be loaded: not installed")
    assert not got.ok and got.reason.endswith("not installed")

"""Distortion equivalents: the strength of JPEG, blur, noise and a shift of A at which LPIPS finds
distorted A as far from A as B is.

Meaning is checked on the real alex trunk against the official ``lpips`` package (with the
installed published trunk loaded into it): every reached strength, applied to A with the same
perturbation function, is as far from A as B to within the search's stated tolerance, or sits
on a bracket whose two ends the official package puts on either side of d(A, B). The search
itself is checked on curves whose crossings are known exactly; structure and wiring (JSON,
CLI, summary, report, card line) on the seeded random trunk.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import ASSETS, EXAMPLES, official_real, smooth_image
from helpers import cli

from lpips_explain import Explainer
from lpips_explain.analyses.pair import perturbations
from lpips_explain.analyses.pair.equivalents import (
    DEFAULT_DISTORTIONS,
    DISTORTIONS,
    equivalents,
    search,
)
from lpips_explain.analyses.pair.explanation import join_parts
from lpips_explain.errors import InputError, UnknownOptionError
from lpips_explain.output.report import html_report

CONTRACT = {"distortion", "strength", "unit", "reached"}
SAMPLES = json.loads((ASSETS / "samples.json").read_text())
# samples.json's parameter of each distortion kind that is also an equivalent
STRENGTH_KEY = {"jpeg": "quality", "gaussian_blur": "sigma", "gaussian_noise": "std"}


# --- the real metric ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(real_alex) -> Explainer:
    return real_alex


@pytest.fixture(scope="module")
def official():
    return official_real("alex")


def official_distance(official, a: torch.Tensor, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(official(a * 2 - 1, x * 2 - 1))


def distorted(a: torch.Tensor, e, strength: float | None = None) -> torch.Tensor:
    """A with the equivalent's distortion at ``strength`` (default: the reported one)."""
    return perturbations.apply(e.distortion, a, e.strength if strength is None else strength,
                               seed=e.seed or 0)


def pair_tensors(ex: Explainer, a, b) -> tuple[torch.Tensor, torch.Tensor]:
    prep = ex.prepare(a, b)
    return prep.tensors[0], prep.tensors[1]


REAL_PAIRS = [
    (ASSETS / SAMPLES["pairs"][0]["a"], ASSETS / SAMPLES["pairs"][0]["b"]),
    (EXAMPLES / "ex_ref.png", EXAMPLES / "ex_p0.png"),
    (EXAMPLES / "ex_ref.png", EXAMPLES / "ex_p1.png"),
]


@pytest.mark.parametrize("paths", REAL_PAIRS, ids=lambda p: f"{p[0].stem}-{p[1].stem}")
def test_reached_strengths_are_as_far_as_b_for_the_official_package(real, official, paths):
    a, b = pair_tensors(real, *paths)
    items = equivalents(real.fast, a, b, scorer=real.scorer(a))
    assert [e.distortion for e in items] == list(DEFAULT_DISTORTIONS)
    target = official_distance(official, a, b)
    reached = [e for e in items if e.reached]
    assert reached, "no distortion reached d(A, B): the pair cannot test the search"
    for e in items:
        assert e.target == pytest.approx(target, rel=1e-5)
        # every reported distance is a real one: the official package agrees at that strength
        got = official_distance(official, a, distorted(a, e))
        assert got == pytest.approx(e.distance, rel=1e-4, abs=1e-6), e.text
        if not e.reached:
            continue
        lo, hi = e.bracket
        d_lo, d_hi = e.bracket_distances
        ident = DISTORTIONS[e.distortion].perturbation.identity
        assert e.strength in (lo, hi) and e.strength != ident
        # the bracket straddles d(A, B) for the official package too (the first crossing)
        off_lo = 0.0 if lo == ident else official_distance(official, a, distorted(a, e, lo))
        off_hi = official_distance(official, a, distorted(a, e, hi))
        assert off_lo < target + 1e-6 and off_hi > target - 1e-6, (e.text, off_lo, off_hi)
        assert (off_lo, off_hi) == pytest.approx((d_lo, d_hi), rel=1e-4, abs=1e-6)
        if e.stop == "tolerance":
            assert abs(got - target) <= e.tolerance * target + 1e-5, e.text
        else:  # the bracket cannot be split further: its ends are one step apart
            assert e.stop == "step" and abs(hi - lo) <= e.step + 1e-9, e.text
            assert abs(got - target) <= abs(off_hi - off_lo) + 1e-6
        if e.step == 1:  # JPEG quality and shift end on whole numbers
            assert e.strength == round(e.strength)


def test_unreachable_target_says_so_with_the_strongest_distance(real, official):
    # an unrelated image is far beyond what JPEG down to quality 5 does to A
    a, b = pair_tensors(real, ASSETS / "originals" / "coffee.png",
                        ASSETS / "originals" / "rocket.png")
    items = equivalents(real.fast, a, b, scorer=real.scorer(a))
    target = items[0].target
    missed = [e for e in items if not e.reached]
    assert "jpeg" in {e.distortion for e in missed}
    for e in missed:
        assert e.strength == e.searched[1] == DISTORTIONS[e.distortion].grid[-1]
        assert e.stop == "unreached" and e.bracket is None
        strongest = official_distance(official, a, distorted(a, e))
        assert strongest == pytest.approx(e.distance, rel=1e-4) and strongest < target
    jpeg = next(e for e in missed if e.distortion == "jpeg")
    assert jpeg.text == f"JPEG quality down to {jpeg.strength:g}"


def test_a_bundled_distortion_is_read_back_as_itself(real):
    """Each sample made by JPEG, blur or noise (assets/make_samples.py: Pillow's JPEG, another
    noise seed) is as far from its original as that same distortion at about its strength."""
    checked = 0
    for pair in SAMPLES["pairs"]:
        kind = pair["distortion"]["kind"]
        if kind not in STRENGTH_KEY:
            continue
        made = pair["distortion"][STRENGTH_KEY[kind]]
        a, b = pair_tensors(real, ASSETS / pair["a"], ASSETS / pair["b"])
        (e,) = equivalents(real.fast, a, b, distortions=[kind], scorer=real.scorer(a))
        assert e.reached, pair["id"]
        lo, hi = sorted(e.bracket)
        # the bracket around d(A, B) holds the strength the sample was made with, give or
        # take one step of the bracket (JPEG) or 10% (blur and noise: other kernels, seeds)
        slack = 2 if kind == "jpeg" else 0.1 * made
        assert lo - slack <= made <= hi + slack, (pair["id"], made, e.bracket)
        assert abs(e.strength - made) <= max(slack, hi - lo), (pair["id"], made, e.strength)
        checked += 1
    assert checked >= 3


def test_real_explanation_carries_equivalents_and_says_them(real):
    a, b = SAMPLES["pairs"][0]["a"], SAMPLES["pairs"][0]["b"]
    expl = real.explain(ASSETS / a, ASSETS / b, attribution=None, sensitivity=False,
                        repair=False)
    assert expl.equivalents and "equivalents" in expl.timings_ms
    sentence = next(s for s in expl.summary if s.startswith("In LPIPS distance"))
    for e in expl.equivalents:
        if e.reached:
            assert e.phrase in sentence and f"{e.distance:.4f}" in sentence
    assert f"{expl.distance:.4f}" in sentence
    rows = expl.to_dict()["equivalents"]
    assert [r["strength"] for r in rows] == [e.strength for e in expl.equivalents]


# --- the search, on curves with known crossings -----------------------------------------------------


def curve(fn):
    """evaluate() over exact curves: fn(name, strength) -> distance; counts the calls."""
    calls = []

    def evaluate(keys):
        calls.append(list(keys))
        return [fn(name, s) for name, s in keys]

    evaluate.calls = calls
    return evaluate


def linear(name: str, s: float) -> float:
    """d grows linearly from 0 at the identity to 1 at the far end of the grid."""
    spec = DISTORTIONS[name]
    ident = spec.perturbation.identity
    return abs(s - ident) / abs(spec.grid[-1] - ident)


@pytest.mark.parametrize("target", [0.013, 0.21, 0.5, 0.77, 0.999])
def test_search_finds_a_linear_crossing_within_tolerance_or_step(target):
    evaluate = curve(linear)
    items = search(evaluate, target, tolerance=0.02)
    for e in items:
        spec = DISTORTIONS[e.distortion]
        ident, far = spec.perturbation.identity, spec.grid[-1]
        exact = ident + target * (far - ident)  # where the line meets the target
        assert e.reached and e.distance == linear(e.distortion, e.strength)
        lo, hi = e.bracket
        assert min(lo, hi) - 1e-9 <= exact <= max(lo, hi) + 1e-9
        assert (abs(e.distance - target) <= 0.02 * target
                or abs(hi - lo) <= spec.step + 1e-9), e
        assert round(e.strength / spec.step, 6) == round(e.strength / spec.step)
    # one batch per round, every open distortion in it; the counts add up
    assert sum(len(c) for c in evaluate.calls) == sum(e.evaluations for e in items)
    assert len(evaluate.calls) <= 5  # mild grid, rest of the grid, three refining rounds


def test_search_reports_the_first_crossing_from_the_mild_end():
    # rises past 0.5 by blur 1, falls back below it, rises again: the first crossing is < 1
    def bumpy(name: str, s: float) -> float:
        return 0.6 * min(s, 1.0) + (0.0 if s <= 1.0 else -0.4 * min(s - 1.0, 1.0)
                                    + 0.3 * max(s - 2.0, 0.0))

    (e,) = search(curve(bumpy), 0.5, distortions=["gaussian_blur"])
    assert e.reached and e.strength <= 1.0
    assert abs(e.distance - 0.5) <= 0.02 * 0.5 or e.stop == "step"


def test_search_handles_the_decreasing_jpeg_scale_and_unreached_ends():
    # JPEG: lower quality is farther; 100 is the identity
    def jpeg(name: str, q: float) -> float:
        return (100 - q) / 95 * 0.3

    evaluate = curve(jpeg)
    (e,) = search(evaluate, 0.1, distortions=["jpeg"])
    assert e.reached and e.strength == round(e.strength) and 5 <= e.strength < 100
    lo, hi = e.bracket
    assert lo > hi and jpeg("jpeg", lo) < 0.1 <= jpeg("jpeg", hi)  # mild (high quality) first
    (u,) = search(curve(jpeg), 0.5, distortions=["jpeg"])
    assert not u.reached and u.strength == 5 and u.distance == pytest.approx(0.3)
    assert u.evaluations == len(DISTORTIONS["jpeg"].grid) and u.text == "JPEG quality down to 5"


def test_identical_images_and_bad_arguments():
    assert search(curve(linear), 0.0) == ()
    with pytest.raises(UnknownOptionError, match=r"(?i)did you mean"):
        search(curve(linear), 0.3, distortions=["jpg"])
    for bad in ({"tolerance": 0}, {"tolerance": 1.5}, {"points": 0}, {"rounds": -1}):
        with pytest.raises(InputError):
            search(curve(linear), 0.3, **bad)
    with pytest.raises(InputError):
        search(curve(linear), math.nan)


def test_grids_run_mild_to_strong_inside_their_perturbations_ranges():
    for spec in DISTORTIONS.values():
        p = spec.perturbation
        mild = [abs(s - p.identity) for s in spec.grid]
        assert mild == sorted(mild) and 0 not in mild
        assert spec.grid[-1] == p.far_end()
        lo, hi = p.range
        assert all(lo <= s <= hi for s in spec.grid)
        assert all(spec.snap(s) == s for s in spec.grid)


# --- structure on the random trunk --------------------------------------------------------------------


def test_noise_is_seeded_and_reproduced_by_apply(random_explainer, pair):
    a, b = pair
    net = random_explainer.fast
    first = equivalents(net, a, b, distortions=["gaussian_noise"], seed=3)
    again = equivalents(net, a, b, distortions=["gaussian_noise"], seed=3)
    assert first == again and first[0].seed == 3
    e = first[0]
    x = perturbations.apply("gaussian_noise", a, e.strength, seed=3)
    assert float(random_explainer.scorer(a)(x)) == pytest.approx(e.distance, rel=1e-5)


def test_explain_json_summary_and_parts(random_explainer, pair):
    a, b = pair
    kw = {"attribution": None, "sensitivity": False, "repair": False, "value_range": "[0,1]"}
    off = random_explainer.explain(a, b, equivalents=False, **kw)
    assert off.equivalents is None and "equivalents" not in off.timings_ms
    assert off.to_dict()["equivalents"] == []
    on = random_explainer.explain(a, b, **kw)
    rows = on.to_dict()["equivalents"]
    assert len(rows) == len(DEFAULT_DISTORTIONS) and "equivalents" in on.timings_ms
    assert all(set(r) >= CONTRACT for r in rows)
    # the random trunk's warning stays; the reading claims no perceptual meaning
    assert any("random" in s.lower() for s in on.summary)
    extra = [s for s in on.summary if s not in off.summary]
    assert extra and not any("perceptual" in s.lower() for s in extra)
    # parts computed apart are joined with the equivalents and their timing
    joined = join_parts(off, on)
    assert joined.equivalents == on.equivalents
    assert joined.timings_ms["equivalents"] == on.timings_ms["equivalents"]
    assert set(extra) <= set(joined.summary)
    html = html_report(on)
    assert "Distortion equivalents" in html
    assert all(e.text in html for e in on.equivalents)


def test_identical_images_have_no_equivalents(random_explainer, pair):
    a = pair[0]
    expl = random_explainer.explain(a, a.clone(), attribution=None, sensitivity=False,
                                    repair=False, value_range="[0,1]")
    assert expl.equivalents == () and expl.to_dict()["equivalents"] == []
    assert not any("as far from" in s for s in expl.summary)


def test_swapped_roles_distort_the_reference(random_explainer, pair):
    a, b = pair
    kw = {"attribution": None, "sensitivity": False, "repair": False, "value_range": "[0,1]"}
    expl = random_explainer.explain(a, b, swap=True, **kw)
    e = expl.equivalents[0]
    x = perturbations.apply(e.distortion, b, e.strength)  # B is the reference
    assert float(random_explainer.scorer(b)(x)) == pytest.approx(e.distance, rel=1e-5)
    if any(e.reached for e in expl.equivalents):
        assert any("as far from B as B itself" in s for s in expl.summary)


def test_summary_says_when_nothing_is_reached(random_explainer):
    # noise far from a smooth image: farther than any strength tried of the four
    a = smooth_image(64, 64, 5)
    b = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    expl = random_explainer.explain(a, b, attribution=None, sensitivity=False, repair=False,
                                    value_range="[0,1]")
    missed = [e for e in expl.equivalents if not e.reached]
    assert missed and all(e.distance < e.target for e in missed)
    text = " ".join(expl.summary)
    assert all(e.text in text for e in missed)
    if len(missed) == len(expl.equivalents):
        assert "No distortion tried takes A as far from itself as B" in text


def test_card_line(random_explainer, pair):
    from dataclasses import replace

    from lpips_explain.ui.explain import equivalents_line

    a, b = pair
    expl = random_explainer.explain(a, b, attribution=None, sensitivity=False, repair=False,
                                    value_range="[0,1]")
    line = equivalents_line(expl, computing=False)
    for e in expl.equivalents:
        assert e.text in line
    assert "computing" in equivalents_line(replace(expl, equivalents=None), computing=True)
    assert "not computed" in equivalents_line(replace(expl, equivalents=None), computing=False)
    missed = tuple(replace(e, reached=False) for e in expl.equivalents)
    assert "No distortion of A" in equivalents_line(replace(expl, equivalents=missed), False)


@pytest.mark.slow  # over 2 s on the 2-core machine: the whole suite only
def test_cli_explain_json_has_equivalents(capsys, tmp_path):
    from conftest import png_bytes

    paths = []
    for name, shift in (("a", 0.0), ("b", 0.2)):
        path = tmp_path / f"{name}.png"
        path.write_bytes(png_bytes(11, 64, shift=shift))
        paths.append(str(path))
    rc, out, err = cli(capsys, "explain", *paths, "--out", str(tmp_path / "e"),
                       "--backbone-weights", "random", "--attribution", "none", "--json",
                       "--quiet")
    assert rc == 0, err
    data = json.loads(out)
    assert len(data["equivalents"]) == len(DEFAULT_DISTORTIONS)
    for row in data["equivalents"]:
        assert set(row) >= CONTRACT and isinstance(row["reached"], bool)
        assert row["distortion"] in DISTORTIONS and isinstance(row["strength"], float)
    assert "equivalents" in data["timings_ms"]
    # the distance command is the fast view: no equivalents
    rc, out, err = cli(capsys, "distance", *paths, "--backbone-weights", "random", "--json")
    assert rc == 0, err
    assert json.loads(out)["equivalents"] == []

"""Exact tiling for large images: geometry read off the trunks, tiled == untiled, the
memory estimate and the budget (refusals before any work)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from conftest import REPO, official_model, official_trunk_state, smooth_image

from lpips_explain import Explainer
from lpips_explain.core import budget, geometry, tiling
from lpips_explain.core.decompose import decompose_encoded
from lpips_explain.core.model import build_lpips
from lpips_explain.core.trunks import get_trunk
from lpips_explain.errors import InputError, MemoryBudgetError
from lpips_explain.notices import TILED, of_code

NETS = ("alex", "vgg", "squeeze")


@pytest.fixture(scope="module")
def nets() -> dict:
    return {(n, v): build_lpips(n, v, "random", seed=3, progress=False)
            for n in NETS for v in ("0.1", "0.0")}


def _pair(h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    a = smooth_image(h, w, seed)
    b = (a + 0.2 * (smooth_image(h, w, seed + 1) - 0.5)).clamp(0, 1)
    return a, b


def _meta_sizes(net, h: int, w: int) -> list[tuple[int, int]]:
    """Tap shapes from the real modules, run on a meta tensor (no compute)."""
    feats = copy.deepcopy(net.features).to("meta")
    x = torch.empty(1, 3, h, w, device="meta")
    out = []
    for i, m in enumerate(feats):
        x = m(x)
        if i in net.spec.taps:
            out.append(tuple(x.shape[-2:]))
    return out


# -- geometry ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NETS)
def test_geometry_matches_the_modules(nets, name):
    net = nets[(name, "0.1")]
    geom = geometry.geometry_of(net)
    assert geom.total_stride == 16  # read off the modules, not assumed
    assert [t.channels for t in geom.taps] == list(net.spec.channels)
    lo = get_trunk(name).min_size
    for h, w in [(lo, lo), (lo + 1, lo + 3), (37, 64), (97, 131), (200, 301)]:
        assert geom.tap_sizes(h, w) == _meta_sizes(net, h, w), (h, w)
    assert geom.min_length == lo  # the registry's measured minimum agrees


@pytest.mark.parametrize("name", NETS)
def test_receptive_windows_hold_every_gradient(nets, name):
    """Cell k of a tap reads only input rows k*s - p .. k*s - p + r - 1 (and for AlexNet's
    relu1, whose window is one 11 px convolution, exactly those rows)."""
    net = nets[(name, "0.1")]
    geom = geometry.geometry_of(net)
    h, w = (120, 24) if name == "vgg" else (200, 40)
    x = smooth_image(h, w, 5).requires_grad_(True)
    taps = net.taps(x)
    for li, (t, f) in enumerate(zip(geom.taps, taps, strict=True)):
        for k in {f.shape[-2] // 2, f.shape[-2] - 1}:
            (g,) = torch.autograd.grad(f[0, :, k].abs().sum(), x, retain_graph=True)
            rows = torch.nonzero(g.abs().sum(dim=(0, 1, 3)) > 0).flatten()
            lo, hi = t.window(k, k)
            assert rows.numel() > 0
            assert lo <= int(rows.min()) and int(rows.max()) <= hi, (name, li, k, lo, hi)
            if name == "alex" and li == 0:
                assert (int(rows.min()), int(rows.max())) == (max(0, lo), min(h - 1, hi))


def test_crops_must_start_on_the_total_stride(nets):
    """The alignment is necessary: relu5 of a crop starting 8 px in differs from the image's
    cells, starting 16 px in it equals them (this test would catch a wrong total stride)."""
    net = nets[("alex", "0.1")]
    a = smooth_image(320, 40, 9)
    with torch.no_grad():
        full = net.taps(a)[-1][0]
        scale = float(full.abs().max())
        assert scale > 0
        for start, shifts, equal in ((16, (1,), True), (32, (2,), True), (8, (0, 1), False),
                                     (4, (0, 1), False)):
            crop = net.taps(a[:, :, start:])[-1][0]
            for k in shifts:
                # cells 6 and below are out of reach of the crop's new top edge (66 px)
                n = min(crop.shape[-2], full.shape[-2] - k)
                assert n > 8
                err = float((crop[:, 6: n] - full[:, 6 + k: n + k]).abs().max()) / scale
                assert (err < 1e-5) is equal, (start, k, err)


# -- tiled == untiled ------------------------------------------------------------------------
# (net, version, image h, w, tile cores (rows, cols)). Odd sizes; every case has crops with
# edges inside the image; alex 0.0 has 16 px cores (below its 161 px halo) on the rows;
# VGG and SqueezeNet (halos of 186 and 199 px) are tested along one axis at a time.
CASES = [
    ("alex", "0.1", 150, 211, (64, 96)),
    ("alex", "0.0", 64, 301, (16, 112)),
    ("vgg", "0.1", 32, 301, (32, 112)),
    ("vgg", "0.0", 301, 32, (112, 32)),
    ("squeeze", "0.1", 48, 331, (48, 96)),
    ("squeeze", "0.0", 331, 48, (96, 48)),
]


@pytest.mark.parametrize("name,version,h,w,core", CASES)
def test_tiled_distance_equals_untiled(nets, name, version, h, w, core):
    net = nets[(name, version)]
    a, b = _pair(h, w, seed=h)
    plan = budget.plan_memory(net, (h, w), 10**12, kind="distance", core=core)
    assert plan.tiled and plan.count >= 3
    inner = [t for axis, n in zip(plan.tiles, (h, w), strict=True) for t in axis
             if t.start > 0 or t.stop < n]
    assert inner  # crops that end inside the image: their edges must not leak in
    with torch.no_grad():
        want = float(net(a, b)[0])
    got = tiling.tiled_distance(net, a, b, plan)
    assert got == pytest.approx(want, rel=1e-5)


def test_tiled_distance_equals_the_official_package(tmp_path):
    off = official_model("alex")
    path = tmp_path / "alex.pth"
    torch.save(official_trunk_state(off), path)
    net = build_lpips("alex", "0.1", path, progress=False)
    a, b = _pair(143, 250, seed=4)
    with torch.no_grad():
        want = float(off(a * 2 - 1, b * 2 - 1).flatten()[0])
    plan = budget.plan_memory(net, (143, 250), 10**12, kind="distance", core=(64, 96))
    assert tiling.tiled_distance(net, a, b, plan) == pytest.approx(want, rel=1e-5)


def test_tiled_decomposition_equals_untiled(nets, monkeypatch):
    """Terms, top channels and maps equal the untiled breakdown; maps of layers larger than
    MAX_DISPLAY_CELLS (lowered here to 20) are block means with the factor stated."""
    net = nets[("alex", "0.1")]
    a, b = _pair(130, 211, seed=2)
    want = decompose_encoded(net, net.encode(a), b, top_k=3)[0]
    monkeypatch.setattr(budget, "MAX_DISPLAY_CELLS", 20)
    plan = budget.plan_memory(net, (130, 211), 10**12, core=(64, 96))
    got = tiling.tiled_decomposition(net, a, b, plan, top_k=3)
    assert got.tiling is not None and got.tiling["tiles"] == plan.count
    assert got.distance == pytest.approx(want.distance, rel=1e-5)
    factors = []
    for lw, lg in zip(want.layers, got.layers, strict=True):
        assert lg.resolution == lw.resolution
        assert lg.distance == pytest.approx(lw.distance, rel=1e-5)
        np.testing.assert_allclose(lg.contributions, lw.contributions, rtol=1e-4, atol=1e-12)
        assert [c.index for c in lg.top_channels] == [c.index for c in lw.top_channels]
        f = lg.display_factor
        h, w = lw.resolution
        factors.append(f)
        assert f == -(-max(h, w) // 20) and lg.spatial.shape == (-(-h // f), -(-w // f))

        def blocks(m: np.ndarray, f: int = f, h: int = h, w: int = w) -> np.ndarray:
            return np.array([[m[i: i + f, j: j + f].mean() for j in range(0, w, f)]
                             for i in range(0, h, f)])

        np.testing.assert_allclose(lg.spatial, blocks(lw.spatial), rtol=1e-4, atol=1e-9)
        for cw, cg in zip(lw.top_channels, lg.top_channels, strict=True):
            for field in ("diff_map", "activation_a", "activation_b"):
                np.testing.assert_allclose(getattr(cg, field), blocks(getattr(cw, field)),
                                           rtol=1e-4, atol=1e-7)
    assert factors[0] > 1 and factors[-1] == 1  # both kinds of layer were checked


# -- the estimate and the budget -----------------------------------------------------------
@pytest.mark.parametrize("name", NETS)
def test_estimates_grow_with_size_batch_and_tile(nets, name):
    geom = geometry.geometry_of(nets[(name, "0.1")])
    for kind in ("distance", "decompose", "score", "gradient"):
        sizes = [budget.untiled_bytes(geom, s, s + 7, kind) for s in (64, 128, 256, 1024)]
        assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert (budget.untiled_bytes(geom, 256, 256, "score", 16)
            > budget.untiled_bytes(geom, 256, 256, "score", 4))
    tiles = [budget.tile_bytes(geom, 2000, 3000, c, c + 30) for c in (100, 200, 400, 800)]
    assert tiles == sorted(tiles) and len(set(tiles)) == 4
    # the tiled route needs less than the untiled one at the same (whole-image) size
    assert budget.tile_bytes(geom, 900, 900, 900, 900) < budget.untiled_bytes(geom, 900, 900)
    net = nets[(name, "0.1")]
    plans = [budget.plan_memory(net, (1500, 1700), 10**12, core=c) for c in (64, 128, 256)]
    assert [p.estimate for p in plans] == sorted(p.estimate for p in plans)


def test_plan_picks_the_largest_tile_that_fits(nets):
    net = nets[("vgg", "0.1")]
    limit = budget.parse_bytes("400MB")
    plan = budget.plan_memory(net, (3000, 3000), limit)
    assert plan.tiled and plan.estimate <= limit < plan.untiled
    bigger = budget.plan_memory(net, (3000, 3000), limit, core=plan.core + 16)
    assert bigger.estimate > limit
    assert not budget.plan_memory(net, (64, 64), limit).tiled


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")
def test_the_estimate_orders_measured_peak_memory():
    """Peak RSS measured in one fresh process per tile size: a larger estimate is a larger
    measured peak, and the rise from the smallest to the largest tiles is of the estimated
    size. The peak is the process's VmHWM, reset just before the run (/proc/self/clear_refs):
    ru_maxrss would not do, Linux copies the forking process's high-water mark into the
    child's at exec, so under pytest it starts at pytest's own peak."""
    script = textwrap.dedent("""
        import json, sys, torch
        from lpips_explain.core import budget, memory, tiling
        from lpips_explain.core.model import build_lpips
        net = build_lpips("alex", "0.1", "random", progress=False)
        h = w = 1200
        a, b = torch.rand(1, 3, h, w), torch.rand(1, 3, h, w)
        plan = budget.plan_memory(net, (h, w), 10**12, kind="distance", core=int(sys.argv[1]))
        tiling.tiled_distance(net, a, b, budget.plan_memory(net, (64, 64), 10**12, core=16))
        before = memory.reset_peak()  # VmHWM := VmRSS
        tiling.tiled_distance(net, a, b, plan)
        print(json.dumps([plan.estimate, before, memory.peak_rss()]))
    """)
    rows = []
    for core in (304, 1200):
        res = subprocess.run([sys.executable, "-c", script, str(core)], capture_output=True,
                             text=True, cwd=REPO, timeout=900)
        assert res.returncode == 0, res.stderr[-2000:]
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    (est_small, base_small, peak_small), (est_big, base_big, peak_big) = rows
    assert est_small < est_big, rows
    rise_small, rise_big = peak_small - base_small, peak_big - base_big
    assert rise_small < rise_big, rows
    grow_est, grow_meas = est_big - est_small, rise_big - rise_small
    assert 0.4 * grow_est < grow_meas < 2.5 * grow_est, rows


@pytest.mark.slow
def test_sensitivity_estimate_holds_its_measured_peak():
    """The sensitivity is refused by its estimate (route "sweep"): at 512 px the measured
    peak (VmHWM rise, fresh process) is within [0.6, 1.5]x the estimate. Before SSIM ran in
    bounded chunks it was 1.8x (968 MB against 536 MB)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_parts_memory import measure

    m = measure("sensitivity", 512)
    assert 0.6 * m["estimate"] < m["rise"] < 1.5 * m["estimate"], m


def test_explainer_tiles_automatically_and_says_so(nets):
    a, b = _pair(120, 150, seed=7)
    exact = Explainer("alex", "0.1", "random", seed=3, feature_cache=None)
    untiled = min(exact.memory_plan((120, 150), kind=k).untiled
                  for k in ("distance", "decompose"))
    limit = untiled * 3 // 4
    small = Explainer("alex", "0.1", "random", seed=3, max_memory=limit, feature_cache=None)
    assert not exact.memory_plan((120, 150)).tiled
    for kind in ("distance", "decompose"):
        plan = small.memory_plan((120, 150), kind=kind)
        assert plan.tiled and plan.estimate <= limit
    d_exact = exact.distance(a, b, value_range="[0,1]")
    assert small.distance(a, b, value_range="[0,1]") == pytest.approx(d_exact, rel=1e-5)
    assert small.distance(a, [b, a], value_range="[0,1]") == pytest.approx([d_exact, 0.0],
                                                                            rel=1e-5)
    dec = small.decompose(a, b, value_range="[0,1]")
    assert dec.tiling is not None and dec.distance == pytest.approx(d_exact, rel=1e-5)
    expl = small.explain(a, b, value_range="[0,1]", attribution=None, sensitivity=False,
                         repair=False)
    d = expl.to_dict()
    assert d["tiling"]["tiled"] and d["tiling"]["budget_bytes"] == limit
    note = of_code(expl.warnings, TILED)
    assert len(note) == 1 and f"{d['tiling']['tiles']} tile" in note[0]
    assert exact.explain(a, b, value_range="[0,1]", attribution=None, sensitivity=False,
                         repair=False).to_dict()["tiling"] is None


def test_tiled_results_are_labelled_exact_whatever_the_mode(nets):
    """Tiles always run the exact fp32 network, so a tiled explanation made by a bf16
    Explainer says fp32 and exact, and carries no approximate-numbers notice."""
    from lpips_explain.core import modes
    from lpips_explain.notices import APPROXIMATE

    if modes.available_modes("cpu")["bf16"]:
        pytest.skip(modes.available_modes("cpu")["bf16"])
    a, b = _pair(120, 150, seed=7)
    exact = Explainer("alex", "0.1", "random", seed=3, feature_cache=None)
    limit = exact.memory_plan((120, 150), kind="decompose").untiled * 3 // 4
    fast = Explainer("alex", "0.1", "random", seed=3, max_memory=limit, feature_cache=None,
                     precision="bf16")
    untiled_fast = Explainer("alex", "0.1", "random", seed=3, feature_cache=None,
                             precision="bf16")
    # No part that runs in the fast mode (the distortion equivalents would: they are labelled)
    parts = dict(value_range="[0,1]", attribution=None, sensitivity=False, repair=False,
                 equivalents=False)
    tiled, approx = fast.explain(a, b, **parts), untiled_fast.explain(a, b, **parts)
    assert tiled.to_dict()["tiling"]["tiled"] and approx.to_dict()["tiling"] is None
    assert tiled.to_dict()["mode"] == {"precision": "fp32", "device": "cpu", "exact": True}
    assert not of_code(tiled.warnings, APPROXIMATE) and of_code(approx.warnings, APPROXIMATE)
    assert approx.to_dict()["mode"]["exact"] is False
    d_exact = exact.distance(a, b, value_range="[0,1]")
    assert tiled.distance == pytest.approx(d_exact, rel=1e-5)


def test_identical_inputs_short_circuit_to_exactly_zero(monkeypatch):
    e = Explainer("alex", "0.1", "random", feature_cache=None)
    a, _ = _pair(64, 64)
    calls = []
    e.model.features[0].register_forward_pre_hook(lambda *_: calls.append(1))
    assert e.distance(a, a.clone(), value_range="[0,1]") == 0.0
    assert calls == []
    b = a.clone()
    b[0, 0, 10, 10] = 1.0 - b[0, 0, 10, 10]  # one changed value is not identical
    assert e.distance(a, b, value_range="[0,1]") > 0.0


def test_refused_before_any_work_with_the_estimate():
    e = Explainer("vgg", "0.1", "random", max_memory="2MB", feature_cache=None)
    calls = []
    e.model.features[0].register_forward_pre_hook(lambda *_: calls.append(1))
    a, b = _pair(96, 120)
    with pytest.raises(MemoryBudgetError) as info:
        e.distance(a, b, value_range="[0,1]")
    exc = info.value
    assert exc.exit_code == 2 and isinstance(exc, InputError)
    assert exc.estimate > exc.budget == 2 * 10**6
    msg = str(exc)
    assert "2 MB" in msg and budget.format_bytes(exc.estimate) in msg and "--max-memory" in msg
    assert calls == []
    # explanation parts that cannot be tiled are refused too, before any work, when even one
    # image at a time exceeds the budget (alex at 96x120: a sweep of one is 2.35 MB)
    e2 = Explainer("alex", "0.1", "random", max_memory="2MB", feature_cache=None)
    e2.model.features[0].register_forward_pre_hook(lambda *_: calls.append(1))
    for kwargs in ({"attribution": "saliency", "sensitivity": False, "repair": False},
                   {"attribution": None, "sensitivity": True, "repair": False}):
        with pytest.raises(MemoryBudgetError, match="nothing was computed"):
            e2.explain(a, b, value_range="[0,1]", **kwargs)
    assert calls == []


def test_parts_that_do_not_fit_in_batches_of_16_run_in_smaller_ones():
    """A budget below the sensitivity's and the repair's batch of 16 (alex at 96x120: 35.5 MB
    and 20.9 MB) but above one image at a time: both run in the largest batches that fit,
    with the distances of an unbounded run."""
    small = Explainer("alex", "0.1", "random", max_memory="12MB", feature_cache=None)
    large = Explainer("alex", "0.1", "random", max_memory="1TB", feature_cache=None)
    a, b = _pair(96, 120)
    batches: list[int] = []
    small.model.features[0].register_forward_pre_hook(
        lambda _m, inputs: batches.append(int(inputs[0].shape[0])))
    geom = geometry.geometry_of(small.model)
    largest = {kind: max(n for n in (1, 2, 4, 8, 16)
                         if budget.untiled_bytes(geom, 96, 120, kind, n) <= small.max_memory)
               for kind in ("sweep", "score")}
    assert largest == {"sweep": 4, "score": 8}
    kwargs = {"attribution": None, "equivalents": False, "patch": 16, "value_range": "[0,1]"}
    got, want = small.explain(a, b, **kwargs), large.explain(a, b, **kwargs)
    assert max(batches) == 8  # the repair's batches; the sensitivity's are at most 4
    assert [i.distance for i in got.sensitivity.items] == pytest.approx(
        [i.distance for i in want.sensitivity.items], rel=1e-5)
    np.testing.assert_allclose(got.repair.curve_distance, want.repair.curve_distance,
                               rtol=1e-5)


def test_cli_max_memory(tmp_path):
    from conftest import to_uint8, write_png

    from lpips_explain.cli import main

    a, b = _pair(96, 96)
    pa = write_png(tmp_path / "a.png", to_uint8(a))
    pb = write_png(tmp_path / "b.png", to_uint8(b))
    common = [str(pa), str(pb), "--backbone-weights", "random", "--quiet"]
    assert main(["distance", *common, "--max-memory", "1kB"]) == 2
    assert main(["distance", *common, "--max-memory", "lots"]) == 2


@pytest.mark.parametrize("text,value", [("1.5GB", 1_500_000_000), ("800MB", 800_000_000),
                                        ("2GiB", 2 * 2**30), ("4096", 4096), (10**9, 10**9)])
def test_parse_bytes(text, value):
    assert budget.parse_bytes(text) == value


@pytest.mark.parametrize("bad", ["", "1.5 parsecs", "-1GB", "0", True])
def test_parse_bytes_refuses(bad):
    with pytest.raises(InputError):
        budget.parse_bytes(bad)


def test_alexnet_trunk_is_torchvisions_without_the_classifier():
    """core/trunks.py builds AlexNet's features alone (no 230 MB classifier): same modules,
    same random init for the same seed."""
    torch.manual_seed(11)
    ours = get_trunk("alex").build().features
    torch.manual_seed(11)
    theirs = tvm.alexnet(weights=None).features
    assert repr(ours) == repr(theirs)
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), theirs.state_dict().items(),
                                  strict=True):
        assert k1 == k2 and torch.equal(v1, v2)

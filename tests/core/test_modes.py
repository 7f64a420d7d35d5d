"""Precision and device modes: exact stays exact, approximations are labelled and close, refusals
are clear, gradients stay fp32 (core/modes.py, analyses/checks/mode_error.py, core/profiling.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import smooth_image, to_uint8, write_png

from lpips_explain import Explainer, errors
from lpips_explain.analyses.checks import mode_error
from lpips_explain.cli import main
from lpips_explain.core import modes
from lpips_explain.core.model import build_lpips
from lpips_explain.core.modes import Mode, ModeUnavailableError, mode_net
from lpips_explain.core.profiling import profile

RANDOM = ("--backbone-weights", "random")


def _candidates(size: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    ref = smooth_image(size, size, 11)
    cands = torch.cat([(ref + s * (smooth_image(size, size, 20 + k) - 0.5)).clamp(0, 1)
                       for k, s in enumerate(np.linspace(0.05, 0.6, n))])
    return ref, cands


@pytest.fixture(scope="module")
def exact_net():
    return build_lpips("alex", "0.1", "random", 0, progress=False)


def test_exact_mode_is_the_exact_model(random_explainer, pair):
    a, b = pair
    ex = Explainer("alex", "0.1", "random", seed=0, precision="fp32", device="cpu")
    assert ex.fast is ex.model and ex.mode == Mode("fp32", "cpu") and ex.mode.exact
    with torch.no_grad():
        direct = float(random_explainer.model(a, b)[0])
    # The same fp32 network (identity above); only the batch layout differs, and oneDNN may
    # pick another convolution kernel per shape (measured: 8e-7 relative on a Xeon with AMX),
    # so equal to fp32 rounding, far inside the 3e-2 that bf16 is allowed below.
    assert ex.distance(a, b, value_range="[0,1]") == pytest.approx(direct, rel=1e-5, abs=0)
    expl = ex.explain(a, b, value_range="[0,1]", attribution=None, sensitivity=False,
                      repair=False)
    assert expl.to_dict()["mode"] == {"precision": "fp32", "device": "cpu", "exact": True}
    assert not any(getattr(w, "code", None) == "approximate" for w in expl.warnings)


def test_bf16_is_labelled_close_and_keeps_gradients_exact(random_explainer, pair, exact_net):
    if modes.available_modes("cpu")["bf16"]:
        pytest.skip(modes.available_modes("cpu")["bf16"])
    ex = Explainer("alex", "0.1", "random", seed=0, precision="bf16")
    assert not ex.mode.exact and ex.mode.label == "approximate (bf16)"
    ref, cands = _candidates(48)
    approx = ex.distance(ref, list(cands), value_range="[0,1]")
    exact = random_explainer.distance(ref, list(cands), value_range="[0,1]")
    np.testing.assert_allclose(approx, exact, rtol=3e-2, atol=1e-4)
    assert approx != exact  # really computed in another precision
    # Same ranking on candidates that differ by more than the tolerance.
    assert np.argsort(approx).tolist() == np.argsort(exact).tolist()

    a, b = pair
    kw = dict(value_range="[0,1]", attribution="integrated_gradients", steps=4,
              sensitivity=True, repair=False)
    e_bf, e_ex = ex.explain(a, b, **kw), random_explainer.explain(a, b, **kw)
    d = e_bf.to_dict()
    assert d["mode"] == {"precision": "bf16", "device": "cpu", "exact": False}
    assert any(getattr(w, "code", None) == "approximate" for w in e_bf.warnings)
    assert "approximate (bf16)" in e_bf.summary[-1]
    # Attribution ran on the exact fp32 model: identical to the exact explainer's.
    assert np.array_equal(e_bf.attribution.per_channel, e_ex.attribution.per_channel)
    assert e_bf.distance == pytest.approx(e_ex.distance, rel=3e-2)
    sweeps = {s.transform: s.distances for s in e_bf.sensitivity.sweeps}
    for s in e_ex.sensitivity.sweeps:
        np.testing.assert_allclose(sweeps[s.transform], s.distances, rtol=5e-2, atol=2e-4)


def test_triplet_and_cli_carry_the_mode(tmp_path, capsys):
    if modes.available_modes("cpu")["bf16"]:
        pytest.skip(modes.available_modes("cpu")["bf16"])
    paths = [str(write_png(tmp_path / f"{k}.png", to_uint8(smooth_image(48, 48, k))))
             for k in range(3)]
    ex = Explainer("alex", "0.1", "random", precision="bf16")
    trip = ex.explain_triplet(*paths, attribution=None, patch=16)
    assert trip.to_dict()["mode"]["exact"] is False
    rc = main(["distance", paths[0], paths[1], *RANDOM, "--precision", "bf16", "--json"])
    out = capsys.readouterr().out
    assert rc == 0 and json.loads(out)["mode"] == {"precision": "bf16", "device": "cpu",
                                                   "exact": False}
    rc = main(["distance", paths[0], paths[1], *RANDOM, "--precision", "bf16"])
    out = capsys.readouterr().out
    assert rc == 0 and "[approximate (bf16)]" in out.splitlines()[0]
    rc = main(["distance", paths[0], paths[1], *RANDOM, "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["mode"]["exact"] is True


def test_unavailable_modes_are_clear_errors_never_fallbacks(monkeypatch, exact_net, tmp_path,
                                                            capsys):
    with pytest.raises(errors.UnknownOptionError, match="Did you mean 'int8'"):
        mode_net(exact_net, "int9")
    with pytest.raises(ModeUnavailableError, match="CUDA"):
        mode_net(exact_net, "fp16", "cpu")
    monkeypatch.setattr(modes, "cpu_flags", lambda: frozenset({"sse2", "avx2"}))
    # A refusal names only what runs on this CPU: here fp32 alone (no bf16, no int8).
    for refused in ("int8", "fp16", "bf16"):
        with pytest.raises(ModeUnavailableError) as caught:
            mode_net(exact_net, refused, "cpu")
        assert str(caught.value).lower().endswith("use --precision fp32 (exact)."), str(
            caught.value)
    with pytest.raises(ModeUnavailableError, match="VNNI or AMX"):
        mode_net(exact_net, "int8", "cpu")
    # ... and bf16 where the CPU has native bfloat16 (int8 still lacking VNNI).
    monkeypatch.setattr(modes, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    with pytest.raises(ModeUnavailableError, match=r"Use --precision fp32 \(exact\) or bf16\.$"):
        mode_net(exact_net, "int8", "cpu")
    monkeypatch.setattr(modes, "cpu_flags", lambda: frozenset({"sse2", "avx2"}))
    with pytest.raises(ModeUnavailableError, match="bfloat16"):
        Explainer("alex", "0.1", "random", precision="bf16")
    monkeypatch.setattr(modes, "cuda_available", lambda: False)
    assert modes.resolve_device("auto") == "cpu"
    with pytest.raises(ModeUnavailableError, match="no CUDA GPU"):
        Explainer("alex", "0.1", "random", device="cuda")
    png = str(write_png(tmp_path / "a.png", to_uint8(smooth_image(48, 48, 1))))
    rc = main(["distance", png, png, *RANDOM, "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and "no CUDA GPU" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_fidelity_of_exact_is_perfect_and_of_bf16_high(exact_net):
    fset = mode_error.fidelity_set(32)
    assert fset.pairs >= 100 and len(fset.triplets) > 1000
    same = mode_error.measure_fidelity(exact_net, exact_net, Mode(), fset=fset)
    assert same.spearman == pytest.approx(1.0, abs=1e-12)
    assert (same.max_abs_error, same.agreement_2afc) == (0.0, 1.0)
    if modes.available_modes("cpu")["bf16"]:
        return
    net, mode = mode_net(exact_net, "bf16")
    fid = mode_error.measure_fidelity(exact_net, net, mode, fset=fset)
    assert 0 < fid.max_abs_error < 0.05 and fid.mean_abs_error <= fid.max_abs_error
    assert fid.spearman > 0.98 and fid.agreement_2afc > 0.9
    # An independent check of one figure: the 2AFC share recomputed from the raw distances.
    de = mode_error.distances(exact_net, fset)
    assert np.allclose(np.concatenate(de), fid.exact)


def test_profile_rows_and_cli(exact_net, capsys):
    rows = profile([exact_net], [32, 48], ["fp32"], batch=2, repeats=1)
    assert [(r.size, r.mode.precision) for r in rows] == [(32, "fp32"), (48, "fp32")]
    assert all(r.latency_ms > 0 and r.throughput > 0 and r.peak_mb >= 0 for r in rows)
    assert rows[0].to_dict()["exact"] is True
    rc = main(["profile", "--sizes", "32", "--precision", "fp32", *RANDOM, "--batch", "2",
               "--repeats", "1", "--fidelity-size", "0", "--json", "--quiet"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and d["rows"][0]["net"] == "alex" and d["machine"]["cores"] >= 1
    with pytest.raises(errors.InputError):
        profile([exact_net], [16], ["fp32"])


@pytest.mark.slow
def test_int8_is_labelled_close_and_built_once(exact_net):
    missing = modes.int8_missing()
    if missing:
        pytest.skip(missing)
    net, mode = mode_net(exact_net, "int8")
    assert not mode.exact and mode.to_dict() == {"precision": "int8", "device": "cpu",
                                                 "exact": False}
    ref, cands = _candidates(64, 8)
    from lpips_explain.core.model import ReferenceScorer

    with torch.no_grad():
        approx = ReferenceScorer(net, ref)(cands).double().numpy()
        exact = ReferenceScorer(exact_net, ref)(cands).double().numpy()
        pair_d = float(net(ref, cands[:1])[0])
    np.testing.assert_allclose(approx, exact, rtol=5e-2, atol=1e-3)
    assert pair_d == pytest.approx(float(approx[0]), rel=1e-4)
    assert np.argsort(approx).tolist() == np.argsort(exact).tolist()
    # A second network with the same weights reuses the compiled encoder (built once).
    again, _ = mode_net(build_lpips("alex", "0.1", "random", 0, progress=False), "int8")
    assert again._int8 is net._int8
    # Another image size runs on the same compiled graph.
    other = smooth_image(72, 96, 3)
    with torch.no_grad():
        assert float(net(other, other)[0]) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(pair, random_explainer):
    a, b = pair
    ref, cands = _candidates(64)
    ex = Explainer("alex", "0.1", "random", device="cuda")
    assert ex.mode.device.startswith("cuda") and ex.mode.exact
    got = ex.distance(ref, list(cands), value_range="[0,1]")
    want = random_explainer.distance(ref, list(cands), value_range="[0,1]")
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    e = ex.explain(a, b, value_range="[0,1]", attribution=None, repair=True, patch=16)
    w = random_explainer.explain(a, b, value_range="[0,1]", attribution=None, repair=True,
                                 patch=16)
    assert e.distance == pytest.approx(w.distance, abs=1e-4)
    for x, y in zip(e.decomposition.layers, w.decomposition.layers, strict=True):
        assert x.distance == pytest.approx(y.distance, abs=1e-4)
    for precision in ("bf16", "fp16"):
        if torch.cuda.is_bf16_supported() or precision == "fp16":
            approx = Explainer("alex", "0.1", "random", device="cuda", precision=precision)
            d = approx.distance(ref, list(cands), value_range="[0,1]")
            np.testing.assert_allclose(d, want, rtol=5e-2, atol=1e-3)
            assert approx.mode.to_dict()["exact"] is False

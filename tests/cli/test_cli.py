"""The CLI as a user meets it: exit codes 0/2/3, JSON keys, files written, no tracebacks.

Every command runs in-process (``main(argv)`` with capsys): the same parser, the same error
handling and the same output as the installed script, without re-importing torch per test.
One subprocess smoke test checks that the installed entry point is wired to that ``main``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, png_bytes
from helpers import cli

RANDOM = ("--backbone-weights", "random")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Small PNGs on disk: A, a structured change of A (B) and a stronger one (C)."""
    root = tmp_path_factory.mktemp("cli")
    out = {}
    for name, shift in (("a", 0.0), ("b", 0.15), ("c", 0.4)):
        path = root / f"{name}.png"
        path.write_bytes(png_bytes(11, 64, shift=shift))
        out[name] = str(path)
    return out


def test_distance_json_matches_api(capsys, files, random_explainer):
    rc, out, err = cli(capsys, "distance", files["a"], files["b"], *RANDOM, "--json")
    assert rc == 0, err
    data = json.loads(out)
    for key in ("schema", "distance", "net", "version", "backbone", "inputs", "layers",
                "attribution", "sensitivity", "repair", "summary", "warnings", "timings_ms"):
        assert key in data
    assert data["backbone"]["perceptual"] is False and data["backbone"]["weights"] == "random"
    assert {"a", "b", "size", "policy"} <= set(data["inputs"])
    assert data["inputs"]["size"] == [64, 64]
    assert data["inputs"]["a"]["name"] == "a.png" and data["inputs"]["b"]["name"] == "b.png"
    layer = data["layers"][0]
    assert {"name", "distance", "share", "resolution", "top_channels"} <= set(layer)
    assert {"index", "contribution", "weight"} <= set(layer["top_channels"][0])
    assert any("NOT a perceptual metric" in w for w in data["warnings"])
    # oracle: the Python API on the same files (alex, v0.1, random trunk, seed 0)
    api = random_explainer.distance(files["a"], files["b"])
    assert api > 0 and abs(data["distance"] - api) < 1e-6
    assert abs(sum(lay["distance"] for lay in data["layers"]) - data["distance"]) < 1e-9


def test_distance_table_is_readable(capsys, files, random_explainer):
    rc, out, err = cli(capsys, "distance", files["a"], files["b"], *RANDOM, "--top-k", "2")
    assert rc == 0, err
    assert "relu5" in out and "NOT A PERCEPTUAL METRIC" in out
    # the numbers printed are the API's numbers, not a layout with placeholders
    dec = random_explainer.decompose(files["a"], files["b"], top_k=2)
    head = re.search(r"LPIPS distance: ([0-9.]+)", out)
    assert head and float(head.group(1)) == pytest.approx(dec.distance, abs=1e-6)
    total = re.search(r"^total\s+([0-9.]+)", out, re.MULTILINE)
    assert total and float(total.group(1)) == pytest.approx(dec.distance, abs=1e-5)
    for lay in dec.layers:
        row = re.search(rf"^{lay.name}\s+\S+\s+([0-9.]+)\s+([0-9.]+)%\s+(.*)$", out, re.MULTILINE)
        assert row, lay.name
        assert float(row.group(1)) == pytest.approx(lay.distance, abs=1e-5)
        assert float(row.group(2)) == pytest.approx(100 * lay.share, abs=0.05)
        listed = [int(c.split(":")[0]) for c in row.group(3).split(", ")]
        assert listed == [c.index for c in lay.top_channels]  # two per layer, in order
    # the random-trunk warning goes to stderr as well, once per warning
    assert "warning:" in err and "NOT a perceptual metric" in err


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_bad_input_exits_2_without_traceback(capsys, tmp_path, files, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    rc, out, err = cli(capsys, "distance", files["a"], str(bad), *RANDOM)
    assert rc == 2 and out == ""
    assert err.startswith("lpips-explain: error: Image B (bad.png)")
    assert len(err.strip().splitlines()) == 1  # one line a person can act on


def test_missing_file_exits_2(capsys, tmp_path, files):
    rc, _, err = cli(capsys, "distance", files["a"], str(tmp_path / "nope.png"), *RANDOM)
    assert rc == 2 and "does not exist" in err and "nope.png" in err


def test_size_policy_error_exits_2(capsys, tmp_path, files):
    from PIL import Image

    Image.open(files["b"]).resize((48, 40)).save(tmp_path / "small.png")
    small = str(tmp_path / "small.png")
    rc, out, err = cli(capsys, "distance", files["a"], small, *RANDOM, "--size-policy", "error")
    assert rc == 2 and out == "" and "resize" in err
    rc, out, err = cli(capsys, "distance", files["a"], small, *RANDOM, "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["inputs"]["size"] == [40, 48] and data["inputs"]["policy"] == "resize"
    rc, out, err = cli(capsys, "distance", files["a"], small, *RANDOM, "--json",
                       "--size-policy", "crop")
    assert rc == 0, err
    assert json.loads(out)["inputs"]["size"] == [40, 48]


def test_weights_unavailable_exits_3(capsys, files, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("LPIPS_EXPLAIN_OFFLINE", "1")
    monkeypatch.delenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", raising=False)
    rc, out, err = cli(capsys, "distance", files["a"], files["b"])
    assert rc == 3 and out == ""
    assert "alexnet-owt-7be5be79.pth" in err and str(tmp_path) in err
    # a named file that does not exist is unavailable weights too
    rc, _, err = cli(capsys, "distance", files["a"], files["b"], "--backbone-weights",
                     str(tmp_path / "missing.pth"))
    assert rc == 3 and "missing.pth" in err


def test_env_variable_is_the_cli_default(capsys, files, monkeypatch):
    monkeypatch.setenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", "random")
    rc, out, err = cli(capsys, "distance", files["a"], files["b"], "--json")
    assert rc == 0, err
    assert json.loads(out)["backbone"]["weights"] == "random"


def test_help_explains_options(capsys):
    rc, out, _ = cli(capsys, "distance", "--help")
    assert rc == 0
    for word in ("--backbone-weights", "--size-policy", "--json", "exit codes", "--net"):
        assert word in out
    rc, out, _ = cli(capsys, "--help")
    assert rc == 0 and all(cmd in out for cmd in ("distance", "explain", "triplet"))


def test_version_before_the_command_is_the_package_s_after_it_the_lpips_version(capsys,
                                                                                files):
    import lpips_explain

    for flag in ("--version", "-V"):
        rc, out, _ = cli(capsys, flag)
        assert rc == 0 and out.strip() == f"lpips-explain {lpips_explain.__version__}"
    rc, out, err = cli(capsys, "distance", files["a"], files["b"], *RANDOM, "--version", "0.0",
                       "--json")
    assert rc == 0 and json.loads(out)["version"] == "0.0", err


def test_usage_errors_exit_2(capsys, files):
    rc, _, err = cli(capsys, "distance", files["a"], files["b"], "--net", "resnet")
    assert rc == 2 and "invalid choice" in err and "'alex'" in err
    rc, _, err = cli(capsys, "distance", files["a"])
    assert rc == 2 and "required" in err
    rc, _, err = cli(capsys, "explain", files["a"], files["b"], *RANDOM)  # no --out
    assert rc == 2 and "--out" in err
    rc, _, err = cli(capsys)
    assert rc == 2


def test_bad_seed_exits_2_without_traceback(capsys, files):
    rc, _, err = cli(capsys, "distance", files["a"], files["b"], *RANDOM,
                     "--seed", "99999999999999999999999")
    assert rc == 2 and "seed" in err


@pytest.mark.slow  # over 2 s on the 2-core machine: the whole suite only
def test_explain_and_triplet_write_files(capsys, files, tmp_path):
    a, b, c = files["a"], files["b"], files["c"]
    rc, out, err = cli(capsys, "explain", a, b, "--out", str(tmp_path / "e"), *RANDOM,
                       "--attribution", "saliency", "--patch", "32", "--json", "--quiet")
    assert rc == 0, err
    data = json.loads(out)
    assert data["attribution"]["method"] == "saliency" and data["repair"]["patch"] == 32
    assert data["sensitivity"] and data["repair"]["curve"]
    for name in ("explanation.json", "report.html", "summary.png"):
        assert (tmp_path / "e" / name).is_file()
    on_disk = json.loads((tmp_path / "e" / "explanation.json").read_text())
    assert on_disk["distance"] == data["distance"]
    for rel in on_disk["files"].values():
        assert (tmp_path / "e" / rel).is_file(), rel
    assert list((tmp_path / "e").glob("maps/*.npy"))

    rc, out, err = cli(capsys, "triplet", a, b, c, "--out", str(tmp_path / "t"), *RANDOM,
                       "--attribution", "none", "--patch", "32", "--quiet")
    assert rc == 0, err
    tri = json.loads((tmp_path / "t" / "triplet.json").read_text())
    # C is the stronger change of A: LPIPS must find B closer, and the printed summary says so
    assert tri["closer"] == "a" and tri["margin"] > 0 and "flip" in tri
    assert tri["attribution"] == {"a": None, "b": None}
    assert tri["summary"][0] in out and "wrote" in out
    assert (tmp_path / "t" / "report.html").is_file() and (tmp_path / "t" / "summary.png").is_file()


def test_explain_refusals_come_before_work(capsys, files, tmp_path):
    rc, _, err = cli(capsys, "explain", files["a"], files["b"], "--out", str(tmp_path / "x"),
                     *RANDOM, "--attribution", "integrated_gradient")
    assert rc == 2 and "Did you mean" in err
    assert not list((tmp_path / "x").glob("*.json"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc, _, err = cli(capsys, "explain", files["a"], files["b"], "--out", str(blocker / "out"),
                     *RANDOM, "--attribution", "none")
    assert rc == 2 and "error:" in err and "file" in err


@pytest.mark.slow
def test_installed_entry_point_smoke(files, random_explainer):
    """The one subprocess: the console script installed by pip runs ``main``."""
    script = Path(sys.executable).with_name("lpips-explain")
    assert script.is_file(), f"{script} is missing: install the package (scripts/setup.sh)"
    env = {**os.environ, "LPIPS_EXPLAIN_OFFLINE": "1"}
    res = subprocess.run([str(script), "distance", files["a"], files["b"], *RANDOM, "--json"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    data = json.loads(res.stdout)
    assert abs(data["distance"] - random_explainer.distance(files["a"], files["b"])) < 1e-6


def test_repair_points_option_refuses_a_bad_value(capsys, tmp_path):
    a = tmp_path / "a.png"
    rc, _, err = cli(capsys, "explain", str(a), str(a), "--out", str(tmp_path / "o"),
                     "--repair-points", "1")
    assert rc == 2 and "--repair-points" in err and "integer >= 2 or 'all'" in err

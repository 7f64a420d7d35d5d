"""The CLI as a user meets it: a subprocess, exit codes, JSON keys, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ASSETS, REPO

PAIR = (ASSETS / "originals" / "astronaut.png", ASSETS / "distorted" / "astronaut_jpeg_q10.png")


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "LPIPS_EXPLAIN_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lpips_explain", *args], capture_output=True,
                          text=True, env=full_env, cwd=REPO, timeout=600)


def test_distance_json_matches_api(random_explainer):
    res = run_cli("distance", *map(str, PAIR), "--backbone-weights", "random", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    for key in ("schema", "distance", "net", "version", "backbone", "inputs", "layers",
                "attribution", "sensitivity", "repair", "summary", "warnings", "timings_ms"):
        assert key in data
    assert data["backbone"]["perceptual"] is False and data["backbone"]["weights"] == "random"
    assert {"a", "b", "size", "policy"} <= set(data["inputs"])
    assert data["inputs"]["size"] == [256, 256]
    layer = data["layers"][0]
    assert {"name", "distance", "share", "resolution", "top_channels"} <= set(layer)
    assert {"index", "contribution", "weight"} <= set(layer["top_channels"][0])
    assert any("NOT a perceptual metric" in w for w in data["warnings"])
    assert abs(data["distance"] - random_explainer.distance(*PAIR)) < 1e-6
    assert abs(sum(lay["distance"] for lay in data["layers"]) - data["distance"]) < 1e-9


def test_distance_table_is_readable():
    res = run_cli("distance", *map(str, PAIR), "--backbone-weights", "random", "--top-k", "2")
    assert res.returncode == 0, res.stderr
    assert "LPIPS distance:" in res.stdout and "relu5" in res.stdout and "total" in res.stdout
    assert "NOT A PERCEPTUAL METRIC" in res.stdout


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_bad_input_exits_2_without_traceback(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    res = run_cli("distance", str(PAIR[0]), str(bad), "--backbone-weights", "random")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "error:" in res.stderr


def test_missing_file_exits_2(tmp_path):
    res = run_cli("distance", str(PAIR[0]), str(tmp_path / "nope.png"),
                  "--backbone-weights", "random")
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_size_policy_error_exits_2(tmp_path):
    from PIL import Image

    Image.open(PAIR[1]).resize((128, 96)).save(tmp_path / "small.png")
    res = run_cli("distance", str(PAIR[0]), str(tmp_path / "small.png"),
                  "--backbone-weights", "random", "--size-policy", "error")
    assert res.returncode == 2 and "resize" in res.stderr and "Traceback" not in res.stderr
    ok = run_cli("distance", str(PAIR[0]), str(tmp_path / "small.png"),
                 "--backbone-weights", "random", "--json")
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["inputs"]["size"] == [96, 128]


def test_weights_unavailable_exits_3(tmp_path):
    res = run_cli("distance", *map(str, PAIR), env={"TORCH_HOME": str(tmp_path)})
    assert res.returncode == 3
    assert "alexnet-owt-7be5be79.pth" in res.stderr and "Traceback" not in res.stderr


def test_env_variable_is_the_cli_default():
    res = run_cli("distance", *map(str, PAIR), "--json",
                  env={"LPIPS_EXPLAIN_BACKBONE_WEIGHTS": "random"})
    assert res.returncode == 0 and json.loads(res.stdout)["backbone"]["weights"] == "random"


def test_help_explains_options():
    res = run_cli("distance", "--help")
    assert res.returncode == 0
    for word in ("--backbone-weights", "--size-policy", "--json", "exit codes", "--net"):
        assert word in res.stdout


def test_bad_seed_exits_2_without_traceback():
    res = run_cli("distance", *map(str, PAIR), "--backbone-weights", "random",
                  "--seed", "99999999999999999999999")
    assert res.returncode == 2 and "seed" in res.stderr and "Traceback" not in res.stderr

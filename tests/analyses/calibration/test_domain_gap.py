"""Domain gap: identical sets give no gap, a planted shift shows up where it was planted,
the MMD and its p-value match an independent computation, the data checks come from pixels."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from conftest import REPO, smooth_image, to_uint8
from helpers import cli
from PIL import Image

from lpips_explain import InputError
from lpips_explain.analyses.calibration.domain_gap import SetStats, compare_layers, mmd_test

SIDE = 40


def png(t: torch.Tensor, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    arr = to_uint8(t)
    im = Image.fromarray(arr[..., 0], mode="L") if mode == "L" else Image.fromarray(arr)
    im.save(buf, format="PNG")
    return buf.getvalue()


def image_set(seed: int, n: int = 8, noise: float = 0.0, side: int = SIDE) -> list:
    out = []
    for i in range(n):
        t = smooth_image(side, side, seed + i)
        if noise:
            g = torch.Generator().manual_seed(seed + 1000 + i)
            t = (t + noise * torch.randn(t.shape, generator=g)).clamp(0, 1)
        out.append((f"img{i}.png", png(t)))
    return out


def test_identical_sets_give_zero_gap_and_p_one(random_explainer):
    images = image_set(0)
    gap = random_explainer.domain_gap(images, images, permutations=200)
    assert len(gap.layers) == 5
    for lay in gap.layers:
        assert lay.mmd2 == 0.0 and lay.p_value == 1.0
        assert lay.mean_shift == 0.0 and lay.std_shift == 0.0
    assert gap.summary[0].startswith("No gap")


def test_noise_shows_up_as_a_significant_gap(random_explainer):
    # Different pictures in the two sets (the test assumes exchangeable images, not pairs).
    clean = random_explainer.domain_gap(image_set(0, n=12), image_set(100, n=12),
                                        permutations=200)
    gap = random_explainer.domain_gap(image_set(0, n=12), image_set(100, n=12, noise=0.3),
                                      permutations=200)
    base = {g.name: g for g in clean.layers}
    for g in gap.layers:
        assert g.p_value == pytest.approx(1 / 201), g
        assert g.mmd2 > base[g.name].mmd2
    assert [g.rank for g in gap.layers] == [1, 2, 3, 4, 5]
    assert all(a.mmd2 >= b.mmd2 for a, b in zip(gap.layers, gap.layers[1:], strict=False))
    assert any("Largest gap in layer" in s for s in gap.summary)


def _stats(name: str, pooled: list[np.ndarray]) -> SetStats:
    n = len(pooled[0])
    return SetStats(name, n, (), ((SIDE, SIDE),) * n, (False,) * n, (0.8,) * n, (0.0,) * n,
                    tuple(pooled), tuple(p.mean(axis=0) for p in pooled),
                    tuple(p.std(axis=0) for p in pooled))


def test_a_planted_shift_shows_up_in_the_layers_it_touches():
    """Set B holds set A's per-image features (shuffled: the same sample) except in layers
    1 and 3, where B is a fresh draw with a few channels shifted: only those layers differ,
    and they lead the ranking."""
    rng = np.random.default_rng(0)
    names = ("l0", "l1", "l2", "l3", "l4")
    channels = (16, 24, 32, 24, 16)
    a = [np.abs(rng.normal(0.3, 0.1, size=(30, c))) for c in channels]
    order = rng.permutation(30)
    b = [x[order].copy() for x in a]
    planted = {1: 0.4, 3: 0.3}
    for layer, shift in planted.items():
        b[layer] = np.abs(rng.normal(0.3, 0.1, size=(30, channels[layer])))
        b[layer][:, :8] += shift
    gaps = compare_layers(_stats("A", a), _stats("B", b), names, permutations=300, seed=1)
    by = {g.name: g for g in gaps}
    assert [g.name for g in gaps[:2]] == ["l1", "l3"]
    for layer in planted:
        g = by[names[layer]]
        assert g.p_value == pytest.approx(1 / 301)
        assert g.mean_shift == pytest.approx(np.linalg.norm(a[layer].mean(0) - b[layer].mean(0)),
                                             rel=1e-12)
        assert {i for i, _ in g.top_channels[:5]} <= set(range(8))
    for name in ("l0", "l2", "l4"):
        assert by[name].mmd2 < 1e-12 and by[name].p_value > 0.9
        assert by[name].mean_shift < 1e-12


def _mmd_reference(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float]:
    """Biased MMD^2 with a Gaussian kernel and the median heuristic, written out in loops."""
    x = np.concatenate([xa, xb])
    dists = [np.sqrt(((x[i] - x[j]) ** 2).sum()) for i in range(len(x)) for j in range(len(x))
             if i != j]
    sigma = float(np.median([d for d in dists if d > 0]))

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.exp(-((u - v) ** 2).sum() / (2 * sigma ** 2)))

    kxx = np.mean([k(u, v) for u in xa for v in xa])
    kyy = np.mean([k(u, v) for u in xb for v in xb])
    kxy = np.mean([k(u, v) for u in xa for v in xb])
    return kxx + kyy - 2 * kxy, sigma


def test_mmd_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    xa, xb = rng.normal(size=(7, 5)), rng.normal(0.5, 1.0, size=(9, 5))
    mmd2, p, sigma = mmd_test(xa, xb, permutations=500, seed=0)
    ref, ref_sigma = _mmd_reference(xa, xb)
    assert mmd2 == pytest.approx(ref, rel=1e-10)
    assert sigma == pytest.approx(ref_sigma, rel=1e-12)
    # The permutation p-value, recomputed by relabelling with the same generator.
    x = np.concatenate([xa, xb])
    s = np.concatenate([np.full(7, 1 / 7), np.full(9, -1 / 9)])
    kern = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / (2 * sigma ** 2))
    g = np.random.default_rng(0)
    perms = [g.permutation(s) for _ in range(500)]
    count = sum(float(q @ kern @ q) >= mmd2 - 1e-12 for q in perms)
    assert p == pytest.approx((1 + count) / 501)
    far = mmd_test(xa, xb + 10, permutations=99, seed=0)
    assert far[1] == pytest.approx(1 / 100)


def test_checks_come_from_the_pixels(random_explainer, tmp_path):
    gray = []
    for i in range(3):
        t = smooth_image(SIDE, SIDE, 50 + i)
        t = t.mean(dim=1, keepdim=True).expand(1, 3, SIDE, SIDE)
        gray.append((f"g{i}.png", png(t, mode="L")))
    flat = [(f"f{i}.png", png(0.4 + 0.2 * smooth_image(48, 64, 60 + i))) for i in range(3)]
    gap = random_explainer.domain_gap(gray, flat, permutations=20)
    d = gap.to_dict()
    a, b = d["sets"]["a"], d["sets"]["b"]
    assert a["grayscale_share"] == 1.0 and b["grayscale_share"] == 0.0
    assert a["median_size"] == [SIDE, SIDE] and b["median_size"] == [48, 64]
    assert b["median_side_vs_heads_64px"] == pytest.approx(48 / 64)
    assert b["median_side_vs_trunk_256px"] == pytest.approx(48 / 256)
    # Dynamic range: 1st-99th percentile of luminance, checked on one image independently.
    arr = np.asarray(Image.open(io.BytesIO(flat[0][1]))).astype(np.float64) / 255
    lum = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]
    expected = np.quantile(lum, 0.99) - np.quantile(lum, 0.01)
    assert gap.b.ranges[0] == pytest.approx(expected, abs=1e-6)
    assert b["low_range_share"] == 1.0 and a["low_range_share"] < 1.0
    assert any("grayscale" in s for s in gap.summary)


def test_refused_images_are_reported_and_zips_read(random_explainer, tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    for name, data in image_set(5, n=4):
        (folder / name).write_bytes(data)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "small.png").write_bytes(png(smooth_image(12, 12, 1)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in image_set(0, n=4):
            zf.writestr(f"set/{name}", data)
        zf.writestr("../escape.png", image_set(9, n=1)[0][1])
    gap = random_explainer.domain_gap(buf.getvalue(), folder, permutations=10,
                                      judgments=REPO / "assets" / "judgments" /
                                      "synthetic_judgments.csv")
    assert gap.a.n_images == 4 and [s.name for s in gap.a.refused] == ["../escape.png"]
    assert gap.b.n_images == 4
    assert sorted(s.name for s in gap.b.refused) == ["broken.png", "small.png"]
    assert gap.n_judgments == 36
    assert any("36 judged triplets available for 1152 head weights" in s for s in gap.summary)
    with pytest.raises(InputError, match="no usable image"):
        random_explainer.domain_gap([("x.png", b"junk")], folder, permutations=0)


@pytest.mark.slow  # a CLI process over folders of images
def test_cli_domain_gap(tmp_path, capsys):
    for sub, seed, noise in (("a", 0, 0.0), ("b", 0, 0.1)):
        (tmp_path / sub).mkdir()
        for name, data in image_set(seed, n=6, noise=noise):
            (tmp_path / sub / name).write_bytes(data)
    args = ["domain-gap", str(tmp_path / "a"), str(tmp_path / "b"), "--backbone-weights",
            "random", "--permutations", "50"]
    # The installed entry point once (JSON), then in-process: the text and a bad folder.
    env = {**__import__("os").environ, "LPIPS_EXPLAIN_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "lpips_explain", *args, "--json"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["kind"] == "domain_gap" and len(data["ranking"]) == 5
    assert data["sets"]["a"]["n_images"] == 6 and data["layers"][0]["rank"] == 1
    rc, out, _ = cli(capsys, *args)
    assert rc == 0 and "MMD^2" in out
    rc, _, err = cli(capsys, *args[:2], str(tmp_path / "nope"), *args[3:])
    assert rc == 2 and "nope" in err

"""The audit: input reading, the local engine against the official package, resumption after
an interruption, the summary's findings, the report and the CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from audit_data import make_pairs, make_triplets, official_distances, official_with_our_trunk
from conftest import REPO, smooth_image, to_uint8, write_png, zip_bytes

from lpips_explain import Explainer
from lpips_explain.analyses.calibration import two_afc
from lpips_explain.analyses.pair import quality
from lpips_explain.audit.local import run_local
from lpips_explain.audit.settings import AuditSettings, settings_for
from lpips_explain.audit.summary import summarize
from lpips_explain.audit.table import read_audit_input
from lpips_explain.audit.upload import extract_zip
from lpips_explain.errors import InputError


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return Explainer("alex", "0.1", "random", seed=0)


@pytest.fixture(scope="module")
def settings(explainer) -> AuditSettings:
    return settings_for(explainer.model, size_policy="resize", max_pixels=None)


@pytest.fixture(scope="module")
def official(explainer):
    return official_with_our_trunk(explainer.model)


@pytest.fixture(scope="module")
def pairs_set(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"), 240)


@pytest.fixture(scope="module")
def triplet_set(tmp_path_factory):
    return make_triplets(tmp_path_factory.mktemp("triplets"), 96)


@pytest.fixture(scope="module")
def pairs_run(pairs_set, settings, explainer, tmp_path_factory):
    """One uninterrupted local run over the pairs (2 decoding workers)."""
    table = read_audit_input(pairs_set.csv)
    out = tmp_path_factory.mktemp("pairs_out")
    return table, run_local(table, out, settings, model=explainer.model, workers=2)


@pytest.fixture(scope="module")
def triplets_run(triplet_set, settings, explainer, tmp_path_factory):
    table = read_audit_input(triplet_set.csv)
    out = tmp_path_factory.mktemp("tri_out")
    return table, run_local(table, out, settings, model=explainer.model, workers=1)


def _by_id(table) -> dict[str, dict]:
    return {r["id"]: r for r in table.to_pylist()}


# --------------------------------------------------------------------------- intake


def test_reading_pairs_triplets_and_folders(tmp_path, pairs_set, triplet_set):
    t = read_audit_input(pairs_set.csv)
    assert t.kind == "pairs" and len(t) == pairs_set.n_rows
    assert t.extra_columns == ("group",)
    first = t.rows[0]
    assert first.id == "pair-000" and first.shown == ("img/0_a.png", "img/0_b.png")
    assert Path(first.images[0]) == pairs_set.csv.parent / "img" / "0_a.png"  # relative to CSV
    assert dict(first.extra) == {"group": "g0"}
    assert next(r for r in t.rows if r.id == "empty-cell").problem == "no path given for a"

    tri = read_audit_input(triplet_set.csv)
    assert tri.kind == "triplets" and tri.roles == ("ref", "p0", "p1")
    judges = {r.id: (r.judge, r.problem) for r in tri.rows}
    assert judges["t001"][0] is not None and 0 <= judges["t001"][0] <= 1
    assert judges["bad-judge"] == (None, "judge 'abc' is not a number in [0, 1]")
    assert judges["judge-range"][0] is None and "not a number in [0, 1]" in judges["judge-range"][1]

    # No id column: rows are numbered; an "id"-like extra column is kept as data.
    noid = read_audit_input(make_pairs(tmp_path / "noid", 3, ids=False).csv)
    assert [r.id for r in noid.rows][:3] == ["row-1", "row-2", "row-3"]

    # A folder with a/ and b/, matched by name; a file without partner is a failing row.
    for side in ("a", "b"):
        (tmp_path / "f" / side).mkdir(parents=True)
    for name in ("x.png", "y.png"):
        (tmp_path / "f" / "a" / name).write_bytes(b"")
    (tmp_path / "f" / "b" / "x.png").write_bytes(b"")
    folder = read_audit_input(tmp_path / "f")
    assert [r.id for r in folder.rows] == ["x.png", "y.png"]
    assert folder.rows[0].problem is None
    assert folder.rows[1].problem == "no file named 'y.png' in b/ to match a/y.png"


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("x,y\n1,2\n", "has the columns x, y; expected a,b"),
    ("ref,p0,p1\nr,a,b\n", "no judge column"),
    ("a,b,id\nx,y,1\nx,y,1\n", "appears twice"),
    ("a,b,id\nx,y,\n", "empty id"),
    ("a,b\n", "no rows"),
    ("a,b,A\nx,y,z\n", "more than once"),
])
def test_bad_inputs_are_refused_whole(tmp_path, text, message):
    path = tmp_path / "in.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_audit_input(path)


def test_missing_input_and_folder_without_a_b(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_audit_input(tmp_path / "nothing.csv")
    with pytest.raises(InputError, match="has no a/ and no b/"):
        read_audit_input(tmp_path)


def test_zip_extraction_is_safe(tmp_path):
    ok = extract_zip(zip_bytes({"set/a.png": b"1", "set/sub/b.png": b"22", "__MACOSX/x": b""}),
                     tmp_path / "ok")
    assert sorted(p.relative_to(tmp_path / "ok").as_posix() for p in ok) == \
        ["set/a.png", "set/sub/b.png"]
    for name in ("../evil.png", "/abs.png", "a/../../evil.png", "C:/x.png", "a\\..\\x.png"):
        with pytest.raises(InputError, match="unsafe path"):
            extract_zip(zip_bytes({name: b"x"}), tmp_path / "bad")
    assert not (tmp_path / "evil.png").exists()
    with pytest.raises(InputError, match="symbolic link"):
        extract_zip(zip_bytes({"link.png": b"/etc/passwd"}, links=("link.png",)), tmp_path / "l")
    with pytest.raises(InputError, match="more than the 2 allowed"):
        extract_zip(zip_bytes({"1": b"", "2": b"", "3": b""}), tmp_path / "n", max_files=2)
    with pytest.raises(InputError, match="more than 1,000 bytes"):
        extract_zip(zip_bytes({"big.png": b"0" * 5000}), tmp_path / "b", max_bytes=1000)
    with pytest.raises(InputError, match="not a zip"):
        extract_zip(b"PK but not really", tmp_path / "z")


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("h, w", [(40, 48), (11, 13)])
def test_pairwise_psnr_and_ssim_equal_scikit_image(h, w):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = torch.cat([smooth_image(h, w, s) for s in range(3)])
    b = (a + 0.1 * (torch.rand(a.shape, generator=torch.Generator().manual_seed(1)) - 0.5)
         ).clamp(0, 1)
    b[2] = a[2]  # identical: PSNR inf, SSIM 1

    def hwc(t: torch.Tensor) -> np.ndarray:
        return t.permute(1, 2, 0).double().numpy()

    sk_ssim = [structural_similarity(hwc(a[i]), hwc(b[i]), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0,
                                     channel_axis=-1) for i in range(3)]
    got = quality.ssim_pairs(a, b)
    np.testing.assert_allclose(got, sk_ssim, rtol=0, atol=2e-6)
    # the same numbers as one reference against one candidate at a time
    alone = [float(quality.ssim(a[i: i + 1], b[i: i + 1])[0]) for i in range(3)]
    np.testing.assert_allclose(got, alone, rtol=0, atol=1e-7)
    ps = quality.psnr_pairs(a, b)
    for i in range(2):
        assert ps[i] == pytest.approx(
            peak_signal_noise_ratio(hwc(a[i]), hwc(b[i]), data_range=1.0), abs=1e-9)
    assert math.isinf(ps[2])
    with pytest.raises(InputError, match="differ in shape"):
        quality.ssim_pairs(a, b[:2])


# --------------------------------------------------------------------------- the local engine


@pytest.mark.slow  # 240 pairs through 2 decoding workers
def test_local_engine_agrees_with_the_official_package(pairs_set, pairs_run, official):
    table, result = pairs_run
    rows = result.rows.to_pylist()
    assert [r["id"] for r in rows] == [r.id for r in table.rows]  # one row per input row, in order
    assert result.computed == len(rows) and result.reused == 0
    failed = {r["id"]: r["error_type"] for r in rows if r["status"] == "failed"}
    expected = {k: v for k, v in pairs_set.expected_errors.items() if k != "mismatch"}
    assert failed == expected  # under "resize" the size mismatch is resized, not refused
    assert "p0" not in _by_id(result.rows)["corrupt"]["error"]
    assert _by_id(result.rows)["missing"]["error"] == "a: the file 'img/nope.png' does not exist"
    base = pairs_set.csv.parent
    good = [r for r in rows if r["status"] == "ok" and r["id"] != "mismatch"]
    assert len(good) == 240
    want = official_distances(official, *[(base / r["a"], base / r["b"]) for r in good])
    got = np.array([r["distance"] for r in good])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # Per-layer shares add up to 1 and match the official per-layer terms.
    layers = [k for k in rows[0] if k.startswith("share_")]
    assert len(layers) == 5
    per_layer = official_distances(official, *[(base / r["a"], base / r["b"]) for r in good[:30]],
                                   per_layer=True)
    for r, per in zip(good[:30], per_layer, strict=True):
        terms = np.array(per)
        shares = np.array([r[k] for k in layers])
        assert shares.sum() == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(shares * r["distance"], terms, atol=1e-6)
        assert r["dominant_layer"] == layers[int(np.argmax(terms))].removeprefix("share_")
    # PSNR and SSIM equal scikit-image on the same decoded files.
    from lpips_explain.intake.images import load_image

    for r in good[:10]:
        ta, tb = load_image(base / r["a"]).tensor, load_image(base / r["b"]).tensor
        assert r["psnr"] == pytest.approx(float(quality.psnr(ta, tb)[0]), abs=1e-9)
        assert r["ssim"] == pytest.approx(float(quality.ssim(ta, tb)[0]), abs=1e-6)
        assert (r["height"], r["width"]) == tuple(ta.shape[-2:])
    mismatch = _by_id(result.rows)["mismatch"]
    assert mismatch["status"] == "ok" and "resized" in mismatch["notes"]
    assert _by_id(result.rows)["pair-007"]["group"] == "g2"  # extra columns kept
    on_disk = pq.read_table(result.path)
    assert on_disk.equals(result.rows)
    assert "signature" not in on_disk.column_names and "thumb_a" not in on_disk.column_names


def test_a_shared_reference_runs_the_trunk_once(tmp_path, settings, official):
    """Rows sharing a reference encode it once through the feature cache (within a batch and
    across batches) and score exactly what the uncached run scores."""
    from lpips_explain.core.cache import FeatureCache
    from lpips_explain.core.model import build_lpips

    img = tmp_path / "img"
    img.mkdir()
    refs = [write_png(img / f"ref{k}.png", to_uint8(smooth_image(40, 40, 500 + k)))
            for k in range(2)]
    lines = ["a,b"]
    for i in range(14):
        cand = write_png(img / f"c{i}.png", to_uint8(smooth_image(40, 40, 600 + i)))
        lines.append(f"{refs[0 if i < 11 else 1].name},{cand.name}")
    (img / "rows.csv").write_text("\n".join(lines) + "\n")
    table = read_audit_input(img / "rows.csv")
    net = build_lpips("alex", "0.1", "random", 0, progress=False)
    encoded = []
    encode = net.encode
    net.encode = lambda x: (encoded.append(x.shape[0]), encode(x))[1]
    plain = run_local(table, tmp_path / "plain", settings, model=net, workers=0, batch_size=4)
    uncached = sum(encoded)
    encoded.clear()
    cache = FeatureCache("64MB")
    cached = run_local(table, tmp_path / "cached", settings, model=net, workers=0,
                       batch_size=4, cache=cache)
    # 14 candidates + the 2 distinct references, against 14 + 14 without the cache.
    assert (uncached, sum(encoded)) == (28, 16)
    # Batches of 4 rows: [r0 x4] miss, [r0 x4] hit, [r0 x3, r1] hit + miss, [r1 x2] hit.
    assert cached.cache == {"hits": 3, "misses": 2} and plain.cache is None
    # A later run on the same (shared) cache while another session looks things up in it:
    # the run reports its own lookups only (both references are cached: 5 hits, no miss).
    before = cache.stats()
    foreign = []

    def encode_beside_another_session(x):
        foreign.append(cache.get(("another session", len(foreign))))
        return encode(x)

    net.encode = encode_beside_another_session
    third = run_local(table, tmp_path / "third", settings, model=net, workers=0,
                      batch_size=4, cache=cache)
    assert third.cache == {"hits": 5, "misses": 0}
    after = cache.stats()
    assert len(foreign) >= 4 and after.misses - before.misses == len(foreign)
    net.encode = encode
    got = [r["distance"] for r in cached.rows.to_pylist()]
    want = [r["distance"] for r in plain.rows.to_pylist()]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
    oracle = official_distances(official, *[(img / r.images[0], img / r.images[1])
                                            for r in table.rows])
    np.testing.assert_allclose(got, oracle, rtol=0, atol=1e-5)


def test_size_mismatch_is_a_row_failure_under_the_error_policy(pairs_set, explainer, tmp_path):
    table = read_audit_input(pairs_set.csv)
    small = type(table)(table.kind, table.rows[-4:], table.source, table.extra_columns)
    s = settings_for(explainer.model, size_policy="error", max_pixels=None)
    res = run_local(small, tmp_path, s, model=explainer.model, workers=0)
    row = _by_id(res.rows)["mismatch"]
    assert row["status"] == "failed" and row["error_type"] == "SizeMismatchError"
    assert "size policy is 'error'" in row["error"]
    assert sum(r["status"] == "ok" for r in res.rows.to_pylist()) == 3


@pytest.mark.slow  # 96 triplets
def test_triplets_agree_with_the_official_package(triplet_set, triplets_run, official):
    _, result = triplets_run
    rows = result.rows.to_pylist()
    failed = {r["id"]: r["error_type"] for r in rows if r["status"] == "failed"}
    assert failed == triplet_set.expected_errors
    base = triplet_set.csv.parent
    good = [r for r in rows if r["status"] == "ok"]
    assert len(good) == 96
    d0 = official_distances(official, *[(base / r["ref"], base / r["p0"]) for r in good])
    d1 = official_distances(official, *[(base / r["ref"], base / r["p1"]) for r in good])
    np.testing.assert_allclose([r["d0"] for r in good], d0, atol=1e-5)
    np.testing.assert_allclose([r["d1"] for r in good], d1, atol=1e-5)
    for r in good:
        g = r["judge"]
        assert r["margin"] == pytest.approx(r["d1"] - r["d0"], abs=1e-12)
        assert r["verdict"] == ("p0" if r["d0"] < r["d1"] else "p1")
        assert r["human"] == ("p0" if g < 0.5 else "p1" if g > 0.5 else "tie")
        assert r["agree"] == (None if g == 0.5 else r["verdict"] == r["human"])
        assert r["score_2afc"] == pytest.approx(
            (r["d0"] < r["d1"]) * (1 - g) + (r["d1"] < r["d0"]) * g, abs=1e-12)
        assert sum(r[f"margin_{n}"] for n in ("relu1", "relu2", "relu3", "relu4", "relu5")) \
            == pytest.approx(r["margin"], abs=1e-7)
    assert any(r["judge"] == 0.5 and r["agree"] is None for r in good)
    assert two_afc(0.1, 0.1, 0.3) == 0.5


@pytest.mark.slow  # three runs over 246 rows
def test_interrupted_run_resumes_with_nothing_lost_or_counted_twice(pairs_set, pairs_run,
                                                                   settings, explainer,
                                                                   tmp_path):
    table, full = pairs_run

    class Stop(Exception):
        pass

    def stop_after_two(n: int) -> None:
        if n == 2:
            raise Stop

    with pytest.raises(Stop):
        run_local(table, tmp_path, settings, model=explainer.model, workers=2, part_rows=40,
                  part_seconds=1e9, on_part=stop_after_two)
    parts = sorted((tmp_path / "parts").glob("*.parquet"))
    done_ids = [i for p in parts for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    assert 80 <= len(done_ids) < len(table)  # stopped part-way, scored rows kept
    assert not (tmp_path / "audit.parquet").exists()
    # A part cut short by a kill: set aside, its rows computed again.
    (tmp_path / "parts" / "local-0-torn.parquet").write_bytes(parts[0].read_bytes()[:200])
    seen = []
    resumed = run_local(table, tmp_path, settings, model=explainer.model, workers=2,
                        progress=lambda d, t, _: seen.append((d, t)))
    assert resumed.reused == len(set(done_ids)) and resumed.computed == len(table) - resumed.reused
    assert seen[0] == (resumed.reused, len(table)) and seen[-1] == (len(table), len(table))
    assert (tmp_path / "parts" / "local-0-torn.parquet.bad").exists()
    assert resumed.rows.column("id").to_pylist() == full.rows.column("id").to_pylist()
    for a, b in zip(resumed.rows.to_pylist(), full.rows.to_pylist(), strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], abs=1e-6, nan_ok=True), (a["id"], k)
            else:
                assert a[k] == b[k], (a["id"], k)
    # A third run computes nothing; every id is in the parts exactly once.
    again = run_local(table, tmp_path, settings, model=explainer.model, workers=0)
    assert again.computed == 0 and again.rows.equals(resumed.rows)
    ids = [i for p in (tmp_path / "parts").glob("*.parquet")
           for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    assert sorted(ids) == sorted(r.id for r in table.rows)


def test_changed_file_is_recomputed_and_other_settings_refused(tmp_path, settings, explainer):
    data = make_pairs(tmp_path / "d", 6)
    table = read_audit_input(data.csv)
    out = tmp_path / "out"
    first = run_local(table, out, settings, model=explainer.model, workers=0)
    target = data.csv.parent / "img" / "2_b.png"
    target.write_bytes((data.csv.parent / "img" / "2_a.png").read_bytes())  # now identical
    os.utime(target, ns=(1, 1))
    second = run_local(read_audit_input(data.csv), out, settings, model=explainer.model,
                       workers=0)
    # pair-002 and the "mismatch" row read that file: both are computed again, nothing else
    assert second.computed == 2 and second.reused == len(table) - 2
    assert _by_id(first.rows)["pair-002"]["distance"] > 0
    assert _by_id(second.rows)["pair-002"]["distance"] == 0.0
    other = Explainer("alex", "0.1", "random", seed=1)
    with pytest.raises(InputError, match=r"other settings or another model.*seed"):
        run_local(table, out, settings_for(other.model, size_policy="resize", max_pixels=None),
                  model=other.model, workers=0)


# --------------------------------------------------------------------------- the summary


def test_summary_of_pairs(pairs_run):
    _, result = pairs_run
    data = result.rows.to_pydict()
    s = summarize("pairs", data, ["relu1", "relu2", "relu3", "relu4", "relu5"], top=5)
    assert s["counts"] == {"rows": 246, "scored": 241, "failed": 5, "failed_by_type": {
        "BadRow": 1, "CorruptImageError": 1, "ImageTooSmallError": 1, "MissingFile": 1,
        "NotAnImageError": 1}}
    ok = [i for i, st in enumerate(data["status"]) if st == "ok"]
    d = np.array([data["distance"][i] for i in ok])
    q1, q3 = np.percentile(d, [25, 75])
    outside = {data["id"][i] for i in ok
               if not q1 - 1.5 * (q3 - q1) <= data["distance"][i] <= q3 + 1.5 * (q3 - q1)}
    assert s["outliers"]["count"] == len(outside)
    assert {r["id"] for r in s["outliers"]["rows"]} <= outside
    # The rank gaps: recomputed by brute force (rank = number of rows at most as far).
    gap_ssim = s["rank_disagreements"]["ssim"][0]
    i = data["id"].index(gap_ssim["id"])
    ss = np.array([data["ssim"][k] for k in ok])
    r_lp = (d <= data["distance"][i]).sum() / len(d)
    r_ss = (-ss <= -data["ssim"][i]).sum() / len(d)
    assert gap_ssim["gap"] == pytest.approx(r_lp - r_ss, abs=1e-9)
    assert all(abs(g["gap"]) <= abs(gap_ssim["gap"]) for g in s["rank_disagreements"]["ssim"])
    assert -1 <= s["rank_correlation"]["ssim"] <= 1
    names = [f["name"] for f in s["findings"]]
    assert names == ["largest_distance", "rank_gap_ssim", "rank_gap_psnr", "outliers"]
    assert s["findings"][0]["ids"][0] == data["id"][ok[int(np.argmax(d))]]


def test_summary_of_triplets_names_the_layers_behind_the_disagreements(triplets_run):
    _, result = triplets_run
    data = result.rows.to_pydict()
    names = ["relu1", "relu2", "relu3", "relu4", "relu5"]
    s = summarize("triplets", data, names)
    good = [r for r in result.rows.to_pylist() if r["status"] == "ok"]
    a = s["agreement"]
    assert a["lpips_2afc"] == pytest.approx(np.mean([r["score_2afc"] for r in good]), abs=1e-12)
    assert a["agree"] == sum(r["agree"] is True for r in good)
    assert a["disagree"] == sum(r["agree"] is False for r in good) > 0
    dis = [r for r in good if r["agree"] is False]
    for layer in s["disagreement_layers"]:
        n = layer["layer"]
        # decisive: without this layer's term, LPIPS would pick what the judges picked
        flips = sum(np.sign(r["margin"] - r[f"margin_{n}"]) != np.sign(r["margin"])
                    for r in dis)
        assert layer["decisive"] == flips
        assert layer["rows_pushing"] == sum(np.sign(r[f"margin_{n}"]) == np.sign(r["margin"])
                                            and r[f"margin_{n}"] != 0 for r in dis)
    assert sum(x["mean_share"] for x in s["disagreement_layers"]) == pytest.approx(1.0)
    top = s["disagreements"][0]
    assert abs(top["judge"] - 0.5) == max(abs(r["judge"] - 0.5) for r in dis)


# --------------------------------------------------------------------------- facade and CLI


@pytest.mark.slow  # full explanations
def test_explainer_audit_writes_parquet_summary_report_and_explanations(tmp_path, explainer):
    data = make_pairs(tmp_path / "d", 12)
    out = tmp_path / "out"
    res = explainer.audit(data.csv, out, explain_top=1, top=2,
                          explain_options={"steps": 4, "sensitivity": False})
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary == json.loads(json.dumps(res.summary))
    for key in ("schema", "kind", "input", "net", "backbone", "counts", "distance",
                "rank_correlation", "rank_disagreements", "outliers", "findings", "explained",
                "engine", "columns", "warnings"):
        assert key in summary, key
    assert summary["backbone"] == {"weights": "random", "perceptual": False, "state": "random"}
    assert "NOT a perceptual metric" in summary["warnings"][0]
    assert summary["counts"]["failed"] == 5 and summary["counts"]["scored"] == 13
    explained = summary["explained"]
    firsts = {f["ids"][0] for f in summary["findings"] if f["ids"]}
    assert set(explained) == firsts
    rows = _by_id(res.rows)
    for rid, link in explained.items():
        report = out / link
        assert report.is_file()
        doc = json.loads((report.parent / "explanation.json").read_text(encoding="utf-8"))
        assert doc["distance"] == pytest.approx(rows[rid]["distance"], abs=1e-6)
    page = (out / "audit.html").read_text(encoding="utf-8")
    assert "<script src" not in page and "<link" not in page  # offline: nothing to fetch
    for link in explained.values():
        assert json.dumps(link)[1:-1] in page
    thumbs = sorted(p.name for p in (out / "thumbs").iterdir())
    assert len(thumbs) == 2 * 13  # a and b of every scored row (the resized mismatch too)
    # Run again: nothing recomputed, explanations reused.
    stamp = (out / next(iter(explained.values()))).stat().st_mtime_ns
    again = explainer.audit(data.csv, out, explain_top=1, top=2,
                            explain_options={"steps": 4, "sensitivity": False})
    assert again.summary["engine"]["computed"] == 0
    assert (out / next(iter(explained.values()))).stat().st_mtime_ns == stamp


@pytest.mark.slow  # a full triplet explanation
def test_explain_top_triplets(tmp_path, explainer):
    data = make_triplets(tmp_path / "t", 6)
    res = explainer.audit(data.csv, tmp_path / "o", explain_top=1, top=1,
                          explain_options={"attribution": "saliency", "patch": 16})
    assert res.summary["explained"]
    link = next(iter(res.summary["explained"].values()))
    tri = json.loads((tmp_path / "o" / link).with_name("triplet.json").read_text("utf-8"))
    rid = next(iter(res.summary["explained"]))
    row = _by_id(res.rows)[rid]
    assert (tri["distance_a"], tri["distance_b"]) == (pytest.approx(row["d0"], abs=1e-6),
                                                      pytest.approx(row["d1"], abs=1e-6))


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "LPIPS_EXPLAIN_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "lpips_explain", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # a fresh interpreter
def test_cli_audit_and_the_local_engine_never_imports_ray(tmp_path):
    data = make_triplets(tmp_path / "t", 8)
    out = tmp_path / "out"
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['lpips-explain', 'audit', sys.argv[1], '--out', sys.argv[2],"
        " '--backbone-weights', 'random', '--explain-top', '0', '--workers', '1']\n"
        "from lpips_explain.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('RAY_LOADED' if any(m == 'ray' or m.startswith('ray.') for m in sys.modules)"
        " else 'NO_RAY')\n"
        "sys.exit(code)\n")
    env = {**os.environ, "LPIPS_EXPLAIN_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", probe, str(data.csv), str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("NO_RAY")
    assert "LPIPS picks the judges' majority choice in" in proc.stdout
    assert "NOT a perceptual metric" in proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["kind"] == "triplets" and summary["counts"]["rows"] == 12
    # Bad input: one line, exit 2, no traceback.
    bad = _cli("audit", str(tmp_path / "nope.csv"), "--out", str(out), "--backbone-weights",
               "random")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr


def test_every_row_failed_still_gives_a_summary_and_report(tmp_path, explainer):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("a,b\nnope.png,gone.png\nalso.png,missing.png\n", encoding="utf-8")
    res = explainer.audit(csv_path, tmp_path / "out", explain_top=3)
    assert res.summary["counts"] == {"rows": 2, "scored": 0, "failed": 2,
                                     "failed_by_type": {"MissingFile": 2}}
    assert res.summary["explained"] == {} and res.summary["distance"] is None
    assert (tmp_path / "out" / "audit.html").stat().st_size > 0


def test_bundled_audit_sample_is_reproducible(tmp_path):
    """assets/make_audit_sample.py rebuilds the committed sample set byte for byte."""
    proc = subprocess.run([sys.executable, str(REPO / "assets" / "make_audit_sample.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    committed = REPO / "assets" / "audit_sample"
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert made == sorted(p.relative_to(committed).as_posix()
                          for p in committed.rglob("*") if p.is_file())
    for rel in made:
        assert (tmp_path / rel).read_bytes() == (committed / rel).read_bytes(), rel
    with (committed / "triplets.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert all("synthetic" in r["judge_source"] and "not human" in r["judge_source"]
               for r in rows)


def test_progress_bar_shows_rate_and_eta_counting_only_new_rows(monkeypatch):
    from lpips_explain.cli.audit import RateBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = RateBar(True)
    bar(40, 100, "Auditing rows")  # 40 rows finished by an earlier run
    bar.bar.start_t -= 2.0  # two seconds pass...
    bar(50, 100, "Auditing rows")  # ...and this run scores 10 rows
    bar.close()
    last = term.getvalue().split("\r")[-1]
    assert "50/100" in last and "<" in last  # done/total and the time left
    rate = float(re.search(r"([\d.]+)row/s", last)[1])
    assert 3 < rate < 6  # 10 new rows in about 2 s, not the 50 finished ones

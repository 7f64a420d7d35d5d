"""The optional metric columns of an audit (--metrics stlpips dists): their values, the rank
disagreements the summary lists and each metric's 2AFC agreement with the judges, each
checked against an independent computation."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lpips_explain.audit.sentences import summary_sentences
from lpips_explain.audit.summary import summarize

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "assets" / "audit_sample"
LAYERS = ("l1", "l2")


def _pct(x: np.ndarray) -> np.ndarray:
    """Percentile ranks of distinct values, 1 = largest (written without scipy)."""
    r = np.empty(x.size)
    r[np.argsort(x)] = np.arange(1, x.size + 1)
    return r / x.size


def _pairs_table(rng: np.random.Generator, n: int = 12) -> dict[str, list]:
    d = rng.uniform(0.05, 0.6, n)
    data = {"id": [f"r{i}" for i in range(n)], "status": ["ok"] * n,
            "error_type": [None] * n, "error": [None] * n, "distance": list(d),
            "psnr": list(rng.uniform(15, 40, n)), "ssim": list(rng.uniform(0.3, 1, n)),
            "stlpips": list(d + rng.normal(0, 0.15, n)), "dists": list(rng.uniform(0, .3, n)),
            "dominant_layer": ["l1"] * n}
    for k, name in enumerate(LAYERS):
        data[f"share_{name}"] = [0.5 + 0.1 * (-1) ** k] * n
    return data


def test_rank_disagreements_of_the_metric_columns_are_the_largest_percentile_gaps():
    data = _pairs_table(np.random.default_rng(3))
    data["dists"][4] = None  # a row DISTS could not score is left out of its ranks
    s = summarize("pairs", data, LAYERS, top=3)
    for metric in ("stlpips", "dists"):
        keep = [i for i, v in enumerate(data[metric]) if v is not None]
        lp = _pct(np.array([data["distance"][i] for i in keep]))
        ot = _pct(np.array([data[metric][i] for i in keep], dtype=float))
        gap = lp - ot
        want = [data["id"][keep[i]] for i in np.argsort(-np.abs(gap), kind="stable")[:3]]
        got = s["rank_disagreements"][metric]
        assert [g["id"] for g in got] == want
        for g in got:
            k = keep.index(data["id"].index(g["id"]))
            assert g["gap"] == pytest.approx(gap[k]) and g[metric] == data[metric][keep[k]]
        finding = next(f for f in s["findings"] if f["name"] == f"rank_gap_{metric}")
        assert finding["ids"] == want
    lines = " ".join(summary_sentences("pairs", s))
    assert "ST-LPIPS" in lines and "DISTS" in lines
    # Without the columns the summary is what it was: no metric keys, no findings.
    plain = {k: v for k, v in data.items() if k not in ("stlpips", "dists")}
    s0 = summarize("pairs", plain, LAYERS, top=3)
    assert "stlpips" not in s0["rank_disagreements"] and "dists" not in s0["rank_correlation"]


def test_each_metric_2afc_agreement_with_the_judges_is_recomputed_from_the_rows():
    rng = np.random.default_rng(5)
    n = 10
    judge = rng.choice([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], n)
    d0, d1 = rng.uniform(0, .5, n), rng.uniform(0, .5, n)
    data = {"id": [f"t{i}" for i in range(n)], "status": ["ok"] * n,
            "error_type": [None] * n, "error": [None] * n, "d0": list(d0), "d1": list(d1),
            "judge": list(judge), "agree": [None] * n,
            "psnr0": list(rng.uniform(20, 30, n)), "psnr1": list(rng.uniform(20, 30, n)),
            "ssim0": list(rng.uniform(.5, 1, n)), "ssim1": list(rng.uniform(.5, 1, n)),
            "stlpips0": list(rng.uniform(0, .5, n)), "stlpips1": list(rng.uniform(0, .5, n)),
            "dists0": list(rng.uniform(0, .3, n)), "dists1": list(rng.uniform(0, .3, n))}
    data["stlpips1"][2] = data["stlpips0"][2]  # a tie counts one half
    for name in LAYERS:
        data[f"margin_{name}"] = list((d1 - d0) / 2)
    s = summarize("triplets", data, LAYERS)
    for metric in ("stlpips", "dists"):
        m0, m1 = np.array(data[f"{metric}0"]), np.array(data[f"{metric}1"])
        # Official 2AFC: (d0 < d1)(1 - judge) + (d1 < d0) judge + 0.5 on a tie.
        want = np.mean((m0 < m1) * (1 - judge) + (m1 < m0) * judge + 0.5 * (m0 == m1))
        assert s["agreement"][f"{metric}_2afc"] == pytest.approx(want, abs=1e-12)
    assert "DISTS" in " ".join(summary_sentences("triplets", s))


@pytest.mark.slow  # builds ST-LPIPS alex and DISTS (VGG16)
def test_metric_columns_equal_the_explainers_second_opinions(tmp_path):
    from lpips_explain import Explainer

    ex = Explainer("alex")
    with (SAMPLE / "pairs.csv").open() as f:
        rows = list(csv.DictReader(f))[:3]
    path = tmp_path / "pairs.csv"
    path.write_text("id,a,b\n" + "".join(
        f"{r['id']},{SAMPLE / r['a']},{SAMPLE / r['b']}\n" for r in rows))
    res = ex.audit(path, tmp_path / "out", explain_top=0, metrics=["stlpips", "dists"])
    got = res.rows.to_pylist()
    assert res.summary["columns"][-5:-3] == ["stlpips", "dists"]
    for r, row in zip(rows, got, strict=True):
        ops = ex.second_opinions(SAMPLE / r["a"], SAMPLE / r["b"], metrics=["stlpips", "dists"])
        for metric in ("stlpips", "dists"):
            assert row[metric] == pytest.approx(ops.get(metric).distance, rel=1e-5, abs=1e-7)
        assert row["distance"] == pytest.approx(ops.get("lpips").distance, rel=1e-5)


@pytest.mark.slow  # compiles the int8 trunk (about 15 s)
def test_an_int8_audit_is_labelled_approximate_with_its_error_on_its_own_rows(tmp_path):
    from lpips_explain import Explainer
    from lpips_explain.audit.approx import sample_positions
    from lpips_explain.core.modes import int8_missing

    if int8_missing():
        pytest.skip(int8_missing())
    path = SAMPLE / "pairs.csv"
    fast = Explainer("alex", precision="int8").audit(path, tmp_path / "int8", explain_top=0)
    exact = Explainer("alex").audit(path, tmp_path / "fp32", explain_top=0)
    mode = fast.summary["mode"]
    assert mode["precision"] == "int8" and mode["exact"] is False
    assert exact.summary["mode"]["exact"] is True and "error" not in exact.summary["mode"]
    err = mode["error"]
    # The oracle: the exact audit's own distances at the sampled rows.
    picks = sample_positions([s == "ok" for s in fast.rows.column("status").to_pylist()],
                             err["sample_rows"], err["seed"])
    a = np.array(fast.rows.column("distance").to_pylist())[picks]
    e = np.array(exact.rows.column("distance").to_pylist())[picks]
    assert err["max_abs"] == pytest.approx(np.abs(a - e).max(), abs=1e-6)
    assert err["mean_abs"] == pytest.approx(np.abs(a - e).mean(), abs=1e-6)
    assert 0 < err["max_abs"] < 0.05  # approximate, and close
    lines = summary_sentences("pairs", fast.summary)
    assert any(line.startswith("Approximate numbers (int8)") for line in lines)
    assert any("int8" in w for w in fast.summary["warnings"])


def test_outlier_sentence_names_one_fence_when_the_lower_is_below_zero():
    base = {"counts": {"rows": 10, "scored": 10, "failed": 0, "failed_by_type": {}}}
    one = summary_sentences("pairs", {**base, "outliers": {"count": 3, "low": -0.12,
                                                           "high": 0.2689}})
    assert "3 distances lie above the upper Tukey fence 0.2689 (Q3 + 1.5 IQR)." in one
    two = summary_sentences("pairs", {**base, "outliers": {"count": 2, "low": 0.05,
                                                           "high": 0.4}})
    assert "2 distances lie outside the Tukey fences [0.0500, 0.4000]." in two
    # one outlier: the noun and the verb in the singular
    single = summary_sentences("pairs", {**base, "outliers": {"count": 1, "low": 0.05,
                                                              "high": 0.4}})
    assert "1 distance lies outside the Tukey fences [0.0500, 0.4000]." in single


def test_counted_agrees_in_number():
    from lpips_explain.validation import agreeing, counted

    assert [counted(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]
    assert counted(3, "patch", "patches") == "3 patches"
    assert [agreeing(n, "lies", "lie") for n in (0, 1, 2)] == ["lie", "lies", "lie"]

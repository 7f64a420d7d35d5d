"""The audit's summary, from audit.parquet's columns: counts, rank correlations, rank
disagreements, outliers, 2AFC agreement and the layers behind the disagreements, and the
findings (named lists of rows) that the report filters by and the top rows come from.

LPIPS and a pixel metric are compared oriented the same way (:func:`oriented`): pairs, the
distance against -PSNR and -SSIM (dissimilarities); triplets, the LPIPS margin d1 - d0
against PSNR's and SSIM's own p0-over-p1 margins.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lpips_explain.analyses.calibration.result import two_afc
from lpips_explain.audit.columns import METRIC_COLUMNS, pick

#: The pixel metrics LPIPS is ranked against, in summary.json's order.
PIXEL_METRICS = ("psnr", "ssim")


def as_floats(values: Sequence[Any]) -> np.ndarray:
    """A column as float64, None as NaN."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def pct_rank(x: np.ndarray) -> np.ndarray:
    """Average ranks scaled to (0, 1]: 1 is the largest value."""
    from scipy.stats import rankdata

    return rankdata(x) / x.size


def oriented(kind: str, data: Mapping[str, Sequence[Any]],
             other: str) -> tuple[np.ndarray, np.ndarray]:
    """LPIPS and ``other`` (``"ssim"`` or ``"psnr"``) for every row, oriented the same way:
    pairs, the distance and -other (dissimilarities); triplets, the margin d1 - d0 and
    other0 - other1 (positive where p0 is preferred). NaN for failed rows. The optional
    metric columns (``stlpips``, ``dists``) are distances already: pairs, their value;
    triplets, other1 - other0."""
    if other in METRIC_COLUMNS:
        if kind == "pairs":
            return as_floats(data["distance"]), as_floats(data[other])
        return (as_floats(data["d1"]) - as_floats(data["d0"]),
                as_floats(data[f"{other}1"]) - as_floats(data[f"{other}0"]))
    if kind == "pairs":
        return as_floats(data["distance"]), -as_floats(data[other])
    return (as_floats(data["d1"]) - as_floats(data["d0"]),
            as_floats(data[f"{other}0"]) - as_floats(data[f"{other}1"]))


def present_metrics(kind: str, data: Mapping[str, Sequence[Any]]) -> tuple[str, ...]:
    """The optional metric columns this audit has (``--metrics``), in METRIC_COLUMNS order."""
    return tuple(m for m in METRIC_COLUMNS if (m if kind == "pairs" else f"{m}0") in data)


def row_rank_gaps(kind: str, data: Mapping[str, Sequence[Any]], other: str) -> list[float | None]:
    """Per row: LPIPS's percentile rank minus ``other``'s (``"ssim"`` or ``"psnr"``), both as
    dissimilarities (pairs) or as p0-over-p1 preferences (triplets); None for failed rows."""
    ok = np.array([s == "ok" for s in data["status"]], dtype=bool)
    out: list[float | None] = [None] * len(ok)
    if ok.sum() < 2:
        return out
    lp, ot = oriented(kind, data, other)
    gap = pct_rank(lp[ok]) - pct_rank(ot[ok])
    for k, i in enumerate(np.flatnonzero(ok)):
        out[int(i)] = float(gap[k])
    return out


def finding_members(summary: Mapping[str, Any]) -> dict[str, list[str]]:
    """Row id -> the names of the findings that list it, in the summary's order."""
    member: dict[str, list[str]] = {}
    for f in summary.get("findings", []):
        for rid in f["ids"]:
            member.setdefault(rid, []).append(f["name"])
    return member


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if x.size < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return None
    rho = spearmanr(x, y).statistic
    return float(rho) if math.isfinite(rho) else None


def _stats(x: np.ndarray) -> dict[str, float] | None:
    if x.size == 0:
        return None
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return {"mean": float(x.mean()), "median": float(med), "q1": float(q1), "q3": float(q3),
            "min": float(x.min()), "max": float(x.max())}


def _rank_gaps(ids: Sequence[str], lp: np.ndarray, other: np.ndarray, top: int,
               lp_name: str, other_name: str, values: Mapping[str, np.ndarray]) -> list[dict]:
    """Rows whose LPIPS rank and ``other`` rank differ most (both oriented the same way)."""
    if lp.size < 2:
        return []
    r_lp, r_other = pct_rank(lp), pct_rank(other)
    gap = r_lp - r_other
    order = np.argsort(-np.abs(gap), kind="stable")[:top]
    out = []
    for i in order:
        item = {"id": ids[i], f"{lp_name}_rank": float(r_lp[i]),
                f"{other_name}_rank": float(r_other[i]), "gap": float(gap[i])}
        item.update({k: (float(v[i]) if math.isfinite(v[i]) else None)
                     for k, v in values.items()})
        out.append(item)
    return out


def _pixel_ranks(kind: str, data: Mapping[str, Sequence[Any]], ok: np.ndarray,
                 okids: list[str], top: int, values: Mapping[str, np.ndarray],
                 ) -> tuple[dict[str, np.ndarray], dict[str, float | None], dict[str, list]]:
    """For each pixel metric, oriented as LPIPS is (:func:`oriented`), over the scored rows:
    its values, Spearman's rho with LPIPS and the rows whose two ranks differ most."""
    others: dict[str, np.ndarray] = {}
    rho: dict[str, float | None] = {}
    gaps: dict[str, list] = {}
    for metric in (*PIXEL_METRICS, *present_metrics(kind, data)):
        lp, other = (x[ok] for x in oriented(kind, data, metric))
        others[metric] = other
        # Rows a metric could not score (its columns empty) are left out of its ranks.
        have = ~np.isnan(other)
        ids = [i for i, k in zip(okids, have, strict=True) if k]
        vals = {k: v[have] for k, v in values.items()}
        if metric in METRIC_COLUMNS:
            vals[metric if kind == "pairs" else f"{metric}_margin"] = other[have]
        rho[metric] = _spearman(lp[have], other[have])
        gaps[metric] = _rank_gaps(ids, lp[have], other[have], top, "lpips", metric, vals)
    return others, rho, gaps


def summarize(kind: str, data: Mapping[str, Sequence[Any]], layer_names: Sequence[str], *,
              top: int = 10) -> dict[str, Any]:
    """The audit's summary from its columns (as
    :func:`~lpips_explain.audit.columns.columns` names them).

    Rank correlations are Spearman's rho between LPIPS and the pixel metric oriented the
    same way (pairs: distance against -PSNR and -SSIM; triplets: the LPIPS margin d1 - d0
    against PSNR and SSIM's own p0-over-p1 margins), so +1 means the same order.
    """
    ids = list(data["id"])
    status = list(data["status"])
    ok = np.array([s == "ok" for s in status], dtype=bool)
    failures = Counter(t for t, s in zip(data["error_type"], status, strict=True) if s != "ok")
    out: dict[str, Any] = {
        "counts": {"rows": len(ids), "scored": int(ok.sum()), "failed": int((~ok).sum()),
                   "failed_by_type": dict(sorted(failures.items()))},
        "failures": [{"id": i, "error_type": t, "error": e}
                     for i, s, t, e in zip(ids, status, data["error_type"], data["error"],
                                           strict=True) if s != "ok"][:top * 10],
    }
    okids = [i for i, k in zip(ids, ok, strict=True) if k]
    if kind == "pairs":
        _summarize_pairs(out, data, ok, okids, layer_names, top)
    else:
        _summarize_triplets(out, data, ok, okids, layer_names, top)
    return out


def _finding(name: str, title: str, ids: Sequence[str]) -> dict[str, Any]:
    return {"name": name, "title": title, "ids": list(ids)}


def _summarize_pairs(out: dict, data: Mapping[str, Sequence[Any]], ok: np.ndarray,
                     okids: list[str], layer_names: Sequence[str], top: int) -> None:
    d = as_floats(data["distance"])[ok]
    ps, ss = as_floats(data["psnr"])[ok], as_floats(data["ssim"])[ok]
    out["distance"] = _stats(d)
    _, rho, gaps = _pixel_ranks("pairs", data, ok, okids, top, {"distance": d, "psnr": ps,
                                                                "ssim": ss})
    out["rank_correlation"] = {
        "method": "spearman", **rho,
        "note": "Spearman's rho of the LPIPS distance with -PSNR and with -SSIM (all three "
                "oriented as dissimilarities): +1 is the same order, 0 none, -1 the reverse."}
    out["rank_disagreements"] = {**gaps, "note": (
        "Rows whose rank by LPIPS distance and by the pixel metric differ most; ranks are "
        "percentiles of dissimilarity (1 = the most different row); gap = lpips_rank - "
        "other_rank, positive where LPIPS finds the pair more different than the pixel metric "
        "does.")}
    shares = {n: as_floats(data[f"share_{n}"])[ok] for n in layer_names}
    dominant = Counter(v for v, k in zip(data["dominant_layer"], ok, strict=True) if k)
    out["layers"] = {"mean_share": {n: (float(s.mean()) if s.size else None)
                                    for n, s in shares.items()},
                     "dominant_counts": {n: int(dominant.get(n, 0)) for n in layer_names}}
    out["outliers"] = _outliers(okids, d, data, ok, top)
    largest = [okids[i] for i in np.argsort(-d, kind="stable")[:top]]
    out["findings"] = [
        _finding("largest_distance", "Largest LPIPS distances", largest),
        _finding("rank_gap_ssim", "LPIPS and SSIM rank most differently",
                 [g["id"] for g in gaps["ssim"]]),
        _finding("rank_gap_psnr", "LPIPS and PSNR rank most differently",
                 [g["id"] for g in gaps["psnr"]]),
        _finding("outliers", "Outlying LPIPS distances (Tukey fences)",
                 [o["id"] for o in out["outliers"]["rows"]]),
        *_metric_findings("pairs", data, gaps),
    ]


def _outliers(okids: list[str], d: np.ndarray, data: Mapping[str, Sequence[Any]],
              ok: np.ndarray, top: int) -> dict[str, Any]:
    rule = "Tukey fences on the distance: below Q1 - 1.5 IQR or above Q3 + 1.5 IQR"
    if d.size < 4:
        return {"rule": rule, "low": None, "high": None, "count": 0, "rows": []}
    q1, q3 = np.percentile(d, [25, 75])
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    dominant = [v for v, k in zip(data["dominant_layer"], ok, strict=True) if k]
    beyond = np.maximum(d - hi, lo - d)
    idx = [i for i in np.argsort(-beyond, kind="stable") if beyond[i] > 0]
    rows = [{"id": okids[i], "distance": float(d[i]), "side": "high" if d[i] > hi else "low",
             "dominant_layer": dominant[i]} for i in idx[:top]]
    return {"rule": rule, "low": float(lo), "high": float(hi), "count": len(idx), "rows": rows}


def _summarize_triplets(out: dict, data: Mapping[str, Sequence[Any]], ok: np.ndarray,
                        okids: list[str], layer_names: Sequence[str], top: int) -> None:
    d0, d1 = as_floats(data["d0"])[ok], as_floats(data["d1"])[ok]
    g = as_floats(data["judge"])[ok]
    m = d1 - d0
    pixel, rho, gaps = _pixel_ranks("triplets", data, ok, okids, top, {"margin": m, "judge": g})
    out["distance"] = _stats(np.concatenate([d0, d1]))
    agree = [a for a, k in zip(data["agree"], ok, strict=True) if k]
    n_agree = sum(a is True for a in agree)
    n_dis = sum(a is False for a in agree)

    def afc(margin: np.ndarray) -> float | None:  # margin > 0: p0 preferred
        if not margin.size:
            return None
        return float(np.mean(two_afc(0.0, margin, g)))  # d0 = 0, d1 = margin

    def afc_of(margin: np.ndarray) -> float | None:  # over the triplets the metric scored
        have = ~np.isnan(margin)
        if not have.any():
            return None
        return float(np.mean(two_afc(0.0, margin[have], g[have])))

    out["agreement"] = {
        "judged": int(ok.sum()), "lpips_2afc": afc(m), "psnr_2afc": afc(pixel["psnr"]),
        "ssim_2afc": afc(pixel["ssim"]), "agree": n_agree, "disagree": n_dis,
        **{f"{m}_2afc": afc_of(pixel[m]) for m in present_metrics("triplets", data)},
        "undecided": len(agree) - n_agree - n_dis,
        "note": "2AFC score: the mean over triplets of (d0<d1)(1-judge) + (d1<d0)judge + "
                "0.5[d0=d1], judge being the share of people preferring p1 (1 = always "
                "agrees with every judge). agree/disagree count triplets where LPIPS and the "
                "majority of judges pick different candidates (ties in either are undecided)."}
    out["rank_correlation"] = {
        "method": "spearman", **rho,
        "note": "Spearman's rho of the LPIPS margin d1 - d0 with PSNR's (psnr0 - psnr1) and "
                "SSIM's (ssim0 - ssim1) margins, all positive where p0 is preferred: +1 is "
                "the same order."}
    out["rank_disagreements"] = {**gaps, "note": (
        "Triplets whose rank by LPIPS margin and by the pixel metric's margin differ most "
        "(percentile ranks; gap = lpips_rank - other_rank).")}
    # Disagreements with the judges, strongest human preference first, then largest margin.
    dis = [i for i, a in enumerate(agree) if a is False]
    dis.sort(key=lambda i: (-abs(g[i] - 0.5), -abs(m[i])))
    out["disagreements"] = [{"id": okids[i], "judge": float(g[i]), "d0": float(d0[i]),
                             "d1": float(d1[i]), "margin": float(m[i]),
                             "verdict": pick(m[i])} for i in dis[:top]]
    out["disagreement_layers"] = _disagreement_layers(data, ok, dis, m, layer_names)
    closest = [okids[i] for i in np.argsort(np.abs(m), kind="stable")[:top]]
    out["findings"] = [
        _finding("judge_disagreements", "LPIPS disagrees with the judges",
                 [x["id"] for x in out["disagreements"]]),
        _finding("rank_gap_ssim", "LPIPS and SSIM rank the margins most differently",
                 [x["id"] for x in gaps["ssim"]]),
        _finding("rank_gap_psnr", "LPIPS and PSNR rank the margins most differently",
                 [x["id"] for x in gaps["psnr"]]),
        _finding("closest_calls", "Smallest LPIPS margins (closest calls)", closest),
        *_metric_findings("triplets", data, gaps),
    ]


def _metric_findings(kind: str, data: Mapping[str, Sequence[Any]],
                     gaps: Mapping[str, list]) -> list[dict[str, Any]]:
    """A finding per optional metric column: the rows it and LPIPS rank most differently."""
    label = {"stlpips": "ST-LPIPS", "dists": "DISTS"}
    what = "rank" if kind == "pairs" else "rank the margins"
    return [_finding(f"rank_gap_{m}", f"LPIPS and {label[m]} {what} most differently",
                     [g["id"] for g in gaps[m]]) for m in present_metrics(kind, data)]


def _disagreement_layers(data: Mapping[str, Sequence[Any]], ok: np.ndarray, dis: list[int],
                         m: np.ndarray, layer_names: Sequence[str]) -> list[dict[str, Any]]:
    """Per layer, over the triplets where LPIPS disagrees with the judges: in how many the
    layer's margin pushed towards LPIPS's (wrong) pick, its mean share of that push, and in
    how many the verdict would have agreed with the judges without that layer's term."""
    if not dis:
        return []
    margins = np.stack([as_floats(data[f"margin_{n}"])[ok] for n in layer_names], axis=1)[dis]
    sign = np.sign(m[dis])[:, None]  # +1 where LPIPS picked p0
    push = np.clip(sign * margins, 0, None)
    total = push.sum(axis=1, keepdims=True)
    share = np.divide(push, total, out=np.zeros_like(push), where=total > 0)
    decisive = sign * (m[dis][:, None] - margins) <= 0
    rows = [{"layer": n, "rows_pushing": int((push[:, k] > 0).sum()),
             "mean_share": float(share[:, k].mean()), "decisive": int(decisive[:, k].sum())}
            for k, n in enumerate(layer_names)]
    return sorted(rows, key=lambda r: -r["mean_share"])



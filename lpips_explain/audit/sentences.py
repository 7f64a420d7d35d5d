"""The audit's summary in plain sentences, each built from a number in summary.json.

Printed by ``lpips-explain audit``, listed in audit.html and on the app's Audit page; no
plotting library is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lpips_explain.audit.approx import error_sentence
from lpips_explain.validation import agreeing, counted, pct

__all__ = ["summary_sentences"]


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def summary_sentences(kind: str, summary: Mapping[str, Any]) -> list[str]:
    """Plain sentences, each built from a number in the summary."""
    c = summary["counts"]
    out = [f"{c['rows']} rows: {c['scored']} scored, {c['failed']} failed"
           + (f" ({', '.join(f'{n} {t}' for t, n in c['failed_by_type'].items())})."
              if c["failed"] else ".")]
    mode = summary.get("mode") or {}
    if mode.get("exact") is False:
        out.append(f"Approximate numbers ({mode.get('precision')}): "
                   + error_sentence(mode.get("error") or {}))
    rc = summary.get("rank_correlation") or {}
    for metric in ("ssim", "psnr"):
        if rc.get(metric) is not None:
            how = (f"the LPIPS distance against -{metric.upper()}" if kind == "pairs" else
                   f"the LPIPS margin against {metric.upper()}'s margin")
            out.append(f"Rank agreement of LPIPS with {metric.upper()} (Spearman's rho of "
                       f"{how}): {rc[metric]:+.3f} (+1 = the same order).")
    labels = {"stlpips": "ST-LPIPS", "dists": "DISTS"}
    gaps = summary.get("rank_disagreements") or {}
    for metric, label in labels.items():
        if rc.get(metric) is not None:
            out.append(f"Rank agreement of LPIPS with {label} (Spearman's rho): "
                       f"{rc[metric]:+.3f}.")
        top_gap = (gaps.get(metric) or [None])[0]
        if top_gap is not None:
            out.append(f"LPIPS and {label} rank {top_gap['id']} most differently: "
                       f"percentile {pct(top_gap['lpips_rank'])} by LPIPS, "
                       f"{pct(top_gap[metric + '_rank'])} by {label}.")
    if kind == "pairs":
        o = summary.get("outliers") or {}
        if o.get("count"):
            low = o.get("low")
            if low is not None and low < 0:  # no distance lies below 0: one fence counts
                out.append(f"{counted(o['count'], 'distance')} {agreeing(o['count'], 'lies', 'lie')} above the "
                           f"upper Tukey fence "
                           f"{_f(o['high'], '.4f')} (Q3 + 1.5 IQR).")
            else:
                out.append(f"{counted(o['count'], 'distance')} {agreeing(o['count'], 'lies', 'lie')} outside "
                           f"the Tukey fences "
                           f"[{_f(low, '.4f')}, {_f(o['high'], '.4f')}].")
        dom = (summary.get("layers") or {}).get("dominant_counts") or {}
        if dom and c["scored"]:
            name, n = max(dom.items(), key=lambda kv: kv[1])
            out.append(f"{name} holds the largest share of the distance in {n} of "
                       f"{c['scored']} scored pairs.")
    else:
        a = summary.get("agreement") or {}
        decided = a.get("agree", 0) + a.get("disagree", 0)
        if decided:
            out.append(f"LPIPS picks the judges' majority choice in {a['agree']} of {decided} "
                       f"decided triplets ({a['disagree']} disagreements).")
        if a.get("lpips_2afc") is not None:
            out.append(f"2AFC score (1 = agrees with every judge): LPIPS "
                       f"{_f(a['lpips_2afc'])}, SSIM {_f(a.get('ssim_2afc'))}, PSNR "
                       f"{_f(a.get('psnr_2afc'))}"
                       + "".join(f", {labels[m]} {_f(a[m + '_2afc'])}" for m in labels
                                 if a.get(m + "_2afc") is not None) + ".")
        layers = summary.get("disagreement_layers") or []
        if layers and a.get("disagree"):
            top = layers[0]
            out.append(f"Behind the disagreements: {top['layer']} carries on average "
                       f"{pct(top['mean_share'])} of the margin pushing towards LPIPS's "
                       f"pick; without it {top['decisive']} of {a['disagree']} would have "
                       f"agreed with the judges.")
    return out

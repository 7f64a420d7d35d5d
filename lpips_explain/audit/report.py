"""The audit's report: summary.json, the disagreement plot and an offline audit.html.

audit.html is one file that opens offline: plotly.js is inlined once, the rows travel as
JSON inside the page and a small script sorts (click a column header) and filters them
(free text, status, finding, agreement); thumbnails and the explained rows' reports are
files beside it (``thumbs/``, ``explained/<row>/report.html``), linked relatively.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from lpips_explain.audit.rows import file_stem
from lpips_explain.audit.table import ROLES
from lpips_explain.output.serialize import jsonable

__all__ = ["AXES", "audit_html", "disagreement_figure", "row_rank_gaps", "write_audit_report"]

# The disagreement plot's x axis per kind: what LPIPS is set against.
AXES: dict[str, dict[str, str]] = {
    "pairs": {"ssim": "SSIM", "psnr": "PSNR (dB)"},
    "triplets": {"judge": "human judgment (share preferring p1)",
                 "ssim": "SSIM margin (ssim0 - ssim1)", "psnr": "PSNR margin (psnr0 - psnr1)"},
}
_AGREE_COLOURS = {"agrees": "#1b7837", "disagrees": "#c51b7d", "undecided": "#999999"}
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def _num(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _pct_rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x) / x.size


def row_rank_gaps(kind: str, data: Mapping[str, Sequence[Any]], other: str) -> list[float | None]:
    """Per row: LPIPS's percentile rank minus ``other``'s (``"ssim"`` or ``"psnr"``), both as
    dissimilarities (pairs) or as p0-over-p1 preferences (triplets); None for failed rows."""
    ok = np.array([s == "ok" for s in data["status"]], dtype=bool)
    out: list[float | None] = [None] * len(ok)
    if ok.sum() < 2:
        return out
    if kind == "pairs":
        lp, ot = _num(data["distance"])[ok], -_num(data[other])[ok]
    else:
        lp = (_num(data["d1"]) - _num(data["d0"]))[ok]
        ot = (_num(data[f"{other}0"]) - _num(data[f"{other}1"]))[ok]
    gap = _pct_rank(lp) - _pct_rank(ot)
    for k, i in enumerate(np.flatnonzero(ok)):
        out[int(i)] = float(gap[k])
    return out


def disagreement_figure(kind: str, data: Mapping[str, Sequence[Any]], x: str | None = None,
                        *, highlight: Sequence[str] = ()) -> go.Figure:
    """LPIPS against SSIM, PSNR or the human judgment, one point per scored row.

    Pairs: y is the LPIPS distance, colour the rank gap to the x metric (red: LPIPS finds
    the pair more different than the pixel metric does, blue: less). Triplets: y is the
    LPIPS margin d1 - d0 (positive: p0 closer), colour whether LPIPS agrees with the judges.
    """
    x = x or ("ssim" if kind == "pairs" else "judge")
    if x not in AXES[kind]:
        raise ValueError(f"x must be one of {', '.join(AXES[kind])} for {kind}, got {x!r}")
    ok = [i for i, s in enumerate(data["status"]) if s == "ok"]
    fig = go.Figure()
    if kind == "pairs":
        xs_all, ys_all = _num(data[x]), _num(data["distance"])
        gaps = row_rank_gaps(kind, data, x)
        fig.add_trace(go.Scattergl(
            x=[float(xs_all[i]) for i in ok], y=[float(ys_all[i]) for i in ok], mode="markers",
            text=[data["id"][i] for i in ok], name="rows",
            marker={"color": [0.0 if gaps[i] is None else gaps[i] for i in ok],
                    "colorscale": "RdBu_r", "cmin": -1,
                    "cmax": 1, "size": 8, "line": {"width": 0.6, "color": "#555"},
                    "colorbar": {"title": {"text": f"rank gap<br>LPIPS - {x.upper()}"}}},
            hovertemplate=f"%{{text}}<br>{AXES[kind][x]}: %{{x:.4g}}<br>LPIPS: %{{y:.4f}}"
                          "<br>rank gap: %{marker.color:.2f}<extra></extra>"))
        fig.update_layout(xaxis_title=AXES[kind][x], yaxis_title="LPIPS distance")
        title = (f"LPIPS against {AXES[kind][x]}: colour is the rank gap (red: LPIPS ranks "
                 f"the pair as more different than {x.upper()} does)")
    else:
        xs_all = (_num(data["judge"]) if x == "judge"
                  else _num(data[f"{x}0"]) - _num(data[f"{x}1"]))
        ys_all = _num(data["d1"]) - _num(data["d0"])
        groups: dict[str, list[int]] = {"agrees": [], "disagrees": [], "undecided": []}
        for i in ok:
            a = data["agree"][i]
            groups["agrees" if a is True else "disagrees" if a is False else "undecided"].append(i)
        for name, rows in groups.items():
            if not rows:
                continue
            fig.add_trace(go.Scattergl(
                x=[float(xs_all[i]) for i in rows], y=[float(ys_all[i]) for i in rows],
                mode="markers", name=f"LPIPS {name} with the judges ({len(rows)})",
                text=[data["id"][i] for i in rows],
                marker={"color": _AGREE_COLOURS[name], "size": 7},
                hovertemplate=f"%{{text}}<br>{AXES[kind][x]}: %{{x:.4g}}<br>"
                              "LPIPS margin d1 - d0: %{y:.4f}<extra></extra>"))
        fig.add_hline(y=0, line={"color": "#888", "width": 1})
        if x == "judge":
            fig.add_vline(x=0.5, line={"color": "#888", "width": 1, "dash": "dot"})
        fig.update_layout(xaxis_title=AXES[kind][x],
                          yaxis_title="LPIPS margin d1 - d0 (> 0: p0 closer)")
        title = (f"LPIPS margin against {AXES[kind][x]}, coloured by agreement with the "
                 f"judges' majority")
    marked = [i for i in ok if data["id"][i] in set(highlight)]
    if marked:
        fig.add_trace(go.Scattergl(
            x=[float(xs_all[i]) for i in marked], y=[float(ys_all[i]) for i in marked],
            mode="markers", name="selected", text=[data["id"][i] for i in marked],
            marker={"symbol": "circle-open", "size": 16, "color": "#000", "line": {"width": 2}},
            hovertemplate="%{text} (selected)<extra></extra>"))
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=460,
                      template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      legend={"orientation": "h", "y": -0.2})
    return fig


# --------------------------------------------------------------------------- sentences


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def summary_sentences(kind: str, summary: Mapping[str, Any]) -> list[str]:
    """Plain sentences, each built from a number in the summary."""
    c = summary["counts"]
    out = [f"{c['rows']} rows: {c['scored']} scored, {c['failed']} failed"
           + (f" ({', '.join(f'{n} {t}' for t, n in c['failed_by_type'].items())})."
              if c["failed"] else ".")]
    rc = summary.get("rank_correlation") or {}
    for metric in ("ssim", "psnr"):
        if rc.get(metric) is not None:
            how = (f"the LPIPS distance against -{metric.upper()}" if kind == "pairs" else
                   f"the LPIPS margin against {metric.upper()}'s margin")
            out.append(f"Rank agreement of LPIPS with {metric.upper()} (Spearman's rho of "
                       f"{how}): {rc[metric]:+.3f} (+1 = the same order).")
    if kind == "pairs":
        o = summary.get("outliers") or {}
        if o.get("count"):
            out.append(f"{o['count']} distance(s) lie outside the Tukey fences "
                       f"[{_f(o['low'], '.4f')}, {_f(o['high'], '.4f')}].")
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
                       f"{_f(a.get('psnr_2afc'))}.")
        layers = summary.get("disagreement_layers") or []
        if layers and a.get("disagree"):
            top = layers[0]
            out.append(f"Behind the disagreements: {top['layer']} carries on average "
                       f"{100 * top['mean_share']:.0f}% of the margin pushing towards LPIPS's "
                       f"pick; without it {top['decisive']} of {a['disagree']} would have "
                       f"agreed with the judges.")
    return out


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.4em}
.meta{color:#555} .warn{color:#8a5300}
.controls{display:flex;gap:1em;flex-wrap:wrap;align-items:center;margin:.6em 0}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ddd;padding:.25em .5em;
text-align:left;vertical-align:middle} th{background:#f6f6f6;cursor:pointer;position:sticky;
top:0;white-space:nowrap} th.sorted-asc::after{content:" \\25B2"} th.sorted-desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums} tr.failed{background:#fff4f4}
td img{width:48px;height:48px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc}
.count{color:#555}
"""

_JS = r"""
(function(){
const D = JSON.parse(document.getElementById('audit-data').textContent);
const cols = D.columns, rows = D.rows;
const tbody = document.querySelector('#rows tbody'), head = document.querySelector('#rows thead tr');
const q = document.getElementById('q'), st = document.getElementById('status'),
      fi = document.getElementById('finding'), ag = document.getElementById('agree'),
      count = document.getElementById('count');
let sortKey = null, sortDir = 1;
cols.forEach(c => { const th = document.createElement('th'); th.textContent = c.label;
  th.dataset.key = c.key; if (c.sortable !== false) th.onclick = () => {
    sortDir = (sortKey === c.key) ? -sortDir : (c.type === 'num' ? -1 : 1); sortKey = c.key; draw(); };
  head.appendChild(th); });
function cell(r, c) {
  const v = r[c.key];
  if (c.type === 'thumbs') return (v || []).map(s => s ? `<img loading="lazy" src="${s}" alt="">` : '').join('');
  if (c.type === 'link') return v ? `<a href="${v}">report</a>` : '';
  if (v === null || v === undefined) return '';
  if (c.type === 'num') return (typeof v === 'number') ? v.toPrecision(c.digits || 4) : String(v);
  return String(v).replace(/[&<>"]/g, ch => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[ch]));
}
function keep(r) {
  if (st.value && r.status !== st.value) return false;
  if (fi.value && !(r.findings || '').split(', ').includes(fi.value)) return false;
  if (ag && ag.value && String(r.agree) !== ag.value) return false;
  const t = q.value.trim().toLowerCase();
  if (t && !D.searchable.some(k => r[k] !== null && r[k] !== undefined && String(r[k]).toLowerCase().includes(t))) return false;
  return true;
}
function cmp(a, b) {
  const x = a[sortKey], y = b[sortKey];
  if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
  if (y === null || y === undefined) return -1;
  if (typeof x === 'number' && typeof y === 'number') return sortDir * (x - y);
  return sortDir * String(x).localeCompare(String(y), undefined, {numeric: true});
}
function draw() {
  let shown = rows.filter(keep);
  if (sortKey) shown = shown.slice().sort(cmp);
  head.querySelectorAll('th').forEach(th => { th.classList.remove('sorted-asc', 'sorted-desc');
    if (th.dataset.key === sortKey) th.classList.add(sortDir > 0 ? 'sorted-asc' : 'sorted-desc'); });
  tbody.innerHTML = shown.map(r => `<tr class="${r.status === 'ok' ? '' : 'failed'}" data-id="${cell(r, {key:'id'})}">` +
    cols.map(c => `<td class="${c.type === 'num' ? 'num' : ''}">${cell(r, c)}</td>`).join('') + '</tr>').join('');
  count.textContent = `${shown.length} of ${rows.length} rows`;
}
[q, st, fi, ag].forEach(el => el && el.addEventListener('input', draw));
draw();
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table_columns(kind: str, layer_names: Sequence[str],
                   extra: Sequence[str]) -> list[dict[str, Any]]:
    cols: list[dict[str, Any]] = [{"key": "thumbs", "label": "images", "type": "thumbs",
                                   "sortable": False},
                                  {"key": "id", "label": "id"}, {"key": "status", "label": "status"}]
    if kind == "pairs":
        cols += [{"key": "distance", "label": "LPIPS", "type": "num"},
                 {"key": "psnr", "label": "PSNR", "type": "num"},
                 {"key": "ssim", "label": "SSIM", "type": "num"},
                 {"key": "gap_ssim", "label": "rank gap vs SSIM", "type": "num", "digits": 2},
                 {"key": "gap_psnr", "label": "rank gap vs PSNR", "type": "num", "digits": 2},
                 {"key": "dominant_layer", "label": "top layer"}]
    else:
        cols += [{"key": "judge", "label": "judge (p1)", "type": "num", "digits": 3},
                 {"key": "d0", "label": "d0", "type": "num"},
                 {"key": "d1", "label": "d1", "type": "num"},
                 {"key": "margin", "label": "margin d1-d0", "type": "num"},
                 {"key": "verdict", "label": "LPIPS pick"}, {"key": "human", "label": "judges"},
                 {"key": "agree", "label": "agree"},
                 {"key": "score_2afc", "label": "2AFC", "type": "num", "digits": 3}]
    cols += [{"key": "findings", "label": "findings"},
             {"key": "report", "label": "explanation", "type": "link", "sortable": False},
             *[{"key": name, "label": name} for name in extra],
             {"key": "error", "label": "error"}]
    return cols


def audit_html(kind: str, data: Mapping[str, Sequence[Any]], summary: Mapping[str, Any], *,
               layer_names: Sequence[str], extra: Sequence[str] = (),
               thumbs: Mapping[str, Sequence[str | None]] | None = None,
               links: Mapping[str, str] | None = None) -> str:
    """The offline, sortable and filterable audit page (thumbnails and links relative)."""
    thumbs, links = thumbs or {}, links or {}
    n = len(data["id"])
    member: dict[str, list[str]] = {}
    for f in summary.get("findings", []):
        for rid in f["ids"]:
            member.setdefault(rid, []).append(f["name"])
    keys = [c["key"] for c in _table_columns(kind, layer_names, extra)]
    gaps = ({"gap_ssim": row_rank_gaps(kind, data, "ssim"),
             "gap_psnr": row_rank_gaps(kind, data, "psnr")} if kind == "pairs" else {})
    rows = []
    for i in range(n):
        rid = data["id"][i]
        r: dict[str, Any] = {k: data[k][i] for k in keys if k in data}
        r.update({k: v[i] for k, v in gaps.items()})
        r.update(id=rid, thumbs=list(thumbs.get(rid, ())), report=links.get(rid),
                 findings=", ".join(member.get(rid, [])) or None)
        rows.append(r)
    searchable = ["id", "status", "error", "findings", *ROLES[kind], *extra,
                  *(["dominant_layer"] if kind == "pairs" else ["verdict", "human"])]
    blob = {"columns": _table_columns(kind, layer_names, extra),
            "rows": [{**r, **{k: data[k][i] for k in ROLES[kind]}} for i, r in enumerate(rows)],
            "searchable": searchable}
    payload = json.dumps(jsonable(blob), allow_nan=False).replace("</", "<\\/")
    fig = disagreement_figure(kind, data)
    plot = fig.to_html(full_html=False, include_plotlyjs=True, config=_PLOTLY_CONFIG,
                       default_width="100%", default_height="460px")
    findings = "".join(f'<option value="{_e(f["name"])}">{_e(f["title"])} ({len(f["ids"])})</option>'
                       for f in summary.get("findings", []))
    agree = ('<label>agreement <select id="agree"><option value="">all</option>'
             '<option value="true">agrees</option><option value="false">disagrees</option>'
             '<option value="null">undecided</option></select></label>'
             if kind == "triplets" else "")
    bb = summary.get("backbone") or {}
    warn = "".join(f'<p class="warn">{_e(w)}</p>' for w in summary.get("warnings", []))
    sentences = "".join(f"<li>{_e(s)}</li>" for s in summary_sentences(kind, summary))
    body = (
        f"<h1>LPIPS audit</h1>"
        f'<p class="meta">{_e(summary.get("input", ""))}: {n} {kind}; LPIPS '
        f'{_e(summary.get("net", ""))} v{_e(summary.get("version", ""))}, backbone '
        f'<code>{_e(bb.get("weights", ""))}</code>, size policy '
        f'<code>{_e(summary.get("size_policy", ""))}</code>.</p>{warn}'
        f"<h2>Summary</h2><ul>{sentences}</ul>"
        f"<h2>Disagreement plot</h2>{plot}"
        f"<h2>Rows</h2>"
        f'<div class="controls"><label>search <input id="q" type="search" '
        f'placeholder="id, path, error, layer..."></label>'
        f'<label>status <select id="status"><option value="">all</option>'
        f'<option value="ok">ok</option><option value="failed">failed</option></select></label>'
        f'<label>finding <select id="finding"><option value="">all rows</option>{findings}'
        f"</select></label>{agree}<span id=\"count\" class=\"count\"></span></div>"
        f'<table id="rows"><thead><tr></tr></thead><tbody></tbody></table>'
        f'<script id="audit-data" type="application/json">{payload}</script>'
        f"<script>{_JS}</script>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>LPIPS audit: {n} {kind}</title><style>{_CSS}</style></head><body>"
            f"{body}</body></html>\n")


def write_audit_report(out_dir: str | Path, kind: str, data: Mapping[str, Sequence[Any]],
                       summary: Mapping[str, Any], *, layer_names: Sequence[str],
                       extra: Sequence[str] = (),
                       links: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write summary.json and audit.html into ``out_dir``; return name -> path."""
    root = Path(out_dir)
    thumbs = {}
    for rid in data["id"]:
        files = [f"thumbs/{file_stem(rid)}_{role}.jpg" for role in ROLES[kind]]
        thumbs[rid] = [f if (root / f).exists() else None for f in files]
    files = {"summary_json": root / "summary.json", "audit_html": root / "audit.html"}
    files["summary_json"].write_text(
        json.dumps(jsonable(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    files["audit_html"].write_text(
        audit_html(kind, data, summary, layer_names=layer_names, extra=extra, thumbs=thumbs,
                   links=links), encoding="utf-8")
    return files

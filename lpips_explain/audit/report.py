"""The audit's report: summary.json and an offline audit.html.

audit.html is one file that opens offline: plotly.js is inlined once (the disagreement plot,
:mod:`~lpips_explain.audit.figure`), the rows travel as JSON inside the page and a small
script sorts (click a column header) and filters them (free text, status, finding,
agreement); thumbnails and the explained rows' reports are files beside it (``thumbs/``,
``explained/<row>/report.html``), linked relatively.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lpips_explain.audit.columns import ROLES
from lpips_explain.audit.figure import disagreement_figure
from lpips_explain.audit.layout import AUDIT_HTML, SUMMARY_JSON, thumb_path
from lpips_explain.audit.sentences import summary_sentences
from lpips_explain.audit.summary import finding_members, row_rank_gaps
from lpips_explain.output.serialize import jsonable

__all__ = ["audit_html", "write_audit_report"]

_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

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
    member = finding_members(summary)
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
        paths = [thumb_path(rid, role) for role in ROLES[kind]]
        thumbs[rid] = [f if (root / f).exists() else None for f in paths]
    files = {"summary_json": root / SUMMARY_JSON, "audit_html": root / AUDIT_HTML}
    files["summary_json"].write_text(
        json.dumps(jsonable(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    files["audit_html"].write_text(
        audit_html(kind, data, summary, layer_names=layer_names, extra=extra, thumbs=thumbs,
                   links=links), encoding="utf-8")
    return files

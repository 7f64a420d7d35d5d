"""The Audit page's helpers: the rows to audit (a bundled sample set, or a CSV and a zip of
images), the run, the summary, the filterable table, the disagreement plot and one row's
drill-down, which can open the row on the Explain or the Triplet page."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lpips_explain.audit.columns import METRIC_COLUMNS, ROLES, columns
from lpips_explain.audit.figure import AXES, disagreement_figure
from lpips_explain.audit.layout import thumb_path
from lpips_explain.audit.run import AuditResult
from lpips_explain.audit.sentences import summary_sentences
from lpips_explain.audit.summary import finding_members, row_rank_gaps
from lpips_explain.audit.upload import extract_zip, find_csv
from lpips_explain.explainer import Explainer
from lpips_explain.ui import keys
from lpips_explain.ui.inputs import ASSETS, ImageInput, Pair, Triplet
from lpips_explain.ui.resources import digest
from lpips_explain.ui.runstate import RunState, wait_for_input
from lpips_explain.validation import Progress, counted

SAMPLE_DIR = ASSETS / "audit_sample"
SAMPLES: dict[str, tuple[str, str]] = {
    "sample_pairs": ("pairs.csv", "Bundled sample: 36 pairs (64 px patches of the sample "
                                  "photographs, each with a seeded distortion)"),
    "sample_triplets": ("triplets.csv", "Bundled sample: 24 triplets with SYNTHETIC judgments "
                                        "(five simulated judges, not people; see "
                                        "assets/make_audit_sample.py)"),
}
UPLOAD = "upload"
WORK_ENV = "LPIPS_EXPLAIN_AUDIT_DIR"  # where uploads are extracted and runs kept


def work_dir() -> Path:
    return Path(os.environ.get(WORK_ENV) or Path(tempfile.gettempdir()) / "lpips-explain-audit")

# Widget and session-state keys of this page.
SOURCE = "audit_source"
UPLOAD_CSV = "audit_upload_csv"
UPLOAD_ZIP = "audit_upload_zip"
STATUS = "audit_status"
FINDING = "audit_finding"
METRICS = "audit_metrics"
AGREE = "audit_agree"
SEARCH = "audit_search"
AXIS = "audit_axis"
TABLE = "audit_table"
ROW = "audit_row"
OPEN = "audit_open"
OPEN_REQUEST = "audit_open_request"  # the row whose Open button was pressed
DOWNLOAD_PARQUET = "audit_download_parquet"
DOWNLOAD_SUMMARY = "audit_download_summary"
DOWNLOAD_REPORT = "audit_download_report"


@dataclass(frozen=True)
class AuditInput:
    """The CSV to audit (its paths are relative to it), what it is, and a content key."""

    csv: Path
    label: str
    key: str


# --------------------------------------------------------------------------- the input


def _sample(choice: str) -> AuditInput:
    name, label = SAMPLES[choice]
    path = SAMPLE_DIR / name
    return AuditInput(path, label, f"{choice}:{digest(path.read_bytes())}")


def _unpack(csv_bytes: bytes | None, zip_bytes: bytes, run: RunState | None) -> AuditInput:
    """The zip extracted (once per content) with the CSV beside its top level."""
    key = digest((csv_bytes or b"") + b"\0" + zip_bytes)
    root = work_dir() / "inputs" / key
    marker = root / ".complete"
    if not marker.exists():
        extract_zip(zip_bytes, root)
        if csv_bytes is not None:
            (root / "audit.csv").write_bytes(csv_bytes)
        marker.write_text("ok", encoding="utf-8")
    csv_path = root / "audit.csv" if csv_bytes is not None else find_csv(root)
    if csv_path is None:
        st.info("The zip holds no single CSV at its top level: upload the CSV as well "
                "(columns a,b or ref,p0,p1,judge; paths relative to the zip's top level).")
        wait_for_input(run, "Waiting for the CSV")
        st.stop()
    return AuditInput(csv_path, "Uploaded CSV and images", f"upload:{key}")


def audit_input(run: RunState | None = None) -> AuditInput:
    """A bundled sample set, or an uploaded CSV plus a zip of its images (``run``: the page's
    run state, told when the page waits for uploads)."""
    options = [*SAMPLES, UPLOAD]
    labels = {"sample_pairs": "Sample pairs", "sample_triplets": "Sample triplets (synthetic "
              "judgments)", UPLOAD: "Upload a CSV and a zip of images"}
    choice = st.radio("Rows to audit", options, key=SOURCE, horizontal=True,
                      format_func=labels.__getitem__)
    if choice != UPLOAD:
        source = _sample(choice)
        st.caption(source.label)
        return source
    col_c, col_z = st.columns(2)
    up_csv = col_c.file_uploader(
        "CSV: a,b[,id,...] (pairs) or ref,p0,p1,judge[,id,...] (judged triplets)",
        type=["csv"], key=UPLOAD_CSV,
        help="Paths in the CSV are relative to the zip's top level. Without a CSV here, the "
             "zip's own CSV is used.")
    up_zip = col_z.file_uploader("Zip of the images", type=["zip"], key=UPLOAD_ZIP,
                                 help="Extracted safely: no paths outside the archive, no "
                                      "links, size caps.")
    if up_zip is None:
        st.info("Upload a zip of the images (and the CSV, unless the zip holds it), or pick "
                "a sample set.")
        wait_for_input(run, "Waiting for a zip of the images")
        st.stop()
    csv_bytes = bytes(up_csv.getvalue()) if up_csv is not None else None
    return _unpack(csv_bytes, bytes(up_zip.getvalue()), run)


METRIC_LABELS = {"stlpips": "ST-LPIPS", "dists": "DISTS"}


def metric_choice() -> list[str]:
    """The optional metric columns (none by default: each costs a trunk pass per image)."""
    return st.multiselect(
        "Second-opinion columns", list(METRIC_LABELS), default=[], key=METRICS,
        format_func=METRIC_LABELS.get,
        help="ST-LPIPS (shift-tolerant) and DISTS (texture-tolerant) beside LPIPS for every "
             "row: the summary then lists the rows they rank most differently and, for "
             "judged triplets, their 2AFC agreement with the judges. Each adds one trunk "
             "pass per image.")


def out_dir(model_key: tuple, source: AuditInput, metrics: Sequence[str] = ()) -> Path:
    """Where this model's audit of this input lives (restarts resume there)."""
    key = (model_key, source.key, *([tuple(metrics)] if metrics else []))
    tag = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
    return work_dir() / "runs" / tag


def run(explainer: Explainer, source: AuditInput, model_key: tuple,
        progress: Progress | None, metrics: Sequence[str] = ()) -> AuditResult:
    """The audit, decoded in this process (worker processes do not mix with the server's
    threads); explanations are made on the Explain and Triplet pages instead."""
    return explainer.audit(source.csv, out_dir(model_key, source, metrics), explain_top=0,
                           workers=0, progress=progress, metrics=list(metrics))


# --------------------------------------------------------------------------- summary


def summary_panel(result: AuditResult) -> None:
    s = result.summary
    c = s["counts"]
    cols = st.columns(4)
    cols[0].metric("Rows", c["rows"])
    cols[1].metric("Scored", c["scored"])
    cols[2].metric("Failed", c["failed"])
    if result.kind == "pairs":
        rho = (s.get("rank_correlation") or {}).get("ssim")
        cols[3].metric("Rank agreement with SSIM", "n/a" if rho is None else f"{rho:+.3f}",
                       help="Spearman's rho of the LPIPS distance against -SSIM: +1 is the "
                            "same order.")
    else:
        afc = (s.get("agreement") or {}).get("lpips_2afc")
        cols[3].metric("2AFC agreement with the judges", "n/a" if afc is None else f"{afc:.3f}",
                       help="Mean over triplets of (d0<d1)(1-judge) + (d1<d0)judge + 0.5[d0=d1].")
    for line in summary_sentences(result.kind, s):
        st.markdown(f"- {line}")
    metric_disagreements(result)
    if c["failed"]:
        by = {f["id"]: f["error"] for f in s.get("failures", [])}
        missing = sum(1 for f in s.get("failures", []) if f["error_type"] == "MissingFile")
        if missing == c["rows"]:
            st.warning("No path in the CSV exists: paths are read relative to the zip's top "
                       "level (or to the CSV's folder).")
        with st.expander(f"Why {counted(c['failed'], 'row')} failed"):
            st.dataframe(pd.DataFrame({"id": list(by), "reason": list(by.values())}),
                         hide_index=True)


def metric_disagreements(result: AuditResult) -> None:
    """Per second-opinion column: the rows it and LPIPS rank most differently (the
    summary's rank_disagreements, rule in its note) and, for triplets, its 2AFC score."""
    s = result.summary
    gaps = s.get("rank_disagreements") or {}
    present = [m for m in METRIC_LABELS if m in gaps]
    if not present:
        return
    afc = s.get("agreement") or {}
    with st.expander("Where the second opinions rank most differently", expanded=True):
        st.caption("Percentile ranks (1 = the most different row, or the strongest preference "
                   "for p0) by LPIPS and by the metric; gap = LPIPS's rank minus the metric's, "
                   "largest |gap| first.")
        cols = st.columns(len(present))
        for col, m in zip(cols, present, strict=True):
            label = METRIC_LABELS[m]
            score = afc.get(f"{m}_2afc")
            col.markdown(f"**LPIPS against {label}**"
                         + (f" (2AFC with the judges: {score:.3f}, LPIPS "
                            f"{afc['lpips_2afc']:.3f})" if score is not None
                            and afc.get("lpips_2afc") is not None else ""))
            rows = gaps[m]
            if not rows:
                col.caption("Fewer than two rows scored.")
                continue
            col.dataframe(pd.DataFrame([{"id": r["id"], "LPIPS rank": r["lpips_rank"],
                                         f"{label} rank": r[f"{m}_rank"], "gap": r["gap"]}
                                        for r in rows]),
                          hide_index=True, column_config={
                              "LPIPS rank": st.column_config.NumberColumn(format="%.2f"),
                              f"{label} rank": st.column_config.NumberColumn(format="%.2f"),
                              "gap": st.column_config.NumberColumn(format="%+.2f")})


# --------------------------------------------------------------------------- the table


def _thumb_uri(root: Path, rel: str) -> str | None:
    path = root / rel
    if not path.is_file():
        return None
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def frame(result: AuditResult) -> pd.DataFrame:
    """The rows with their findings, rank gaps and thumbnails (data URIs)."""
    data = result.rows.to_pydict()
    df = pd.DataFrame(data)
    member = finding_members(result.summary)
    df["findings"] = [", ".join(member.get(i, [])) for i in df["id"]]
    if result.kind == "pairs":
        df["gap_ssim"] = row_rank_gaps("pairs", data, "ssim")
    for role in ROLES[result.kind]:
        df[f"img_{role}"] = [_thumb_uri(result.out_dir, thumb_path(i, role)) for i in df["id"]]
    return df


def filters(result: AuditResult, df: pd.DataFrame) -> pd.DataFrame:
    """Status, finding, agreement (triplets) and free-text filters."""
    cols = st.columns([1, 2, 1.2, 2] if result.kind == "triplets" else [1, 2, 2])
    status = cols[0].selectbox("Status", ["all", "ok", "failed"], key=STATUS)
    findings = {f["name"]: f["title"] for f in result.summary.get("findings", [])}
    finding = cols[1].selectbox("Finding", ["all", *findings], key=FINDING,
                                format_func=lambda n: "all rows" if n == "all" else findings[n])
    agree = "all"
    if result.kind == "triplets":
        agree = cols[2].selectbox("Agreement", ["all", "agrees", "disagrees", "undecided"],
                                  key=AGREE)
    text = cols[-1].text_input("Search", key=SEARCH, placeholder="id, path, error, layer...")
    keep = pd.Series(True, index=df.index)
    if status != "all":
        keep &= df["status"] == status
    if finding != "all":
        ids = set(next(f["ids"] for f in result.summary["findings"] if f["name"] == finding))
        keep &= df["id"].isin(ids)
    if agree != "all":
        want = {"agrees": True, "disagrees": False, "undecided": None}[agree]
        keep &= df["agree"].map(lambda v: v is want or (want is None and pd.isna(v)))
    if text.strip():
        t = text.strip().lower()
        hay = df.drop(columns=[c for c in df.columns if c.startswith("img_")]).astype(str)
        keep &= hay.apply(lambda col: col.str.lower().str.contains(t, regex=False)).any(axis=1)
    return df[keep]


def _select_row() -> None:
    """Table selection -> the row picker (so both stay one choice)."""
    sel = st.session_state.get(TABLE)
    rows = getattr(getattr(sel, "selection", None), "rows", None)
    if rows is None and isinstance(sel, dict):
        rows = (sel.get("selection") or {}).get("rows")
    shown = st.session_state.get(f"{TABLE}__ids", [])
    if rows and rows[0] < len(shown):
        st.session_state[ROW] = shown[rows[0]]


def table(result: AuditResult, df: pd.DataFrame) -> None:
    """The rows, sortable (click a header); selecting one opens it below."""
    imgs = [f"img_{r}" for r in ROLES[result.kind]]
    if result.kind == "pairs":
        cols = [*imgs, "id", "status", "distance", "psnr", "ssim", "gap_ssim",
                "dominant_layer", "findings", "error"]
    else:
        cols = [*imgs, "id", "status", "judge", "d0", "d1", "margin", "verdict", "human",
                "agree", "score_2afc", "findings", "error"]
    metric_cols = [c for c in ("stlpips", "dists", "stlpips0", "stlpips1", "dists0", "dists1")
                   if c in df.columns]
    cols = cols[:-2] + metric_cols + cols[-2:]
    extra = _extra_columns(result)
    cfg: dict[str, Any] = {f"img_{r}": st.column_config.ImageColumn(r) for r in ROLES[result.kind]}
    cfg.update({
        "distance": st.column_config.NumberColumn("LPIPS", format="%.4f"),
        "psnr": st.column_config.NumberColumn("PSNR (dB)", format="%.2f"),
        "ssim": st.column_config.NumberColumn("SSIM", format="%.4f"),
        "gap_ssim": st.column_config.NumberColumn(
            "rank gap vs SSIM", format="%.2f",
            help="LPIPS's percentile rank minus SSIM's (as dissimilarity): positive where "
                 "LPIPS finds the pair more different than SSIM does."),
        "d0": st.column_config.NumberColumn("d(ref, p0)", format="%.4f"),
        "d1": st.column_config.NumberColumn("d(ref, p1)", format="%.4f"),
        "margin": st.column_config.NumberColumn("margin d1-d0", format="%+.4f"),
        "judge": st.column_config.NumberColumn("judge (p1)", format="%.2f"),
        "score_2afc": st.column_config.NumberColumn("2AFC", format="%.2f"),
        "stlpips": st.column_config.NumberColumn("ST-LPIPS", format="%.4f"),
        "dists": st.column_config.NumberColumn("DISTS", format="%.4f"),
        "stlpips0": st.column_config.NumberColumn("ST-LPIPS p0", format="%.4f"),
        "stlpips1": st.column_config.NumberColumn("ST-LPIPS p1", format="%.4f"),
        "dists0": st.column_config.NumberColumn("DISTS p0", format="%.4f"),
        "dists1": st.column_config.NumberColumn("DISTS p1", format="%.4f"),
        "dominant_layer": "top layer", "verdict": "LPIPS pick", "human": "judges",
    })
    df = df.assign(error=df["error"].fillna(""))
    st.session_state[f"{TABLE}__ids"] = list(df["id"])
    st.dataframe(df[cols + extra], key=TABLE, on_select=_select_row,
                 selection_mode="single-row", hide_index=True, column_config=cfg,
                 row_height=52, height=min(420, 52 * (len(df) + 1) + 4))
    st.caption(f"{len(df)} of {len(result.rows)} rows. Click a column header to sort; select "
               f"a row to inspect it below.")


def _extra_columns(result: AuditResult) -> list[str]:
    """The input's own extra columns (kept in audit.parquet after the audit's columns)."""
    base = {name for name, _ in columns(result.kind, _layers(result), (),
                                        tuple(METRIC_COLUMNS))}
    return [c for c in result.rows.column_names if c not in base]


def _layers(result: AuditResult) -> list[str]:
    prefix = "share_" if result.kind == "pairs" else "margin_"
    return [c.removeprefix(prefix) for c in result.rows.column_names
            if c.startswith(prefix)]


# --------------------------------------------------------------------------- plot


def plot(result: AuditResult, selected: str | None) -> None:
    axes = AXES[result.kind]
    x = st.radio("LPIPS against", list(axes), key=AXIS, horizontal=True,
                 format_func=axes.__getitem__)
    fig = disagreement_figure(result.kind, result.rows.to_pydict(), x,
                              highlight=[selected] if selected else ())
    st.plotly_chart(fig, key="audit_plot")


# --------------------------------------------------------------------------- one row


def row_picker(result: AuditResult, df: pd.DataFrame) -> str | None:
    ids = list(df["id"])
    if not ids:
        st.info("No row matches the filters.")
        return None
    if st.session_state.get(ROW) not in ids:
        st.session_state[ROW] = ids[0]
    return st.selectbox("Row to inspect", ids, key=ROW)


def _file(result: AuditResult, rel: str) -> Path:
    return (Path(result.summary["input"]).parent / rel).resolve()


def drilldown(result: AuditResult, row_id: str) -> None:
    row = next(r for r in result.rows.to_pylist() if r["id"] == row_id)
    roles = ROLES[result.kind]
    cols = st.columns(len(roles))
    for col, role in zip(cols, roles, strict=True):
        path = _file(result, row[role]) if row[role] else None
        if path is not None and path.is_file() and row["status"] == "ok":
            col.image(path.read_bytes(), caption=f"{role}: {row[role]}", width=224)
        else:
            col.caption(f"{role}: {row[role] or '(none)'}")
    if row["status"] != "ok":
        st.error(f"{row['error_type']}: {row['error']}")
        return
    layers = _layers(result)
    if result.kind == "pairs":
        st.caption(f"distance = {row['distance']:.6f}; PSNR {row['psnr']:.2f} dB, "
                   f"SSIM {row['ssim']:.4f}; compared at {row['width']}x{row['height']} px")
        values = [row[f"share_{n}"] * row["distance"] for n in layers]
        title = "LPIPS per layer (the terms add up to the distance)"
    else:
        pick = {"p0": "p0 is closer", "p1": "p1 is closer", "tie": "a tie"}[row["verdict"]]
        judges = {"p0": "p0", "p1": "p1", "tie": "neither"}.get(row["human"], "n/a")
        st.caption(f"d(ref, p0) = {row['d0']:.6f}, d(ref, p1) = {row['d1']:.6f}: LPIPS says "
                   f"{pick}; the judges' majority prefers {judges} (judge = "
                   f"{row['judge']:.2f} preferring p1)")
        values = [row[f"margin_{n}"] for n in layers]
        title = "LPIPS margin d1 - d0 per layer (> 0 pushes towards p0)"
    fig = go.Figure(go.Bar(x=layers, y=values, marker_color="#4c72b0"))
    fig.update_layout(title={"text": title, "font": {"size": 13}}, height=300,
                      template="plotly_white", margin={"l": 50, "r": 20, "t": 50, "b": 40})
    st.plotly_chart(fig, key="audit_row_layers")
    if row.get("notes"):
        st.caption(f"Notes: {row['notes']}")
    page = "Explain" if result.kind == "pairs" else "Triplet"
    # A callback, not the button's return value: the request survives a rerun of the same
    # click (the app may rerun a run once before drawing, see controls.page_setup).
    st.button(f"Open on the {page} page", key=OPEN, type="primary",
              on_click=_request_open, args=(row_id,),
              help=f"The full explanation of this row: the images are handed to the {page} "
                   f"page as an upload.")
    if st.session_state.pop(OPEN_REQUEST, None) == row_id:
        open_row(result, row)


def _request_open(row_id: str) -> None:
    st.session_state[OPEN_REQUEST] = row_id


def open_row(result: AuditResult, row: dict) -> None:
    """Hand the row's images to the Explain (pairs) or Triplet page and go there."""
    roles = ROLES[result.kind]
    images = [ImageInput(Path(row[r]).name, _file(result, row[r]).read_bytes()) for r in roles]
    if result.kind == "pairs":
        value: Any = Pair(images[0], images[1], "upload")
        state, picker, page = keys.PAIR, keys.SAMPLE_PAIR, "pages/0_Explain.py"
        st.session_state[keys.SWAP] = False
    else:
        value = Triplet(images[0], images[1], images[2], "upload")
        state, picker, page = keys.TRIPLET, keys.SAMPLE_TRIPLET, "pages/1_Triplet.py"
    st.session_state[state] = value
    uploaded = getattr(keys, "UPLOADED", None)  # the picker entry that names uploads
    if uploaded is not None:
        st.session_state[picker] = uploaded
        st.session_state[keys.KEEP_PREFIX + picker] = uploaded
    st.switch_page(page)


# --------------------------------------------------------------------------- downloads


def downloads(result: AuditResult) -> None:
    root = result.out_dir
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in ("audit.html", "summary.json", "audit.parquet"):
            zf.write(root / rel, rel)
        for p in sorted((root / "thumbs").glob("*.jpg")):
            zf.write(p, f"thumbs/{p.name}")
    cols = st.columns(3)
    cols[0].download_button("audit.parquet", (root / "audit.parquet").read_bytes(),
                            "audit.parquet", key=DOWNLOAD_PARQUET)
    cols[1].download_button("summary.json", (root / "summary.json").read_bytes(),
                            "summary.json", mime="application/json", key=DOWNLOAD_SUMMARY)
    cols[2].download_button("Report (audit.html + thumbnails, zip)", buf.getvalue(),
                            "audit_report.zip", mime="application/zip", key=DOWNLOAD_REPORT)

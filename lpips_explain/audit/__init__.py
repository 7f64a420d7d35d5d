"""The audit: score many pairs or judged triplets, find where LPIPS disagrees, explain the worst.

One job a module, in the order a run goes through them:

- ``table``: read the input (a CSV of pairs or judged triplets, or a folder with a/ and b/);
  ``upload``: unpack an uploaded zip of images;
- ``settings``: what the numbers depend on (the model, rebuilt in every engine);
- ``rows``: one row's computation (decode, score, record), shared by the engines;
  ``columns``: what audit.parquet holds;
- ``local`` and ``ray_engine``: the engines; ``store``: their resumable parts and the
  final audit.parquet; ``layout``: where every file of the output folder lies;
- ``summary``: counts, rank correlations, disagreements and findings;
- ``explain``: explain the top rows of each finding (through the caller's callback);
- ``figure``, ``sentences``, ``report``: the disagreement plot, the summary in sentences,
  summary.json and audit.html;
- ``run``: all of it, in order (:func:`run_audit`, what ``Explainer.audit`` calls).

The names below load on first use (PEP 562): ``import lpips_explain.audit`` imports
nothing heavy, and never Ray (imported only when the Ray engine runs).
"""

from __future__ import annotations

from lpips_explain import lazy

_WHERE = {
    "ROLES": "columns", "SCHEMA": "columns",
    "ExplainRow": "explain",
    "AXES": "figure", "disagreement_figure": "figure",
    "thumb_path": "layout",
    "run_local": "local",
    "run_ray": "ray_engine",
    "audit_html": "report", "write_audit_report": "report",
    "ENGINES": "run", "AuditResult": "run", "run_audit": "run",
    "summary_sentences": "sentences",
    "AuditSettings": "settings", "settings_for": "settings",
    "EngineResult": "store",
    "row_rank_gaps": "summary", "summarize": "summary",
    "AuditRow": "table", "AuditTable": "table", "read_audit_input": "table",
    "extract_zip": "upload", "find_csv": "upload",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy.exports(__name__, _WHERE)

"""Explain the top rows of an audit's findings (``explain_top``): the loop, not the explaining.

The caller (the facade, :meth:`lpips_explain.Explainer.audit`) hands over a callback that
explains one row (:data:`ExplainRow`); each explanation is written to
``DIR/explained/<row>/`` with a stamp of what it was made from, so that a restart of the same
audit links the earlier explanation instead of making it again. A row that cannot be
explained is recorded with its reason, never raised: the audit itself is done by then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lpips_explain.audit.layout import explanation_dir, explanation_link
from lpips_explain.audit.table import AuditRow, AuditTable, row_signature
from lpips_explain.errors import LpipsExplainError
from lpips_explain.validation import Progress

#: Explains one row: ``explain_row(kind, image_paths)`` returns an Explanation (pairs: the
#: paths of A and B) or a TripletExplanation (triplets: REF, P0, P1).
ExplainRow = Callable[[str, tuple[str, ...]], Any]
LABEL = "Explaining the findings"
STAMP = ".made-from"  # in the row's explanation folder
DEFAULT_ATTRIBUTION = "integrated_gradients"  # the explainer's default method


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse an unknown attribution method before the audit's work, not after it."""
    method = options.get("attribution", DEFAULT_ATTRIBUTION)
    if method is not None:
        from lpips_explain.analyses.attribution import get_method

        get_method(method)


def explain_targets(summary: Mapping[str, Any], n: int) -> list[tuple[str, str]]:
    """(finding name, row id) for the top ``n`` rows of each finding, each row once."""
    seen: set[str] = set()
    out = []
    for f in summary.get("findings", []):
        for rid in f["ids"][:n]:
            if rid not in seen:
                seen.add(rid)
                out.append((f["name"], rid))
    return out


def _stamp(out_dir: Path, row: AuditRow, kind: str,
           options: Mapping[str, Any]) -> tuple[Path, str]:
    """Where a row's stamp lies and what it must say: the row's files and the options."""
    key = f"{row_signature(row, kind)}\n{sorted(options.items())!r}"
    return out_dir / explanation_dir(row.id) / STAMP, key


def _explained_before(out_dir: Path, stamp: Path, key: str, row_id: str) -> bool:
    """True if an earlier run explained this row from the same files and options."""
    return ((out_dir / explanation_link(row_id)).is_file() and stamp.is_file()
            and stamp.read_text(encoding="utf-8") == key)


def explain_findings(table: AuditTable, summary: Mapping[str, Any], out_dir: str | Path,
                     explain_row: ExplainRow, *, top: int, options: Mapping[str, Any],
                     progress: Progress | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Explain the top ``top`` rows of each finding of ``summary`` into ``out_dir``.

    Returns the links (row id -> its report, relative to ``out_dir``) and the rows that could
    not be explained (row id -> why). ``options`` are what ``explain_row`` was given: they are
    part of the stamp, so changed options explain the rows again.
    """
    from lpips_explain.output.report import write_explanation, write_triplet

    out = Path(out_dir)
    write = write_explanation if table.kind == "pairs" else write_triplet
    rows = {r.id: r for r in table.rows}
    targets = explain_targets(summary, top)
    links: dict[str, str] = {}
    errors: dict[str, str] = {}
    for k, (_, rid) in enumerate(targets):
        if progress:
            progress(k, len(targets), LABEL)
        stamp, key = _stamp(out, rows[rid], table.kind, options)
        if not _explained_before(out, stamp, key, rid):
            try:
                write(explain_row(table.kind, rows[rid].images), out / explanation_dir(rid))
            except LpipsExplainError as exc:
                errors[rid] = str(exc)
                continue
            stamp.write_text(key, encoding="utf-8")
        links[rid] = explanation_link(rid)
    if progress and targets:
        progress(len(targets), len(targets), LABEL)
    return links, errors

"""Where an audit's files lie in its output folder: one name for each.

``DIR/audit.parquet`` (one row per input row), ``DIR/summary.json``, ``DIR/audit.html``,
the thumbnails ``DIR/thumbs/<row>_<role>.jpg``, the explanations of the top rows
``DIR/explained/<row>/report.html`` and the resumable parts ``DIR/parts/`` (with
``parts/run.json``, what the numbers depend on). A row id becomes a file name through
:func:`file_stem`.
"""

from __future__ import annotations

import hashlib
import re

AUDIT_PARQUET = "audit.parquet"
SUMMARY_JSON = "summary.json"
AUDIT_HTML = "audit.html"
THUMBS = "thumbs"
PARTS = "parts"
RUN_FILE = "run.json"  # in PARTS
EXPLAINED = "explained"

#: summary.json's ``files``: what each file of the output folder is.
FILES = {"parquet": AUDIT_PARQUET, "summary": SUMMARY_JSON, "html": AUDIT_HTML,
         "thumbnails": f"{THUMBS}/", "parts": f"{PARTS}/"}


def file_stem(row_id: str) -> str:
    """A file-name-safe, unique stem for a row id (thumbnails, explanation folders)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", row_id).strip("._")[:60] or "row"
    if safe == row_id:
        return safe
    return f"{safe}-{hashlib.sha256(row_id.encode()).hexdigest()[:8]}"


def thumb_path(row_id: str, role: str) -> str:
    """A row's thumbnail of one image (``a``, ``b``, ``ref``...), relative to DIR."""
    return f"{THUMBS}/{file_stem(row_id)}_{role}.jpg"


def explanation_dir(row_id: str) -> str:
    """The folder of a row's explanation, relative to DIR."""
    return f"{EXPLAINED}/{file_stem(row_id)}"


def explanation_link(row_id: str) -> str:
    """A row's explanation report, relative to DIR (what audit.html links)."""
    return f"{explanation_dir(row_id)}/report.html"

"""An audit from input to report: read the rows, run an engine, summarise, write the report.

The facade (``Explainer.audit``) calls :func:`run_audit`, explains the rows the summary
picks (:meth:`AuditRun.targets`), then :func:`finish_audit` writes ``summary.json`` and
``audit.html`` linking those explanations. The Ray engine is imported only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lpips_explain.audit.local import run_local
from lpips_explain.audit.report import write_audit_report
from lpips_explain.audit.rows import (
    SCHEMA,
    AuditSettings,
    explain_targets,
    file_stem,
    summarize,
)
from lpips_explain.audit.store import EngineResult
from lpips_explain.audit.table import AuditRow, AuditTable, read_audit_input, row_signature
from lpips_explain.core.cache import FeatureCache
from lpips_explain.core.model import LpipsNet
from lpips_explain.core.weights import official_lin_path
from lpips_explain.errors import InputError, lookup
from lpips_explain.notices import RANDOM_TRUNK_TEXT

Progress = Callable[[int, int, str], None]
ENGINES: tuple[str, ...] = ("local", "ray")
EXPLAINED = "explained"


def settings_for(model: LpipsNet, *, size_policy: str, max_pixels: int | None) -> AuditSettings:
    """The settings that rebuild ``model`` anywhere (a Ray worker, a restart)."""
    info = model.weights_info
    official = os.path.abspath(official_lin_path(model.spec.name, model.version))
    lin = None if os.path.abspath(model.lin_file) == official else model.lin_file
    return AuditSettings(model.spec.name, model.version, info.spec, int(info.seed or 0)
                         if info.spec == "random" else 0, lin, size_policy, max_pixels)


@dataclass(frozen=True)
class AuditResult:
    """A finished audit: its rows (a pyarrow Table with audit.parquet's columns), the
    summary (summary.json) and the files written."""

    rows: Any  # pyarrow.Table
    summary: dict[str, Any]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.summary["kind"]

    def to_dict(self) -> dict[str, Any]:
        return self.summary

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        return self.rows.to_pandas()


@dataclass(frozen=True)
class AuditRun:
    """An engine's run with its summary, before the report is written."""

    table: AuditTable
    engine: EngineResult
    summary: dict[str, Any]
    out_dir: Path
    layer_names: tuple[str, ...]

    def row(self, row_id: str) -> AuditRow:
        return next(r for r in self.table.rows if r.id == row_id)

    def targets(self, n: int) -> list[tuple[str, str]]:
        """(finding, row id) of the top ``n`` rows of each finding, each row once."""
        return explain_targets(self.summary, n)

    def explanation_dir(self, row_id: str) -> Path:
        return self.out_dir / EXPLAINED / file_stem(row_id)

    def link(self, row_id: str) -> str:
        """The row's explanation report, relative to the output folder."""
        return f"{EXPLAINED}/{file_stem(row_id)}/report.html"

    def _stamp(self, row_id: str, options: dict) -> tuple[Path, str]:
        key = f"{row_signature(self.row(row_id), self.table.kind)}\n{sorted(options.items())!r}"
        return self.explanation_dir(row_id) / ".made-from", key

    def explained_before(self, row_id: str, options: dict) -> bool:
        """True if an earlier run explained this row from the same files and options."""
        stamp, key = self._stamp(row_id, options)
        return ((self.out_dir / self.link(row_id)).is_file() and stamp.is_file()
                and stamp.read_text(encoding="utf-8") == key)

    def mark_explained(self, row_id: str, options: dict) -> None:
        stamp, key = self._stamp(row_id, options)
        stamp.write_text(key, encoding="utf-8")


def run_audit(source: str | os.PathLike | AuditTable, out_dir: str | os.PathLike, *,
              model: LpipsNet, size_policy: str = "resize", max_pixels: int | None = None,
              engine: Literal["local", "ray"] = "local", ray_address: str | None = None,
              workers: int | None = None, batch_size: int = 16, concurrency: int | None = None,
              top: int = 10, progress: Progress | None = None,
              cache: FeatureCache | None = None) -> AuditRun:
    """Read ``source``, score every row with ``engine`` into ``out_dir`` and summarise.
    ``cache``: the feature cache the local engine encodes references through (Ray actors
    keep their own)."""
    lookup("audit engine", engine, {e: e for e in ENGINES})
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer, got {top!r}.")
    table = source if isinstance(source, AuditTable) else read_audit_input(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_for(model, size_policy=size_policy, max_pixels=max_pixels)
    if engine == "ray":
        from lpips_explain.audit.ray_engine import run_ray

        result = run_ray(table, out, settings, model=model, address=ray_address,
                         concurrency=concurrency, batch_size=batch_size, progress=progress)
    else:
        if ray_address:
            raise InputError("--ray-address needs --engine ray.")
        result = run_local(table, out, settings, model=model, workers=workers,
                           batch_size=batch_size, progress=progress, cache=cache)
    data = result.rows.to_pydict()
    info = model.weights_info
    summary: dict[str, Any] = {
        "schema": SCHEMA, "kind": table.kind, "input": table.source,
        "net": model.spec.name, "version": model.version,
        "backbone": {"weights": info.spec, "perceptual": info.perceptual},
        "size_policy": size_policy, "engine": result.to_dict(),
        # The audit always scores with the exact float32 network (never a fast mode).
        "mode": {"precision": "fp32", "device": str(model.head0.device), "exact": True},
        "columns": list(result.rows.column_names),
    }
    summary.update(summarize(table.kind, data, model.layer_names, top=top))
    summary["warnings"] = [] if info.perceptual else [RANDOM_TRUNK_TEXT]
    return AuditRun(table, result, summary, out, tuple(model.layer_names))


def finish_audit(run: AuditRun, links: dict[str, str],
                 explain_errors: dict[str, str] | None = None) -> AuditResult:
    """Write summary.json and audit.html (linking ``links``: row id -> report, relative)."""
    summary = dict(run.summary)
    summary["explained"] = dict(links)
    if explain_errors:
        summary["explain_errors"] = dict(explain_errors)
    summary["files"] = {"parquet": "audit.parquet", "summary": "summary.json",
                        "html": "audit.html", "thumbnails": "thumbs/", "parts": "parts/"}
    data = run.engine.rows.to_pydict()
    files = write_audit_report(run.out_dir, run.table.kind, data, summary,
                               layer_names=run.layer_names, extra=run.table.extra_columns,
                               links=links)
    files["audit_parquet"] = run.engine.path
    return AuditResult(run.engine.rows, summary, run.out_dir, files)

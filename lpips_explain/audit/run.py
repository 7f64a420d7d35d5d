"""An audit from input to report: read the rows, run an engine, summarise, explain the top
rows of each finding, write the report.

:func:`run_audit` does it all; the facade (:meth:`lpips_explain.Explainer.audit`) calls it
with its model and a callback that explains one row. The steps are :func:`score_audit`
(read, score with an engine, summarise), :func:`~lpips_explain.audit.explain.explain_findings`
and :func:`finish_audit` (``summary.json`` and ``audit.html``, linking the explanations).
The Ray engine is imported only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lpips_explain.audit.approx import error_sentence, measure_error
from lpips_explain.audit.columns import SCHEMA
from lpips_explain.audit.explain import ExplainRow, check_options, explain_findings
from lpips_explain.audit.layout import FILES
from lpips_explain.audit.local import run_local
from lpips_explain.audit.report import write_audit_report
from lpips_explain.audit.settings import settings_for
from lpips_explain.audit.store import EngineResult
from lpips_explain.audit.summary import summarize
from lpips_explain.audit.table import AuditTable, read_audit_input
from lpips_explain.core.cache import FeatureCache
from lpips_explain.core.model import LpipsNet
from lpips_explain.core.modes import EXACT, Mode
from lpips_explain.errors import InputError
from lpips_explain.validation import Progress, choice, integer

ENGINES: tuple[str, ...] = ("local", "ray")


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


def run_audit(source: str | os.PathLike | AuditTable, out_dir: str | os.PathLike, *,
              model: LpipsNet, explain_row: ExplainRow | None = None, explain_top: int = 0,
              explain_options: Mapping[str, Any] | None = None, size_policy: str = "resize",
              max_pixels: int | None = None, engine: Literal["local", "ray"] = "local",
              ray_address: str | None = None, workers: int | None = None,
              batch_size: int = 16, concurrency: int | None = None, top: int = 10,
              progress: Progress | None = None,
              cache: FeatureCache | None = None, metrics: Sequence[str] = (),
              metric_models: Mapping[str, Any] | None = None,
              scorer: LpipsNet | None = None, mode: Mode | None = None) -> AuditResult:
    """Audit ``source`` into ``out_dir``: score every row with ``engine``, summarise, explain
    the top ``explain_top`` rows of each finding with ``explain_row`` (given
    ``explain_options``: they key the explanations a restart reuses) and write the report."""
    explain_top = integer(explain_top, "explain_top", minimum=0)
    options = dict(explain_options or {})
    if explain_top:
        if explain_row is None:
            raise ValueError("explain_top > 0 needs an explain_row callback.")
        check_options(options)
    run = score_audit(source, out_dir, model=model, size_policy=size_policy,
                      max_pixels=max_pixels, engine=engine, ray_address=ray_address,
                      workers=workers, batch_size=batch_size, concurrency=concurrency, top=top,
                      progress=progress, cache=cache, metrics=metrics,
                      metric_models=metric_models, scorer=scorer, mode=mode)
    links: dict[str, str] = {}
    errors: dict[str, str] = {}
    if explain_top and explain_row is not None:
        links, errors = explain_findings(run.table, run.summary, run.out_dir, explain_row,
                                         top=explain_top, options=options, progress=progress)
    return finish_audit(run, links, errors)


def score_audit(source: str | os.PathLike | AuditTable, out_dir: str | os.PathLike, *,
                model: LpipsNet, size_policy: str = "resize", max_pixels: int | None = None,
                engine: Literal["local", "ray"] = "local", ray_address: str | None = None,
                workers: int | None = None, batch_size: int = 16,
                concurrency: int | None = None, top: int = 10,
                progress: Progress | None = None,
                cache: FeatureCache | None = None, metrics: Sequence[str] = (),
                metric_models: Mapping[str, Any] | None = None,
                scorer: LpipsNet | None = None, mode: Mode | None = None) -> AuditRun:
    """Read ``source``, score every row with ``engine`` into ``out_dir`` and summarise.
    ``cache``: the feature cache the local engine encodes references through (Ray actors
    keep their own). ``metrics``: optional metric columns (``stlpips``, ``dists``), their
    networks taken from ``metric_models`` where given (the local engine). ``scorer`` and
    ``mode``: an approximate mode's network (bf16, int8) that scores instead of ``model``
    (local engine only); a seeded sample of the rows is then re-scored exactly with
    ``model`` and the error goes into the summary (``mode.error``)."""
    mode = mode or EXACT
    if scorer is None and not mode.exact:
        raise ValueError("an approximate mode needs its scorer network.")
    choice(engine, "audit engine", ENGINES)
    top = integer(top, "top", minimum=1)
    table = source if isinstance(source, AuditTable) else read_audit_input(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_for(model, size_policy=size_policy, max_pixels=max_pixels,
                            metrics=metrics, precision=mode.precision)
    if engine == "ray" and not mode.exact:
        raise InputError(f"--precision {mode.precision} runs on the local engine only; the "
                         f"Ray engine scores with the exact fp32 network.")
    if engine == "ray":
        from lpips_explain.audit.ray_engine import run_ray

        result = run_ray(table, out, settings, model=model, address=ray_address,
                         concurrency=concurrency, batch_size=batch_size, progress=progress)
    else:
        if ray_address:
            raise InputError("--ray-address needs --engine ray.")
        result = run_local(table, out, settings, model=model, workers=workers,
                           batch_size=batch_size, progress=progress, cache=cache,
                           metric_models=metric_models,
                           scorer=scorer if not mode.exact else None)
    data = result.rows.to_pydict()
    info = model.weights_info
    summary: dict[str, Any] = {
        "schema": SCHEMA, "kind": table.kind, "input": table.source,
        "net": model.spec.name, "version": model.version,
        "backbone": {"weights": info.spec, "perceptual": info.perceptual,
                     "state": info.state.code},
        "size_policy": size_policy, "engine": result.to_dict(),
        "mode": {"precision": mode.precision, "device": str(model.head0.device)
                 if mode.exact else mode.device, "exact": mode.exact, "label": mode.label},
        "columns": list(result.rows.column_names),
    }
    summary.update(summarize(table.kind, data, model.layer_names, top=top))
    summary["warnings"] = [] if info.warning is None else [info.warning]
    if not mode.exact:
        error = measure_error(table, data, settings, model, batch_size=batch_size)
        summary["mode"]["error"] = error
        summary["warnings"].append(mode.notice_for(
            "distances, layer shares and margins",
            "PSNR, SSIM and the metric columns") + " " + error_sentence(error))
    return AuditRun(table, result, summary, out, tuple(model.layer_names))


def finish_audit(run: AuditRun, links: Mapping[str, str],
                 explain_errors: Mapping[str, str] | None = None) -> AuditResult:
    """Write summary.json and audit.html (linking ``links``: row id -> report, relative)."""
    summary = dict(run.summary)
    summary["explained"] = dict(links)
    if explain_errors:
        summary["explain_errors"] = dict(explain_errors)
    summary["files"] = dict(FILES)
    data = run.engine.rows.to_pydict()
    files = write_audit_report(run.out_dir, run.table.kind, data, summary,
                               layer_names=run.layer_names, extra=run.table.extra_columns,
                               links=links)
    files["audit_parquet"] = run.engine.path
    return AuditResult(run.engine.rows, summary, run.out_dir, files)

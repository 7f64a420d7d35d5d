"""Audit results on disk, shared by the engines: parts keyed by row id, and the final Parquet.

An engine writes what it computes to ``DIR/parts/`` in Parquet parts (each written to a
temporary name and renamed, so a part is either whole or absent). A restart with the same
command reads the ids and signatures already there and computes only the other rows; the
final ``DIR/audit.parquet`` takes, for every input row, the one part row with its id and
current signature, so nothing is lost, recomputed or counted twice. ``DIR/parts/run.json``
records what the numbers depend on (settings and a hash of the model's weights): parts made
with another model are refused, never mixed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lpips_explain.audit.columns import ROLES, SCHEMA, columns, part_columns
from lpips_explain.audit.layout import AUDIT_PARQUET, PARTS, RUN_FILE, THUMBS, thumb_path
from lpips_explain.audit.settings import AuditSettings, model_fingerprint
from lpips_explain.audit.table import AuditTable, row_signature
from lpips_explain.core.atomic import atomic_write
from lpips_explain.core.model import LpipsNet
from lpips_explain.errors import InputError
from lpips_explain.validation import Progress, agreeing, counted

_TYPES = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(),
          "bool": pa.bool_(), "binary": pa.binary()}


def arrow_schema(cols: Sequence[tuple[str, str]]) -> pa.Schema:
    return pa.schema([(name, _TYPES[kind]) for name, kind in cols])


def records_to_table(records: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Records (dicts) as an Arrow table with exactly ``schema`` (missing keys are null)."""
    return pa.table({f.name: pa.array([r.get(f.name) for r in records], type=f.type)
                     for f in schema}, schema=schema)


def run_fingerprint(kind: str, settings: AuditSettings, net: LpipsNet) -> dict[str, Any]:
    """What an audit's numbers depend on besides its input rows."""
    return {"schema": SCHEMA, "kind": kind, "settings": settings.to_dict(),
            "layers": list(net.layer_names), "model": model_fingerprint(net)}


@dataclass(frozen=True)
class EngineResult:
    """What an engine run did, and the assembled rows (audit.parquet's columns)."""

    engine: str
    rows: pa.Table
    total: int
    reused: int  # rows found finished in DIR/parts with the same signature
    computed: int  # rows computed by this run
    seconds: float
    path: Path  # DIR/audit.parquet
    # Reference features this run found in / added to the feature cache (local engine).
    cache: dict[str, int] | None = None
    # Rows scored by each worker process, host:pid (Ray engine).
    workers: dict[str, int] | None = None

    @property
    def rate(self) -> float | None:
        """Rows per second computed by this run (None when it computed none)."""
        return self.computed / self.seconds if self.computed and self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "rows": self.total, "reused": self.reused,
                "computed": self.computed, "seconds": round(self.seconds, 3),
                "rows_per_second": self.rate, "feature_cache": self.cache,
                **({"workers": self.workers} if self.workers is not None else {})}


class PartStore:
    """The parts folder of one audit output directory."""

    def __init__(self, out_dir: str | os.PathLike, kind: str, layer_names: Sequence[str],
                 fingerprint: Mapping[str, Any], metrics: Sequence[str] = ()):
        self.out_dir = Path(out_dir)
        self.dir = self.out_dir / PARTS
        self.kind = kind
        self.layer_names = tuple(layer_names)
        self.fingerprint = dict(fingerprint)
        self.metrics = tuple(metrics)
        self.schema = arrow_schema(part_columns(kind, self.layer_names, self.metrics))
        self.dir.mkdir(parents=True, exist_ok=True)
        run = self.dir / RUN_FILE
        if run.exists():
            try:
                earlier = json.loads(run.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                earlier = None
            if earlier != dict(fingerprint):
                raise InputError(
                    f"{self.out_dir} holds audit parts made with other settings or another "
                    f"model ({_differences(earlier, fingerprint)}); use a new --out folder, or "
                    f"delete {self.dir} to start this audit over.")
        else:
            data = (json.dumps(dict(fingerprint), indent=2) + "\n").encode()
            atomic_write(run, lambda tmp: tmp.write_bytes(data))
        self._seq = 0
        self.skipped: list[str] = []  # unreadable part files set aside (their rows are redone)

    def files(self) -> list[Path]:
        """Finished part files, oldest first (Ray's are in sub-folders)."""
        found = [p for p in self.dir.rglob("*.parquet") if p.is_file()]
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns, str(p)))

    def finished(self) -> dict[str, str]:
        """Row id -> signature of every row already in a readable part."""
        for tmp in self.dir.rglob("*.tmp"):  # a write cut short: never renamed, never counted
            tmp.unlink(missing_ok=True)
        done: dict[str, str] = {}
        for path in self.files():
            try:
                t = pq.read_table(path, columns=["id", "signature"])
            except Exception as exc:  # a torn file from a killed writer
                path.rename(path.with_name(path.name + ".bad"))
                self.skipped.append(f"{path.name}: {type(exc).__name__}")
                continue
            done.update(zip(t.column("id").to_pylist(), t.column("signature").to_pylist(),
                            strict=True))
        return done

    def pending(self, table: AuditTable) -> tuple[list[int], list[str]]:
        """Positions of the rows still to compute, and every row's signature."""
        sigs = [row_signature(r, table.kind) for r in table.rows]
        done = self.finished()
        todo = [i for i, (r, s) in enumerate(zip(table.rows, sigs, strict=True))
                if done.get(r.id) != s]
        return todo, sigs

    def write(self, records: Sequence[Mapping[str, Any]]) -> Path | None:
        """One part holding ``records``, written whole or not at all."""
        if not records:
            return None
        self._seq += 1
        path = self.dir / f"local-{time.time_ns()}-{os.getpid()}-{self._seq:05d}.parquet"
        part = records_to_table(records, self.schema)
        atomic_write(path, lambda tmp: pq.write_table(part, tmp))
        return path

    def assemble(self, table: AuditTable, signatures: Sequence[str]) -> pa.Table:
        """One row per input row, in input order: the computed columns from the parts (the
        row with the same id and signature) and the input's own columns from the input."""
        want = {r.id: s for r, s in zip(table.rows, signatures, strict=True)}
        found: dict[str, dict[str, Any]] = {}
        names = [f.name for f in self.schema]
        for path in self.files():
            part = pq.read_table(path)
            cols = {n: part.column(n).to_pylist() for n in names if n in part.column_names}
            for k, rid in enumerate(cols["id"]):
                if rid in want and rid not in found and cols["signature"][k] == want[rid]:
                    found[rid] = {n: v[k] for n, v in cols.items()}
        missing = [r.id for r in table.rows if r.id not in found]
        if missing:
            have = agreeing(len(missing), "has", "have")
            raise InputError(f"{counted(len(missing), 'row')} {have} no result in {self.dir} (first: "
                             f"{missing[0]!r}); run the same command again to compute them.")
        self._write_thumbs(found)
        out_cols = columns(table.kind, self.layer_names, table.extra_columns, self.metrics)
        roles = ROLES[table.kind]
        records = []
        for row in table.rows:
            rec = dict(found[row.id])
            rec.update(zip(roles, row.shown, strict=True))
            if table.kind == "triplets":
                rec["judge"] = row.judge
            rec.update(dict(row.extra))
            records.append(rec)
        result = records_to_table(records, arrow_schema(out_cols))
        atomic_write(self.out_dir / AUDIT_PARQUET, lambda tmp: pq.write_table(result, tmp))
        return result

    def finish(self, engine: str, table: AuditTable, signatures: Sequence[str], computed: int,
               started: float, cache: dict[str, int] | None = None) -> EngineResult:
        """Assemble audit.parquet and say what the engine's run did: ``computed`` rows since
        ``started`` (a ``time.perf_counter()``), the others found finished."""
        rows = self.assemble(table, signatures)
        total = len(table.rows)
        return EngineResult(engine, rows, total, total - computed, computed,
                            time.perf_counter() - started, self.out_dir / AUDIT_PARQUET, cache)

    def _write_thumbs(self, found: Mapping[str, Mapping[str, Any]]) -> None:
        folder = self.out_dir / THUMBS
        folder.mkdir(exist_ok=True)
        for rid, rec in found.items():
            for role in ROLES[self.kind]:
                data = rec.get(f"thumb_{role}")
                if not data:
                    continue
                path = self.out_dir / thumb_path(rid, role)
                if not path.exists() or path.stat().st_size != len(data):
                    path.write_bytes(data)


def start_run(out_dir: str | os.PathLike, table: AuditTable, settings: AuditSettings,
              model: LpipsNet | None = None, progress: Progress | None = None,
              label: str = "") -> tuple[LpipsNet, PartStore, list[int], list[str]]:
    """What every engine does first: the network (``model``, else built from ``settings``),
    the parts store of ``out_dir``, the positions of the rows still to compute and every
    row's signature; the rows found finished are reported to ``progress`` as done."""
    net = model if model is not None else settings.build()
    store = PartStore(out_dir, table.kind, net.layer_names,
                      run_fingerprint(table.kind, settings, net), settings.metrics)
    todo, sigs = store.pending(table)
    if progress:
        progress(len(table.rows) - len(todo), len(table.rows), label)
    return net, store, todo, sigs


def _differences(earlier: Any, now: Mapping[str, Any]) -> str:
    if not isinstance(earlier, Mapping):
        return "its run.json is unreadable"
    diffs = []
    for key in ("kind", "layers", "model"):
        if earlier.get(key) != now.get(key):
            diffs.append(f"{key}: {earlier.get(key)} then, {now.get(key)} now")
    s_then, s_now = earlier.get("settings") or {}, now.get("settings") or {}
    for key in sorted(set(s_then) | set(s_now)):
        if s_then.get(key) != s_now.get(key):
            diffs.append(f"{key}: {s_then.get(key)!r} then, {s_now.get(key)!r} now")
    return "; ".join(diffs) or "different schema"

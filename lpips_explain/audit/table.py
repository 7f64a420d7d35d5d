"""Read an audit's input: a CSV of pairs, a CSV of judged triplets, or a folder with a/ and b/.

The rows keep a stable ``id`` (the ``id`` column, else the file name for a folder, else
``row-N`` with N the 1-based data row of the CSV), the paths as written (for the report)
and resolved against the CSV's folder (for reading). Problems of one row (an empty cell, a
judgment that is not a number in [0, 1], a file without a partner) are kept on the row so
that the audit records them and goes on; problems of the whole input (no such file, no
recognised header, duplicated ids) are an :class:`~lpips_explain.errors.InputError`.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lpips_explain.audit.columns import ROLES, columns, internal_columns
from lpips_explain.errors import InputError
from lpips_explain.intake.files import csv_reader
from lpips_explain.intake.judgments import parse_judge
from lpips_explain.validation import agreeing

Kind = Literal["pairs", "triplets"]
PAIR_COLUMNS = ("a", "b")
TRIPLET_COLUMNS = ("ref", "p0", "p1", "judge")
# Columns the audit writes itself (and "thumbs", the report's): an input column of the same
# name is kept as input_<name>.
RESERVED = frozenset({"thumbs", *(name for kind in ROLES for name, _ in
                                  [*columns(kind, ()), *internal_columns(kind)])})
RESERVED_PREFIXES = ("share_", "margin_", "thumb_")


@dataclass(frozen=True)
class AuditRow:
    """One row of an audit: a pair (a, b) or a judged triplet (ref, p0, p1, judge)."""

    id: str
    images: tuple[str, ...]  # paths to read, resolved: (a, b) or (ref, p0, p1)
    shown: tuple[str, ...]  # the same paths as written in the input
    judge: float | None = None  # triplets: the share of judges preferring p1, in [0, 1]
    extra: tuple[tuple[str, str], ...] = ()  # other input columns, kept as text
    problem: str | None = None  # known before decoding: the row fails with this reason


@dataclass(frozen=True)
class AuditTable:
    """The rows of one audit input, in input order."""

    kind: Kind
    rows: tuple[AuditRow, ...]
    source: str  # the CSV file or the folder, as given
    extra_columns: tuple[str, ...] = ()  # output names of the kept input columns
    notes: tuple[str, ...] = field(default=())

    @property
    def roles(self) -> tuple[str, ...]:
        return ROLES[self.kind]

    def __len__(self) -> int:
        return len(self.rows)


def extra_name(column: str) -> str:
    """The output column of an input column: its own name unless the audit uses that name."""
    if column in RESERVED or column.startswith(RESERVED_PREFIXES):
        return f"input_{column}"
    return column


def read_audit_input(path: str | os.PathLike) -> AuditTable:
    """Read a pairs CSV, a judged-triplets CSV or a folder with ``a/`` and ``b/``."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"The audit input {str(path)!r} does not exist; name a CSV file "
                         f"(columns a,b or ref,p0,p1,judge) or a folder with a/ and b/.")
    if p.is_dir():
        return _read_folder(p, str(path))
    return _read_csv(p, str(path))


# --------------------------------------------------------------------------- CSV


def _read_csv(path: Path, shown: str) -> AuditTable:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InputError(f"Cannot read the audit input {shown!r}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise InputError(f"The audit input {shown!r} is not UTF-8 text; save the CSV as "
                         f"UTF-8.") from None
    header, reader = csv_reader(text, f"The audit input {shown!r}",
                                "(a,b[,id,...] or ref,p0,p1,judge[,id,...])")
    names = [h.strip() for h in header]
    lower = [n.lower() for n in names]
    kind = _kind(names, lower, shown)
    roles = ROLES[kind]
    known = {*roles, "id", *(("judge",) if kind == "triplets" else ())}
    extra_idx = [i for i, n in enumerate(lower) if n not in known and n]
    extra_cols = tuple(extra_name(names[i]) for i in extra_idx)
    col = {n: i for i, n in enumerate(lower)}
    base = path.resolve().parent
    rows: list[AuditRow] = []
    seen: dict[str, int] = {}
    try:
        records = list(reader)
    except csv.Error as exc:
        raise InputError(f"The audit input {shown!r} is not a readable CSV: {exc}.") from None
    line = 1
    for record in records:
        line += 1
        if not any(cell.strip() for cell in record):
            continue  # blank lines are not rows
        cells = [*record, *[""] * (len(names) - len(record))]
        number = len(rows) + 1
        if "id" in col:
            rid = cells[col["id"]].strip()
            if not rid:
                raise InputError(f"Row {number} (line {line}) of {shown!r} has an empty id; "
                                 f"give every row an id, or drop the id column to number "
                                 f"the rows.")
        else:
            rid = f"row-{number}"
        if rid in seen:
            raise InputError(f"The id {rid!r} appears twice in {shown!r} (rows {seen[rid]} and "
                             f"{number}); ids must be unique, results are keyed by them.")
        seen[rid] = number
        problem = None
        if len(record) > len(names) and any(c.strip() for c in record[len(names):]):
            problem = f"the row has {len(record)} cells but the header names {len(names)}"
        shown_paths = tuple(cells[col[r]].strip() for r in roles)
        empty = [r for r, s in zip(roles, shown_paths, strict=True) if not s]
        if empty and problem is None:
            problem = f"no path given for {', '.join(empty)}"
        judge = None
        if kind == "triplets":
            judge, judge_problem = _judge(cells[col["judge"]])
            problem = problem or judge_problem
        images = tuple(str(_resolve(base, s)) if s else "" for s in shown_paths)
        extra = tuple((extra_cols[k], cells[i]) for k, i in enumerate(extra_idx))
        rows.append(AuditRow(rid, images, shown_paths, judge, extra, problem))
    if not rows:
        raise InputError(f"The audit input {shown!r} has a header but no rows.")
    return AuditTable(kind, tuple(rows), shown, extra_cols)


def _kind(names: list[str], lower: list[str], shown: str) -> Kind:
    """Pairs or triplets, from the header's column names (``lower``: the same, lower case)."""
    dupes = sorted({n for n in lower if n and lower.count(n) > 1})
    if dupes:
        raise InputError(f"The audit input {shown!r} names the "
                         f"{agreeing(len(dupes), 'column', 'columns')} {', '.join(dupes)} "
                         f"more than once.")
    if all(c in lower for c in TRIPLET_COLUMNS[:3]):
        if "judge" not in lower:
            raise InputError(f"The audit input {shown!r} has ref, p0 and p1 but no judge "
                             f"column; judged triplets need judge (the share of people "
                             f"preferring p1, in [0, 1]).")
        return "triplets"
    if all(c in lower for c in PAIR_COLUMNS):
        return "pairs"
    raise InputError(f"The audit input {shown!r} has the columns {', '.join(names) or '(none)'}; "
                     f"expected a,b (pairs) or ref,p0,p1,judge (judged triplets), plus an "
                     f"optional id and any other columns.")


def _resolve(base: Path, text: str) -> Path:
    p = Path(os.path.expanduser(text))
    return p if p.is_absolute() else base / p


def _judge(cell: str) -> tuple[float | None, str | None]:
    return parse_judge(cell.strip())


# --------------------------------------------------------------------------- folder


def _image_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def _read_folder(path: Path, shown: str) -> AuditTable:
    a_dir, b_dir = path / "a", path / "b"
    missing = [d.name + "/" for d in (a_dir, b_dir) if not d.is_dir()]
    if missing:
        raise InputError(f"The folder {shown!r} has no {' and no '.join(missing)}; an audit "
                         f"folder holds a/ and b/ with images matched by file name (or pass "
                         f"a CSV).")
    a_files, b_files = _image_files(a_dir), _image_files(b_dir)
    names = sorted(set(a_files) | set(b_files))
    if not names:
        raise InputError(f"The folders {shown!r}/a and /b are empty.")
    rows = []
    for name in names:
        problem = None
        if name not in b_files:
            problem = f"no file named {name!r} in b/ to match a/{name}"
        elif name not in a_files:
            problem = f"no file named {name!r} in a/ to match b/{name}"
        images = (str((a_dir / name).resolve()), str((b_dir / name).resolve()))
        rows.append(AuditRow(name, images, (f"a/{name}", f"b/{name}"), None, (), problem))
    return AuditTable("pairs", tuple(rows), shown)


# --------------------------------------------------------------------------- signatures


def row_signature(row: AuditRow, kind: str) -> str:
    """What a finished row was computed from: its paths, judgment and each file's size and
    modification time. A restart reuses a finished row only if this is unchanged, so a
    file fixed or replaced since is computed again (and a missing one is retried)."""
    h = hashlib.sha256()
    h.update(f"{kind}\0{row.judge!r}\0{row.problem!r}\0".encode())
    for p in row.images:
        try:
            st = os.stat(p) if p else None
        except OSError:
            st = None
        stamp = f"{st.st_size}:{st.st_mtime_ns}" if st is not None else "missing"
        h.update(f"{p}\0{stamp}\0".encode())
    return h.hexdigest()[:32]


def rows_as_columns(table: AuditTable) -> Mapping[str, Sequence[object]]:
    """The input as columns (id, the roles as written, judge, extra): for display."""
    cols: dict[str, list[object]] = {"id": [r.id for r in table.rows]}
    for k, role in enumerate(table.roles):
        cols[role] = [r.shown[k] for r in table.rows]
    if table.kind == "triplets":
        cols["judge"] = [r.judge for r in table.rows]
    for k, name in enumerate(table.extra_columns):
        cols[name] = [r.extra[k][1] for r in table.rows]
    return cols

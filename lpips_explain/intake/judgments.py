"""2AFC judgments in: a BAPPS-layout folder or a CSV ``ref,p0,p1,judge[,mask]``, rows matched
by name, every bad row reported with where it is and why, never a crash.

``judge`` is the share of people who found ``p1`` closer to ``ref`` (in [0, 1]), as in BAPPS.
BAPPS sorts each of its ``ref``, ``p0``, ``p1`` and ``judge`` folders on its own, so one
misnamed file silently shifts every later triplet; here files are matched by name, and a
name missing from any folder is refused and reported instead.
"""

from __future__ import annotations

import csv
import io
import math
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lpips_explain.errors import InputError
from lpips_explain.intake.files import (
    DiskTree,
    FileTree,
    csv_reader,
    is_image_name,
    read_zip,
    sha256,
    strip_common_folder,
    with_common_folder,
)
from lpips_explain.intake.images import load_image
from lpips_explain.intake.tensors import format_size

COLUMNS: tuple[str, ...] = ("ref", "p0", "p1", "judge")
OPTIONAL_COLUMNS: tuple[str, ...] = ("mask",)
BAPPS_FOLDERS: tuple[str, ...] = ("ref", "p0", "p1", "judge")
MAX_LISTED = 20  # refusals spelled out in one-line summaries


@dataclass(frozen=True)
class JudgmentRow:
    """One judged triplet: file names inside the set's tree and the share preferring p1."""

    id: str  # "line 5" (CSV) or "<subset>/<name>" (BAPPS): where to look
    ref: str
    p0: str
    p1: str
    judge: float
    mask: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A row left out, with where it is and why."""

    row: str
    reason: str

    def to_dict(self) -> dict:
        return {"row": self.row, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.row}: {self.reason}"


@dataclass(frozen=True)
class JudgmentSet:
    """The rows that passed the cheap checks (files exist, judge in range) and those refused.

    Images are decoded later, one triplet at a time (:func:`load_triplet`); rows that fail
    there are refused then, by the same rules.
    """

    tree: FileTree
    layout: str  # "csv" or "bapps"
    source: str
    rows: tuple[JudgmentRow, ...]
    refused: tuple[Refusal, ...]

    @property
    def n_rows(self) -> int:
        return len(self.rows) + len(self.refused)

    def summary(self) -> str:
        return (f"{len(self.rows)} of {self.n_rows} judged triplets readable from "
                f"{self.source} ({self.layout}); {len(self.refused)} refused.")


@dataclass(frozen=True)
class LoadedTriplet:
    """A row's images decoded: 1x3xHxW in [0, 1] of one size, an optional 1x1xHxW mask."""

    row: JudgmentRow
    ref: torch.Tensor
    p0: torch.Tensor
    p1: torch.Tensor
    mask: torch.Tensor | None
    digest: str  # sha256 of the row's file bytes and judge: one piece of the data hash

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.ref.shape[-2]), int(self.ref.shape[-1]))


def refusals_text(refused: Sequence[Refusal], limit: int = MAX_LISTED) -> str:
    """The first ``limit`` refusals, one per line, and how many more there are."""
    lines = [str(r) for r in refused[:limit]]
    if len(refused) > limit:
        lines.append(f"... and {len(refused) - limit} more")
    return "\n".join(lines)


# --- reading -----------------------------------------------------------------------------------


def read_judgments(source: str | os.PathLike | JudgmentSet) -> JudgmentSet:
    """Read a CSV file, a BAPPS-layout folder (one subset or a folder of subsets), or a folder
    holding exactly one CSV. A set already read is returned as is."""
    if isinstance(source, JudgmentSet):
        return source
    path = Path(os.fspath(source)).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise InputError(f"{path} is not a CSV file; give a CSV with columns "
                             f"{','.join(COLUMNS)}[,mask] or a BAPPS folder "
                             f"(ref/, p0/, p1/, judge/).")
        return _read_csv(DiskTree(path.parent), _text(path.read_bytes(), str(path)), str(path))
    if path.is_dir():
        return _read_tree(DiskTree(path), str(path))
    raise InputError(f"Judgments {path} do not exist; give a CSV file or a BAPPS folder.")


def read_judgments_archive(zip_bytes: bytes, *, csv_text: str | None = None,
                           label: str = "the archive") -> JudgmentSet:
    """Judgments from an uploaded zip: with ``csv_text`` the CSV's paths are names inside the
    zip; without, the zip holds a BAPPS layout or exactly one CSV. Members refused by the
    zip reader (unsafe names, too large) are reported as refusals of their own."""
    tree, skipped = read_zip(zip_bytes, label=label)
    if csv_text is not None:
        # The CSV's paths may or may not include the folder the zip was made of.
        jset = _read_csv(with_common_folder(tree), csv_text, f"the uploaded CSV with {label}")
    else:
        jset = _read_tree(strip_common_folder(tree), label)
    extra = tuple(Refusal(f"archive member {s.name}", s.reason) for s in skipped)
    return JudgmentSet(jset.tree, jset.layout, jset.source, jset.rows, extra + jset.refused)


def _text(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{label} is not UTF-8 text; save the CSV as UTF-8.") from None


def _read_tree(tree: FileTree, label: str) -> JudgmentSet:
    subsets = _bapps_subsets(tree)
    if subsets:
        return _read_bapps(tree, subsets, label)
    csvs = [n for n in tree.names() if n.lower().endswith(".csv") and "/" not in n]
    if len(csvs) == 1:
        # Only a CSV at the top: its folder is the tree's root, which its paths are relative to.
        return _read_csv(tree, _text(tree.read(csvs[0]), csvs[0]), f"{label}/{csvs[0]}")
    if len(csvs) > 1:
        raise InputError(f"{label} holds {len(csvs)} CSV files ({', '.join(csvs[:4])}); "
                         f"name the one to use.")
    raise InputError(f"{label} holds neither a BAPPS layout (folders ref/, p0/, p1/, judge/ "
                     f"with matching file names) nor a judgments CSV.")


# --- CSV ---------------------------------------------------------------------------------------


def _clean_path(value: str) -> str | None:
    value = value.strip().replace("\\", "/")
    if not value or value.startswith("/") or (len(value) > 1 and value[1] == ":"):
        return None
    norm = posixpath.normpath(value)
    if norm == ".." or norm.startswith("../") or norm == ".":
        return None
    return norm


def parse_judge(raw: object) -> tuple[float | None, str | None]:
    """A judge value and None, or None and why it cannot be used."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, f"judge {raw!r} is not a number in [0, 1]"
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return None, f"judge {raw!r} is not a number in [0, 1] (the share preferring p1)"
    return value, None


def _read_csv(tree: FileTree, text: str, label: str) -> JudgmentSet:
    header, reader = csv_reader(text, label, f"{','.join(COLUMNS)}[,mask]")
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise InputError(f"{label} lacks the column(s) {', '.join(missing)}; its header is "
                         f"{','.join(header)!r}. Expected {','.join(COLUMNS)}[,mask].")
    col = {c: names.index(c) for c in (*COLUMNS, *OPTIONAL_COLUMNS) if c in names}
    rows: list[JudgmentRow] = []
    refused: list[Refusal] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            refused.append(Refusal(f"line {reader.line_num}", f"unreadable CSV ({exc})"))
            continue
        where = f"line {reader.line_num}"
        if not any(c.strip() for c in cells):
            continue  # blank line
        row, why = _csv_row(tree, where, cells, col)
        if row is None:
            refused.append(Refusal(where, why or "unusable"))
        else:
            rows.append(row)
    if not rows and not refused:
        raise InputError(f"{label} has a header but no rows.")
    return JudgmentSet(tree, "csv", label, tuple(rows), tuple(refused))


def _csv_row(tree: FileTree, where: str, cells: list[str],
             col: dict[str, int]) -> tuple[JudgmentRow | None, str | None]:
    needed = max(col[c] for c in COLUMNS) + 1
    if len(cells) < needed:
        return None, f"{len(cells)} cells, expected at least {needed}"
    files: dict[str, str | None] = {}
    for c in ("ref", "p0", "p1", "mask"):
        if c not in col:
            continue
        raw = cells[col[c]] if col[c] < len(cells) else ""
        if c == "mask" and not raw.strip():
            files[c] = None
            continue
        if not raw.strip():
            return None, f"{c} is empty"
        name = _clean_path(raw)
        if name is None:
            return None, (f"{c} path {raw.strip()!r} must be relative to the CSV's folder and "
                          f"stay inside it")
        if not tree.exists(name):
            return None, f"{c} file {name} not found"
        files[c] = name
    judge, why = parse_judge(cells[col["judge"]].strip())
    if judge is None:
        return None, why
    return JudgmentRow(where, files["ref"], files["p0"], files["p1"], judge,  # type: ignore[arg-type]
                       files.get("mask")), None


# --- BAPPS -------------------------------------------------------------------------------------


def _is_subset(tree: FileTree, folder: str) -> bool:
    subs = {posixpath.basename(d) for d in tree.subdirs(folder)}
    return all(f in subs for f in BAPPS_FOLDERS)


def _bapps_subsets(tree: FileTree, max_depth: int = 3) -> list[str]:
    """Folders (relative, "" for the root) that hold ref/, p0/, p1/ and judge/."""
    found: list[str] = []

    def walk(folder: str, depth: int) -> None:
        if _is_subset(tree, folder):
            found.append(folder)
            return
        if depth < max_depth:
            for sub in tree.subdirs(folder):
                walk(sub, depth + 1)

    walk("", 0)
    return found


def _stems(tree: FileTree, folder: str, kind: str,
           refused: list[Refusal], subset: str) -> dict[str, str]:
    """stem -> file name in ``folder``; two files with one stem are both refused."""
    out: dict[str, str] = {}
    clashes: set[str] = set()
    for name in tree.files(folder):
        base = posixpath.basename(name)
        if base.startswith("."):
            continue
        ok = base.lower().endswith(".npy") if kind == "judge" else is_image_name(base)
        if not ok:
            want = "a .npy file" if kind == "judge" else "an image file"
            refused.append(Refusal(_bapps_id(subset, base), f"{kind}/{base} is not {want}"))
            continue
        stem = posixpath.splitext(base)[0]
        if stem in out:
            clashes.add(stem)
            continue
        out[stem] = name
    for stem in sorted(clashes):
        refused.append(Refusal(_bapps_id(subset, stem),
                               f"two files named {stem}.* in {kind}/; rename one"))
        out.pop(stem)
    return out


def _bapps_id(subset: str, stem: str) -> str:
    return f"{subset}/{stem}" if subset else stem


def read_judge_npy(data: bytes) -> tuple[float | None, str | None]:
    """The one scalar of a BAPPS judge file, or None and why not."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        return None, f"judge file is not a readable .npy array ({type(exc).__name__})"
    if not isinstance(arr, np.ndarray) or arr.size != 1:
        return None, f"judge file holds {getattr(arr, 'size', '?')} values, expected one"
    try:
        return parse_judge(float(arr.reshape(-1)[0]))
    except (TypeError, ValueError):
        return None, f"judge file holds a {arr.dtype} value, not a number"


def _join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if folder else name


def _read_bapps(tree: FileTree, subsets: list[str], label: str) -> JudgmentSet:
    rows: list[JudgmentRow] = []
    refused: list[Refusal] = []
    for subset in subsets:
        maps = {k: _stems(tree, _join(subset, k), k, refused, subset) for k in BAPPS_FOLDERS}
        has_mask = _join(subset, "mask") in tree.subdirs(subset)
        masks = _stems(tree, _join(subset, "mask"), "mask", refused, subset) if has_mask else {}
        for stem in sorted(set().union(*maps.values())):
            rid = _bapps_id(subset, stem)
            lacking = [k for k in BAPPS_FOLDERS if stem not in maps[k]]
            if lacking:
                having = [k for k in BAPPS_FOLDERS if stem in maps[k]]
                refused.append(Refusal(rid, f"no file named {stem} in {', '.join(lacking)} "
                                            f"(found in {', '.join(having)}): a misnamed or "
                                            f"missing file; triplets are matched by name"))
                continue
            judge, why = read_judge_npy(tree.read(maps["judge"][stem]))
            if judge is None:
                refused.append(Refusal(rid, why or "bad judge"))
                continue
            rows.append(JudgmentRow(rid, maps["ref"][stem], maps["p0"][stem], maps["p1"][stem],
                                    judge, masks.get(stem)))
    return JudgmentSet(tree, "bapps", label, tuple(rows), tuple(refused))


# --- decoding one triplet --------------------------------------------------------------------


def resize_square(t: torch.Tensor, size: int) -> torch.Tensor:
    """``t`` resized to ``size`` x ``size`` px (antialiased bilinear), as BAPPS is to 64 px."""
    if tuple(t.shape[-2:]) == (size, size):
        return t
    from torchvision.transforms import v2  # here: torchvision costs 2 s at import
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(t, [size, size], interpolation=v2.InterpolationMode.BILINEAR,
                     antialias=True).clamp_(0.0, 1.0).contiguous()


def load_triplet(jset: JudgmentSet, row: JudgmentRow, *, size: int | None = None,
                 max_pixels: int | None = None) -> LoadedTriplet:
    """Decode one row's images (and mask); an :class:`InputError` says why the row is refused.

    With ``size`` every image (and the mask) is resized to ``size`` x ``size`` px, as the
    official trainer resizes BAPPS to 64 px; without, the three images must share one size.
    """
    h = sha256(f"{row.id}\0{row.judge!r}".encode())
    tensors: dict[str, torch.Tensor] = {}
    for role in ("ref", "p0", "p1", "mask"):
        name = getattr(row, role)
        if name is None:
            continue
        data = jset.tree.read(name)
        h = sha256(f"{h}{sha256(data)}".encode())
        try:
            im = load_image(data, max_pixels=max_pixels, name=name)
        except InputError as exc:
            raise InputError(f"{role} {name}: {exc}") from None
        t = im.tensor
        if role == "mask":
            t = t.mean(dim=1, keepdim=True)
        tensors[role] = t
    if size is None:
        sizes = {r: tuple(t.shape[-2:]) for r, t in tensors.items()}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{r} {format_size(s)}" for r, s in sizes.items())  # type: ignore[arg-type]
            raise InputError(f"sizes differ ({listed}); give images of one size or a "
                             f"common size to resize to")
    else:
        tensors = {r: resize_square(t, size) for r, t in tensors.items()}
    mask = tensors.get("mask")
    if mask is not None and not bool((mask > 0).any()):
        raise InputError(f"mask {row.mask} is black everywhere: nothing to weight")
    return LoadedTriplet(row, tensors["ref"], tensors["p0"], tensors["p1"], mask, h)


__all__ = [
    "COLUMNS",
    "JudgmentRow",
    "JudgmentSet",
    "LoadedTriplet",
    "Refusal",
    "load_triplet",
    "read_judge_npy",
    "read_judgments",
    "read_judgments_archive",
    "refusals_text",
    "resize_square",
]

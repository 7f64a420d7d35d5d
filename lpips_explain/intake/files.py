"""Folders of files on disk or inside an uploaded zip, read the same way and safely.

A zip never touches the disk: its members are read into memory under caps on their count
and sizes, and a member whose name would escape the archive (absolute, ``..``, a drive
letter, a symlink) is refused, never resolved. Judgment sets and image sets for the domain
gap are read through a :class:`FileTree`, so the same code serves the CLI (a folder) and
the app (a zip).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import posixpath
import stat
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lpips_explain.errors import InputError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff",
                                   ".gif")
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_MEMBER_BYTES = 32 * 2**20
MAX_ZIP_TOTAL_BYTES = 512 * 2**20
# Folders that archivers add beside the real content.
_JUNK_PREFIXES = ("__MACOSX/",)


@dataclass(frozen=True)
class Skipped:
    """A file that was left out, and why (shown to the person; never silently dropped)."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason}


class FileTree:
    """Read-only access to files by relative POSIX name (``ref/001.png``)."""

    label: str

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def subdirs(self, folder: str = "") -> list[str]:
        """Immediate sub-folders of ``folder`` (relative names, sorted)."""
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        found = {n[len(prefix):].split("/", 1)[0] for n in self.names()
                 if n.startswith(prefix) and "/" in n[len(prefix):]}
        return sorted(prefix + d for d in found)

    def files(self, folder: str = "") -> list[str]:
        """Files directly inside ``folder`` (relative names, sorted)."""
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        return sorted(n for n in self.names()
                      if n.startswith(prefix) and "/" not in n[len(prefix):])


class DiskTree(FileTree):
    """Files under a folder on disk; names outside it are refused."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.label = str(self.root)
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            out = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                rel = Path(dirpath).relative_to(self.root)
                out += [(rel / f).as_posix() if str(rel) != "." else f for f in sorted(filenames)]
            self._names = out
        return self._names

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None


class MemoryTree(FileTree):
    """Files held in memory (the members of a zip), by name; with ``fallback`` a name that
    is not there is looked up under that folder too (``fallback + name``)."""

    def __init__(self, files: Mapping[str, bytes], label: str = "<archive>",
                 fallback: str = "") -> None:
        self._files = dict(files)
        self.label = label
        self.fallback = fallback

    def names(self) -> list[str]:
        return sorted(self._files)

    def _key(self, name: str) -> str | None:
        if name in self._files:
            return name
        return self.fallback + name if self.fallback + name in self._files else None

    def exists(self, name: str) -> bool:
        return self._key(name) is not None

    def read(self, name: str) -> bytes:
        key = self._key(name)
        if key is None:
            raise InputError(f"{name} is not in {self.label}")
        return self._files[key]


def safe_member_name(name: str) -> str | None:
    """The member's name as a clean relative POSIX path, or None if it could escape."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return posixpath.join(*parts)


def read_zip(data: bytes, *, label: str = "<archive>", max_members: int = MAX_ZIP_MEMBERS,
             max_member_bytes: int = MAX_ZIP_MEMBER_BYTES,
             max_total_bytes: int = MAX_ZIP_TOTAL_BYTES) -> tuple[MemoryTree, list[Skipped]]:
    """The members of a zip in memory, with the ones refused and why.

    Refused: names that are absolute or climb out with ``..``, symlinks, members larger
    than ``max_member_bytes`` (by their header and by what actually decompresses), and
    anything past ``max_total_bytes`` in all. More than ``max_members`` entries, or bytes
    that are not a zip, is an :class:`InputError`.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{label} is not a readable zip archive ({exc}).") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise InputError(f"{label} holds {len(infos)} entries; at most {max_members} are "
                             f"read. Split it into smaller archives.")
        files: dict[str, bytes] = {}
        skipped: list[Skipped] = []
        total = 0
        for info in infos:
            if info.is_dir() or info.filename.startswith(_JUNK_PREFIXES):
                continue
            name = safe_member_name(info.filename)
            if name is None:
                skipped.append(Skipped(info.filename, "its path leaves the archive (absolute "
                                                      "or '..'); not read"))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                skipped.append(Skipped(name, "a symbolic link; not followed"))
                continue
            if info.file_size > max_member_bytes:
                skipped.append(Skipped(name, f"{info.file_size} bytes unpacked, more than the "
                                             f"{max_member_bytes} allowed per file"))
                continue
            if total + info.file_size > max_total_bytes:
                skipped.append(Skipped(name, f"the archive unpacks to more than "
                                             f"{max_total_bytes} bytes; the rest is not read"))
                continue
            try:
                with zf.open(info) as fh:
                    # Read one byte past the cap: a header can lie about the size.
                    blob = fh.read(max_member_bytes + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError,
                    EOFError) as exc:
                skipped.append(Skipped(name, f"could not be unpacked ({exc})"))
                continue
            if len(blob) > max_member_bytes:
                skipped.append(Skipped(name, f"unpacks to more than the {max_member_bytes} "
                                             f"bytes allowed per file"))
                continue
            total += len(blob)
            if name in files:
                skipped.append(Skipped(name, "appears twice in the archive; the first is used"))
                continue
            files[name] = blob
    return MemoryTree(files, label), skipped


def _common_folder(names: list[str]) -> str | None:
    """The one top folder every name is in ("top/"), if there is one."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1 or not all("/" in n for n in names):
        return None
    return next(iter(tops)) + "/"


def strip_common_folder(tree: MemoryTree) -> MemoryTree:
    """Zips of a folder put everything under one top folder: drop it so names start inside."""
    names = tree.names()
    top = _common_folder(names)
    if top is None:
        return tree
    return MemoryTree({n[len(top):]: tree.read(n) for n in names}, tree.label)


def with_common_folder(tree: MemoryTree) -> MemoryTree:
    """The same files, where a name may also be given without the one top folder (if any)."""
    names = tree.names()
    top = _common_folder(names)
    if top is None:
        return tree
    return MemoryTree({n: tree.read(n) for n in names}, tree.label, top)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def image_names(tree: FileTree) -> list[str]:
    """Every image file in the tree (recursively), sorted by name."""
    return [n for n in tree.names() if is_image_name(n)
            and not posixpath.basename(n).startswith(".")]


def csv_reader(text: str, label: str, layout: str) -> tuple[list[str], Iterator[list[str]]]:
    """The header of a CSV and a reader over its other rows; an empty or unreadable text is
    an InputError naming ``label`` and the expected ``layout`` (e.g. "a,b[,id,...]")."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{label} is empty; it needs a header row {layout} and one row per "
                         f"item.") from None
    except csv.Error as exc:
        raise InputError(f"{label} is not a readable CSV ({exc}).") from None
    return header, reader


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iter_images(tree: FileTree) -> Iterator[tuple[str, bytes]]:
    for name in image_names(tree):
        yield name, tree.read(name)


def collect_images(source: object, label: str = "set") -> tuple[str, list[tuple[str, object]],
                                                                list[Skipped]]:
    """(name, [(image name, source)], skipped) for a folder (recursive), a zip archive (bytes
    or a .zip path), a FileTree, or a sequence of images (paths, bytes, tensors...)."""
    if isinstance(source, (bytes, bytearray)):
        tree, skipped = read_zip(bytes(source), label=label)
        return label, list(iter_images(tree)), skipped
    if isinstance(source, FileTree):
        return source.label, list(iter_images(source)), []
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            tree = DiskTree(path)
            return str(path), [(n, tree.path(n)) for n in image_names(tree)], []
        if path.is_file() and path.suffix.lower() == ".zip":
            tree, skipped = read_zip(path.read_bytes(), label=str(path))
            return str(path), list(iter_images(tree)), skipped
        raise InputError(f"{path} is neither a folder of images nor a .zip archive.")
    if isinstance(source, (list, tuple)):
        items: list[tuple[str, object]] = []
        for i, item in enumerate(source):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                items.append(item)
            else:
                name = os.path.basename(os.fspath(item)) if isinstance(
                    item, (str, os.PathLike)) else f"{label}[{i}]"
                items.append((name, item))
        return label, items, []
    raise InputError(f"Cannot read an image set from a {type(source).__name__}; give a folder, "
                     f"a zip archive or a list of images.")

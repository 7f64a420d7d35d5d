"""An uploaded zip of images (and its CSV), unpacked safely for an audit (the app's upload).

:func:`extract_zip` refuses what could write outside the destination or fill the disk;
:func:`find_csv` finds the one CSV that names the rows.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from lpips_explain.errors import InputError

MAX_ZIP_FILES = 20_000
MAX_ZIP_BYTES = 2 * 1024**3


def _member_target(dest: Path, name: str) -> Path | None:
    """Where a zip member may be written under ``dest``, or None if it must be refused."""
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("..", "") for p in parts):
        return None
    target = (dest / Path(*parts)).resolve()
    root = dest.resolve()
    return target if target == root or root in target.parents else None


def extract_zip(source: bytes | str | os.PathLike, dest: str | os.PathLike, *,
                max_files: int = MAX_ZIP_FILES, max_bytes: int = MAX_ZIP_BYTES) -> list[Path]:
    """Extract a zip of images safely into ``dest``; return the files written.

    Refused: members with absolute paths, drive letters, backslashes or ``..`` (path
    traversal), symbolic links, more than ``max_files`` files, and more than ``max_bytes``
    once uncompressed (counted while reading, so a member that lies about its size is
    caught too). Folders and macOS metadata (``__MACOSX/``) are skipped.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InputError("The uploaded file is not a zip archive; zip the images (and the "
                         "CSV) into one .zip file.") from None
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    total = 0
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()
                   and not m.filename.startswith("__MACOSX/")]
        if len(members) > max_files:
            raise InputError(f"The zip holds {len(members)} files, more than the {max_files} "
                             f"allowed; split it into smaller archives.")
        for m in members:
            if stat.S_ISLNK(m.external_attr >> 16):
                raise InputError(f"The zip member {m.filename!r} is a symbolic link; links are "
                                 f"refused (they could point outside the archive).")
            target = _member_target(root, m.filename)
            if target is None:
                raise InputError(f"The zip member {m.filename!r} has an unsafe path (absolute "
                                 f"or with '..'); it was not extracted.")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(m) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise InputError(f"The zip unpacks to more than {max_bytes:,} bytes; "
                                             f"it was not extracted further.")
                        out.write(chunk)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
                raise InputError(f"The zip member {m.filename!r} cannot be read: {exc}.") from None
            written.append(target)
    return written


def find_csv(folder: str | os.PathLike) -> Path | None:
    """The one CSV at the top of ``folder`` (or in its single sub-folder), or None."""
    root = Path(folder)
    for where in (root, *[d for d in root.iterdir() if d.is_dir()][:1]):
        found = sorted(p for p in where.glob("*.csv") if p.is_file())
        if len(found) == 1:
            return found[0]
    return None

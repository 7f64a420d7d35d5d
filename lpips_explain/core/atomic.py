"""Writing a file whole or not at all: the installed trunks and their records, the metric
files, the feature digests' cache and the audit's Parquet parts all go through here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``path`` (a unique ``.NAME.*.tmp``), then rename it
    onto ``path``: a reader sees the old file or the whole new one, never half of it, and
    two writers never share a temporary file. The temporary file is removed if ``write``
    fails; the result is readable by other users (0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

"""The JSON tables shipped beside the code, keyed by trunk and version ("alex/0.1"): the
category limits and the fixed map scales, both computed on the published trunks."""

from __future__ import annotations

import functools
import json
from pathlib import Path


@functools.lru_cache(maxsize=8)
def read(path: str) -> dict:
    """A shipped table, read once; an unreadable or missing file is an empty table."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"tables": {}}


def key(net: str, version: str) -> str:
    return f"{net}/{version}"

"""Is a trunk the published one? By its file's SHA-256, or by the digest of its tensors.

torchvision names its weight files after the first hex digits of their SHA-256 (e.g.
``alexnet-owt-7be5be79.pth``). The official LPIPS lin heads were calibrated on exactly
those weights, so a file that matches is the published metric. The same weights also
travel in other files (the package index's copy, converted by ``core/published.py``, or
a user's own re-save, full model or ``features`` only): those are recognised by the
*content digest*, the SHA-256 over the trunk's tensors in the architecture's order, as
little-endian float32 (the published values are in ``core/trunks.py``). Anything else is
a custom trunk. Hashing a 233-528 MB file takes a while, so a file's digest is cached per
(path, size, mtime): in memory, and for large files on disk beside the torch hub cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lpips_explain.core.atomic import atomic_write
from lpips_explain.core.trunks import get_trunk

FILE_SHA256 = "file sha256"  # how a trunk was verified: torchvision's file, by its hash
CONTENT_DIGEST = "content digest"  # ... or any file whose tensors hash to the published digest

PERSIST_MIN_BYTES = 8 * 2**20  # smaller files hash in milliseconds: not worth a disk entry
_CACHE: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Verdict:
    """Whether a file is the published trunk, with its digest and, if not, why."""

    verified: bool
    sha256: str
    expected_prefix: str | None
    reason: str | None
    verified_by: str | None = None  # FILE_SHA256 or CONTENT_DIGEST when verified
    content_digest: str | None = None  # of the loaded tensors, when they were given


def expected_prefix(net: str) -> str | None:
    """The SHA-256 prefix in torchvision's file name for the published ``net`` weights."""
    m = re.search(r"-([a-f0-9]{6,})\.", get_trunk(net).file_name)
    return m[1] if m else None


def cache_file() -> Path:
    """Where digests of large files are kept (follows TORCH_HOME, like the hub cache)."""
    return Path(torch.hub.get_dir()).parent / "lpips_explain" / "sha256.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _disk_get(key: str) -> str | None:
    try:
        return json.loads(cache_file().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _disk_put(key: str, digest: str) -> None:
    path = cache_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not isinstance(data, dict):
            data = {}
        data[key] = digest
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data), encoding="utf-8"))
    except (OSError, ValueError):
        pass  # a read-only cache folder only costs a re-hash next time


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, reused while its path, size and mtime stay the same."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    disk_key = f"{key[0]}|{key[1]}|{key[2]}"
    big = st.st_size >= PERSIST_MIN_BYTES
    digest = _disk_get(disk_key) if big else None
    if digest is None:
        digest = sha256_of(p)
        if big:
            _disk_put(disk_key, digest)
    with _LOCK:
        _CACHE[key] = digest
    return digest


def clear_cache() -> None:
    """Forget the in-memory digests (the on-disk ones stay valid: they are keyed by mtime)."""
    with _LOCK:
        _CACHE.clear()


def content_digest(features: nn.Module) -> str:
    """SHA-256 over every tensor of a trunk's ``features`` state_dict, in its order, as
    little-endian float32 bytes (for alex and vgg: each conv's weight then bias, in order).
    Independent of the file's name, container (full model or features only) and layout."""
    h = hashlib.sha256()
    for t in features.state_dict().values():
        arr = t.detach().to(torch.float32).contiguous().cpu().numpy()
        h.update(arr.astype("<f4", copy=False).tobytes())
    return h.hexdigest()


def verify(net: str, path: str | os.PathLike, features: nn.Module | None = None) -> Verdict:
    """Whether ``path`` holds the published ``net`` trunk: torchvision's file by its SHA-256
    prefix, or (given the ``features`` loaded from it) any file whose tensors carry the
    published content digest."""
    digest = file_sha256(path)
    want = expected_prefix(net)
    published = get_trunk(net).file_name
    content = content_digest(features) if features is not None else None
    if want is not None and digest.startswith(want):
        return Verdict(True, digest, want, None, FILE_SHA256, content)
    known = get_trunk(net).content_digest
    if content is not None and known is not None and content == known:
        return Verdict(True, digest, want, None, CONTENT_DIGEST, content)
    by_content = (f" and its tensors' content digest starts with {content[:8]}, not "
                  f"{known[:8]} like the published weights" if content and known else "")
    return Verdict(False, digest, want,
                   f"its SHA-256 starts with {digest[:8]}, not {want} like torchvision's "
                   f"published {published}{by_content}: a custom trunk, not verified "
                   f"perceptual", None, content)

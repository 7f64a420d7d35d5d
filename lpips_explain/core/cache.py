"""A bounded, thread-safe cache of encoded (unit-normalised) LPIPS features.

"Same reference, many candidates" is the common shape of LPIPS work (docs/architecture.md#pair-scorer):
one reference against many uploads in the app, the pages of one pair, batch commands over
rows that share a reference. The reference's normalised features depend only on the image
and the network, so they are computed once and kept here:

* key: a content hash (BLAKE2b) of the input tensor's bytes, dtype and shape, together with
  the model key: trunk, lin version, trunk weights (spec, file, seed and a hash of the
  parameter values), lin-head file, precision and device. Two networks with the same key
  compute the same features; a changed pixel is a different key;
* budget: bytes counted from the stored tensors' storages; least recently used entries are
  evicted first; an entry larger than the whole budget is not stored;
* stats: hits, misses, evictions, entries and bytes (:meth:`FeatureCache.stats`);
* thread-safe: one lock guards the table; a key being computed by one thread is waited for
  by the others instead of being computed twice (Streamlit sessions run in threads).

The tensors handed out are shared by every user of the entry: read them, never modify
them in place. Nothing here approximates: a hit returns the very tensors a miss computed.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lpips_explain.core.budget import parse_bytes
from lpips_explain.errors import InputError
from lpips_explain.validation import integer

CACHE_ENV = "LPIPS_EXPLAIN_FEATURE_CACHE"
DEFAULT_CACHE_BYTES = "256MB"


def content_key(x: Tensor) -> tuple:
    """dtype, shape and a BLAKE2b digest of the tensor's bytes (bit-identical inputs only)."""
    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    flat = t.contiguous().reshape(-1).view(torch.uint8).numpy()
    return (str(t.dtype), tuple(t.shape), hashlib.blake2b(flat, digest_size=20).hexdigest())


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FINGERPRINT_LOCK = threading.Lock()


def weights_fingerprint(net: nn.Module) -> str:
    """A BLAKE2b digest of every parameter and buffer of ``net`` (recomputed if one changes)."""
    tensors = [t for t in net.state_dict(keep_vars=True).values() if isinstance(t, Tensor)]
    versions = tuple(t._version for t in tensors)
    with _FINGERPRINT_LOCK:
        memo = _FINGERPRINTS.get(net)
        if memo is not None and memo[0] == versions:
            return memo[1]
    h = hashlib.blake2b(digest_size=20)
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        data = t.detach().cpu().contiguous().reshape(-1)
        h.update(data.view(torch.uint8).numpy() if data.numel() else b"")
    digest = h.hexdigest()
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[net] = (versions, digest)
    return digest


def model_key(net: nn.Module) -> tuple:
    """What decides the features of a network: trunk, version, weights, heads, mode."""
    spec = getattr(net, "spec", None)
    info = getattr(net, "weights_info", None)
    mode = getattr(net, "mode", None)
    device = next((str(b.device) for b in net.buffers()), "cpu")
    return (getattr(spec, "name", type(net).__name__), getattr(net, "version", None),
            getattr(info, "spec", None), getattr(info, "file", None), getattr(info, "seed", None),
            getattr(net, "lin_file", None), getattr(mode, "precision", "fp32"),
            getattr(mode, "device", device), weights_fingerprint(net))


def tensor_bytes(tensors: Sequence[Tensor]) -> int:
    """Bytes held by the tensors' storages (a storage shared by several counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
    return sum(seen.values())


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`FeatureCache` at one moment."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    max_bytes: int
    too_large: int  # entries not stored because they alone exceed the budget

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "entries": self.entries, "bytes": self.bytes, "max_bytes": self.max_bytes,
                "too_large": self.too_large, "hit_rate": self.hit_rate}


class FeatureCache:
    """An LRU of encoded features with a byte budget; see the module docstring."""

    def __init__(self, max_bytes: int | str = DEFAULT_CACHE_BYTES):
        self.max_bytes = _budget(max_bytes)
        self._data: OrderedDict[Hashable, tuple[tuple[Tensor, ...], int]] = OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._too_large = 0

    # -- the table ---------------------------------------------------------------------
    def get(self, key: Hashable) -> tuple[Tensor, ...] | None:
        """The entry for ``key`` (counted as a hit and made most recent), or None (a miss)."""
        with self._lock:
            return self._get_locked(key)

    def _get_locked(self, key: Hashable) -> tuple[Tensor, ...] | None:
        entry = self._data.get(key)
        if entry is None:
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return entry[0]

    def put(self, key: Hashable, tensors: Sequence[Tensor]) -> bool:
        """Store ``tensors`` under ``key``, evicting the least recently used; False if too large."""
        value = tuple(tensors)
        size = tensor_bytes(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                self._too_large += 1
                return False
            while self._data and self._bytes + size > self.max_bytes:
                _, (_, freed) = self._data.popitem(last=False)
                self._bytes -= freed
                self._evictions += 1
            self._data[key] = (value, size)
            self._bytes += size
            return True

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._evictions, len(self._data),
                              self._bytes, self.max_bytes, self._too_large)

    def view(self) -> CacheView:
        """This cache as one run sees it: the same entries, the run's own hit/miss counts."""
        return CacheView(self)

    # -- features ------------------------------------------------------------------------
    def key(self, net: nn.Module, x: Tensor) -> tuple:
        return (model_key(net), content_key(x))

    def row_keys(self, net: nn.Module, x: Tensor) -> list[tuple]:
        """:meth:`key` of each image of the batch ``x`` (the model key computed once)."""
        model = model_key(net)
        return [(model, content_key(x[i:i + 1])) for i in range(x.shape[0])]

    def encode(self, net: nn.Module, x: Tensor) -> list[Tensor]:
        """``net.encode(x)`` (no gradients), from the cache when the same input was encoded
        by a network with the same model key. Concurrent misses of one key compute once."""
        key = self.key(net, x)
        while True:
            with self._lock:
                hit = self._get_locked(key)
                if hit is not None:
                    return list(hit)
                event = self._pending.get(key)
                if event is None:
                    event = self._pending[key] = threading.Event()
                    break
                self._misses -= 1  # a wait is not a second miss: counted when it resolves
            event.wait()
        try:
            with torch.no_grad():
                feats = [y.detach() for y in net.encode(x)]
            self.put(key, feats)
            return feats
        finally:
            with self._lock:
                self._pending.pop(key, None)
            event.set()


def _budget(value: int | str) -> int:
    """The cache's budget in bytes: a memory size, or 0 (also "0", "0B", "off") for none."""
    if isinstance(value, str):
        if value.strip() in ("0", "0B", "off"):
            return 0
    elif isinstance(value, numbers.Integral) and integer(value, "The cache budget") == 0:
        return 0
    return parse_bytes(value)


_SHARED: FeatureCache | None = None
_SHARED_LOCK = threading.Lock()


def shared_cache() -> FeatureCache:
    """The process-wide cache every Explainer uses by default (the app's sessions share it).

    Its budget is ``$LPIPS_EXPLAIN_FEATURE_CACHE`` (e.g. "512MB"; "0" turns it off) or
    :data:`DEFAULT_CACHE_BYTES`, read when it is first used.
    """
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            raw = os.environ.get(CACHE_ENV, "").strip() or DEFAULT_CACHE_BYTES
            try:
                _SHARED = FeatureCache(raw)
            except InputError as exc:
                raise InputError(f"{CACHE_ENV}={raw!r}: {exc}") from None
        return _SHARED


class CacheView:
    """A shared :class:`FeatureCache` as one run uses it: lookups and stores go to the cache,
    and the view counts only its own hits and misses (the cache's counters also count every
    other session's lookups made meanwhile)."""

    def __init__(self, cache: FeatureCache):
        self.cache = cache
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> tuple[Tensor, ...] | None:
        hit = self.cache.get(key)
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return hit

    def put(self, key: Hashable, tensors: Sequence[Tensor]) -> bool:
        return self.cache.put(key, tensors)

    def row_keys(self, net: nn.Module, x: Tensor) -> list[tuple]:
        return self.cache.row_keys(net, x)

    def counts(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

"""Cached resources shared by all sessions: the Explainer, and a bounded store of results.

The Explainer is an ``st.cache_resource`` keyed on plain strings. Results (frozen
dataclasses holding arrays) live in :class:`ResultStore`, a small LRU held by
``st.cache_resource``: no pickling, a bound on memory, and no Streamlit call recorded
inside a cached function (a progress bar updated inside ``st.cache_*`` would be replayed
on the next cache hit against an element that no longer exists). The store also counts
computations, which the tests use to check that display-only options recompute nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import streamlit as st

from lpips_explain.explainer import Explainer
from lpips_explain.validation import Progress

T = TypeVar("T")

MAX_EXPLAINERS = 6
MAX_RESULTS = 32  # the Explain page alone keeps four parts per pair and options


# Networks built before the first visitor (ui/serve.py), handed over once to get_explainer.
_WARM: dict[tuple, Explainer] = {}
_CLAIMED: set[tuple] = set()  # keys a page has asked for: too late to build them here
_WARM_LOCK = threading.Lock()


def _build(net: str, version: str, backbone: str, seed: int, size_policy: str,
           precision: str = "fp32", lin_weights: str = "") -> Explainer:
    return Explainer(net, version, backbone, int(seed), size_policy=size_policy,
                     precision=precision, lin_weights=lin_weights or None)


def warm_explainer(key: tuple) -> Explainer | None:
    """Build the network of ``key`` (a model key) for the app before anyone asks for it;
    None when it cannot be built (the page will say why when a visitor arrives)."""
    with _WARM_LOCK:  # a visitor arriving now waits here instead of building a second one
        if key in _CLAIMED:
            return None
        if key not in _WARM:
            try:
                _WARM[key] = _build(*key)
            except Exception:
                return None
        return _WARM[key]


@st.cache_resource(max_entries=MAX_EXPLAINERS, show_spinner="Loading the LPIPS network...")
def get_explainer(net: str, version: str, backbone: str, seed: int,
                  size_policy: str, precision: str = "fp32", lin_weights: str = "") -> Explainer:
    """One Explainer per (trunk, lin version, backbone weights, seed, size policy, precision,
    lin-head file; "" = the official heads); the warmed-up one when it is for these."""
    key = (net, version, backbone, seed, size_policy, precision, lin_weights)
    with _WARM_LOCK:
        _CLAIMED.add(key)
        warm = _WARM.pop(key, None)
    return warm if warm is not None else _build(*key)


class ResultStore:
    """A thread-safe LRU of computed results, with per-kind counters of hits and computations."""

    def __init__(self, max_entries: int = MAX_RESULTS) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.computed: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()

    def get(self, kind: str, key: Hashable) -> Any:
        with self._lock:
            k = (kind, key)
            if k in self._data:
                self._data.move_to_end(k)
                self.hits[kind] += 1
                return self._data[k]
        return None

    def put(self, kind: str, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[(kind, key)] = value
            self._data.move_to_end((kind, key))
            self.computed[kind] += 1
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __contains__(self, item: tuple[str, Hashable]) -> bool:
        with self._lock:
            return item in self._data

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@st.cache_resource
def result_store() -> ResultStore:
    """The process-wide store (one per server, shared by sessions like the model)."""
    return ResultStore()


def digest(data: bytes) -> str:
    """A short content hash: results are keyed on image bytes, not file names."""
    return hashlib.sha256(data).hexdigest()[:32]


class ProgressBar:
    """An st.progress fed by the engine's ``progress(done, total, label)`` callback, drawn
    where the page says (``slot``: e.g. the run state at the top) or in place."""

    def __init__(self, text: str, slot: Any = None) -> None:
        self._text = text
        self._bar = (slot or st).progress(0.0, text=text)

    def __call__(self, done: int, total: int, label: str) -> None:
        fraction = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
        # "Sensitivity: 3 of 20", not "Sensitivity: sensitivity: 3 of 20".
        step = "" if label.lower() in self._text.lower() else f" {label}:"
        self._bar.progress(fraction, text=f"{self._text}{step} {done} of {total}")

    def clear(self) -> None:
        self._bar.empty()


def cached(kind: str, key: Hashable, compute: Callable[[Progress | None], T], *,
           progress: str | None = None, spinner: str | None = None, slot: Any = None) -> T:
    """The stored result for (kind, key), or ``compute(progress_callback)`` stored on a miss.

    With ``progress`` text, a miss shows a progress bar fed by the engine (for computations
    that report progress) in ``slot`` (an st.empty, e.g. the page's run state) or in place;
    with ``spinner`` text a spinner; both go away when done and a hit shows nothing. Errors
    are not stored, so a corrected input is computed afresh.
    """
    store = result_store()
    hit = store.get(kind, key)
    if hit is not None:
        return hit
    bar = ProgressBar(progress, slot) if progress else None
    try:
        if spinner:
            with st.spinner(spinner):
                value = compute(bar)
        else:
            value = compute(bar)
    finally:
        if bar is not None:
            bar.clear()
    store.put(kind, key, value)
    return value

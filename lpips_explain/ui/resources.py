"""Cached resources shared by all sessions: the Explainer, and a bounded store of results.

The Explainer is an ``st.cache_resource`` keyed on plain strings. Results (frozen
dataclasses holding arrays) live in :class:`ResultStore`, a small LRU held by
``st.cache_resource`` and bounded by entries and bytes; at most :func:`app_workers`
computations run at once (:func:`compute_slot`): no pickling, a bound on the server's
memory however many sessions arrive, and no Streamlit call recorded
inside a cached function (a progress bar updated inside ``st.cache_*`` would be replayed
on the next cache hit against an element that no longer exists). The store also counts
computations, which the tests use to check that display-only options recompute nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import streamlit as st
import torch

from lpips_explain.core.budget import parse_bytes
from lpips_explain.explainer import Explainer
from lpips_explain.validation import Progress

T = TypeVar("T")

MAX_EXPLAINERS = 6
MAX_RESULTS = 32  # the Explain page alone keeps four parts per pair and options
# The server's memory for stored results and for computing: every session shares one store,
# bounded by bytes as well as entries, and at most APP_WORKERS computations run at once (each
# within the Explainer's own budget); sessions beyond that wait for a free worker, and say so.
# With the feature cache's 256 MB and the networks, 16 sessions computing 8 at a time on a
# 2-core machine stay under 3 GB (benchmarks/bench_app.py --sessions 16).
RESULTS_ENV = "LPIPS_EXPLAIN_APP_RESULTS"  # e.g. "512MB"
WORKERS_ENV = "LPIPS_EXPLAIN_APP_WORKERS"
DEFAULT_RESULT_BYTES = "512MB"


def result_budget() -> int:
    """The result store's byte budget: $LPIPS_EXPLAIN_APP_RESULTS or 512 MB."""
    return parse_bytes(os.environ.get(RESULTS_ENV, "").strip() or DEFAULT_RESULT_BYTES)


def app_workers() -> int:
    """How many computations run at once: $LPIPS_EXPLAIN_APP_WORKERS, or the CPU count up to 2
    (on more cores each computation already uses them all)."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return max(1, min(2, os.cpu_count() or 1))


def nbytes(obj: Any, _seen: set[int] | None = None) -> int:
    """The bytes of the arrays and tensors held by ``obj`` (dataclasses, sequences, dicts),
    each storage counted once: what storing it keeps alive, beyond small Python objects."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return int(storage.nbytes())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes) if obj.base is None else nbytes(obj.base, seen)
    if isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return 0
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(nbytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return sum(nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(nbytes(v, seen) for v in obj)
    return 0


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
    """A thread-safe LRU of computed results, bounded by entries and by bytes (arrays and
    tensors, :func:`nbytes`), with per-kind counters of hits and computations. A result
    larger than the whole budget is returned to its page but not stored."""

    def __init__(self, max_entries: int = MAX_RESULTS, max_bytes: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = result_budget() if max_bytes is None else int(max_bytes)
        self.bytes = 0
        self._sizes: dict[tuple, int] = {}
        self._data: OrderedDict[tuple, Any] = OrderedDict()
        self._pending: dict[tuple, threading.Event] = {}  # being computed by the warm-up
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

    def has(self, kind: str, key: Hashable) -> bool:
        """Whether (kind, key) is stored (no hit counted, its place in the LRU kept)."""
        with self._lock:
            return (kind, key) in self._data

    def reserve(self, kind: str, key: Hashable) -> None:
        """Say that (kind, key) is being computed (by the warm-up): a page asking for it
        waits for it (:meth:`wait`) instead of computing it a second time."""
        with self._lock:
            self._pending.setdefault((kind, key), threading.Event())

    def release(self, kind: str, key: Hashable) -> None:
        """(kind, key) is no longer being computed (stored, or given up)."""
        with self._lock:
            event = self._pending.pop((kind, key), None)
        if event is not None:
            event.set()

    def wait(self, kind: str, key: Hashable, timeout: float = 120.0) -> Any:
        """The value of a reserved (kind, key) once it is stored (None if it is not
        reserved, or was given up)."""
        with self._lock:
            event = self._pending.get((kind, key))
        if event is not None:
            event.wait(timeout)
        return self.get(kind, key)

    def put(self, kind: str, key: Hashable, value: Any) -> None:
        self._put(kind, key, value)
        self.release(kind, key)

    def _put(self, kind: str, key: Hashable, value: Any) -> None:
        size = nbytes(value)
        with self._lock:
            self.computed[kind] += 1
            k = (kind, key)
            if k in self._data:
                self.bytes -= self._sizes.pop(k, 0)
                del self._data[k]
            if size > self.max_bytes:
                return
            self._data[k] = value
            self._sizes[k] = size
            self.bytes += size
            while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
                old, _ = self._data.popitem(last=False)
                self.bytes -= self._sizes.pop(old, 0)

    def __contains__(self, item: tuple[str, Hashable]) -> bool:
        with self._lock:
            return item in self._data

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self.bytes = 0


_STORE: ResultStore | None = None
_STORE_LOCK = threading.Lock()


def result_store() -> ResultStore:
    """The process-wide store (one per server, shared by sessions like the model; the
    warm-up fills it before any session exists)."""
    global _STORE
    with _STORE_LOCK:
        if _STORE is None:
            _STORE = ResultStore()
        return _STORE


def digest(data: bytes) -> str:
    """A short content hash: results are keyed on image bytes, not file names."""
    return hashlib.sha256(data).hexdigest()[:32]


_now = time.monotonic  # the progress bar's clock (a test sets its own)


class ProgressBar:
    """An st.progress fed by the engine's ``progress(done, total, label)`` callback, drawn
    where the page says (``slot``: e.g. the run state at the top) or in place."""

    # At most one redraw per this many seconds (and always the last step): a walk on windows
    # reports a step every few milliseconds, and each redraw is a message the browser renders,
    # on the same cores as the computation. Measured on the 2-core VM, chromium at 1280x720,
    # a dropped 600x400 pair (docs/performance.md#progress): at 0.1 s chromium took 0.24-0.44
    # of a core while the card's parts ran and the card completed in 6.8-8.3 s; at 1.0 s 0.18-
    # 0.36 of a core and 5.1-8.8 s (means 0.33 and 0.24 core, 7.5 s and 6.4 s, alternating).
    # A step that is not drawn is still a yield point of the script run (_yield_point), so a
    # new upload stops a running part at its next step, not at its next redraw.
    MIN_INTERVAL_S = 1.0

    def __init__(self, text: str, slot: Any = None) -> None:
        self._text = text
        self._bar = (slot or st).progress(0.0, text=text)
        self._drawn = -math.inf

    def __call__(self, done: int, total: int, label: str) -> None:
        now = _now()
        if done < total and now - self._drawn < self.MIN_INTERVAL_S:
            _yield_point()
            return
        self._drawn = now
        fraction = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
        # "Sensitivity: 3 of 20", not "Sensitivity: sensitivity: 3 of 20".
        step = "" if label.lower() in self._text.lower() else f" {label}:"
        self._bar.progress(fraction, text=f"{self._text}{step} {done} of {total}")

    def clear(self) -> None:
        self._bar.empty()


_YIELD_KEY = "_lx_yield"  # never set: reading it is the point


def _yield_point() -> None:
    """Let Streamlit stop or rerun this script run here if a new upload or click asked for it,
    without sending anything to the browser. Reading the session state is one of Streamlit's
    yield points, as every element drawn is (each raises the rerun or stop a request left
    pending); outside a script run it only reads a key."""
    _ = _YIELD_KEY in st.session_state


_SLOTS: threading.BoundedSemaphore | None = None
_SLOTS_LOCK = threading.Lock()
_HOLDING = threading.local()  # this thread already holds a worker (nested computations)


def _slots() -> threading.BoundedSemaphore:
    global _SLOTS
    with _SLOTS_LOCK:
        if _SLOTS is None:
            _SLOTS = threading.BoundedSemaphore(app_workers())
        return _SLOTS


@contextmanager
def compute_slot(slot: Any = None) -> Iterator[None]:
    """Hold one of the server's workers while computing (see APP_WORKERS); a session that
    finds none free says so where its progress will be (``slot``) and waits."""
    if getattr(_HOLDING, "held", False):
        yield
        return
    sem = _slots()
    if not sem.acquire(blocking=False):
        waiting = (slot or st.empty()).info("Waiting for a free worker: other sessions are "
                                            "computing.", icon=":material/hourglass_top:")
        sem.acquire()
        waiting.empty()
    _HOLDING.held = True
    try:
        yield
    finally:
        _HOLDING.held = False
        sem.release()


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
    if hit is None:
        hit = store.wait(kind, key)  # the warm-up may be computing it right now
    if hit is not None:
        return hit
    with compute_slot(slot):
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

"""The app server's bounds: the shared result store by bytes, and the compute workers."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from lpips_explain.ui import resources
from lpips_explain.ui.resources import ResultStore, nbytes


def test_nbytes_counts_each_storage_once():
    t = torch.zeros(1000)  # 4000 bytes
    a = np.zeros(500)  # 4000 bytes
    held = {"x": (t, t[10:20], a, a[::2]), "y": [t], "z": "text"}
    assert nbytes(held) == 8000


def test_the_store_evicts_by_bytes_and_refuses_what_alone_exceeds_it():
    store = ResultStore(max_entries=10, max_bytes=10_000)
    store.put("k", 1, np.zeros(500))  # 4000 B
    store.put("k", 2, np.zeros(500))  # 8000 B in all
    assert store.bytes == 8000
    store.put("k", 3, np.zeros(500))  # 12000 > 10000: the oldest goes
    assert store.get("k", 1) is None and store.get("k", 2) is not None
    assert store.bytes == 8000
    store.put("k", 4, np.zeros(5000))  # 40000 B: larger than the whole budget
    assert store.get("k", 4) is None and store.bytes == 8000
    assert store.computed["k"] == 4  # computed, counted, but not kept
    store.put("k", 2, np.zeros(100))  # replacing an entry frees its bytes
    assert store.bytes == 4800


def test_at_most_app_workers_compute_at_once(monkeypatch):
    monkeypatch.setattr(resources, "_SLOTS", threading.BoundedSemaphore(1))
    running, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with resources.compute_slot(), resources.compute_slot():  # nested: no deadlock
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert peak[0] == 1 and not any(t.is_alive() for t in threads)


def test_worker_count_follows_the_environment(monkeypatch):
    monkeypatch.setenv(resources.WORKERS_ENV, "3")
    assert resources.app_workers() == 3
    monkeypatch.setenv(resources.WORKERS_ENV, "zero")
    assert 1 <= resources.app_workers() <= 2
    monkeypatch.setenv(resources.RESULTS_ENV, "1MB")
    assert resources.result_budget() == 1_000_000


def test_a_reserved_result_is_waited_for_not_computed_twice():
    store = ResultStore(max_entries=10, max_bytes=10_000)
    store.reserve("k", 1)
    got = []
    waiter = threading.Thread(target=lambda: got.append(store.wait("k", 1, timeout=10)))
    waiter.start()
    time.sleep(0.05)
    assert waiter.is_alive()  # still waiting for the reserved value
    store.put("k", 1, "value")
    waiter.join(timeout=10)
    assert got == ["value"]
    store.reserve("k", 2)
    store.release("k", 2)  # given up: a waiter returns at once, with nothing
    assert store.wait("k", 2, timeout=10) is None
    assert store.wait("k", 3, timeout=10) is None  # never reserved: no wait


class _Bar:
    """Stands in for st.progress: records each redraw."""

    def __init__(self) -> None:
        self.drawn: list[str] = []

    def progress(self, value: float, text: str) -> _Bar:
        self.drawn.append(text)
        return self


def test_the_progress_bar_redraws_at_most_every_interval_and_always_the_last_step(monkeypatch):
    """A walk on windows reports a step every few ms: the bar skips steps within
    MIN_INTERVAL_S of its last redraw, never the first or the last."""
    clock = [100.0]
    monkeypatch.setattr(resources, "_now", lambda: clock[0])
    slot = _Bar()
    bar = resources.ProgressBar("Computing repair:", slot)
    for done in range(1, 11):  # ten steps 10 ms apart
        bar(done, 10, "repair")
        clock[0] += 0.01
    assert slot.drawn[1:] == ["Computing repair: 1 of 10", "Computing repair: 10 of 10"]
    clock[0] += resources.ProgressBar.MIN_INTERVAL_S
    bar(3, 20, "sensitivity")  # a pause as long as the interval: drawn again
    assert slot.drawn[-1] == "Computing repair: sensitivity: 3 of 20"


def test_a_pending_rerun_stops_a_part_between_redraws():
    """A new upload (a rerun request) stops a running part at its next progress step, not at
    its next redraw, which may be up to MIN_INTERVAL_S away: the steps the bar does not draw
    are still yield points of the script run (they touch the session state, which checks
    for a pending rerun or stop without sending anything to the browser)."""
    import sys
    import types

    from streamlit.testing.v1 import AppTest

    probe = types.ModuleType("_lx_progress_probe")
    probe.steps = []  # type: ignore[attr-defined]
    sys.modules[probe.__name__] = probe

    def script() -> None:
        import sys

        import streamlit as st
        from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        from lpips_explain.ui.resources import ProgressBar

        steps = sys.modules["_lx_progress_probe"].steps
        st.session_state["runs"] = st.session_state.get("runs", 0) + 1
        if st.session_state["runs"] == 1:
            bar = ProgressBar("Computing repair:")
            bar(1, 100, "repair")  # drawn (the first step)
            # what an upload does while the part runs: a rerun is requested
            get_script_run_ctx().script_requests.request_rerun(RerunData())
            for done in range(2, 100):  # steps milliseconds apart: none redrawn
                steps.append(done)
                bar(done, 100, "repair")
        st.write(f"run {st.session_state['runs']}")

    try:
        at = AppTest.from_function(script, default_timeout=30).run()
    finally:
        del sys.modules[probe.__name__]
    assert not at.exception
    # the part stopped at the first step after the request, and the page ran again
    assert probe.steps == [2]
    assert at.session_state["runs"] == 2

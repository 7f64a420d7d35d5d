"""An honest run state at the top of a page: which part is computing, which are done, which
failed, with the running part's progress bar right there (not mid-page).

Usage (any page)::

    run = RunState(("breakdown", "attribution"))          # draws the line at the top
    fast = run.compute("breakdown", "explain-fast", key, lambda progress: ...)
    run.finish()                                          # "Ready" (or what failed)

``compute`` goes through :func:`lpips_explain.ui.resources.cached`: a stored result is
"done" at once, a miss shows the engine's progress in the run state. A part that raises is
marked failed and the exception goes on (pages catch it with ``feedback.guard``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import streamlit as st

from lpips_explain.ui.resources import cached
from lpips_explain.ui.widgets import presenting
from lpips_explain.validation import Progress

T = TypeVar("T")

ICON = {"waiting": ":material/schedule:", "computing": ":material/autorenew:",
        "done": ":material/check_circle:", "failed": ":material/error:",
        "skipped": ":material/remove_circle_outline:",
        "on request": ":material/touch_app:"}
COLOUR = {"waiting": "gray", "computing": "blue", "done": "green", "failed": "red",
          "skipped": "gray", "on request": "gray"}


class RunState:
    """The page's parts and their states, drawn in one sticky line at the top of the page."""

    def __init__(self, parts: Sequence[str], *, key: str = "run_state") -> None:
        self.states: dict[str, str] = dict.fromkeys(parts, "waiting")
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()
        self._note = ""
        box = st.container(key=key)
        self._line = box.empty()
        self._bar = box.empty()
        self._draw()

    # -- drawing --------------------------------------------------------------------------
    def text(self) -> str:
        """The run state in words (Markdown with Material icons)."""
        parts = " · ".join(f":{COLOUR[s]}[{ICON[s]} {name}"
                           + (" (on request)" if s == "on request" else "") + "]"
                           for name, s in self.states.items())
        running = [n for n, s in self.states.items() if s == "computing"]
        failed = [n for n, s in self.states.items() if s == "failed"]
        if self._note:
            head = f"**{self._note}**"
        elif running:
            head = f"**Computing {running[0]}**"
        elif failed:
            head = f"**{', '.join(failed).capitalize()} failed** (the message is below)"
        elif any(s == "waiting" for s in self.states.values()):
            head = "**Starting**"
        elif presenting():
            return ""  # presentation mode: the line shows work in progress, then goes away
        else:
            head = f"**Ready** in {time.perf_counter() - self._t0:.1f} s"
        return f"{head} — {parts}" if parts else head

    def _draw(self) -> None:
        text = self.text()
        if text:
            self._line.markdown(text)
        else:
            self._line.empty()

    def set(self, part: str, state: str) -> None:
        self.states[part] = state
        self._draw()

    # -- work -------------------------------------------------------------------------------
    def compute(self, part: str, kind: str, key: Hashable, fn: Callable[[Progress | None], T],
                *, progress: str | None = None) -> T:
        """``resources.cached(kind, key, fn)`` as this part: its progress bar at the top."""
        self.set(part, "computing")
        t0 = time.perf_counter()
        try:
            value = cached(kind, key, fn, progress=progress or f"Computing {part}:",
                           slot=self._bar)
        except BaseException as exc:
            # Streamlit's own control flow (st.stop, st.rerun) is not a failure.
            self.set(part, "failed" if isinstance(exc, Exception) else "waiting")
            raise
        self.seconds[part] = time.perf_counter() - t0
        self.set(part, "done")
        return value

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Work done inline (not through ``compute``) as this part."""
        self.set(name, "computing")
        try:
            yield
        except Exception:
            self.set(name, "failed")
            raise
        self.set(name, "done")

    def skip(self, part: str) -> None:
        self.set(part, "skipped")

    def on_request(self, part: str) -> None:
        """A part left out until the person asks for it (not a failure, not waiting)."""
        self.set(part, "on request")

    def waiting_for_input(self, message: str) -> None:
        """Nothing runs until the input is complete: say so at the top."""
        self._note = message
        self._draw()

    def finish(self) -> None:
        """Parts never started are skipped (e.g. a failed prerequisite); redraw the line."""
        for name, s in self.states.items():
            if s in ("waiting", "computing"):
                self.states[name] = "skipped"
        self._bar.empty()
        self._draw()


def wait_for_input(run: RunState | None, message: str) -> None:
    """Say at the top of the page that it waits for input (nothing to say without a run
    state); call it before ``st.stop()``, after which the page can draw nothing more."""
    if run is not None:
        run.waiting_for_input(message)

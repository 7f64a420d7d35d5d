"""Error display for the pages: the engine's message in an st.error, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import streamlit as st

from lpips_explain.errors import LpipsExplainError

P = ParamSpec("P")
R = TypeVar("R")


def error_text(exc: BaseException, what: str = "") -> str:
    """One line for people: the engine's own message, or the type and message of a surprise."""
    if isinstance(exc, LpipsExplainError):
        return str(exc)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = f" while {what}" if what else ""
    return f"Unexpected error{where}: {type(exc).__name__}: {message}".rstrip(": ")


@contextmanager
def guard(what: str = "", *, stop: bool = True) -> Iterator[None]:
    """Show any error raised inside as st.error (no traceback), then stop the run.

    Streamlit's own control flow (st.stop, st.rerun) derives from BaseException and
    passes through untouched. With ``stop=False`` the page goes on after the message.
    """
    try:
        yield
    except Exception as exc:
        st.error(error_text(exc, what), icon=":material/error:")
        if stop:
            st.stop()


def panel(what: str) -> Callable[[Callable[P, R]], Callable[P, R | None]]:
    """Decorate a renderer: if drawing it fails, an st.error stands in its place and the
    rest of the page is still drawn."""
    def decorate(fn: Callable[P, R]) -> Callable[P, R | None]:
        @functools.wraps(fn)
        def draw(*args: P.args, **kwargs: P.kwargs) -> R | None:
            with guard(f"drawing {what}", stop=False):
                return fn(*args, **kwargs)
            return None
        return draw
    return decorate

"""Widgets whose values survive page switches.

Streamlit forgets a widget's value when a run does not draw it (another page) and treats a
keyed widget on a new page as new. Each persistent widget therefore gets its value from
session state before it is drawn (its own key if still there, else a plain copy kept
under ``keys.KEEP_PREFIX``), and the copy is refreshed after it is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import streamlit as st

from lpips_explain.ui import keys


def restore(key: str, default: Any, choices: Collection | None = None) -> None:
    """Seed the widget ``key`` with its last value (or ``default`` if stale or missing)."""
    if key in st.session_state:
        value = st.session_state[key]
    else:
        value = st.session_state.get(keys.KEEP_PREFIX + key, default)
    if choices is not None and value not in choices:
        value = default
    st.session_state[key] = value


def persistent(widget: Callable[..., Any], label: str, *args: Any, key: str, default: Any,
               choices: Collection | None = None, **kwargs: Any) -> Any:
    """Draw ``widget(label, *args, key=key, **kwargs)`` with its value carried across pages."""
    restore(key, default, choices)
    value = widget(label, *args, key=key, **kwargs)
    st.session_state[keys.KEEP_PREFIX + key] = value
    return value


def reset_when_changed(marker: str, value: Any, widget_keys: Collection[str]) -> None:
    """Forget widgets whose defaults come from a result (e.g. "the layer with the largest
    share") when the inputs behind that result change, so they follow the new result."""
    if st.session_state.get(marker) != value:
        for k in widget_keys:
            st.session_state.pop(k, None)
            st.session_state.pop(keys.KEEP_PREFIX + k, None)
        st.session_state[marker] = value

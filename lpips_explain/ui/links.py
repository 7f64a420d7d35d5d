"""Shareable links: the URL's query parameters carry the view, so a copied link reopens it.

The page itself is the URL's path (st.navigation); the query carries the sample pair
(``sample``) or triplet (``triplet``), the trunk (``net``), the lin version (``version``), the
attribution method (``method``), swapped roles (``swap=1``) and presentation mode
(``present=1``). Uploaded images cannot travel in a link: the page says so.

On a session's first run the query seeds the widgets it names (unknown values are ignored
and reported); afterwards every run writes the current choices back into the query.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

import streamlit as st

from lpips_explain.analyses.attribution import METHODS
from lpips_explain.core.trunks import TRUNKS
from lpips_explain.core.weights import VERSIONS
from lpips_explain.ui import keys

# query parameter -> (session-state key, allowed values or None for "read later")
WIDGET_PARAMS: dict[str, str] = {
    "net": keys.NET,
    "version": keys.VERSION,
    "method": keys.METHOD,
    "sample": keys.SAMPLE_PAIR,
    "triplet": keys.SAMPLE_TRIPLET,
}
FLAG_PARAMS: dict[str, str] = {"swap": keys.SWAP, "present": keys.PRESENT}
ORDER = ("sample", "triplet", "net", "version", "method", "swap", "present")
UPLOAD_NOTE = ("Uploaded images are not part of links: whoever opens this one sees the "
               "sample instead.")


def _allowed(name: str, value: str, samples: Mapping[str, set[str]]) -> bool:
    if name == "net":
        return value in TRUNKS
    if name == "version":
        return value in VERSIONS
    if name == "method":
        return value in METHODS
    return value in samples.get(name, set())


def apply_once(samples: Mapping[str, set[str]]) -> list[str]:
    """Seed the widgets from the URL on the session's first run; returns what was ignored.

    ``samples`` maps "sample" and "triplet" to the ids the app knows.
    """
    if st.session_state.get(keys.LINKS_APPLIED):
        return []
    st.session_state[keys.LINKS_APPLIED] = True
    ignored = []
    query = st.query_params
    for name, key in WIDGET_PARAMS.items():
        if name not in query:
            continue
        value = query[name]
        if _allowed(name, value, samples):
            st.session_state[key] = value
            st.session_state[keys.KEEP_PREFIX + key] = value
        else:
            ignored.append(f"{name}={value}")
    for name, key in FLAG_PARAMS.items():
        if name in query:
            st.session_state[key] = query[name] in ("1", "true", "yes")
            if key == keys.PRESENT:
                st.session_state[keys.KEEP_PREFIX + key] = st.session_state[key]
    return ignored


def publish(values: Mapping[str, str | None]) -> None:
    """Write the current view into the URL (``None`` removes a parameter)."""
    current = {k: st.query_params[k] for k in st.query_params}
    wanted = dict(current)
    for name, value in values.items():
        if value is None:
            wanted.pop(name, None)
        else:
            wanted[name] = str(value)
    if wanted != current:
        ordered = {k: wanted[k] for k in ORDER if k in wanted}
        ordered.update({k: v for k, v in wanted.items() if k not in ordered})
        st.query_params.from_dict(ordered)


def share_url() -> str | None:
    """This view's link, when the browser told the server its address."""
    base = st.context.url
    if not base:
        return None
    query = {k: st.query_params[k] for k in st.query_params}
    return base + ("?" + urlencode(query) if query else "")

"""Image inputs: drag-and-drop uploaders, the bundled sample pairs and triplets, and the
current pair carried across pages in session state."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import streamlit as st

from lpips_explain.ui import keys
from lpips_explain.ui.resources import digest
from lpips_explain.ui.state import persistent

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tiff", "tif", "gif"]
ASSETS = Path(__file__).resolve().parents[2] / "assets"
MANIFEST = ASSETS / "samples.json"


@dataclass(frozen=True)
class ImageInput:
    """One image as the user gave it: a name and its raw bytes (decoded by the engine)."""

    name: str
    data: bytes

    @cached_property
    def digest(self) -> str:
        return digest(self.data)

    def source(self) -> io.BytesIO:
        """A fresh named file object for the engine (the name shows up in reports)."""
        buf = io.BytesIO(self.data)
        buf.name = self.name
        return buf


@dataclass(frozen=True)
class Pair:
    a: ImageInput
    b: ImageInput
    origin: str  # "upload" or the sample's title

    @property
    def key(self) -> tuple[str, str]:
        return (self.a.digest, self.b.digest)


@dataclass(frozen=True)
class Triplet:
    ref: ImageInput
    a: ImageInput
    b: ImageInput
    origin: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.ref.digest, self.a.digest, self.b.digest)


# --- samples ---------------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def manifest() -> dict:
    """assets/samples.json (paths in it are relative to assets/)."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


@st.cache_data(show_spinner=False, max_entries=32)
def _asset_bytes(rel: str) -> bytes:
    return (ASSETS / rel).read_bytes()


def _asset(rel: str) -> ImageInput:
    return ImageInput(Path(rel).name, _asset_bytes(rel))


def _samples(kind: str) -> dict[str, dict]:
    try:
        return {s["id"]: s for s in manifest()[kind]}
    except (OSError, ValueError, KeyError) as exc:
        st.error(f"The sample manifest {MANIFEST} cannot be read ({type(exc).__name__}: {exc}); "
                 f"upload your own images instead.")
        return {}


def sample_pair(pair_id: str | None = None) -> Pair | None:
    pairs = _samples("pairs")
    if not pairs:
        return None
    item = pairs.get(pair_id or manifest().get("default_pair")) or next(iter(pairs.values()))
    return Pair(_asset(item["a"]), _asset(item["b"]), f"sample: {item['title']}")


def sample_triplet(triplet_id: str | None = None) -> Triplet | None:
    triplets = _samples("triplets")
    if not triplets:
        return None
    item = (triplets.get(triplet_id or manifest().get("default_triplet"))
            or next(iter(triplets.values())))
    return Triplet(_asset(item["ref"]), _asset(item["a"]), _asset(item["b"]),
                   f"sample: {item['title']}")


def _uploaded(file: object) -> ImageInput | None:
    if file is None:
        return None
    return ImageInput(getattr(file, "name", "upload"), bytes(file.getvalue()))  # type: ignore[attr-defined]


def _sample_picker(label: str, kind: str, key: str, default_key: str, *, disabled: bool,
                   on_change: Any = None) -> str | None:
    items = _samples(kind)
    if not items:
        return None
    default = manifest().get(default_key) or next(iter(items))
    return persistent(st.selectbox, label, list(items), key=key, default=default,
                      choices=items, disabled=disabled, on_change=on_change,
                      format_func=lambda i: items[i]["title"])


def _describe_sample(slot: Any, kind: str, choice: str | None) -> None:
    """The sample's description, drawn only when that sample is the one in use."""
    description = _samples(kind).get(choice or "", {}).get("description", "")
    if description:
        slot.caption(description)


# --- the Explain page's pair -------------------------------------------------------------------


def _toggle_swap() -> None:
    st.session_state[keys.SWAP] = not st.session_state.get(keys.SWAP, False)


def swapped() -> bool:
    return bool(st.session_state.get(keys.SWAP, False))


def _forget(state_key: str) -> Any:
    """A callback: the user changed an input, so the stored pair or triplet no longer holds."""
    return lambda: st.session_state.pop(state_key, None)


def _stored_upload(state_key: str, kind: type) -> Any:
    """The uploads of an earlier visit (uploaders come back empty after a page switch)."""
    stored = st.session_state.get(state_key)
    if isinstance(stored, kind) and stored.origin == "upload":
        return stored
    return None


def roles_note(swap: bool) -> str:
    """Which image is which, in one sentence (flips with the swap button)."""
    if swap:
        return "B is the reference, A is explained."
    return "A is the reference, B is explained."


def pair_input() -> Pair:
    """Two uploaders side by side, a sample picker and the swap button; stores the pair."""
    forget = _forget(keys.PAIR)
    helptext = "Drag and drop an image; without uploads a sample pair is used."
    col_a, col_b = st.columns(2)
    up_a = _uploaded(col_a.file_uploader("Image A", type=IMAGE_TYPES, key=keys.UPLOAD_A,
                                         on_change=forget, help=helptext))
    up_b = _uploaded(col_b.file_uploader("Image B", type=IMAGE_TYPES, key=keys.UPLOAD_B,
                                         on_change=forget, help=helptext))
    both = up_a is not None and up_b is not None
    col_s, col_w = st.columns([4, 1])
    with col_s:
        choice = _sample_picker("Sample pair (used when nothing is uploaded)", "pairs",
                                keys.SAMPLE_PAIR, "default_pair", disabled=both,
                                on_change=forget)
        description = st.empty()
    with col_w:
        st.button("⇄ Swap A and B", key=keys.SWAP_BUTTON, on_click=_toggle_swap,
                  help="Exchange the roles: explain A against B as the reference.")
        st.caption(roles_note(swapped()))

    if both:
        pair = Pair(up_a, up_b, "upload")  # type: ignore[arg-type]
    elif up_a is not None or up_b is not None:
        missing = "B" if up_a is not None else "A"
        st.info(f"Upload image {missing} too, or remove the uploaded image to use a sample pair.")
        st.stop()
    elif (earlier := _stored_upload(keys.PAIR, Pair)) is not None:
        pair = earlier
        st.caption(f"Showing the pair you uploaded earlier ({pair.a.name}, {pair.b.name}); "
                   f"upload new images or pick a sample to change it.")
    else:
        sample = sample_pair(choice)
        if sample is None:
            st.info("Upload two images to compare.")
            st.stop()
        pair = sample
        _describe_sample(description, "pairs", choice)
    st.session_state[keys.PAIR] = pair
    return pair


def current_pair() -> Pair:
    """The pair chosen on the Explain page, or the default sample pair."""
    pair = st.session_state.get(keys.PAIR)
    if not isinstance(pair, Pair):
        pair = sample_pair()
        if pair is None:
            st.info("Choose or upload a pair on the Explain page first.")
            st.stop()
        st.session_state[keys.PAIR] = pair
    roles = " (roles swapped on Explain: B is the reference)" if swapped() else ""
    st.caption(f"Pair: A = {pair.a.name}, B = {pair.b.name} ({pair.origin}){roles}. "
               f"Change it on the Explain page.")
    return pair


# --- the Triplet page's images -------------------------------------------------------------------


def triplet_input() -> Triplet:
    """Reference and two candidates: three uploaders or a sample triplet; stores the triplet."""
    forget = _forget(keys.TRIPLET)
    cols = st.columns(3)
    ups = [
        _uploaded(col.file_uploader(label, type=IMAGE_TYPES, key=key, on_change=forget))
        for col, label, key in zip(
            cols, ("REF: the reference", "A: first candidate", "B: second candidate"),
            (keys.TRIPLET_UPLOAD_REF, keys.TRIPLET_UPLOAD_A, keys.TRIPLET_UPLOAD_B), strict=True)
    ]
    n = sum(u is not None for u in ups)
    choice = _sample_picker("Sample triplet (used when nothing is uploaded)", "triplets",
                            keys.SAMPLE_TRIPLET, "default_triplet", disabled=n == 3,
                            on_change=forget)
    description = st.empty()
    if n == 3:
        triplet = Triplet(ups[0], ups[1], ups[2], "upload")  # type: ignore[arg-type]
    elif n:
        missing = ", ".join(lab for lab, u in zip(("REF", "A", "B"), ups, strict=True) if u is None)
        st.info(f"Upload {missing} too, or remove the uploads to use a sample triplet.")
        st.stop()
    elif (earlier := _stored_upload(keys.TRIPLET, Triplet)) is not None:
        triplet = earlier
        st.caption("Showing the triplet you uploaded earlier; upload new images or pick a "
                   "sample to change it.")
    else:
        sample = sample_triplet(choice)
        if sample is None:
            st.info("Upload a reference and two candidates.")
            st.stop()
        triplet = sample
        _describe_sample(description, "triplets", choice)
    st.session_state[keys.TRIPLET] = triplet
    return triplet

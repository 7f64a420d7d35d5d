"""Image inputs: the bundled samples, drag-and-drop uploads, and the pair (or triplet) in use,
carried across pages in session state.

Rules (one place, shared by the Explain and Triplet pages):

- A run starts only on a complete input that changed: with one image replaced in an uploaded
  pair the page waits for the other one, or for an explicit Compare.
- A new pair resets the swapped roles.
- The sample picker always names what is shown: "your uploaded images" while uploads are in
  use (then it is disabled), a sample otherwise; choosing a sample drops earlier uploads.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import streamlit as st

from lpips_explain.ui import keys, links
from lpips_explain.ui.resources import digest
from lpips_explain.ui.runstate import wait_for_input
from lpips_explain.ui.state import persistent
from lpips_explain.ui.widgets import ICONS, note, presenting, upload_area

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
    origin: str  # "upload" or "sample: <title>"
    sample_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.a.digest, self.b.digest)

    @property
    def images(self) -> tuple[ImageInput, ...]:
        return (self.a, self.b)


@dataclass(frozen=True)
class Triplet:
    ref: ImageInput
    a: ImageInput
    b: ImageInput
    origin: str
    sample_id: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.ref.digest, self.a.digest, self.b.digest)

    @property
    def images(self) -> tuple[ImageInput, ...]:
        return (self.ref, self.a, self.b)


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


def sample_ids() -> dict[str, set[str]]:
    """The ids a link may name: {"sample": pair ids, "triplet": triplet ids}."""
    try:
        m = manifest()
        return {"sample": {s["id"] for s in m["pairs"]},
                "triplet": {s["id"] for s in m["triplets"]}}
    except (OSError, ValueError, KeyError):
        return {}


def _default_id(kind: str, default_key: str) -> str | None:
    items = _samples(kind)
    if not items:
        return None
    chosen = manifest().get(default_key)
    return chosen if chosen in items else next(iter(items))


def sample_pair(pair_id: str | None = None) -> Pair | None:
    pairs = _samples("pairs")
    if not pairs:
        return None
    pid = pair_id if pair_id in pairs else _default_id("pairs", "default_pair")
    item = pairs[pid]
    return Pair(_asset(item["a"]), _asset(item["b"]), f"sample: {item['title']}", pid)


def sample_triplet(triplet_id: str | None = None) -> Triplet | None:
    triplets = _samples("triplets")
    if not triplets:
        return None
    tid = triplet_id if triplet_id in triplets else _default_id("triplets", "default_triplet")
    item = triplets[tid]
    return Triplet(_asset(item["ref"]), _asset(item["a"]), _asset(item["b"]),
                   f"sample: {item['title']}", tid)


def _uploaded(file: object) -> ImageInput | None:
    if file is None:
        return None
    return ImageInput(getattr(file, "name", "upload"), bytes(file.getvalue()))  # type: ignore[attr-defined]


# --- roles ----------------------------------------------------------------------------------------


def _toggle_swap() -> None:
    st.session_state[keys.SWAP] = not st.session_state.get(keys.SWAP, False)


def swapped() -> bool:
    return bool(st.session_state.get(keys.SWAP, False))


def roles_note(swap: bool) -> str:
    """Which image is which, in one sentence (flips with the swap button)."""
    if swap:
        return "B is the reference, A is explained."
    return "A is the reference, B is explained."


# --- the rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadState:
    """What the uploaders hold. As soon as every slot holds an image the set is compared:
    replacing one image of a shown set runs at once, with the others kept."""

    images: tuple[ImageInput | None, ...]
    labels: tuple[str, ...]

    @property
    def count(self) -> int:
        return sum(i is not None for i in self.images)

    @property
    def missing(self) -> list[str]:
        return [lab for lab, i in zip(self.labels, self.images, strict=True) if i is None]


def _commit(state_key: str, value: Any) -> None:
    """Show ``value`` from now on; a new pair resets the swapped roles. (What was shown
    before is remembered apart: choosing a sample drops the stored upload first.)"""
    shown = state_key + "__shown"
    before = st.session_state.get(shown)
    if state_key == keys.PAIR and before is not None and before != value.key:
        st.session_state[keys.SWAP] = False
    st.session_state[state_key] = value
    st.session_state[shown] = value.key


DROP_HELP = ("Drag and drop an image (PNG, JPEG, WebP, BMP, TIFF, GIF). Replacing one image "
             "compares the new one at once; the result shown stays (greyed) until the new "
             "one is ready.")


def _drop_zone(title: str, labels: Sequence[str], upload_keys: Sequence[str],
               short: Sequence[str]) -> tuple[Any, UploadState]:
    """The uploaders at the top of the sidebar (widgets.upload_area): on the first screen,
    drawn with the same arguments on every run, before anything slow (a file dropped while
    the page computes reruns it instead of being lost)."""
    area = upload_area()
    area.markdown(f"**{title}**")
    state = UploadState(tuple(
        _uploaded(area.file_uploader(label, type=IMAGE_TYPES, key=key, help=DROP_HELP))
        for label, key in zip(labels, upload_keys, strict=True)), tuple(short))
    return area, state


def _drop_upload(state_key: str, picker_key: str) -> Any:
    """Picker callback: a sample was chosen, so earlier uploads are no longer shown."""
    def forget() -> None:
        if st.session_state.get(picker_key) != keys.UPLOADED:
            stored = st.session_state.get(state_key)
            if getattr(stored, "origin", "") == "upload":
                st.session_state.pop(state_key, None)
    return forget


def _picker(label: str, kind: str, key: str, default_key: str, *, uploaded: bool,
            disabled: bool, on_change: Any, container: Any) -> str | None:
    """The sample picker; while uploads are in use its first entry names them."""
    items = _samples(kind)
    if not items and not uploaded:
        return None
    options = ([keys.UPLOADED] if uploaded else []) + list(items)
    default = keys.UPLOADED if uploaded else _default_id(kind, default_key)
    if uploaded and disabled:
        st.session_state[key] = keys.UPLOADED  # the uploads are shown: say so

    def fmt(i: str) -> str:
        return "Your uploaded images" if i == keys.UPLOADED else items[i]["title"]

    return persistent(container.selectbox, label, options, key=key, default=default,
                      choices=options, disabled=disabled, on_change=on_change, format_func=fmt,
                      help="A bundled sample, or your own images (drop them at the top of the sidebar).")


# --- the Explain page's pair -------------------------------------------------------------------


def pair_input(run: Any = None) -> Pair:
    """The sample picker, the swap button and the uploads; returns the pair to explain (and
    stores it for the other pages), or stops the page while the input is incomplete."""
    stored = st.session_state.get(keys.PAIR)
    stored_upload = stored if isinstance(stored, Pair) and stored.origin == "upload" else None
    box, state = _drop_zone("Your images", ("Image A", "Image B"),
                            (keys.UPLOAD_A, keys.UPLOAD_B), ("A", "B"))
    col_s, col_w, col_n = st.columns([4, 1.3, 2.2], vertical_alignment="bottom")
    uploaded = state.count > 0 or stored_upload is not None
    choice = _picker("Sample pair", "pairs", keys.SAMPLE_PAIR, "default_pair",
                     uploaded=uploaded, disabled=state.count > 0,
                     on_change=_drop_upload(keys.PAIR, keys.SAMPLE_PAIR), container=col_s)
    col_w.button("Swap A and B", key=keys.SWAP_BUTTON, on_click=_toggle_swap,
                 icon=ICONS["swap"], width="stretch",
                 help="Exchange the roles: explain A against B as the reference.")

    pair: Pair | None = None
    if state.count == 2:
        pair = Pair(state.images[0], state.images[1], "upload")  # type: ignore[arg-type]
    elif state.count == 1:
        missing = state.missing[0]
        box.info(f"Upload image {missing} too, or remove the uploaded image to use a sample "
                 f"pair.", icon=ICONS["upload"])
        wait_for_input(run, f"Waiting for image {missing}")
        st.stop()
    elif choice == keys.UPLOADED and stored_upload is not None:
        pair = stored_upload
        note(f"Showing the pair you uploaded earlier ({pair.a.name}, {pair.b.name}); upload "
             f"new images or pick a sample to change it.")
    else:
        pair = sample_pair(choice)
        if pair is None:
            st.info("Upload two images to compare.")
            wait_for_input(run, "Waiting for two images")
            st.stop()
        description = _samples("pairs").get(pair.sample_id or "", {}).get("description", "")
        note(description)
    _commit(keys.PAIR, pair)
    # After the commit: a new pair has just reset the roles.
    col_n.markdown(f'<p class="lx-small">{roles_note(swapped())}</p>', unsafe_allow_html=True)
    links.publish({"sample": pair.sample_id})
    return pair


def current_pair() -> Pair:
    """The pair chosen on the Explain page, else the sample a link names, else the default."""
    pair = st.session_state.get(keys.PAIR)
    if not isinstance(pair, Pair):
        pair = sample_pair(st.session_state.get(keys.SAMPLE_PAIR))
        if pair is None:
            st.info("Choose or upload a pair on the Explain page first.")
            st.stop()
        st.session_state[keys.PAIR] = pair
    links.publish({"sample": pair.sample_id})
    roles = " (roles swapped on Explain: B is the reference)" if swapped() else ""
    if not presenting():
        st.caption(f"Pair: A = {pair.a.name}, B = {pair.b.name} ({pair.origin}){roles}. "
                   f"Change it on the Explain page.")
    return pair


# --- the Triplet page's images -------------------------------------------------------------------


TRIPLET_LABELS = ("REF", "A", "B")


def triplet_input(run: Any = None) -> Triplet:
    """Reference and two candidates: a sample triplet or three uploads (same rules as the
    pair); stores the triplet."""
    stored = st.session_state.get(keys.TRIPLET)
    stored_upload = stored if isinstance(stored, Triplet) and stored.origin == "upload" else None
    box, state = _drop_zone(
        "Your triplet", ("REF: the reference", "A: first candidate", "B: second candidate"),
        (keys.TRIPLET_UPLOAD_REF, keys.TRIPLET_UPLOAD_A, keys.TRIPLET_UPLOAD_B),
        TRIPLET_LABELS)
    col_s = st.columns([4, 3.5])[0]
    uploaded = state.count > 0 or stored_upload is not None
    choice = _picker("Sample triplet", "triplets", keys.SAMPLE_TRIPLET, "default_triplet",
                     uploaded=uploaded, disabled=state.count > 0,
                     on_change=_drop_upload(keys.TRIPLET, keys.SAMPLE_TRIPLET), container=col_s)
    triplet: Triplet | None = None
    if state.count == 3:
        triplet = Triplet(*state.images, "upload")  # type: ignore[arg-type]
    elif state.count:
        missing = ", ".join(state.missing)
        box.info(f"Upload {missing} too, or remove the uploads to use a sample triplet.",
                 icon=ICONS["upload"])
        wait_for_input(run, f"Waiting for {missing}")
        st.stop()
    elif choice == keys.UPLOADED and stored_upload is not None:
        triplet = stored_upload
        note("Showing the triplet you uploaded earlier; upload new images or pick a sample "
             "to change it.")
    else:
        triplet = sample_triplet(choice)
        if triplet is None:
            st.info("Upload a reference and two candidates.")
            wait_for_input(run, "Waiting for three images")
            st.stop()
        description = _samples("triplets").get(triplet.sample_id or "", {}).get(
            "description", "")
        note(description)
    _commit(keys.TRIPLET, triplet)
    links.publish({"triplet": triplet.sample_id})
    return triplet


def uploaded_in_use(items: Sequence[Any]) -> bool:
    return any(getattr(i, "origin", "") == "upload" for i in items)

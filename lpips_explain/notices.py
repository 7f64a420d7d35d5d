"""Typed notices: what a result wants a person to know, with a code that code can match on.

A :class:`Notice` is an immutable string (its text, as shown and as written to JSON) that
carries a ``code``. Code that filters or groups notices matches on ``code``, never on the
wording, so texts can be improved without breaking anything.
"""

from __future__ import annotations

from typing import Any

# The closed set of notice codes.
RANDOM_TRUNK = "random_trunk"  # the trunk is not the published one: not a perceptual metric
ROLES_SWAPPED = "roles_swapped"  # B is the reference and A is explained
IMAGE = "image"  # something the decoder did to one image (alpha, frames, bit depth, EXIF)
ALIGNMENT = "alignment"  # the size policy resized or cropped an image
CONSTANT_IMAGE = "constant_image"  # one image is a single flat colour
IDENTICAL_IMAGES = "identical_images"  # two images are pixel-identical after alignment
APPROXIMATE = "approximate"  # a number computed in a fast, approximate mode
CUSTOM_HEADS = "custom_heads"  # lin heads other than the official ones
TILED = "tiled"  # computed exactly in tiles to fit the memory budget; maps are block means
PATCH = "patch"  # the repair's default patch size was changed to fit the images
CODES: tuple[str, ...] = (RANDOM_TRUNK, ROLES_SWAPPED, IMAGE, ALIGNMENT, CONSTANT_IMAGE,
                          IDENTICAL_IMAGES, APPROXIMATE, CUSTOM_HEADS, TILED, PATCH)


class Notice(str):
    """A notice's text (it *is* the string) with its ``code`` from :data:`CODES`."""

    code: str

    def __new__(cls, code: str, text: str) -> Notice:
        if code not in CODES:
            raise ValueError(f"Unknown notice code {code!r}; add it to notices.CODES.")
        obj = super().__new__(cls, text)
        obj.code = code
        return obj

    @property
    def text(self) -> str:
        return str.__str__(self)

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickling (st.cache_data, processes)
        return (self.code, self.text)

    def __repr__(self) -> str:
        return f"Notice({self.code!r}, {self.text!r})"


RANDOM_TRUNK_TEXT = ("The trunk has random weights: these numbers show the structure of the "
                     "computation only and are NOT a perceptual metric.")


def random_trunk(text: str | None = None) -> Notice:
    """The trunk is not the verified published one: random (default text) or another file."""
    return Notice(RANDOM_TRUNK, text or RANDOM_TRUNK_TEXT)


def of_code(notices: Any, code: str) -> list[Notice]:
    """The notices among ``notices`` with ``code`` (plain strings have none)."""
    return [n for n in notices if getattr(n, "code", None) == code]


def without(notices: Any, *codes: str) -> list[str]:
    """``notices`` less those with any of ``codes``."""
    return [n for n in notices if getattr(n, "code", None) not in codes]

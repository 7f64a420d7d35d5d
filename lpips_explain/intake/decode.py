"""Files, paths, bytes and file objects decoded with Pillow into CxHxW tensors in [0, 1].

Opening is guarded: the pixel cap is checked before any pixel is decoded, Pillow's
decompression-bomb guard and damaged or unknown data are refused with a message that says
which (the format named from the file's signature where Pillow cannot). A decoded image is
turned the way its EXIF orientation says, an animated one gives its first frame, and its
colour mode is converted by :mod:`~lpips_explain.intake.colour_modes`.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from typing import Any

import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from lpips_explain.errors import (
    CorruptImageError,
    EmptyInputError,
    ImageTooLargeError,
    InputError,
    NotAnImageError,
)
from lpips_explain.intake.colour_modes import pil_to_tensor
from lpips_explain.intake.pixels import MAX_PIXELS_ENV, check_cap

_SUPPORTED_FORMATS = "PNG, JPEG, WebP, GIF, BMP, TIFF"

Decoded = tuple[torch.Tensor, str, str | None, str]
"""(CxHxW tensor in [0, 1], mode label, file format or None, the source's label)."""


def decode_open_image(
    im: Image.Image,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str]:
    """Check, load, orient and convert an opened (possibly lazy) Pillow image."""
    size = (im.height, im.width)
    check_cap(size, cap)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            if n_frames > 1:
                im.seek(0)
            im.load()
            mode = im.mode
            # Without an orientation to apply, exif_transpose would return a full copy (48 MB
            # for a 16 MP RGB image) that is thrown away right after: skip it. (Never in
            # place: the image may be the caller's own PIL image.)
            needs = im.getexif().get(ExifTags.Base.Orientation, 1) not in (None, 1)
            oriented = ImageOps.exif_transpose(im) if needs else im
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_bomb_message(size, cap, exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise CorruptImageError(
            f"The {im.format or 'image'} file is truncated or damaged and could not be "
            f"decoded ({exc}). Re-export or re-download it."
        ) from None
    if n_frames > 1:
        notes.append(
            f"The {im.format or 'image'} is animated with {n_frames} frames; only the first "
            f"frame was used."
        )
    try:
        t = pil_to_tensor(oriented, value_range, background, notes)
    finally:
        if oriented is not im:
            oriented.close()
    return t, mode


def _bomb_message(size: tuple[int, int], cap: int, exc: Exception) -> str:
    """The refusal when Pillow's decompression-bomb guard stops an image."""
    limit = Image.MAX_IMAGE_PIXELS
    hard = f"{2 * limit:,}" if limit else "its limit"
    return (
        f"Pillow's decompression-bomb guard refused the image ({exc}). Our cap is {cap:,} "
        f"pixels (raise it with max_pixels= or the environment variable {MAX_PIXELS_ENV}), "
        f"but Pillow never opens more than {hard} pixels; use a smaller image."
    )


def open_and_decode(
    fp: Any,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str, str | None, tuple[int, int]]:
    """Open and decode a binary file object: (tensor, mode, format, (height, width))."""
    im = _open(fp, cap)
    with im:
        fmt = im.format
        if fmt == "PNG" and im.mode in ("RGB", "RGBA") and _png_bit_depth(fp) == 16:
            # Pillow has no 16-bit-per-channel colour mode: it hands us 8 bits per channel.
            notes.append("16-bit colour PNG: Pillow decodes it to 8 bits per channel, so the "
                         "lowest 8 bits of each value are dropped.")
        t, mode = decode_open_image(im, value_range, background, cap, notes)
    return t, mode, fmt, (int(t.shape[-2]), int(t.shape[-1]))


def _open(fp: Any, cap: int) -> Image.Image:
    """``Image.open`` (lazy: no pixels decoded yet) with bombs, damage and non-images refused."""
    try:
        with warnings.catch_warnings():
            # Our own cap is checked right after opening; Pillow's softer warning only adds
            # noise when a caller raised the cap above Pillow's default on purpose.
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and cap <= limit:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            else:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except Image.DecompressionBombWarning as exc:
        raise ImageTooLargeError(
            f"The image is larger than Pillow's decompression-bomb limit ({exc}) and over "
            f"the cap of {cap:,} pixels. Use a smaller image, or raise the cap with "
            f"max_pixels= or the environment variable {MAX_PIXELS_ENV}."
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_bomb_message((0, 0), cap, exc)) from None
    except UnidentifiedImageError:
        known = _sniff_format(fp)
        if known:
            raise CorruptImageError(
                f"The data starts like a {known} file but Pillow cannot read it: it is "
                f"truncated or damaged. Re-export or re-download it."
            ) from None
        raise NotAnImageError(
            f"The data is not an image Pillow can read; use a common format such as "
            f"{_SUPPORTED_FORMATS}."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        known = _sniff_format(fp) or "image"
        raise CorruptImageError(
            f"The {known} header is truncated or damaged and could not be read ({exc}). "
            f"Re-export or re-download it."
        ) from None
    return im


def _png_bit_depth(fp: Any) -> int | None:
    """The bit depth in a PNG's IHDR chunk (byte 24 of the file), or None if unreadable."""
    try:
        pos = fp.tell()
        fp.seek(0)
        head = fp.read(26)
        fp.seek(pos)
    except (OSError, ValueError, AttributeError):
        return None
    return head[24] if len(head) >= 26 and head[12:16] == b"IHDR" else None


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff_format(fp: Any) -> str | None:
    """Name the format whose signature the data starts with, if any (for better errors)."""
    try:
        fp.seek(0)
        head = fp.read(16)
    except (OSError, ValueError, AttributeError):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def _read_path(path: str | os.PathLike[str]) -> Any:
    """The path as a str, refused if it does not exist or is a folder."""
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not os.path.exists(p):
        raise InputError(f"The file {p!r} does not exist; check the path.")
    if os.path.isdir(p):
        raise InputError(f"{p!r} is a folder, not an image file.")
    return p


def _file_label(file_name: object) -> str:
    """A file object's name for messages and results: its base name, else ``<bytes>``."""
    if isinstance(file_name, (str, os.PathLike)):
        base = os.path.basename(os.fspath(file_name))
        if isinstance(base, str) and base:
            return base
    return "<bytes>"


def from_path(source: str | os.PathLike[str], value_range: str | None,
              background: tuple[int, int, int], cap: int, notes: list[str]) -> Decoded:
    """Decode the image file at a path (refused if missing, a folder or empty)."""
    p = _read_path(source)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise InputError(f"Cannot read the file {p!r}: {exc.strerror or exc}.") from None
    try:
        if os.fstat(fh.fileno()).st_size == 0:
            raise EmptyInputError(f"The file {p!r} is empty (0 bytes).")
        t, mode_label, fmt, _ = open_and_decode(fh, value_range, background, cap, notes)
    finally:
        fh.close()
    return t, mode_label, fmt, os.path.basename(p)


def from_file_object(source: Any, value_range: str | None, background: tuple[int, int, int],
                     cap: int, notes: list[str]) -> Decoded:
    """Decode the whole content of a binary file object (read into memory first)."""
    getvalue = getattr(source, "getvalue", None)
    data = getvalue() if callable(getvalue) else source.read()
    if isinstance(data, str):
        raise InputError("The file object is open in text mode; open it with 'rb'.")
    data = bytes(data or b"")
    label = _file_label(getattr(source, "name", None))
    if not data:
        shown = f"The file {label!r}" if label != "<bytes>" else "The file object"
        raise EmptyInputError(f"{shown} is empty (0 bytes); upload a real image file.")
    t, mode_label, fmt, _ = open_and_decode(io.BytesIO(data), value_range, background, cap, notes)
    return t, mode_label, fmt, label

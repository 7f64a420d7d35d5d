"""Pillow images of any mode converted to CxHxW float32 tensors in [0, 1].

8-bit modes are read as they are (transparency composited over the background); 16- and
32-bit greyscale are scaled in float, never reduced to 8 bits; float (mode F) greyscale is
read in its stated range; LAB goes through littleCMS and the other colour modes through
Pillow's plain conversion, each with a note.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lpips_explain.errors import InputError
from lpips_explain.intake.pixels import VALUE_RANGES, composite, normalise

_COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV")


def _bits_of_mode_i(im: Image.Image) -> int:
    """True bit depth of a 32-bit-integer ("I") Pillow image, from its file where known."""
    if im.format == "PNG":
        return 16  # PNG stores at most 16 bits per sample
    tags = getattr(im, "tag_v2", None)
    if tags is not None:
        bits = tags.get(258)
        if isinstance(bits, tuple):
            bits = bits[0] if bits else None
        if isinstance(bits, int) and 1 <= bits <= 32:
            return bits
    return 32


def pil_to_tensor(
    im: Image.Image,
    value_range: str | None,
    background: tuple[int, int, int],
    notes: list[str],
) -> torch.Tensor:
    """Convert a loaded Pillow image of any mode to 3xHxW float32 in [0, 1]."""
    mode = im.mode
    what = f"{mode} image"
    has_trns = "transparency" in im.info

    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (has_trns and mode in ("P", "L", "RGB", "1")):
        rgba = im.convert("RGBA") if mode != "RGBA" else im
        t = torch.from_numpy(np.asarray(rgba).copy()).permute(2, 0, 1)
        return composite(normalise(t, 0.0, 255.0, "[0,255]", what), background, notes, what)

    if mode in ("RGB", "L", "1", "P", "RGBX"):
        rgb = im if mode == "RGB" else im.convert("RGB")
        # Channels first while still uint8: the float copy is then contiguous already.
        t = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()
        return normalise(t, 0.0, 255.0, "[0,255]", what)

    if mode.startswith("I;16") or mode == "I":
        return _from_wide_grey(im, notes)
    if mode == "F":
        return _from_float_grey(im, value_range, notes)
    return _from_other_mode(im, notes)


def _from_wide_grey(im: Image.Image, notes: list[str]) -> torch.Tensor:
    """16- or 32-bit greyscale (modes I;16*, I), scaled to [0, 1] in float."""
    mode = im.mode
    arr = np.asarray(im)
    if mode == "I":
        bits = _bits_of_mode_i(im)
        arr = arr.astype(np.int64)
    else:
        bits = 16
        arr = arr.astype(np.int32)
    hi = float(2**bits - 1) if bits < 32 else float(2**31 - 1)
    t = normalise(torch.from_numpy(arr).unsqueeze(0), 0.0, hi, f"[0,{int(hi)}]",
                   f"{mode} image")
    notes.append(
        f"The image is {bits}-bit greyscale (mode {mode}): its values were scaled to "
        f"[0,1] in float (divided by {int(hi)}), not reduced to 8 bits, and the grey "
        f"channel was copied to R, G and B."
    )
    return t


def _from_float_grey(im: Image.Image, value_range: str | None,
                     notes: list[str]) -> torch.Tensor:
    """32-bit float greyscale (mode F), read in ``value_range`` ([0,1] by default)."""
    name = value_range or "[0,1]"
    lo, hi = VALUE_RANGES[name]
    t = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).unsqueeze(0)
    t = normalise(t, lo, hi, name, "float (mode F) image")
    if value_range is None:
        notes.append(
            "The image is 32-bit float greyscale (mode F): its values were read as range "
            "[0,1] (pass value_range= to state another) and copied to R, G and B."
        )
    return t


def _from_other_mode(im: Image.Image, notes: list[str]) -> torch.Tensor:
    """Any other mode (LAB, CMYK, YCbCr, HSV...) converted to 8-bit RGB, with a note."""
    mode = im.mode
    if mode == "LAB":
        rgb = _lab_to_rgb(im)
        notes.append("Colour was converted from CIE LAB to sRGB (D50 white point, littleCMS).")
    else:
        try:
            rgb = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise InputError(
                f"Images in Pillow mode {mode!r} are not supported ({exc}); save it as an "
                f"8-bit RGB or greyscale PNG and try again."
            ) from None
        if mode in _COLOUR_MODES:
            notes.append(
                f"Colour was converted from {mode} to RGB with Pillow's plain formula "
                f"(no colour management), so colours may shift."
            )
        else:
            notes.append(f"The image (Pillow mode {mode}) was converted to 8-bit RGB.")
    t = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)
    return normalise(t, 0.0, 255.0, "[0,255]", f"{mode} image")


def _lab_to_rgb(im: Image.Image) -> Image.Image:
    """A LAB image converted to sRGB with littleCMS."""
    try:
        from PIL import ImageCms
    except ImportError:  # pragma: no cover - Pillow built without littleCMS
        raise InputError(
            "Cannot convert a LAB image to RGB here; convert it to RGB first."
        ) from None
    try:
        transform = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        return ImageCms.applyTransform(im, transform)
    except (OSError, ImageCms.PyCMSError) as exc:  # pragma: no cover
        raise InputError(
            f"Cannot convert this LAB image to RGB ({exc}); convert it first."
        ) from None

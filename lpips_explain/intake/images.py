"""Decode files, bytes, PIL images, arrays and tensors into checked 1x3xHxW float tensors in [0, 1]."""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from lpips_explain import errors
from lpips_explain.errors import (
    CorruptImageError,
    EmptyInputError,
    ImageTooLargeError,
    InputError,
    NotAnImageError,
    ValueRangeError,
)
from lpips_explain.intake.tensors import format_size as _px
from lpips_explain.validation import integer

DEFAULT_MAX_PIXELS: int = 40_000_000
MAX_PIXELS_ENV: str = "LPIPS_EXPLAIN_MAX_PIXELS"
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "[0,1]": (0.0, 1.0),
    "[-1,1]": (-1.0, 1.0),
    "[0,255]": (0.0, 255.0),
}

# Float rounding noise tolerated at the edges of a stated range, in units of the range span.
_RANGE_TOL = 1e-6
_SUPPORTED_FORMATS = "PNG, JPEG, WebP, GIF, BMP, TIFF"
_COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV")
_RANGE_CHOICES = ", ".join(f'"{k}"' for k in VALUE_RANGES)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image as a float32 1x3xHxW tensor in [0, 1], with where it came from."""

    tensor: torch.Tensor
    name: str
    original_size: tuple[int, int]
    mode: str
    format: str | None
    warnings: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of :attr:`tensor`."""
        return (int(self.tensor.shape[-2]), int(self.tensor.shape[-1]))




def max_pixels_from_env() -> int:
    """The pixel cap: ``$LPIPS_EXPLAIN_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(
            f"{MAX_PIXELS_ENV}={raw!r} is not a positive whole number of pixels; "
            f"set it to e.g. {DEFAULT_MAX_PIXELS} or unset it."
        )
    return value


def _resolve_cap(max_pixels: int | None) -> int:
    if max_pixels is None:
        return max_pixels_from_env()
    return integer(max_pixels, "max_pixels", minimum=1)


def _check_cap(size: tuple[int, int], cap: int) -> None:
    pixels = size[0] * size[1]
    if pixels > cap:
        raise ImageTooLargeError(
            f"The image is {_px(size)} ({pixels:,} pixels), over the cap of {cap:,} pixels. "
            f"Use a smaller image, or raise the cap with max_pixels= or the environment "
            f"variable {MAX_PIXELS_ENV} if you have the memory for it."
        )


def _range_of(value_range: str | None) -> tuple[float, float] | None:
    if value_range is None:
        return None
    return errors.lookup("value range", value_range, VALUE_RANGES)  # type: ignore[return-value]


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        return
    n_nan = int(torch.isnan(t).sum())
    n_inf = int(torch.isinf(t).sum())
    if n_nan or n_inf:
        kinds = []
        if n_nan:
            kinds.append(f"{n_nan} NaN value{'s' if n_nan != 1 else ''}")
        if n_inf:
            kinds.append(f"{n_inf} Inf value{'s' if n_inf != 1 else ''}")
        raise ValueRangeError(
            f"The {what} holds {' and '.join(kinds)}; replace them with finite values "
            f"before loading (they are never clamped or dropped silently)."
        )


def _normalise(t: torch.Tensor, lo: float, hi: float, range_name: str, what: str) -> torch.Tensor:
    """Map values in [lo, hi] to [0, 1]; refuse anything outside, NaN or Inf."""
    if t.dtype == torch.uint8 and (lo, hi) == (0.0, 255.0):
        # Every uint8 value is in [0, 255] and t / 255 is already in [0, 1]: the scans and
        # the clamp below would change nothing (the same float32 values, 2-3x faster).
        return t.to(torch.float32).div_(255.0)
    _check_finite(t, what)
    work = torch.float64 if t.dtype in (torch.float64, torch.int32, torch.int64) else torch.float32
    if t.numel():
        vmin, vmax = float(t.min()), float(t.max())
        tol = _RANGE_TOL * (hi - lo) if t.is_floating_point() else 0.0
        if vmin < lo - tol or vmax > hi + tol:
            raise ValueRangeError(
                f"The {what} has values from {vmin:g} to {vmax:g}, outside its stated range "
                f"{range_name}. Pass the value_range that matches the data ({_RANGE_CHOICES}); "
                f"values are never clamped or rescaled silently."
            )
    # In place on one fresh copy: the same values as (t - lo) / (hi - lo), without two more
    # full-size temporaries (a 16 MP image is 192 MB in float32).
    out = t.to(work, copy=True).sub_(lo).div_(hi - lo)
    # Only float rounding noise (checked above) can fall outside [0, 1] here.
    return out.clamp_(0.0, 1.0).to(torch.float32)


def _composite(
    chw: torch.Tensor, background: tuple[int, int, int], notes: list[str], what: str
) -> torch.Tensor:
    """Flatten a 4xHxW (RGBA in [0, 1]) tensor onto ``background``; note it if alpha mattered."""
    rgb, alpha = chw[:3], chw[3:4]
    if float(alpha.min()) < 1.0 - _RANGE_TOL:
        bg = torch.tensor([c / 255.0 for c in background], dtype=torch.float32).view(3, 1, 1)
        rgb = rgb * alpha + bg * (1.0 - alpha)
        notes.append(
            f"The {what} has transparency: its alpha channel was dropped by compositing "
            f"over the background RGB{tuple(background)}."
        )
    return rgb.clamp(0.0, 1.0)


def _finish(chw: torch.Tensor) -> torch.Tensor:
    """CxHxW in [0, 1] with C in (1, 3) -> contiguous float32 1x3xHxW."""
    if chw.shape[0] == 1:
        chw = chw.expand(3, -1, -1)
    return chw.unsqueeze(0).to(torch.float32).contiguous().detach()


def _check_background(background: tuple[int, int, int]) -> None:
    ok = (
        isinstance(background, (tuple, list))
        and len(background) == 3
        and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in background
        )
    )
    if not ok:
        raise InputError(
            f"background must be three integers in 0..255 (an RGB colour), got {background!r}."
        )


# ----------------------------------------------------------------------------- arrays


def _from_channels(
    t: torch.Tensor,
    channels_last: bool,
    value_range: str | None,
    background: tuple[int, int, int],
    what: str,
    notes: list[str],
) -> torch.Tensor:
    """Shared path of arrays and tensors: t is 2-D or 3-D with channels first/last."""
    if t.dtype == torch.bool:
        raise InputError(
            f"The {what} is boolean; convert it to numbers (e.g. uint8 0/255 or float 0/1) "
            f"and state its value_range."
        )
    if t.dtype.is_complex:
        raise InputError(f"The {what} is complex-valued; pass real numbers.")
    if t.numel() == 0:
        raise EmptyInputError(f"The {what} is empty (shape {tuple(t.shape)}).")
    if t.ndim == 2:
        t = t.unsqueeze(0)
    elif channels_last:
        t = t.permute(2, 0, 1)
    if t.shape[0] not in (1, 3, 4):
        raise InputError(f"The {what} has {t.shape[0]} channels; expected 1, 3 or 4.")

    if value_range is not None:
        lo, hi = VALUE_RANGES[value_range]
        range_name = value_range
    elif t.dtype == torch.uint8:
        lo, hi, range_name = 0.0, 255.0, "[0,255] (implied by uint8)"
    elif t.dtype == torch.uint16:
        lo, hi, range_name = 0.0, 65535.0, "[0,65535] (implied by uint16)"
    else:
        _check_finite(t, what)
        span = f"{float(t.min()):g} to {float(t.max()):g}"
        raise InputError(
            f"The {what} has dtype {str(t.dtype).removeprefix('torch.')} (values {span}), "
            f'which does not say its value range. Pass value_range="[0,1]", "[-1,1]" or '
            f'"[0,255]" to state it.'
        )
    if t.dtype == torch.uint16:
        t = t.to(torch.int32)  # uint16 has few torch kernels; int32 holds it exactly
    t = _normalise(t, lo, hi, range_name, what)
    if t.shape[0] == 4:
        t = _composite(t, background, notes, what)
    return t


def _from_numpy(
    arr: np.ndarray,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str]:
    what = "array"
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise InputError(
                f"The array has shape {arr.shape}: a batch of {arr.shape[0]} images. "
                f"Pass one image per call."
            )
        arr = arr[0]
    if arr.ndim == 2:
        channels_last = False
    elif arr.ndim == 3:
        if arr.shape[0] in (1, 3) and arr.shape[-1] not in (3, 4):
            channels_last = False
        elif arr.shape[-1] in (1, 3, 4):
            channels_last = True
        else:
            raise InputError(
                f"Cannot tell the channels of an array of shape {arr.shape}; pass HxW, "
                f"HxWx1, HxWx3, HxWx4 (channels last) or 1xHxW, 3xHxW (channels first)."
            )
    else:
        raise InputError(
            f"The array has {arr.ndim} dimensions (shape {arr.shape}); pass HxW, HxWxC or CxHxW."
        )
    if arr.dtype.kind not in "biuf":
        raise InputError(f"The array has dtype {arr.dtype}; pass numbers (uint8, uint16 or float).")
    h, w = (arr.shape[:2] if channels_last else arr.shape[-2:]) if arr.ndim == 3 else arr.shape
    _check_cap((int(h), int(w)), cap)
    if arr.dtype.kind == "u" and arr.dtype.itemsize > 2:
        arr = arr.astype(np.int64)
    elif arr.dtype.byteorder not in ("=", "|") or arr.dtype == np.float16:
        arr = arr.astype(arr.dtype.newbyteorder("=") if arr.dtype != np.float16 else np.float32)
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()  # torch.from_numpy warns on read-only memory
    t = torch.from_numpy(arr)
    return _from_channels(t, channels_last, value_range, background, what, notes), "array"


def _from_tensor(
    t: torch.Tensor,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str]:
    what = "tensor"
    t = t.detach()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise InputError(
                f"The tensor has shape {tuple(t.shape)}: a batch of {t.shape[0]} images. "
                f"Pass one image per call."
            )
        t = t[0]
    if t.ndim == 3 and t.shape[0] not in (1, 3, 4):
        raise InputError(
            f"The tensor has shape {tuple(t.shape)}; tensors are channels first: pass HxW, "
            f"1xHxW, 3xHxW, 4xHxW or 1xCxHxW (use .permute(2, 0, 1) on an HxWxC tensor)."
        )
    if t.ndim not in (2, 3):
        raise InputError(
            f"The tensor has {t.ndim} dimensions (shape {tuple(t.shape)}); pass HxW, CxHxW or 1xCxHxW."
        )
    _check_cap((int(t.shape[-2]), int(t.shape[-1])), cap)
    t = t.to("cpu")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    return _from_channels(t, False, value_range, background, what, notes), "tensor"


# ----------------------------------------------------------------------------- Pillow


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


def _pil_to_tensor(
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
        return _composite(_normalise(t, 0.0, 255.0, "[0,255]", what), background, notes, what)

    if mode in ("RGB", "L", "1", "P", "RGBX"):
        rgb = im if mode == "RGB" else im.convert("RGB")
        # Channels first while still uint8: the float copy is then contiguous already.
        t = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()
        return _normalise(t, 0.0, 255.0, "[0,255]", what)

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
    t = _normalise(torch.from_numpy(arr).unsqueeze(0), 0.0, hi, f"[0,{int(hi)}]",
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
    t = _normalise(t, lo, hi, name, "float (mode F) image")
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
    return _normalise(t, 0.0, 255.0, "[0,255]", f"{mode} image")


def _lab_to_rgb(im: Image.Image) -> Image.Image:
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


def _decode_open_image(
    im: Image.Image,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str]:
    """Check, load, orient and convert an opened (possibly lazy) Pillow image."""
    size = (im.height, im.width)
    _check_cap(size, cap)
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
        t = _pil_to_tensor(oriented, value_range, background, notes)
    finally:
        if oriented is not im:
            oriented.close()
    return t, mode


def _bomb_message(size: tuple[int, int], cap: int, exc: Exception) -> str:
    limit = Image.MAX_IMAGE_PIXELS
    hard = f"{2 * limit:,}" if limit else "its limit"
    return (
        f"Pillow's decompression-bomb guard refused the image ({exc}). Our cap is {cap:,} "
        f"pixels (raise it with max_pixels= or the environment variable {MAX_PIXELS_ENV}), "
        f"but Pillow never opens more than {hard} pixels; use a smaller image."
    )


def _open_and_decode(
    fp: Any,
    value_range: str | None,
    background: tuple[int, int, int],
    cap: int,
    notes: list[str],
) -> tuple[torch.Tensor, str, str | None, tuple[int, int]]:
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
    with im:
        fmt = im.format
        if fmt == "PNG" and im.mode in ("RGB", "RGBA") and _png_bit_depth(fp) == 16:
            # Pillow has no 16-bit-per-channel colour mode: it hands us 8 bits per channel.
            notes.append("16-bit colour PNG: Pillow decodes it to 8 bits per channel, so the "
                         "lowest 8 bits of each value are dropped.")
        t, mode = _decode_open_image(im, value_range, background, cap, notes)
    return t, mode, fmt, (int(t.shape[-2]), int(t.shape[-1]))


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
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not os.path.exists(p):
        raise InputError(f"The file {p!r} does not exist; check the path.")
    if os.path.isdir(p):
        raise InputError(f"{p!r} is a folder, not an image file.")
    return p


def _file_label(file_name: object) -> str:
    if isinstance(file_name, (str, os.PathLike)):
        base = os.path.basename(os.fspath(file_name))
        if isinstance(base, str) and base:
            return base
    return "<bytes>"


# ----------------------------------------------------------------------------- public


def load_image(
    source: Any,
    *,
    value_range: str | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> LoadedImage:
    """Load one image from a path, bytes, file object, PIL image, array or tensor.

    Returns a :class:`LoadedImage` whose tensor is float32 1x3xHxW in [0, 1]. Arrays and
    tensors of float type need ``value_range``; uint8 implies [0,255] and uint16 [0,65535].
    ``value_range`` is ignored for integer image files (their range is known) and states the
    range of float (mode F) images, [0,1] by default. Every refusal is an
    :class:`~lpips_explain.errors.InputError`.
    """
    if isinstance(source, LoadedImage):
        return source
    _range_of(value_range)
    _check_background(background)
    cap = _resolve_cap(max_pixels)
    notes: list[str] = []

    t, mode_label, fmt, label = _decode_source(source, value_range, background, cap, notes)
    tensor = _finish(t)
    return LoadedImage(
        tensor=tensor,
        name=name if name is not None else label,
        original_size=(int(tensor.shape[-2]), int(tensor.shape[-1])),
        mode=mode_label,
        format=fmt,
        warnings=tuple(notes),
    )



Decoded = tuple[torch.Tensor, str, str | None, str]
"""(CxHxW tensor in [0, 1], mode label, file format or None, the source's label)."""


def _decode_source(source: Any, value_range: str | None, background: tuple[int, int, int],
                   cap: int, notes: list[str]) -> Decoded:
    """Decode any supported source; one branch per kind of source."""
    if isinstance(source, Image.Image):
        t, mode_label = _decode_open_image(source, value_range, background, cap, notes)
        return t, mode_label, source.format, "<PIL image>"
    if isinstance(source, torch.Tensor):
        t, mode_label = _from_tensor(source, value_range, background, cap, notes)
        return t, mode_label, None, "<tensor>"
    if isinstance(source, np.ndarray):
        t, mode_label = _from_numpy(source, value_range, background, cap, notes)
        return t, mode_label, None, "<array>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise EmptyInputError("The image data is empty (0 bytes); upload or pass a real file.")
        t, mode_label, fmt, _ = _open_and_decode(
            io.BytesIO(data), value_range, background, cap, notes
        )
        return t, mode_label, fmt, "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        return _from_path(source, value_range, background, cap, notes)
    if hasattr(source, "read"):
        return _from_file_object(source, value_range, background, cap, notes)
    raise InputError(
        f"Cannot load an image from a {type(source).__name__}; pass a file path, bytes, "
        f"a binary file object, a PIL image, a numpy array or a torch tensor."
    )


def _from_path(source: str | os.PathLike[str], value_range: str | None,
               background: tuple[int, int, int], cap: int, notes: list[str]) -> Decoded:
    p = _read_path(source)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise InputError(f"Cannot read the file {p!r}: {exc.strerror or exc}.") from None
    try:
        if os.fstat(fh.fileno()).st_size == 0:
            raise EmptyInputError(f"The file {p!r} is empty (0 bytes).")
        t, mode_label, fmt, _ = _open_and_decode(fh, value_range, background, cap, notes)
    finally:
        fh.close()
    return t, mode_label, fmt, os.path.basename(p)


def _from_file_object(source: Any, value_range: str | None, background: tuple[int, int, int],
                      cap: int, notes: list[str]) -> Decoded:
    getvalue = getattr(source, "getvalue", None)
    data = getvalue() if callable(getvalue) else source.read()
    if isinstance(data, str):
        raise InputError("The file object is open in text mode; open it with 'rb'.")
    data = bytes(data or b"")
    label = _file_label(getattr(source, "name", None))
    if not data:
        shown = f"The file {label!r}" if label != "<bytes>" else "The file object"
        raise EmptyInputError(f"{shown} is empty (0 bytes); upload a real image file.")
    t, mode_label, fmt, _ = _open_and_decode(io.BytesIO(data), value_range, background, cap, notes)
    return t, mode_label, fmt, label

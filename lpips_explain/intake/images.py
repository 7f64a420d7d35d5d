"""Decode files, bytes, PIL images, arrays and tensors into checked 1x3xHxW float tensors in [0, 1].

:func:`load_image` is the one entry point and :class:`LoadedImage` what it returns; the
parts live beside this module: ``pixels`` (value ranges, the pixel cap, compositing over the
background: the checks both paths share), ``arrays`` (numpy arrays and torch tensors),
``decode`` (paths, bytes and file objects opened with Pillow: formats, damaged data,
decompression-bomb refusals, EXIF orientation) and ``colour_modes`` (Pillow images of any
colour mode or bit depth to tensors).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from lpips_explain.errors import EmptyInputError, InputError
from lpips_explain.intake.arrays import from_numpy, from_tensor
from lpips_explain.intake.decode import (
    Decoded,
    decode_open_image,
    from_file_object,
    from_path,
    open_and_decode,
)
from lpips_explain.intake.pixels import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    VALUE_RANGES,
    check_background,
    finish,
    max_pixels_from_env,
    range_of,
    resolve_cap,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "VALUE_RANGES",
    "Decoded",
    "LoadedImage",
    "load_image",
    "max_pixels_from_env",
]


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
    range_of(value_range)
    check_background(background)
    cap = resolve_cap(max_pixels)
    notes: list[str] = []

    t, mode_label, fmt, label = _decode_source(source, value_range, background, cap, notes)
    tensor = finish(t)
    return LoadedImage(
        tensor=tensor,
        name=name if name is not None else label,
        original_size=(int(tensor.shape[-2]), int(tensor.shape[-1])),
        mode=mode_label,
        format=fmt,
        warnings=tuple(notes),
    )


def _decode_source(source: Any, value_range: str | None, background: tuple[int, int, int],
                   cap: int, notes: list[str]) -> Decoded:
    """Decode any supported source; one branch per kind of source."""
    if isinstance(source, Image.Image):
        t, mode_label = decode_open_image(source, value_range, background, cap, notes)
        return t, mode_label, source.format, "<PIL image>"
    if isinstance(source, torch.Tensor):
        t, mode_label = from_tensor(source, value_range, background, cap, notes)
        return t, mode_label, None, "<tensor>"
    if isinstance(source, np.ndarray):
        t, mode_label = from_numpy(source, value_range, background, cap, notes)
        return t, mode_label, None, "<array>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise EmptyInputError("The image data is empty (0 bytes); upload or pass a real file.")
        t, mode_label, fmt, _ = open_and_decode(
            io.BytesIO(data), value_range, background, cap, notes
        )
        return t, mode_label, fmt, "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        return from_path(source, value_range, background, cap, notes)
    if hasattr(source, "read"):
        return from_file_object(source, value_range, background, cap, notes)
    raise InputError(
        f"Cannot load an image from a {type(source).__name__}; pass a file path, bytes, "
        f"a binary file object, a PIL image, a numpy array or a torch tensor."
    )

"""Bring several decoded images to one size following an explicit policy, and say what was done."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lpips_explain.errors import InputError, SizeMismatchError, UnknownOptionError
from lpips_explain.intake.images import LoadedImage
from lpips_explain.intake.tensors import format_size as _px

SIZE_POLICIES: tuple[str, ...] = ("resize", "crop", "error")
# Relative aspect-ratio change above which a resize is reported as a distortion.
_ASPECT_TOL = 0.01

@dataclass(frozen=True)
class AlignInfo:
    """What :func:`align_images` did to bring its inputs to one size."""

    policy: str
    size: tuple[int, int]
    original_sizes: tuple[tuple[int, int], ...]
    changed: tuple[bool, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists, not tuples)."""
        return {
            "policy": self.policy,
            "size": list(self.size),
            "original_sizes": [list(s) for s in self.original_sizes],
            "changed": list(self.changed),
            "notes": list(self.notes),
        }




def _labels(images: Sequence[LoadedImage | torch.Tensor],
            names: Sequence[str] | None = None) -> list[str]:
    letters = list(names) if names is not None else list(string.ascii_uppercase)
    out = []
    for i, im in enumerate(images):
        letter = letters[i] if i < len(letters) else f"#{i + 1}"
        nm = getattr(im, "name", "")
        out.append(f"{letter} ({nm})" if nm and not nm.startswith("<") else letter)
    return out


def _tensor_of(im: LoadedImage | torch.Tensor, i: int) -> torch.Tensor:
    t = im.tensor if isinstance(im, LoadedImage) else im
    if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[:2] != (1, 3):
        raise InputError(
            f"align_images takes LoadedImage objects (or 1x3xHxW tensors); item {i} is "
            f"{type(im).__name__}. Load it with load_image first."
        )
    return t


def align_images(
    images: Sequence[LoadedImage], policy: str = "resize", labels: Sequence[str] | None = None
) -> tuple[list[torch.Tensor], AlignInfo]:
    """Bring images to one (height, width) following ``policy`` and say what was done."""
    if policy not in SIZE_POLICIES:
        raise UnknownOptionError("size policy", policy, SIZE_POLICIES)
    items = list(images)
    if not items:
        raise InputError("align_images needs at least one image.")
    tensors = [_tensor_of(im, i) for i, im in enumerate(items)]
    sizes = tuple((int(t.shape[-2]), int(t.shape[-1])) for t in tensors)
    if len(set(sizes)) == 1:
        return tensors, AlignInfo(policy, sizes[0], sizes, (False,) * len(sizes), ())

    if labels is not None and len(labels) != len(items):
        raise InputError(f"{len(items)} images but {len(labels)} labels.")
    labels = _labels(items, labels)
    if policy == "error":
        listed = ", ".join(f"{lab} is {_px(s)}" for lab, s in zip(labels, sizes, strict=True))
        raise SizeMismatchError(
            f"The images differ in size ({listed}) and the size policy is 'error'. "
            f"Use size policy 'resize' (antialiased resize to the smallest) or 'crop' "
            f"(centre crop to the common area) to compare them, or resize them yourself."
        )

    # torchvision only when sizes differ: importing it costs about 2 s and 170 MB of
    # resident memory, which a same-size `distance` never needs.
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    notes: list[str] = []
    out: list[torch.Tensor] = []
    if policy == "resize":
        target = min(sizes, key=lambda s: s[0] * s[1])  # min() keeps the first of ties
        for lab, t, s in zip(labels, tensors, sizes, strict=True):
            if s == target:
                out.append(t)
                continue
            r = TF.resize(
                t, list(target), interpolation=v2.InterpolationMode.BILINEAR, antialias=True
            ).clamp_(0.0, 1.0)
            out.append(r.contiguous())
            note = f"{lab} resized from {_px(s)} to {_px(target)} (antialiased)"
            src_ratio = s[1] / s[0]
            dst_ratio = target[1] / target[0]
            change = dst_ratio / src_ratio - 1.0
            if abs(change) > _ASPECT_TOL:
                how = "wider" if change > 0 else "narrower"
                note += f"; aspect ratio distorted by {abs(change) * 100:.1f}% ({how})"
            notes.append(note)
    else:  # crop
        target = (min(s[0] for s in sizes), min(s[1] for s in sizes))
        for lab, t, s in zip(labels, tensors, sizes, strict=True):
            if s == target:
                out.append(t)
                continue
            out.append(TF.center_crop(t, list(target)).contiguous())
            notes.append(f"{lab} centre-cropped from {_px(s)} to {_px(target)}")
    changed = tuple(s != target for s in sizes)
    return out, AlignInfo(policy, target, sizes, changed, tuple(notes))


def align_pair(
    a: LoadedImage, b: LoadedImage, policy: str = "resize"
) -> tuple[torch.Tensor, torch.Tensor, AlignInfo]:
    """:func:`align_images` for exactly two images (labelled A and B in notes)."""
    (ta, tb), info = align_images([a, b], policy)
    return ta, tb, info


"""Images loaded, checked and brought to one size once: what every analysis of them starts from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lpips_explain.intake.align import AlignInfo
from lpips_explain.intake.images import LoadedImage
from lpips_explain.notices import CONSTANT_IMAGE, IDENTICAL_IMAGES, Notice


@dataclass(frozen=True)
class PreparedInputs:
    """Loaded, checked and size-aligned images, with what was done to them."""

    loaded: tuple[LoadedImage, ...]
    tensors: tuple[torch.Tensor, ...]  # 1x3xHxW in [0, 1], common size
    align: AlignInfo
    warnings: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        return self.align.size

    def describe(self, i: int) -> dict:
        im = self.loaded[i]
        return {"name": im.name, "original_size": list(im.original_size), "mode": im.mode,
                "format": im.format}


def anomalies(tensors: Sequence[torch.Tensor], labels: Sequence[str]) -> list[str]:
    notes = []
    for t, label in zip(tensors, labels, strict=True):
        if bool((t == t[..., :1, :1]).all()):  # exact: a float std of a flat image is not 0
            notes.append(Notice(CONSTANT_IMAGE, f"Image {label} is constant (one flat colour): there is no structure "
                         f"for the network to compare, so the distance reflects colour only."))
    for i in range(len(tensors)):
        for j in range(i + 1, len(tensors)):
            if torch.equal(tensors[i], tensors[j]):
                notes.append(Notice(IDENTICAL_IMAGES, f"Images {labels[i]} and {labels[j]} are pixel-identical (after "
                             f"alignment): their distance is 0 and every gradient between them "
                             f"vanishes."))
    return notes



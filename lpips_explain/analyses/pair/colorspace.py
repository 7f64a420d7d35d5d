"""Show that LPIPS assumes sRGB input: feed it the same pair rendered in other colour spaces."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from skimage import color
from torch import Tensor

from lpips_explain.core.model import LpipsNet
from lpips_explain.errors import InputError, SizeMismatchError, lookup
from lpips_explain.intake.tensors import check_tensor, to_uint8

__all__ = ["SPACES", "ColorspaceRow", "colorspace_dependence", "render_as_rgb"]

SPACES: dict[str, str] = {
    "rgb": "The image as it is: sRGB, the input LPIPS was trained on.",
    "lab": "CIE L*a*b* (lightness, green-red, blue-yellow) written into the R, G and B "
           "channels, as if a Lab array had been passed to LPIPS.",
    "hsv": "Hue, saturation and value written into the R, G and B channels, as if an HSV "
           "array had been passed to LPIPS.",
    "yuv": "Luma Y and the chroma differences U and V written into the R, G and B channels, "
           "as if a YUV array had been passed to LPIPS.",
}

# Each space's fixed nominal channel ranges (lo, hi): values are mapped to [0, 1] with
# these, never with the image's own min and max, so every image is rendered the same way.
_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "lab": ((0.0, 100.0), (-128.0, 127.0), (-128.0, 127.0)),
    "hsv": ((0.0, 1.0), (0.0, 1.0), (0.0, 1.0)),
    "yuv": ((0.0, 1.0), (-0.436, 0.436), (-0.615, 0.615)),
}
_CONVERT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "lab": color.rgb2lab,
    "hsv": color.rgb2hsv,
    "yuv": color.rgb2yuv,
}


def _check_image(x: object, what: str) -> Tensor:
    return check_tensor(x, what)

def render_as_rgb(x: Tensor, space: str) -> Tensor:
    """``x`` (1 x 3 x H x W RGB in [0, 1]) converted to ``space`` and read back as if it were RGB.

    Each channel of the converted image is mapped into [0, 1] by that space's fixed nominal
    range and clamped: this is what LPIPS sees when someone feeds it non-RGB arrays. ``"rgb"``
    returns ``x`` unchanged.
    """
    lookup("colour space", space, SPACES)
    x = _check_image(x, "the image")
    if space == "rgb":
        return x
    hwc = x[0].detach().to("cpu", torch.float64).permute(1, 2, 0).numpy()
    converted = _CONVERT[space](hwc)
    lo = np.array([r[0] for r in _RANGES[space]])
    hi = np.array([r[1] for r in _RANGES[space]])
    scaled = np.clip((converted - lo) / (hi - lo), 0.0, 1.0)
    out = torch.from_numpy(np.ascontiguousarray(scaled)).permute(2, 0, 1).unsqueeze(0)
    return out.to(device=x.device, dtype=x.dtype).contiguous()


@dataclass(frozen=True)
class ColorspaceRow:
    """LPIPS of the pair rendered in one colour space, beside the plain RGB distance."""

    space: str
    description: str
    distance: float
    change: float  # distance - the RGB distance
    image_a: np.ndarray  # H x W x 3 uint8 rendering, for display
    image_b: np.ndarray

    def to_dict(self) -> dict:
        return {"space": self.space, "description": self.description,
                "distance": self.distance, "change": self.change}


def colorspace_dependence(model: LpipsNet, a: Tensor, b: Tensor,
                          spaces: Sequence[str] | None = None) -> list[ColorspaceRow]:
    """d(render(a), render(b)) for each colour space, all scored in one batch.

    ``a`` and ``b`` are 1 x 3 x H x W RGB tensors in [0, 1] of the same size. Each row's
    ``change`` is its distance minus the distance of the plain RGB pair.
    """
    spaces = list(spaces) if spaces is not None else ["rgb", "lab", "hsv", "yuv"]
    for s in spaces:
        lookup("colour space", s, SPACES)
    if not spaces:
        raise InputError("Name at least one colour space; choose from: " + ", ".join(SPACES) + ".")
    a = _check_image(a, "image A")
    b = _check_image(b, "image B")
    if a.shape != b.shape:
        raise SizeMismatchError(f"Images A and B differ in size ({tuple(a.shape[-2:])} and "
                                f"{tuple(b.shape[-2:])}, HxW); align them first (Explainer.prepare).")
    # Every space has its own pair, so the whole table is one batch of pairs; RGB is always
    # scored so that each row's change is measured against it.
    scored = ["rgb"] + [s for s in spaces if s != "rgb"]
    ra = {s: render_as_rgb(a, s) for s in scored}
    rb = {s: render_as_rgb(b, s) for s in scored}
    device = model.head0.device
    with torch.no_grad():
        d = model(torch.cat([ra[s] for s in scored]).to(device),
                            torch.cat([rb[s] for s in scored]).to(device))
    dist = {s: float(v) for s, v in zip(scored, d.tolist(), strict=True)}
    return [ColorspaceRow(space=s, description=SPACES[s], distance=dist[s],
                          change=dist[s] - dist["rgb"], image_a=to_uint8(ra[s]),
                          image_b=to_uint8(rb[s]))
            for s in spaces]

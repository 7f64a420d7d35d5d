"""A registry of counterfactual image perturbations, each a pure function of (image, strength, generator)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor

from lpips_explain import errors, validation
from lpips_explain.intake.tensors import check_tensor

__all__ = [
    "GEOMETRIC_TABLE",
    "PERTURBATIONS",
    "Perturbation",
    "apply",
    "get_perturbation",
    "perturb_batch",
]

PerturbFn = Callable[[Tensor, float, "torch.Generator | None"], Tensor]


def _tvf() -> Any:
    """torchvision's v2 functional transforms, imported when a perturbation is first made
    (importing torchvision costs about 2 s and 170 MB resident: `distance` never needs it)."""
    from torchvision.transforms.v2 import functional

    return functional


def _check_image(x: object) -> Tensor:
    """Refuse anything that is not a floating N x 3 x H x W tensor in [0, 1]."""
    check_tensor(x, "the image tensor", batch=True)
    return x  # type: ignore[return-value]  (unchanged: callers keep dtype)

def _require(ok: bool, message: str) -> None:
    if not ok:
        raise errors.InputError(message)


# --- photometric ---------------------------------------------------------------------------


def _brightness(x: Tensor, factor: float, _g: torch.Generator | None) -> Tensor:
    _require(factor >= 0, f"Brightness factor must be >= 0, got {factor}.")
    return _tvf().adjust_brightness(x, factor)


def _contrast(x: Tensor, factor: float, _g: torch.Generator | None) -> Tensor:
    _require(factor >= 0, f"Contrast factor must be >= 0, got {factor}.")
    return _tvf().adjust_contrast(x, factor)


def _gamma(x: Tensor, gamma: float, _g: torch.Generator | None) -> Tensor:
    _require(gamma > 0, f"Gamma must be > 0, got {gamma}.")
    return _tvf().adjust_gamma(x, gamma)


def _saturation(x: Tensor, factor: float, _g: torch.Generator | None) -> Tensor:
    _require(factor >= 0, f"Saturation factor must be >= 0, got {factor}.")
    return _tvf().adjust_saturation(x, factor)


def _hue(x: Tensor, shift: float, _g: torch.Generator | None) -> Tensor:
    _require(-0.5 <= shift <= 0.5, f"Hue shift must be in [-0.5, 0.5], got {shift}.")
    return _tvf().adjust_hue(x, shift)


def _gaussian_blur(x: Tensor, sigma: float, _g: torch.Generator | None) -> Tensor:
    _require(sigma >= 0, f"Blur sigma must be >= 0, got {sigma}.")
    if sigma == 0:
        return x.clone()
    size = 2 * math.ceil(3 * sigma) + 1
    # torchvision pads by reflection, which needs the half-kernel to be smaller than the image.
    size = min(size, 2 * min(x.shape[-2], x.shape[-1]) - 1)
    if size < 3:
        return x.clone()
    return _tvf().gaussian_blur(x, [size, size], [sigma, sigma])


def _gaussian_noise(x: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    _require(std >= 0, f"Noise std must be >= 0, got {std}.")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    # One draw per image, in batch order, so image i of a batch sees the generator state left
    # by images 0..i-1; drawing on the generator's device keeps results device-independent.
    noise = torch.stack(
        [
            torch.randn(
                tuple(x.shape[1:]), generator=generator, device=generator.device, dtype=x.dtype
            )
            for _ in range(x.shape[0])
        ]
    ).to(x.device)
    return x + std * noise


def _jpeg(x: Tensor, quality: float, _g: torch.Generator | None) -> Tensor:
    q = math.floor(quality + 0.5)
    _require(1 <= q <= 100, f"JPEG quality must be in [1, 100], got {quality}.")
    if q == 100:
        # Quality 100 is still lossy (and uint8 quantisation is too), so it is defined as no change.
        return x.clone()
    as_bytes = (x.detach().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8)
    decoded = _tvf().jpeg(as_bytes, q)
    return decoded.to(device=x.device, dtype=x.dtype) / 255.0


# --- geometric -----------------------------------------------------------------------------


def _warp(x: Tensor, angle: float = 0.0, shift: float = 0.0, scale: float = 1.0) -> Tensor:
    """Rotate, shift and zoom about the image centre with bilinear sampling and mirrored borders.

    Conventions follow torchvision's ``affine``: ``angle`` in degrees, counter-clockwise as
    displayed; ``shift`` in pixels, content moves right and down; ``scale`` > 1 zooms in. Pixels
    that come from outside the image are filled by reflection about the image edge, because a
    constant fill (all torchvision offers) would put hard black wedges in the picture that a
    perceptual metric reacts to more strongly than to the geometry itself.
    """
    n, _, h, w = x.shape
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    # Inverse map, output -> input, in normalised coordinates (align_corners=False); the H/W
    # factors keep the rotation rigid on non-square images.
    theta = torch.tensor(
        [
            [c / scale, -s / scale * h / w, (-c * shift + s * shift) * 2 / (scale * w)],
            [s / scale * w / h, c / scale, (-s * shift - c * shift) * 2 / (scale * h)],
        ],
        dtype=torch.float64,
    )
    theta = theta.to(device=x.device, dtype=x.dtype).unsqueeze(0).expand(n, 2, 3)
    grid = nnf.affine_grid(theta, [n, 3, h, w], align_corners=False)
    return nnf.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _rotation(x: Tensor, degrees: float, _g: torch.Generator | None) -> Tensor:
    return _warp(x, angle=degrees)


def _translation(x: Tensor, pixels: float, _g: torch.Generator | None) -> Tensor:
    return _warp(x, shift=pixels)


def _scale(x: Tensor, factor: float, _g: torch.Generator | None) -> Tensor:
    _require(factor > 0, f"Scale factor must be > 0, got {factor}.")
    return _warp(x, scale=factor)


# --- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Perturbation:
    """One registered perturbation: metadata for the UI plus the function that applies it."""

    name: str
    label: str
    unit: str
    identity: float
    default: float
    range: tuple[float, float]
    geometric: bool
    description: str
    fn: PerturbFn
    integer: bool = False

    def apply(self, x: Tensor, strength: float, generator: torch.Generator | None = None) -> Tensor:
        """Return a perturbed copy of ``x`` (N x 3 x H x W in [0, 1]); ``x`` is never mutated.

        At ``identity`` the result equals the input exactly. Outputs are clamped to [0, 1] and
        keep the input's shape, dtype and device. Applying to a batch equals applying to each
        image alone, except for noise, where the images draw from ``generator`` one after another
        (``generator=None`` means a fresh generator seeded with 0).
        """
        return self._apply(_check_image(x), strength, generator)

    def _apply(self, x: Tensor, strength: float, generator: torch.Generator | None) -> Tensor:
        """:meth:`apply` on an image already checked (perturb_batch checks it once)."""
        try:
            strength = float(strength)
        except (TypeError, ValueError):
            raise errors.InputError(
                f"Strength for {self.name!r} must be a number, got {strength!r}."
            ) from None
        if not math.isfinite(strength):
            raise errors.InputError(f"Strength for {self.name!r} must be finite, got {strength}.")
        if strength == self.identity:
            return x.clone()
        out = self.fn(x, strength, generator)
        return out.clamp(0.0, 1.0).to(dtype=x.dtype)

    def far_end(self) -> float:
        """The end of ``range`` farther from ``identity``; on a tie, the one on ``default``'s side."""
        lo, hi = self.range
        d_lo, d_hi = abs(self.identity - lo), abs(hi - self.identity)
        if d_lo != d_hi:
            return lo if d_lo > d_hi else hi
        return lo if self.default < self.identity else hi

    def sweep_values(self, n: int = 7) -> list[float]:
        """``n`` evenly spaced strengths from ``identity`` (first) to the far end of ``range``.

        Integer-valued perturbations (JPEG quality) are rounded to whole numbers.
        """
        n = validation.integer(n, "A sweep's number of values n", minimum=1)
        if n == 1:
            return [float(self.identity)]
        return self.values_between(self.identity, self.far_end(), n)

    def values_between(self, low: float, high: float, n: int = 7) -> list[float]:
        """``n`` evenly spaced strengths from ``low`` to ``high`` (a user-chosen sweep range).

        Integer-valued perturbations are rounded to whole numbers and repeats dropped.
        """
        n = validation.integer(n, "A sweep's number of values n", minimum=1)
        for v in (low, high):
            if not math.isfinite(v):
                raise errors.InputError(f"A sweep range must be finite, got {low!r} to {high!r}.")
        values = np.linspace(low, high, n) if n > 1 else np.array([low])
        if self.integer:
            rounded: list[float] = []
            for v in values:
                r = float(math.floor(v + 0.5))
                if r not in rounded:
                    rounded.append(r)
            return rounded
        return [float(v) for v in values]


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            name="brightness",
            label="Brightness",
            unit="factor",
            identity=1.0,
            default=1.2,
            range=(0.5, 1.5),
            geometric=False,
            description="Multiplies every pixel by the factor; farther from 1 is stronger.",
            fn=_brightness,
        ),
        Perturbation(
            name="contrast",
            label="Contrast",
            unit="factor",
            identity=1.0,
            default=0.8,
            range=(0.5, 1.5),
            geometric=False,
            description="Blends the image with its mean grey level; farther from 1 is stronger.",
            fn=_contrast,
        ),
        Perturbation(
            name="gamma",
            label="Gamma",
            unit="gamma",
            identity=1.0,
            default=1.5,
            range=(0.5, 2.0),
            geometric=False,
            description="Raises each pixel to the power gamma (>1 darkens midtones); farther from 1 is stronger.",
            fn=_gamma,
        ),
        Perturbation(
            name="saturation",
            label="Saturation",
            unit="factor",
            identity=1.0,
            default=0.5,
            range=(0.0, 2.0),
            geometric=False,
            description="Blends the image with its greyscale version (0 is grey); farther from 1 is stronger.",
            fn=_saturation,
        ),
        Perturbation(
            name="hue",
            label="Hue shift",
            unit="turns",
            identity=0.0,
            default=0.1,
            range=(-0.5, 0.5),
            geometric=False,
            description="Rotates every hue by the shift in turns of the colour wheel; larger |shift| is stronger.",
            fn=_hue,
        ),
        Perturbation(
            name="gaussian_blur",
            label="Gaussian blur",
            unit="sigma (px)",
            identity=0.0,
            default=1.0,
            range=(0.0, 5.0),
            geometric=False,
            description="Convolves with a Gaussian of standard deviation sigma pixels; larger is stronger.",
            fn=_gaussian_blur,
        ),
        Perturbation(
            name="gaussian_noise",
            label="Gaussian noise",
            unit="std",
            identity=0.0,
            default=0.05,
            range=(0.0, 0.3),
            geometric=False,
            description="Adds seeded Gaussian noise of this standard deviation (image units); larger is stronger.",
            fn=_gaussian_noise,
        ),
        Perturbation(
            name="jpeg",
            label="JPEG compression",
            unit="quality",
            identity=100.0,
            default=30.0,
            range=(5.0, 100.0),
            geometric=False,
            description="Encodes and decodes as JPEG at this quality (100 means untouched); lower is stronger.",
            fn=_jpeg,
            integer=True,
        ),
        Perturbation(
            name="rotation",
            label="Rotation",
            unit="degrees",
            identity=0.0,
            default=5.0,
            range=(-45.0, 45.0),
            geometric=True,
            description="Rotates counter-clockwise about the centre, mirroring at the borders; larger |angle| is stronger.",
            fn=_rotation,
        ),
        Perturbation(
            name="translation",
            label="Translation",
            unit="pixels",
            identity=0.0,
            default=2.0,
            range=(-16.0, 16.0),
            geometric=True,
            description="Shifts right and down by this many pixels, mirroring at the borders; larger |shift| is stronger.",
            fn=_translation,
        ),
        Perturbation(
            name="scale",
            label="Scale",
            unit="factor",
            identity=1.0,
            default=1.1,
            range=(0.5, 2.0),
            geometric=True,
            description="Zooms about the centre keeping the size (>1 zooms in), mirroring at the borders; farther from 1 is stronger.",
            fn=_scale,
        ),
    )
}

GEOMETRIC_TABLE: tuple[tuple[str, float], ...] = (
    ("rotation", 1.0),
    ("rotation", 5.0),
    ("translation", 1.0),
    ("translation", 5.0),
    ("scale", 1.05),
)


def strength_text(unit: str, strength: float) -> str:
    """A strength for people, in the unit's own notation: "σ 1 px", "quality 30", "5°",
    "5 px", "× 1.1", "γ 1.5", "0.1 turn" (charts and tables; the JSON keeps the numbers)."""
    s = f"{float(strength):g}"
    return {"sigma (px)": f"σ {s} px", "std": f"σ {s}", "quality": f"quality {s}",
            "degrees": f"{s}°", "pixels": f"{s} px", "factor": f"× {s}", "gamma": f"γ {s}",
            "turns": f"{s} turn" + ("" if float(strength) == 1 else "s"),
            }.get(unit, f"{s} {unit}".strip())


def display_name(name: str) -> str:
    """A perturbation's name for people ("Gaussian blur"), never its id ("gaussian_blur")."""
    p = PERTURBATIONS.get(name)
    return p.label if p is not None else name.replace("_", " ")


def get_perturbation(name: str) -> Perturbation:
    """Return the registered perturbation called ``name``, or fail with a did-you-mean hint."""
    return errors.lookup("perturbation", name, PERTURBATIONS)  # type: ignore[return-value]


def apply(name: str, x: Tensor, strength: float, *, seed: int = 0) -> Tensor:
    """Apply perturbation ``name`` at ``strength`` with a CPU generator seeded by ``seed``."""
    perturbation = get_perturbation(name)
    generator = torch.Generator().manual_seed(int(seed))
    return perturbation.apply(x, strength, generator)


def perturb_batch(x: Tensor, items: Sequence[tuple[str, float]], *, seed: int = 0) -> Tensor:
    """Return a K x 3 x H x W batch, row k being ``apply(name_k, x, strength_k, seed=seed)``.

    ``x`` must be a single image (1 x 3 x H x W). Each row gets its own generator seeded with
    ``seed``, so a row is identical whether computed alone or in the batch. No items give an
    empty 0 x 3 x H x W batch.
    """
    x = _check_image(x)
    if x.shape[0] != 1:
        raise errors.InputError(
            f"perturb_batch takes one image (1 x 3 x H x W), got a batch of {x.shape[0]}."
        )
    rows = [get_perturbation(name)._apply(x, strength, torch.Generator().manual_seed(int(seed)))
            for name, strength in items]
    if not rows:
        return x.new_empty((0, *x.shape[1:]))
    return torch.cat(rows, dim=0)

"""Regenerate the bundled sample of SYNTHETIC 2AFC judgments (assets/judgments/).

These are not human judgments. Each triplet is a 64 px patch of one of the bundled
originals (assets/originals, downscaled to 128 px) and two distorted copies; the "judges"
are a stated rule: every distortion has an annoyance weight, a candidate's annoyance is
that weight times its strength (0..1 within the distortion's range), and five synthetic
judges each choose p1 with probability sigmoid((annoyance(p0) - annoyance(p1)) / 0.15).
``judge`` is the share of the five that chose p1, as in BAPPS. The rule cares much more
about noise than about blur or colour, which the released LPIPS heads do not, so
calibrating on this sample visibly moves the heads. It is a demo of the workflow, not data
about perception.

Run from the repository root::

    python assets/make_judgments.py            # rewrites assets/judgments/ in place
    python assets/make_judgments.py OUT_DIR    # writes the same files under OUT_DIR

Deterministic: Pillow resizing and JPEG, torchvision v2 functional ops in float64, noise
and choices from seeded generators. tests/analyses/calibration/test_calibration.py checks that a fresh run
reproduces the committed files exactly.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

ASSETS_DIR = Path(__file__).resolve().parent
ORIGINALS = ("astronaut", "chelsea", "coffee", "rocket")
PATCH = 64
SCALED = 128
PATCHES_PER_IMAGE = 9
SEED = 20240611
N_JUDGES = 5
TEMPERATURE = 0.15
CSV_NAME = "synthetic_judgments.csv"

# name: (annoyance weight of the synthetic judges, parameter range at strength 0 and 1)
DISTORTIONS: dict[str, tuple[float, tuple[float, float]]] = {
    "noise": (1.0, (0.02, 0.12)),  # Gaussian noise std in [0, 1] units
    "jpeg": (0.7, (70.0, 10.0)),  # JPEG quality
    "blur": (0.35, (0.6, 2.0)),  # Gaussian blur sigma in px
    "contrast": (0.45, (0.9, 0.5)),  # contrast factor
    "colour": (0.25, (0.03, 0.15)),  # hue rotation
}


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return F.pil_to_tensor(img).to(torch.float64) / 255.0


def _to_pil(x: torch.Tensor) -> Image.Image:
    u8 = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return Image.fromarray(u8.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def distort(img: Image.Image, kind: str, strength: float, seed: int) -> Image.Image:
    lo, hi = DISTORTIONS[kind][1]
    value = lo + strength * (hi - lo)
    x = _to_tensor(img)
    if kind == "noise":
        gen = torch.Generator().manual_seed(seed)
        return _to_pil(x + value * torch.randn(x.shape, generator=gen, dtype=torch.float64))
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=round(value))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "blur":
        k = 2 * math.ceil(3 * value) + 1
        return _to_pil(F.gaussian_blur(x, [k, k], [value, value]))
    if kind == "contrast":
        return _to_pil(F.adjust_contrast(x, value))
    return _to_pil(F.adjust_hue(x, value))


def _patches(name: str, rng: np.random.Generator) -> list[Image.Image]:
    img = Image.open(ASSETS_DIR / "originals" / f"{name}.png").convert("RGB")
    img = img.resize((SCALED, SCALED), Image.Resampling.LANCZOS)
    out = []
    for _ in range(PATCHES_PER_IMAGE):
        x, y = (int(v) for v in rng.integers(0, SCALED - PATCH + 1, size=2))
        out.append(img.crop((x, y, x + PATCH, y + PATCH)))
    return out


def annoyance(kind: str, strength: float) -> float:
    return DISTORTIONS[kind][0] * strength


def build(out_dir: Path) -> list[dict]:
    rng = np.random.default_rng(SEED)
    kinds = list(DISTORTIONS)
    rows = []
    for folder in ("ref", "p0", "p1"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    n = 0
    for name in ORIGINALS:
        for patch in _patches(name, rng):
            k0, k1 = (kinds[int(i)] for i in rng.choice(len(kinds), size=2, replace=False))
            s0, s1 = (float(v) for v in rng.uniform(0.15, 1.0, size=2))
            p0 = distort(patch, k0, s0, SEED + 2 * n)
            p1 = distort(patch, k1, s1, SEED + 2 * n + 1)
            prob = 1.0 / (1.0 + math.exp(-(annoyance(k0, s0) - annoyance(k1, s1)) / TEMPERATURE))
            judge = int(rng.binomial(N_JUDGES, prob)) / N_JUDGES
            stem = f"{n:03d}"
            for folder, im in (("ref", patch), ("p0", p0), ("p1", p1)):
                im.save(out_dir / folder / f"{stem}.png", optimize=False)
            rows.append({"ref": f"ref/{stem}.png", "p0": f"p0/{stem}.png",
                         "p1": f"p1/{stem}.png", "judge": f"{judge:.1f}",
                         "source": name, "p0_distortion": f"{k0} {s0:.2f}",
                         "p1_distortion": f"{k1} {s1:.2f}"})
            n += 1
    with (out_dir / CSV_NAME).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ASSETS_DIR / "judgments"
    made = build(target)
    print(f"wrote {len(made)} synthetic triplets and {CSV_NAME} to {target}")

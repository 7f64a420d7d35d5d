"""Regenerate the bundled audit sample set (assets/audit_sample/): small pairs and triplets.

Twelve 64 px patches of the bundled originals (assets/originals, three per photograph,
downscaled to 128 px first) each get three seeded distortions of different kinds and
strengths (Gaussian noise, blur, JPEG, a shift, brightness, contrast, saturation). That
gives ``pairs.csv`` (patch, distorted patch: 36 pairs) and ``triplets.csv`` (patch and two
of its distorted copies: 24 triplets) with their ``judge`` column.

The judgments are SYNTHETIC, not human: five simulated judges each prefer p1 with
probability sigmoid((annoyance(p0) - annoyance(p1)) / 0.15), where a copy's annoyance is a
stated weight per distortion kind times its strength (0..1). The weights care much more
about noise and JPEG than about shifts and colour, so LPIPS will disagree with these
"judges" in places: that is what the audit is for, and the CSV says where the numbers
come from in its ``judge_source`` column. It is a demo of the workflow, not data about
perception.

Run from the repository root::

    python assets/make_audit_sample.py            # rewrites assets/audit_sample/
    python assets/make_audit_sample.py OUT_DIR    # writes the same files under OUT_DIR

Deterministic (Pillow resizing, filters and JPEG; numpy's seeded PCG64): tests/test_audit.py
checks that a fresh run reproduces the committed files byte for byte.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

ASSETS_DIR = Path(__file__).resolve().parent
ORIGINALS = ("astronaut", "chelsea", "coffee", "rocket")
SCALED, PATCH, PER_IMAGE = 128, 64, 3
SEED = 20261130
JUDGES = 5
SOURCE = "synthetic: 5 simulated judges, seeded, from stated annoyance weights (not human)"
# distortion kind -> (annoyance weight, strength range)
KINDS: dict[str, tuple[float, tuple[float, float]]] = {
    "noise": (1.0, (0.02, 0.15)),  # std of Gaussian noise
    "jpeg": (0.9, (10, 60)),  # quality (lower is stronger)
    "blur": (0.6, (0.6, 2.0)),  # Gaussian radius
    "shift": (0.2, (1, 6)),  # px to the right
    "brightness": (0.4, (1.1, 1.5)),  # factor
    "contrast": (0.4, (0.5, 0.85)),  # factor (lower is stronger)
    "saturation": (0.3, (0.2, 0.7)),  # factor (lower is stronger)
}


def _patches() -> list[tuple[str, Image.Image]]:
    out = []
    for name in ORIGINALS:
        im = Image.open(ASSETS_DIR / "originals" / f"{name}.png").convert("RGB")
        im = im.resize((SCALED, SCALED), Image.Resampling.LANCZOS)
        for k, (left, top) in enumerate(((0, 0), (64, 32), (32, 64))[:PER_IMAGE]):
            out.append((f"{name}{k}", im.crop((left, top, left + PATCH, top + PATCH))))
    return out


def _distort(im: Image.Image, kind: str, t: float, rng: np.random.Generator) -> Image.Image:
    """Apply ``kind`` at strength ``t`` in [0, 1] (0 = mildest of its range)."""
    lo, hi = KINDS[kind][1]
    v = lo + t * (hi - lo)
    if kind == "noise":
        arr = np.asarray(im, dtype=np.float64) / 255.0
        arr = arr + rng.normal(0.0, v, arr.shape)
        return Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8))
    if kind == "jpeg":
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=round(hi - t * (hi - lo)))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "blur":
        return im.filter(ImageFilter.GaussianBlur(v))
    if kind == "shift":
        arr = np.asarray(im)
        dx = round(v)
        return Image.fromarray(np.concatenate([np.repeat(arr[:, :1], dx, axis=1),
                                               arr[:, :-dx]], axis=1))
    if kind == "brightness":
        return ImageEnhance.Brightness(im).enhance(v)
    factor = hi - t * (hi - lo)
    if kind == "contrast":
        return ImageEnhance.Contrast(im).enhance(factor)
    return ImageEnhance.Color(im).enhance(factor)


def build(out_dir: Path) -> None:
    rng = np.random.default_rng(SEED)
    img = out_dir / "images"
    img.mkdir(parents=True, exist_ok=True)
    names = list(KINDS)
    pairs, copies = [], {}
    for pid, patch in _patches():
        patch.save(img / f"{pid}.png", optimize=False)
        kinds = rng.choice(len(names), size=3, replace=False)
        copies[pid] = []
        for j, k in enumerate(kinds):
            kind, t = names[int(k)], float(rng.uniform(0.0, 1.0))
            rel = f"images/{pid}_{kind}.png"
            _distort(patch, kind, t, rng).save(out_dir / rel, optimize=False)
            annoyance = KINDS[kind][0] * (0.25 + 0.75 * t)
            copies[pid].append((rel, kind, t, annoyance))
            pairs.append({"id": f"{pid}-{j}", "a": f"images/{pid}.png", "b": rel,
                          "distortion": kind, "strength": f"{t:.3f}"})
    triplets = []
    for pid, cs in copies.items():
        for j, (i0, i1) in enumerate(((0, 1), (1, 2))):
            p0, p1 = cs[i0], cs[i1]
            prob = 1.0 / (1.0 + math.exp(-(p0[3] - p1[3]) / 0.15))
            votes = int((rng.uniform(size=JUDGES) < prob).sum())
            triplets.append({"id": f"{pid}-t{j}", "ref": f"images/{pid}.png", "p0": p0[0],
                             "p1": p1[0], "judge": f"{votes / JUDGES:.1f}",
                             "p0_distortion": p0[1], "p1_distortion": p1[1],
                             "judge_source": SOURCE})
    for name, rows in (("pairs.csv", pairs), ("triplets.csv", triplets)):
        with (out_dir / name).open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else ASSETS_DIR / "audit_sample")

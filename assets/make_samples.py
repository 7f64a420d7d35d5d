"""Regenerate the bundled sample images and the manifest ``samples.json``.

Run from the repository root::

    python assets/make_samples.py            # rewrites assets/ in place
    python assets/make_samples.py OUT_DIR    # writes the same files under OUT_DIR

Everything is deterministic: the originals come from images bundled inside
scikit-image (no download), resizing and JPEG coding are done by Pillow, the other
distortions by ``torchvision.transforms.v2.functional`` in float64 on the CPU, and
the only random distortion (Gaussian noise) draws from a ``torch.Generator`` with a
fixed seed. ``tests/test_assets.py`` checks that a fresh run reproduces the
committed files pixel for pixel.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from skimage import data as skdata

ASSETS_DIR = Path(__file__).resolve().parent
SIZE = 256
NOISE_SEED = 20240601

# ---------------------------------------------------------------------------
# Originals: real photographs shipped inside the scikit-image wheel, with the
# licence stated in each loader's docstring (skimage/data/_fetchers.py).
# ---------------------------------------------------------------------------
ORIGINALS: dict[str, dict[str, str]] = {
    "astronaut": {
        "skimage": "skimage.data.astronaut",
        "source": "Eileen Collins, NASA Great Images database (https://flic.kr/p/r9qvLn)",
        "license": "Public domain (no known copyright restrictions)",
    },
    "coffee": {
        "skimage": "skimage.data.coffee",
        "source": "Rachel Michetti, courtesy of Pikolo Espresso Bar",
        "license": "CC0 (no copyright restrictions)",
    },
    "chelsea": {
        "skimage": "skimage.data.chelsea",
        "source": "Stefan van der Walt (Chelsea the cat)",
        "license": "CC0 (no copyright restrictions)",
    },
    "rocket": {
        "skimage": "skimage.data.rocket",
        "source": "SpaceX, DSCOVR launch on Falcon 9 (SpaceX Photos on Flickr)",
        "license": "Public domain (released by SpaceX)",
    },
}


def _load_original(name: str) -> Image.Image:
    """Centre-crop the skimage photograph to a square and resize it to SIZE x SIZE."""
    arr = getattr(skdata, name)()
    img = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    # Lanczos resampling in Pillow is antialiased (the filter widens when downscaling)
    # and uses fixed-point integer arithmetic, so it is bit-exact across machines.
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


# ---------------------------------------------------------------------------
# Distortions. Tensor ones work on float64 CHW in [0, 1]; float64 keeps rounding
# differences between CPUs far below the 1/255 quantisation step.
# ---------------------------------------------------------------------------
def _to_tensor(img: Image.Image) -> torch.Tensor:
    return F.pil_to_tensor(img).to(torch.float64) / 255.0


def _to_pil(x: torch.Tensor) -> Image.Image:
    u8 = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return Image.fromarray(u8.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Encode with Pillow's JPEG encoder, decode again (the result is stored as PNG)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def gaussian_blur(img: Image.Image, sigma: float) -> Image.Image:
    ksize = 2 * int(np.ceil(3 * sigma)) + 1
    return _to_pil(F.gaussian_blur(_to_tensor(img), [ksize, ksize], [sigma, sigma]))


def gaussian_noise(img: Image.Image, std: float, seed: int) -> Image.Image:
    # F.gaussian_noise takes no generator, so draw the noise from a seeded one here.
    x = _to_tensor(img)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return _to_pil(x + std * noise)


def shift(img: Image.Image, dx: int, dy: int) -> Image.Image:
    """Translate right by dx and down by dy pixels; uncovered borders repeat the edge."""
    x = _to_tensor(img)
    padded = F.pad(x, [dx, dy, 0, 0], padding_mode="edge")
    return _to_pil(F.crop(padded, 0, 0, x.shape[-2], x.shape[-1]))


def colour(img: Image.Image, hue: float, saturation: float) -> Image.Image:
    x = F.adjust_hue(_to_tensor(img), hue)
    return _to_pil(F.adjust_saturation(x, saturation))


DISTORTIONS: dict[str, Callable[..., Image.Image]] = {
    "jpeg": jpeg,
    "gaussian_blur": gaussian_blur,
    "gaussian_noise": gaussian_noise,
    "shift": shift,
    "colour": colour,
}

# Each distorted file: (original, distortion kind, parameters, short label).
VARIANTS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "astronaut_jpeg_q10": ("astronaut", "jpeg", {"quality": 10}, "JPEG q10"),
    "astronaut_shift_8px": ("astronaut", "shift", {"dx": 8, "dy": 0}, "8 px shift"),
    "coffee_blur_s2": ("coffee", "gaussian_blur", {"sigma": 2.0}, "Gaussian blur σ=2"),
    "coffee_colour": (
        "coffee",
        "colour",
        {"hue": 0.08, "saturation": 1.6},
        "colour change (hue +0.08, saturation ×1.6)",
    ),
    "chelsea_noise_0.08": (
        "chelsea",
        "gaussian_noise",
        {"std": 0.08, "seed": NOISE_SEED},
        "Gaussian noise σ=0.08",
    ),
    "chelsea_blur_s2": ("chelsea", "gaussian_blur", {"sigma": 2.0}, "Gaussian blur σ=2"),
    "rocket_shift_8px": ("rocket", "shift", {"dx": 8, "dy": 0}, "8 px shift"),
}

PAIRS: list[dict[str, str]] = [
    # The first pair is the default: JPEG artefacts are clearly local (blocks and
    # ringing at the face, flag and suit edges), so the spatial maps have structure.
    {
        "id": "astronaut_jpeg",
        "variant": "astronaut_jpeg_q10",
        "description": "8x8 blocking, ringing and colour bleeding, strongest around the "
        "face, the flag stripes and the suit's edges.",
    },
    {
        "id": "coffee_blur",
        "variant": "coffee_blur_s2",
        "description": "Blur removes the wood grain and the sharp rims of cup and saucer; "
        "flat porcelain is nearly untouched.",
    },
    {
        "id": "chelsea_noise",
        "variant": "chelsea_noise_0.08",
        "description": "Seeded i.i.d. Gaussian noise over the whole image; most visible "
        "on the smooth nose, eyes and blurred corners.",
    },
    {
        "id": "rocket_shift",
        "variant": "rocket_shift_8px",
        "description": "The whole scene moves 8 px to the right (left edge repeated): "
        "large pixel error, little perceptual change.",
    },
    {
        "id": "coffee_colour",
        "variant": "coffee_colour",
        "description": "Global hue rotation and stronger saturation: structure is "
        "unchanged, only colours differ.",
    },
]

TRIPLETS: list[dict[str, str]] = [
    {
        "id": "astronaut_shift_vs_jpeg",
        "a": "astronaut_shift_8px",
        "b": "astronaut_jpeg_q10",
        "description": "Which does LPIPS find closer to the astronaut: an 8 px shift or JPEG q10?",
    },
    {
        "id": "chelsea_blur_vs_noise",
        "a": "chelsea_blur_s2",
        "b": "chelsea_noise_0.08",
        "description": "Which does LPIPS find closer to the cat: Gaussian blur σ=2 or "
        "Gaussian noise σ=0.08?",
    },
    {
        "id": "coffee_colour_vs_blur",
        "a": "coffee_colour",
        "b": "coffee_blur_s2",
        "description": "Which does LPIPS find closer to the coffee cup: a colour change "
        "(hue +0.08, saturation ×1.6) or Gaussian blur σ=2?",
    },
]


def _title(name: str) -> str:
    return name.capitalize()


def _distortion_record(variant: str) -> dict[str, Any]:
    _, kind, params, _ = VARIANTS[variant]
    record: dict[str, Any] = {"kind": kind, **params}
    if kind == "jpeg":
        record["note"] = "JPEG-encoded by Pillow, decoded and stored as lossless PNG"
    return record


def build_manifest() -> dict[str, Any]:
    originals = [
        {"id": name, "path": f"originals/{name}.png", **meta} for name, meta in ORIGINALS.items()
    ]
    pairs = []
    for pair in PAIRS:
        orig, _, _, label = VARIANTS[pair["variant"]]
        pairs.append(
            {
                "id": pair["id"],
                "title": f"{_title(orig)}: {label}",
                "a": f"originals/{orig}.png",
                "b": f"distorted/{pair['variant']}.png",
                "description": pair["description"],
                "distortion": _distortion_record(pair["variant"]),
            }
        )
    triplets = []
    for trip in TRIPLETS:
        orig_a, _, _, label_a = VARIANTS[trip["a"]]
        orig_b, _, _, label_b = VARIANTS[trip["b"]]
        assert orig_a == orig_b, trip["id"]
        triplets.append(
            {
                "id": trip["id"],
                "title": f"{_title(orig_a)}: {label_a} vs {label_b}",
                "ref": f"originals/{orig_a}.png",
                "a": f"distorted/{trip['a']}.png",
                "b": f"distorted/{trip['b']}.png",
                "description": trip["description"],
                "distortion_a": _distortion_record(trip["a"]),
                "distortion_b": _distortion_record(trip["b"]),
            }
        )
    return {
        "pairs": pairs,
        "triplets": triplets,
        "default_pair": pairs[0]["id"],
        "default_triplet": triplets[0]["id"],
        "originals": originals,
        "generator": "assets/make_samples.py",
    }


def _save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)


def main(out_dir: str | Path = ASSETS_DIR) -> dict[str, Any]:
    """Write originals/, distorted/ and samples.json under ``out_dir``; return the manifest."""
    out = Path(out_dir)
    originals = {name: _load_original(name) for name in ORIGINALS}
    for name, img in originals.items():
        _save_png(img, out / "originals" / f"{name}.png")
    for variant, (orig, kind, params, _) in VARIANTS.items():
        _save_png(
            DISTORTIONS[kind](originals[orig], **params), out / "distorted" / f"{variant}.png"
        )
    manifest = build_manifest()
    (out / "samples.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ASSETS_DIR)

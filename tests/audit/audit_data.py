"""Generated audit inputs for the audit tests: small pairs and judged triplets with bad rows,
and the official ``lpips`` package carrying our seeded random trunk (the oracle)."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from conftest import smooth_image, to_uint8, write_png
from PIL import Image

SIZES = (32, 40, 48)


def _blur(t: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None, :]) / 256.0
    return F.conv2d(F.pad(t, (2, 2, 2, 2), mode="replicate"), k.expand(3, 1, 5, 5).contiguous(),
                    groups=3).clamp(0, 1)


def distort(img: torch.Tensor, kind: int, strength: float, seed: int) -> torch.Tensor:
    """One of four seeded distortions of a 1x3xHxW image in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    if kind == 0:
        return (img + strength * torch.randn(img.shape, generator=g)).clamp(0, 1)
    if kind == 1:
        out = img
        for _ in range(1 + int(strength * 10)):
            out = _blur(out)
        return out
    if kind == 2:
        return torch.roll(img, shifts=1 + int(strength * 20), dims=-1)
    return (img * (1 - strength) + strength * 0.5).clamp(0, 1)


@dataclass
class AuditSet:
    csv: Path
    kind: str
    expected_errors: dict[str, str] = field(default_factory=dict)  # id -> error_type
    n_rows: int = 0


def make_pairs(root: Path, n: int = 300, *, ids: bool = True) -> AuditSet:
    """``n`` good pairs (32-48 px, four distortions) and bad rows of every kind."""
    img = root / "img"
    img.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    for i in range(n):
        s = SIZES[i % len(SIZES)]
        a = smooth_image(s, s, i)
        b = distort(a, i % 4, 0.03 + 0.3 * ((i * 7919) % 97) / 97, 10_000 + i)
        write_png(img / f"{i}_a.png", to_uint8(a))
        write_png(img / f"{i}_b.png", to_uint8(b))
        rows.append([f"img/{i}_a.png", f"img/{i}_b.png", f"pair-{i:03d}", f"g{i % 5}"])
    expected: dict[str, str] = {}
    # missing file, truncated PNG, not an image, too small for alex, an empty cell
    (img / "corrupt.png").write_bytes((img / "0_a.png").read_bytes()[:70])
    (img / "text.png").write_bytes(b"this is not an image at all")
    write_png(img / "small.png", to_uint8(smooth_image(24, 24, 7)))
    bad = [("missing", "img/nope.png", "img/0_b.png", "MissingFile"),
           ("corrupt", "img/corrupt.png", "img/0_b.png", "CorruptImageError"),
           ("not-image", "img/1_a.png", "img/text.png", "NotAnImageError"),
           ("too-small", "img/small.png", "img/small.png", "ImageTooSmallError"),
           ("empty-cell", "", "img/0_b.png", "BadRow")]
    for rid, a, b, err in bad:
        rows.insert(len(rows) // 2, [a, b, rid, "bad"])
        expected[rid] = err
    # sizes differ: resized under "resize", refused under "error"
    rows.append(["img/1_a.png", "img/2_b.png", "mismatch", "bad"])
    expected["mismatch"] = "SizeMismatchError"
    path = root / "pairs.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "id", "group"] if ids else ["a", "b", "skip_id", "group"])
        w.writerows(rows)
    return AuditSet(path, "pairs", expected, len(rows))


def make_triplets(root: Path, n: int = 120) -> AuditSet:
    """``n`` judged triplets (some judgments exactly 0.5) and bad rows."""
    img = root / "tri"
    img.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        s = SIZES[i % len(SIZES)]
        ref = smooth_image(s, s, 500 + i)
        p0 = distort(ref, i % 4, float(rng.uniform(0.02, 0.3)), 20_000 + i)
        p1 = distort(ref, (i + 1) % 4, float(rng.uniform(0.02, 0.3)), 30_000 + i)
        for name, t in (("ref", ref), ("p0", p0), ("p1", p1)):
            write_png(img / f"{i}_{name}.png", to_uint8(t))
        judge = 0.5 if i % 17 == 0 else round(float(rng.uniform(0, 1)), 2)
        rows.append([f"tri/{i}_ref.png", f"tri/{i}_p0.png", f"tri/{i}_p1.png", str(judge),
                     f"t{i:03d}"])
    (img / "corrupt.png").write_bytes((img / "0_ref.png").read_bytes()[:70])
    bad = [(["tri/0_ref.png", "tri/0_p0.png", "tri/gone.png", "0.3", "gone"], "MissingFile"),
           (["tri/corrupt.png", "tri/0_p0.png", "tri/0_p1.png", "0.3", "torn"],
            "CorruptImageError"),
           (["tri/0_ref.png", "tri/0_p0.png", "tri/0_p1.png", "abc", "bad-judge"], "BadRow"),
           (["tri/0_ref.png", "tri/0_p0.png", "tri/0_p1.png", "1.5", "judge-range"], "BadRow")]
    expected = {}
    for row, err in bad:
        rows.insert(len(rows) // 3, row)
        expected[row[-1]] = err
    path = root / "triplets.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ref", "p0", "p1", "judge", "id"])
        w.writerows(rows)
    return AuditSet(path, "triplets", expected, len(rows))


# --------------------------------------------------------------------------- the oracle


def official_with_our_trunk(net_ours, net: str = "alex", version: str = "0.1"):
    """The official lpips.LPIPS (its own lin heads) with our trunk's weights copied in."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = lpips.LPIPS(net=net, version=version, pnet_rand=True, verbose=False).eval()
    ours = {k: v for k, v in net_ours.features.state_dict().items()}
    state = official.net.state_dict()
    for key in state:
        state[key] = ours[key.split(".", 1)[1]].clone()
    official.net.load_state_dict(state)
    return official


def official_input(path: Path) -> torch.Tensor:
    """A file as the official package takes it: PIL-decoded uint8, lpips.im2tensor."""
    import lpips

    return lpips.im2tensor(np.asarray(Image.open(path).convert("RGB")))


@torch.no_grad()
def official_distances(official, *pairs: tuple[Path, Path],
                       per_layer: bool = False) -> list[float] | list[list[float]]:
    """The official package's d(a, b) for each pair (batched by image size); with
    ``per_layer``, its per-layer terms instead."""
    by_size: dict[tuple, list[int]] = {}
    inputs = [(official_input(a), official_input(b)) for a, b in pairs]
    for i, (x, _) in enumerate(inputs):
        by_size.setdefault(tuple(x.shape), []).append(i)
    out: list = [None] * len(pairs)
    for idx in by_size.values():
        x = torch.cat([inputs[i][0] for i in idx])
        y = torch.cat([inputs[i][1] for i in idx])
        if per_layer:
            _, terms = official(x, y, retPerLayer=True)
            for k, i in enumerate(idx):
                out[i] = [float(t.flatten(1)[k, 0]) for t in terms]
        else:
            d = official(x, y).flatten()
            for k, i in enumerate(idx):
                out[i] = float(d[k])
    return out

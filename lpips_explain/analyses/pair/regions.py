"""Sentences about the image: where the distance is, what kind of change it is, and what
repairing would do, each one read off a number of the explanation by a stated rule.

Where. The summed spatial map (all layers, bilinear, on the images' grid) has mean equal to
the distance, so a region's share of the distance is exactly its sum over the map's sum.
The candidate regions are the four quarters, the four halves and the centre (the middle
half of the height and of the width). The region named is the one whose share exceeds its
share of the area by the most (share - area); when no region exceeds its area by
:data:`CONCENTRATED` (10 points), the distance is called spread over the image, with the
busiest quarter's share as the number.

Kind. From the pixels of the two images (exact sums, on a grid of at most
:data:`KIND_SIDE` px), in this order, the first rule that holds names the kind:

1. misalignment: moving the explained image by a whole number of pixels (at most
   :data:`MAX_SHIFT` each way) removes at least :data:`ALIGN_GAIN` (50%) of the mean squared
   brightness difference over the overlap;
2. blocky compression: the explained image's brightness jumps across the 8 px block
   boundaries of JPEG-style coding are at least :data:`BLOCKY` (1.3) times the
   reference's, each measured against the jumps elsewhere (:func:`blockiness`);
3. a large brightness move: the image's average brightness moved by at least
   :data:`BRIGHT` (15 on a 0-255 scale) and by at least the mean colour change (rule 6's
   number), which clips highlights or shadows and so also
   removes detail (named as brightness, rule 7's sentence);
4. fine detail lost (softened): the explained image keeps at most :data:`LOST` (80%) of
   the reference's fine detail (the mean squared 3x3 Laplacian of brightness on the
   half-size grid, over the brightness variance: contrast alone does not change it);
5. fine detail added (grain, noise or blocky compression): it has at least :data:`ADDED`
   (125%) of it;
6. colour: the mean absolute change of the colour channels (Cb, Cr of BT.601 YCbCr) is at
   least :data:`TONE` (5 on a 0-255 scale) and at least :data:`COLOUR` (half) of the mean
   absolute change of brightness (Y);
7. brightness or contrast: the image's average brightness moved by at least :data:`TONE`,
   or its contrast (the standard deviation of brightness) changed by at least
   :data:`CONTRAST` (20%) either way. (A per-pixel difference is not enough: content
   that moved by different amounts in different places, as between two views of a scene,
   changes every pixel but not the tone);
8. otherwise the layer profile speaks: with :data:`EARLY_HEAVY` (50%) or more of the
   distance in the first half of the layers, fine texture and edges changed; else shapes
   and larger textures.

Repair. The repair curve's point that halves the distance (evaluated), with the region
that holds most of the repaired patches (the same regions, by the share of repaired area
minus the region's area).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lpips_explain.validation import pct

CONCENTRATED = 0.10
KIND_SIDE = 512
MAX_SHIFT = 16
COLOUR = 0.5
BLOCKY = 1.3
TONE = 5.0  # 0..255: a mean change this large is visible as a change of colour or tone
BRIGHT = 15.0  # 0..255: an average brightness move this large is named before the detail
CONTRAST = 1.2  # a ratio of brightness standard deviations this far from 1, either way
BLOCK = 8
ALIGN_GAIN = 0.5
LOST = 0.8
ADDED = 1.25
EARLY_HEAVY = 0.5

# name: (top, bottom, left, right) as fractions of the height and the width
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "top-left quarter": (0.0, 0.5, 0.0, 0.5),
    "top-right quarter": (0.0, 0.5, 0.5, 1.0),
    "bottom-left quarter": (0.5, 1.0, 0.0, 0.5),
    "bottom-right quarter": (0.5, 1.0, 0.5, 1.0),
    "top half": (0.0, 0.5, 0.0, 1.0),
    "bottom half": (0.5, 1.0, 0.0, 1.0),
    "left half": (0.0, 1.0, 0.0, 0.5),
    "right half": (0.0, 1.0, 0.5, 1.0),
    "centre": (0.25, 0.75, 0.25, 0.75),
}
QUARTERS = tuple(n for n in REGIONS if n.endswith("quarter"))


@dataclass(frozen=True)
class Region:
    name: str
    share: float  # of the map's total (or of the mask's pixels)
    area: float  # of the image
    bounds: tuple[int, int, int, int]  # top, bottom, left, right in the map's pixels

    @property
    def excess(self) -> float:
        return self.share - self.area


def region_bounds(shape: tuple[int, int], name: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel bounds of a named region on an HxW grid."""
    h, w = shape
    t, b, left, r = REGIONS[name]
    return round(t * h), round(b * h), round(left * w), round(r * w)


def _without_nan(values: np.ndarray) -> np.ndarray:
    """``values`` as float64 with NaN as 0, copied only when it has to be (a 16 MP map is
    128 MB)."""
    z = np.asarray(values, dtype=np.float64)
    return np.nan_to_num(z, nan=0.0) if np.isnan(z).any() else z


def regions(values: np.ndarray) -> list[Region]:
    """Every named region's share of ``values`` (an HxW map of non-negative amounts, or a
    boolean mask) and its share of the area."""
    z = _without_nan(values)
    total = float(z.sum())
    out = []
    for name in REGIONS:
        t, b, left, r = region_bounds(z.shape, name)
        inside = float(z[t:b, left:r].sum())
        out.append(Region(name, inside / total if total > 0 else 0.0,
                          (b - t) * (r - left) / z.size, (t, b, left, r)))
    return out


def busiest(values: np.ndarray) -> Region:
    """The region whose share exceeds its area the most (ties: the first in REGIONS)."""
    return max(regions(values), key=lambda reg: reg.excess)


@dataclass(frozen=True)
class Where:
    region: Region  # the busiest region
    concentrated: bool  # its share exceeds its area by at least CONCENTRATED
    top_quarter: Region  # the quarter with the largest share

    @property
    def sentence(self) -> str:
        r = self.region
        if self.concentrated:
            return (f"{pct(r.share)} of the distance is in the {r.name} of the image "
                    f"({pct(r.area)} of its area).")
        q = self.top_quarter
        return (f"The distance is spread over the whole image: no quarter holds more than "
                f"{pct(q.share)} of it (an even spread would be 25%).")


def where(heat: np.ndarray) -> Where | None:
    """Where the distance is on the summed map ``heat`` (None for an all-zero map)."""
    z = _without_nan(heat)
    if not np.isfinite(z).any() or float(z.sum()) <= 0:
        return None
    regs = regions(z)
    best = max(regs, key=lambda reg: reg.excess)
    top_q = max((r for r in regs if r.name in QUARTERS), key=lambda r: r.share)
    return Where(best, best.excess >= CONCENTRATED, top_q)


# --- the kind of change -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeKind:
    """The numbers the kind is read from, and the kind (see the module's rule)."""

    kind: str  # misalignment | blocky compression | detail lost | detail added | colour |
    # tone | fine texture | structure
    shift: tuple[int, int]  # (dx, dy) in px of the original images that aligns B best
    align_gain: float  # share of the pixel MSE removed by that shift
    chroma_change: float  # mean |dCb| + |dCr| / 2, 0..255
    luma_change: float  # mean |dY|, 0..255
    level_change: float  # mean Y of the explained image - mean Y of the reference, 0..255
    contrast_ratio: float  # std Y of the explained image / std Y of the reference
    detail_ratio: float  # fine detail of the explained image / of the reference
    block_ratio: float  # blockiness of the explained image / of the reference
    early_share: float  # share of the distance in the first half of the layers
    explained: str = "B"
    reference: str = "A"

    @property
    def tone_words(self) -> str:
        """How the tone moved, in words: the average brightness (on a 0-255 scale) and the
        contrast, each named when it moved past its limit (the brightness always)."""
        b = self.explained
        lv = self.level_change
        words = (f"{b} is {abs(lv):.1f} {'brighter' if lv > 0 else 'darker'} on average (on a "
                 f"0-255 scale)" if abs(lv) >= 0.05 else f"{b}'s average brightness is unchanged")
        r = self.contrast_ratio
        if contrast_changed(r):
            words += (f" and its contrast is {pct(abs(r - 1))} "
                      f"{'higher' if r > 1 else 'lower'}")
        return words

    @property
    def sentence(self) -> str:
        b, a = self.explained, self.reference
        if self.kind == "misalignment":
            dx, dy = self.shift
            moves = " and ".join(p for p in (
                f"{abs(dx)} px {'left' if dx < 0 else 'right'}" if dx else "",
                f"{abs(dy)} px {'up' if dy < 0 else 'down'}" if dy else "") if p)
            return (f"The kind of change: misalignment. Moving {b} {moves} removes "
                    f"{pct(self.align_gain)} of its brightness difference from {a} (where "
                    f"the two overlap).")
        if self.kind == "colour":
            return (f"The kind of change: colour. The colours shifted by "
                    f"{self.chroma_change:.1f} on average (the brightness by "
                    f"{self.luma_change:.1f}, on a 0-255 scale) while fine detail stayed "
                    f"({pct(self.detail_ratio)} of {a}'s).")
        if self.kind == "tone":
            colours = (f", its colours moved by {self.chroma_change:.1f} per pixel on "
                       f"average" if self.chroma_change >= TONE else "")
            return (f"The kind of change: brightness or contrast. {self.tone_words}"
                    f"{colours}; its fine detail is {pct(self.detail_ratio)} of {a}'s.")
        if self.kind == "blocky compression":
            return (f"The kind of change: blocky compression. {b}'s brightness jumps at the "
                    f"edges of 8 px blocks are {self.block_ratio:.1f} times {a}'s, as in "
                    f"heavily compressed JPEG.")
        if self.kind == "detail lost":
            return (f"The kind of change: softening. {b} keeps {pct(self.detail_ratio)} of "
                    f"{a}'s fine detail (sharp edges and texture), as a blur would.")
        if self.kind == "detail added":
            more = (f"{self.detail_ratio:.1f} times" if self.detail_ratio >= 2
                    else f"{pct(self.detail_ratio - 1)} more than")
            return (f"The kind of change: added fine detail. {b} has {more} {a}'s fine "
                    f"detail (grain or noise).")
        if self.kind == "fine texture":
            return (f"The kind of change: fine texture and edges. {pct(self.early_share)} of "
                    f"the distance comes from the network's first layers, which see small "
                    f"patches.")
        return (f"The kind of change: shapes and larger textures. {pct(1 - self.early_share)} "
                f"of the distance comes from the network's deeper layers, which see large "
                f"areas.")


LUMA_ROWS = 256  # rows converted at a time: a 16 MP pair holds no full float copy of the image


def _as_chw(x: Any) -> Any:
    """A 3xHxW float32 tensor in 0..255 of a 1x3xHxW tensor in [0, 1] (or an HxWx3 array)."""
    import torch

    if hasattr(x, "detach"):
        return x.detach().to("cpu", torch.float32)[0] * 255.0
    return torch.from_numpy(np.asarray(x, dtype=np.float32)).permute(2, 0, 1)


def _grey_grid(x: Any) -> tuple[np.ndarray, int]:
    """H x W x 3 float 0..255 of an image, block-averaged to at most KIND_SIDE px a side; and
    the block size."""
    import torch
    import torch.nn.functional as F

    tensor = hasattr(x, "detach")
    h, w = (int(s) for s in (x.shape[-2:] if tensor else x.shape[:2]))
    k = max(1, int(np.ceil(max(h, w) / KIND_SIDE)))
    if k == 1:
        t = _as_chw(x)
    else:  # pooled a band of whole blocks at a time: the same means, no full float copy
        hh, ww, step = h // k * k, w // k * k, max(1, LUMA_ROWS // k) * k
        bands = (x[..., r: min(r + step, hh), :] if tensor else x[r: min(r + step, hh)]
                 for r in range(0, hh, step))
        t = torch.cat([F.avg_pool2d(_as_chw(band)[None, :, :, :ww], k)[0] for band in bands],
                      dim=1)
    return t.permute(1, 2, 0).numpy().astype(np.float64), k


def _full_luma(x: Any) -> np.ndarray:
    """Brightness (BT.601 Y, 0..255) of an image at full resolution (float32), computed
    :data:`LUMA_ROWS` rows at a time (the same values as on the whole image at once)."""
    import torch

    if not hasattr(x, "detach"):
        t = _as_chw(x)
        return (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]).numpy()
    rgb = x.detach()[0]
    out = torch.empty(tuple(rgb.shape[-2:]), dtype=torch.float32)
    for r in range(0, out.shape[0], LUMA_ROWS):
        t = rgb[:, r: r + LUMA_ROWS].to("cpu", torch.float32) * 255.0
        out[r: r + LUMA_ROWS] = 0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2]
    return out.numpy()


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                  [0.5, -0.418688, -0.081312]])
    return rgb @ m.T


def _mse_at(a: np.ndarray, b: np.ndarray, dx: int, dy: int) -> float:
    """Mean squared difference of ``a`` and ``b`` moved by (dx, dy) over their overlap
    (b moved: b'[y, x] = b[y - dy, x - dx])."""
    h, w = a.shape[:2]
    ya, yb = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xa, xb = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    return float(((a[ya, xa] - b[yb, xb]) ** 2).mean())


def _half(y: np.ndarray) -> np.ndarray:
    h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
    return y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _best_shift(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, int], float, float]:
    """(dx, dy) moving brightness ``b`` onto ``a`` with the least mean squared difference
    over the overlap, at most MAX_SHIFT px each way (searched every 2 px on a half-size grid,
    then refined to the pixel around the best; ties: the smallest move); that MSE and the
    MSE without a move."""
    base = _mse_at(a, b, 0, 0)
    ha, hb = _half(a), _half(b)
    r = MAX_SHIFT // 2
    coarse = min((_mse_at(ha, hb, dx, dy), abs(dx) + abs(dy), dx, dy)
                  for dy in range(-r, r + 1) for dx in range(-r, r + 1))
    cx, cy = 2 * coarse[2], 2 * coarse[3]
    fine = min((_mse_at(a, b, dx, dy), abs(dx) + abs(dy), dx, dy)
                for dy in range(max(-MAX_SHIFT, cy - 1), min(MAX_SHIFT, cy + 1) + 1)
                for dx in range(max(-MAX_SHIFT, cx - 1), min(MAX_SHIFT, cx + 1) + 1))
    if base <= fine[0]:
        return (0, 0), base, base
    return (fine[2], fine[3]), fine[0], base


def blockiness(y: np.ndarray, block: int = BLOCK) -> float:
    """Mean absolute brightness step across block boundaries (between pixel block-1 and
    block of each block, both directions) over the mean step elsewhere: about 1 for a
    photograph, higher where block coding left its grid (on the full-resolution grid)."""
    y = np.asarray(y, dtype=np.float32)
    at_sum = off_sum = 0.0
    at_n = off_n = 0
    for axis in (1, 0):  # one direction at a time: one difference image in memory
        d = np.diff(y, axis=axis)
        np.abs(d, out=d)
        d = d if axis == 1 else d.T
        cols = d[:, block - 1::block]
        s_at, s_all = float(cols.sum(dtype=np.float64)), float(d.sum(dtype=np.float64))
        at_sum, at_n = at_sum + s_at, at_n + cols.size
        off_sum, off_n = off_sum + s_all - s_at, off_n + d.size - cols.size
    num, den = at_sum / max(1, at_n), off_sum / max(1, off_n)
    return num / den if den > 0 else 1.0


def contrast_changed(ratio: float) -> bool:
    """Whether a ratio of brightness standard deviations (explained / reference) is
    :data:`CONTRAST` or more away from 1, either way."""
    return max(ratio, 1 / ratio if ratio > 0 else np.inf) >= CONTRAST


def _detail(y: np.ndarray) -> float:
    """Mean squared 3x3 Laplacian of a brightness image (interior pixels) on its half-size
    grid (2x2 block means: detail a few pixels across, not only the finest pixel grain), over
    the image's brightness variance: a change of contrast alone leaves it unchanged."""
    y = _half(y)
    lap = (4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:])
    var = float(y.var())
    return float((lap ** 2).mean()) / var if var > 0 else 0.0


def change_kind(reference: Any, explained: Any, dec: Any, *, reference_name: str = "A",
                explained_name: str = "B") -> ChangeKind:
    """The kind of change from ``reference`` to ``explained`` (1x3xHxW tensors in [0, 1] of
    one size) by the module's rule; ``dec`` the pair's decomposition (its layer shares)."""
    a, k = _grey_grid(reference)
    b, _ = _grey_grid(explained)
    ya, yb = _ycbcr(a), _ycbcr(b)
    (dx, dy), mse, base = _best_shift(ya[..., 0], yb[..., 0])
    gain = (base - mse) / base if base > 0 else 0.0
    luma = float(np.abs(ya[..., 0] - yb[..., 0]).mean())
    level = float(yb[..., 0].mean() - ya[..., 0].mean())
    sa, sb = float(ya[..., 0].std()), float(yb[..., 0].std())
    contrast = sb / sa if sa > 0 else 1.0
    chroma = float(np.abs(ya[..., 1:] - yb[..., 1:]).mean())
    da = _detail(ya[..., 0])
    ratio = _detail(yb[..., 0]) / da if da > 0 else 1.0
    ba = blockiness(_full_luma(reference))  # one full-size brightness image at a time
    blocks = blockiness(_full_luma(explained)) / ba if ba > 0 else 1.0
    half = len(dec.layers) // 2
    early = float(sum(lay.share for lay in dec.layers[:half]))
    if (dx, dy) != (0, 0) and gain >= ALIGN_GAIN:
        kind = "misalignment"
    elif blocks >= BLOCKY:
        kind = "blocky compression"
    elif abs(level) >= BRIGHT and abs(level) >= chroma:
        kind = "tone"
    elif ratio <= LOST:
        kind = "detail lost"
    elif ratio >= ADDED:
        kind = "detail added"
    elif chroma >= COLOUR * luma and chroma >= TONE:
        kind = "colour"
    elif abs(level) >= TONE or contrast_changed(contrast):
        kind = "tone"
    elif early >= EARLY_HEAVY:
        kind = "fine texture"
    else:
        kind = "structure"
    return ChangeKind(kind, (dx * k, dy * k), gain, chroma, luma, level, contrast, ratio,
                      blocks, early, explained_name, reference_name)


# --- the repair in words ---------------------------------------------------------------------


def repair_sentence(rep: Any, explained: str = "B", reference: str = "A") -> str | None:
    """What repairing would do, in words: the evaluated area that halves the distance and
    the region holding most of the repaired patches (None for a zero distance)."""
    if rep is None or rep.base_distance <= 0:
        return None
    if rep.half_area is None:
        last = len(rep.curve_area) - 1
        return (f"No repair tried halves the distance: restoring {pct(rep.curve_area[last])} "
                f"of {explained}'s area from {reference} leaves "
                f"{rep.curve_distance[last]:.4f} of {rep.base_distance:.4f}.")
    i = int(np.flatnonzero(rep.curve_area == rep.half_area)[0])
    mask = rep.mask(int(rep.curve_steps[i]))
    reg = busiest(mask)
    where_ = (f", mostly the {reg.name} ({pct(reg.share)} of the restored area)"
              if reg.excess >= CONCENTRATED else ", spread over the image")
    return (f"Restoring {pct(rep.half_area)} of {explained}'s area from {reference}{where_}, "
            f"halves the distance (from {rep.base_distance:.4f} to "
            f"{rep.curve_distance[i]:.4f}).")

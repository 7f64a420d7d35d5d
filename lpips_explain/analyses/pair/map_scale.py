"""One colour scale per trunk, version and layer for spatial distance maps, with its source.

A map drawn on its own pair's maximum always looks equally hot: a mild shift and heavy
noise both reach the top colour somewhere. Drawn on a fixed scale they compare honestly.
The fixed limits here are the 95th percentile of the per-position distance over the
bundled distortions (every sample pair of assets/ and every perturbation of the registry
applied to the bundled originals; the same set as the category limits), computed with the
verified published trunk by ``scripts/make_map_scales.py`` and shipped in
``map_scales.json``; the summed map and each layer's own map have their own limit (a
position's distance is the same quantity at every upsampling). Where no such limit exists,
or the trunk is not the verified published one, the map is drawn on the pair's own maximum
and says so: it then shows where, not how much compared with other pairs.

Whatever the scale, :func:`hottest_window` finds the window (a quarter of the height and the
width) that holds the most of a map, which the figures outline: where to look first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpips_explain.analyses.pair import tables
from lpips_explain.errors import InputError

TABLE_FILE = Path(__file__).with_name("map_scales.json")
PERCENTILE = 95.0
SUMMED = "all"  # the table's key for the map summed over all layers


@dataclass(frozen=True)
class MapScale:
    """The top of a distance map's colour scale (the bottom is 0) and where it comes from.

    ``fixed``: one limit for every pair of this trunk, version and layer, so equal colours
    mean equal distances across pairs; otherwise it is this pair's own maximum.
    """

    limit: float
    fixed: bool
    net: str
    version: str
    layer: str  # SUMMED or a layer name
    source: str

    @property
    def label(self) -> str:
        """The scale in a few words, for a caption: which limit, and why it was chosen."""
        if self.fixed:
            return (f"fixed scale 0 to {self.limit:.2g} for {self.net} v{self.version} "
                    f"({'all layers' if self.layer == SUMMED else 'layer ' + self.layer}; "
                    f"the same for every pair, higher values drawn at the top colour)")
        why = f" ({self.source})" if self.source else ""
        return (f"this pair's own scale, 0 to its maximum {self.limit:.3g}{why}: it shows "
                f"where, not how much compared with other pairs")

    def to_dict(self) -> dict:
        return {"limit": self.limit, "fixed": self.fixed, "net": self.net,
                "version": self.version, "layer": self.layer, "source": self.source}


def load_table() -> dict:
    """The shipped table: {"method": ..., "tables": {"alex/0.1": {"all": x, "layers": {...}}}}."""
    return tables.read(str(TABLE_FILE))


key = tables.key


def fixed_limit(net: str, version: str, layer: str | None = None) -> float | None:
    """The shipped limit for the summed map (``layer`` None) or one layer's map, or None."""
    entry = load_table().get("tables", {}).get(key(net, version))
    if not entry:
        return None
    value = entry.get(SUMMED) if layer is None else entry.get("layers", {}).get(layer)
    return float(value) if value is not None and math.isfinite(float(value)) and value > 0 \
        else None


def map_scale(heat: np.ndarray, net: str, version: str, layer: str | None = None, *,
              perceptual: bool, reason: str | None = None) -> MapScale:
    """The colour scale for ``heat`` (one pair's map of ``layer``, None: all layers summed).

    ``perceptual`` is whether the trunk is the verified published one (with official heads);
    ``reason`` says why not, for the caption.
    """
    name = SUMMED if layer is None else layer
    limit = fixed_limit(net, version, layer) if perceptual else None
    if limit is not None:
        entry = load_table()["tables"][key(net, version)]
        source = (f"the {entry.get('percentile', PERCENTILE):g}th percentile of the "
                  f"per-position distance over {entry.get('pairs', '?')} distorted versions "
                  f"of the bundled images ({entry.get('source', TABLE_FILE.name)})")
        return MapScale(limit, True, net, version, name, source)
    z = np.asarray(heat, dtype=np.float64)
    finite = z[np.isfinite(z)]
    top = float(finite.max()) if finite.size else 0.0
    why = (reason or "the trunk is not the verified published one") if not perceptual else \
        f"no fixed scale has been computed for {net} v{version}"
    return MapScale(top if top > 0 else 1.0, False, net, version, name, why)


def nice_limit(value: float) -> float:
    """``value`` rounded up to two significant digits (a colour bar's readable top)."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    step = 10.0 ** (math.floor(math.log10(value)) - 1)
    return round(math.ceil(value / step - 1e-9) * step, 12)


def table_entry(summed: Iterable[np.ndarray], layers: dict[str, list[np.ndarray]], *,
                pairs: int, source: str = "", percentile: float = PERCENTILE) -> dict:
    """One row of the table from every pair's summed map and each layer's own maps."""
    pooled = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in summed])
    return {
        SUMMED: nice_limit(float(np.percentile(pooled, percentile))),
        "layers": {name: nice_limit(float(np.percentile(
            np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps]),
            percentile))) for name, maps in layers.items()},
        "percentile": percentile, "pairs": pairs, "max": float(pooled.max()),
        "source": source,
    }


def scale_for(expl: Any, layer: int | str | None = None,
              upsample: str = "bilinear") -> MapScale:
    """The colour scale of an Explanation's distance map (``layer`` None: all layers summed):
    the fixed one for the verified published trunk with the official heads (the only case
    the shipped limits were measured for), this pair's own maximum otherwise."""
    dec = expl.decomposition
    heads = getattr(expl, "lin_heads", None)
    backbone = expl.backbone
    perceptual = bool(backbone.perceptual) and (heads is None or heads.official)
    reason = (f"{heads.label}; the fixed scale belongs to the official heads"
              if heads is not None and not heads.official else
              None if perceptual else (backbone.reason or "not the verified published trunk"))
    name = None if layer is None else dec.layer(layer).name
    fixed = fixed_limit(dec.net, dec.version, name) if perceptual else None
    heat = dec.spatial_map(layer, upsample) if fixed is None else np.zeros((1, 1))
    return map_scale(heat, dec.net, dec.version, name, perceptual=perceptual, reason=reason)


@dataclass(frozen=True)
class Hotspot:
    """The window of a map that holds the most of it: where to look first.

    ``top``, ``left``, ``height``, ``width`` are in the map's own pixels (row 0 at the top);
    ``share`` is the fraction of the map's total inside the window, ``area`` the fraction of
    the map the window covers.
    """

    top: int
    left: int
    height: int
    width: int
    share: float
    area: float

    shape: tuple[int, int]  # (h, w) of the map it was found in

    @property
    def edges(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the window's edges as fractions of the map's width and height,
        the same on the image the map is stretched over."""
        h, w = self.shape
        return (self.left / w, self.top / h, (self.left + self.width) / w,
                (self.top + self.height) / h)

    def to_dict(self) -> dict:
        return {"top": self.top, "left": self.left, "height": self.height,
                "width": self.width, "share": self.share, "area": self.area,
                "shape": list(self.shape)}


HOTSPOT_FRACTION = 0.25  # the window's side as a fraction of the map's height and width


def hottest_window(heat: np.ndarray, fraction: float = HOTSPOT_FRACTION) -> Hotspot:
    """The window of ``fraction`` of the map's height and width (every position tried) with
    the largest sum; ties go to the first (top, then left)."""
    z = np.nan_to_num(np.asarray(heat, dtype=np.float64), nan=0.0)
    if z.ndim != 2 or z.size == 0:
        raise InputError(f"hottest_window takes a non-empty HxW map, got shape {z.shape}.")
    if not 0 < fraction <= 1:
        raise InputError(f"The window fraction must be in (0, 1], got {fraction}.")
    h, w = z.shape
    wh, ww = max(1, round(h * fraction)), max(1, round(w * fraction))
    c = np.zeros((h + 1, w + 1))
    c[1:, 1:] = z.cumsum(0).cumsum(1)
    sums = c[wh:, ww:] - c[:-wh, ww:] - c[wh:, :-ww] + c[:-wh, :-ww]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    total = float(z.sum())
    share = float(sums[top, left]) / total if total > 0 else 0.0
    return Hotspot(int(top), int(left), wh, ww, share, wh * ww / (h * w), (h, w))

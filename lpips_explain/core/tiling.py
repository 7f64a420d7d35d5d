"""Exact LPIPS on large images in bounded memory: trunk features computed in tiles.

Why tiling can be exact. LPIPS is a sum over layers of the mean, over the layer's map, of
``sum_c w_c (y0 - y1)^2`` (DESIGN.md section 2). Every cell of a tapped layer depends only
on a window of the input (its receptive field), so a cell computed on a crop of the image
equals the same cell computed on the whole image when

* the crop holds the cell's whole receptive field, except where that field runs past a
  true image border (there both see the same padding);
* the crop starts at a multiple of every stride on the way down (the trunk's total
  stride S = 16 for all three trunks), so the crop's cell grid is the image's grid shifted
  by a whole number of cells at every layer, pooling windows included.

The geometry is read from the trunk's modules (:func:`trunk_geometry`): cell ``k`` of a tap
with stride ``s``, offset ``p`` and extent ``r`` depends on input rows
``k*s - p .. k*s - p + r - 1``. A tile owns the cells ``[y0/s, y1/s)`` of every tap (its
core ``[y0, y1)`` in pixels, y0 a multiple of S), computes the trunk on a crop just large
enough to hold those cells' receptive fields (the halo), and adds each layer's squared
differences over the cells it owns; the sums, divided by the full map sizes, give the
distance. tests/test_tiling.py checks the geometry against the real modules (shapes and
gradients) and the tiled distance against the untiled one for all trunks and versions.

Memory. :func:`untiled_bytes` and :func:`tile_bytes` estimate, from the layer shapes and
the image size alone, the peak bytes of tensors one computation holds (the image pair
included); :func:`plan_memory` compares the untiled estimate with the budget, and when it
does not fit picks the largest tile core whose estimate fits, or refuses
(:class:`~lpips_explain.errors.MemoryBudgetError`) before any work when even the smallest
tile cannot fit. The Python interpreter, torch and the network weights are not counted
(measured in benchmarks/bench_large.py). While tiles run, glibc is asked to return freed
tensors to the system at once (see :func:`~lpips_explain.core.memory.freed_memory_returned`).
"""

from __future__ import annotations

import math
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpips_explain.core.decompose import ChannelDetail, Decomposition, LayerBreakdown
from lpips_explain.core.memory import freed_memory_returned
from lpips_explain.core.model import EPS_SQ, LpipsNet
from lpips_explain.errors import InputError, MemoryBudgetError

MAX_MEMORY_ENV = "LPIPS_EXPLAIN_MAX_MEMORY"
# Without a budget named: half of the memory the system reports available when the
# Explainer is built (the rest is left to the interpreter, torch, the weights and other
# programs), or FALLBACK_MAX_MEMORY where the system does not say.
DEFAULT_MAX_MEMORY = "half the memory available"
FALLBACK_MAX_MEMORY = "2GB"
# Maps of tiled (large) images are kept as block means so that no map has more than this
# many cells on its longer side; the factor is stated on every layer (display_factor).
MAX_DISPLAY_CELLS = 256
F32 = 4  # bytes per float32 value
F64 = 8

# The batch sizes the analyses use by default (sensitivity.py, repair.py: batch_size=16;
# attribution.py: internal_batch_size=8); the budget check of those parts assumes them.
SCORE_BATCH = 16
GRADIENT_BATCH = 8
# SSIM (analyses/quality.py) filters this many pixels per image channel at once, holding about
# SSIM_PLANES float32 copies of each image in the chunk (measured: VmHWM rise at 512 and
# 1024 px, benchmarks/bench_parts_memory.py).
SWEEP_SSIM_PIXELS = 4 * 512 * 512
SSIM_PLANES = 14


# -- sizes ----------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


def parse_bytes(value: int | float | str) -> int:
    """A memory size: an int (bytes) or text such as "1.5GB", "800MB", "2GiB" (GB = 10^9)."""
    if isinstance(value, bool):
        raise InputError(f"A memory size must be a number of bytes or text like '1.5GB', "
                         f"got {value!r}.")
    if isinstance(value, int | float | np.integer | np.floating):
        number, unit = float(value), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
        if m is None or m.group(2).lower() not in _UNITS:
            raise InputError(f"Cannot read the memory size {value!r}: write it like '1.5GB', "
                             f"'800MB' or '2GiB' (GB = 10^9 bytes, GiB = 2^30).")
        number, unit = float(m.group(1)), m.group(2).lower()
    size = number * _UNITS[unit]
    if not math.isfinite(size) or size <= 0:
        raise InputError(f"A memory size must be positive, got {value!r}.")
    return int(size)


def format_bytes(n: float) -> str:
    """Bytes for people: 1.53 GB, 840 MB (decimal units, as --max-memory reads them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def available_memory() -> int | None:
    """Bytes of memory the system reports available (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory() -> int:
    """The budget when none is named: ``$LPIPS_EXPLAIN_MAX_MEMORY``, else half of the
    memory available now (see :data:`DEFAULT_MAX_MEMORY`)."""
    raw = os.environ.get(MAX_MEMORY_ENV, "").strip()
    if raw:
        try:
            return parse_bytes(raw)
        except InputError as exc:
            raise InputError(f"{MAX_MEMORY_ENV}={raw!r}: {exc}") from None
    available = available_memory()
    return available // 2 if available else parse_bytes(FALLBACK_MAX_MEMORY)


# -- geometry -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One trunk module as seen along one image axis (all kernels here are square)."""

    index: int  # position in the torchvision ``features``
    kind: str  # "conv", "pool", "relu" or "fire"
    kernel: int
    stride: int
    padding: int
    ceil_mode: bool
    out_channels: int  # 0: same as the input
    inplace: bool = False
    # fire: channels of squeeze, expand1x1 and expand3x3 (alive at once inside the module)
    inner_channels: tuple[int, ...] = ()

    def out_size(self, n: int) -> int:
        """Output length for input length ``n`` (PyTorch's formulas, ceil mode included)."""
        # PyTorch's pooling_output_shape (a convolution is the floor case).
        span = n + 2 * self.padding - self.kernel + (self.stride - 1 if self.ceil_mode else 0)
        out = span // self.stride + 1
        # In ceil mode a last window may run past the input, but must start inside it.
        if self.ceil_mode and (out - 1) * self.stride >= n + self.padding:
            out -= 1
        return max(out, 0)


def _pair(v: int | tuple[int, ...]) -> int:
    vals = (v, v) if isinstance(v, int) else tuple(v)
    if len(set(vals)) != 1:
        raise NotImplementedError(f"non-square kernel, stride or padding {v!r}")
    return int(vals[0])


def _conv_step(i: int, m: nn.Conv2d) -> Step:
    if _pair(m.dilation) != 1 or m.groups != 1:
        raise NotImplementedError("dilated or grouped convolutions")
    return Step(i, "conv", _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), False,
                m.out_channels)


def _step(i: int, m: nn.Module) -> Step:
    if isinstance(m, nn.Conv2d):
        return _conv_step(i, m)
    if isinstance(m, nn.MaxPool2d):
        if _pair(m.dilation) != 1:
            raise NotImplementedError("dilated pooling")
        return Step(i, "pool", _pair(m.kernel_size), _pair(m.stride or m.kernel_size),
                    _pair(m.padding), bool(m.ceil_mode), 0)
    if isinstance(m, nn.ReLU | nn.Dropout):
        return Step(i, "relu", 1, 1, 0, False, 0, inplace=bool(getattr(m, "inplace", False)))
    names = {n for n, _ in m.named_children()}
    if names >= {"squeeze", "expand1x1", "expand3x3"}:  # torchvision's SqueezeNet Fire
        sq, e1, e3 = (_conv_step(i, getattr(m, n)) for n in ("squeeze", "expand1x1", "expand3x3"))
        if sq.kernel != 1 or sq.stride != 1 or e1.stride != 1 or e3.stride != 1:
            raise NotImplementedError("a Fire module with strides")
        # Both branches read the squeezed map with stride 1; the union of their windows is
        # [k - max(p), k + max(kernel - 1 - p)], i.e. one window of that kernel and padding.
        pad = max(e1.padding, e3.padding)
        kernel = pad + max(e1.kernel - 1 - e1.padding, e3.kernel - 1 - e3.padding) + 1
        if e1.kernel - 2 * e1.padding != e3.kernel - 2 * e3.padding:
            raise NotImplementedError("Fire branches of different output sizes")
        return Step(i, "fire", kernel, 1, pad, False, e1.out_channels + e3.out_channels,
                    inner_channels=(sq.out_channels, e1.out_channels, e3.out_channels))
    raise NotImplementedError(f"no tiling geometry for {type(m).__name__}")


@dataclass(frozen=True)
class TapGeometry:
    """Where a tapped layer's cells come from: cell k reads input pixels
    ``k*stride - offset`` to ``k*stride - offset + extent - 1`` (one axis)."""

    index: int  # module index in ``features``
    channels: int
    stride: int
    offset: int
    extent: int

    def window(self, first: int, last: int) -> tuple[int, int]:
        """Input pixels (inclusive) that cells ``first..last`` read, padding positions included."""
        return first * self.stride - self.offset, last * self.stride - self.offset + self.extent - 1


@dataclass(frozen=True)
class Geometry:
    """A trunk's modules up to its last tap, the taps' windows and its total stride."""

    steps: tuple[Step, ...]
    taps: tuple[TapGeometry, ...]
    total_stride: int
    in_channels: int = 3

    @property
    def halo(self) -> tuple[int, int]:
        """Pixels a tile reads beyond its core: (before, after), before rounded to the stride."""
        before = max(t.offset for t in self.taps)
        after = max(t.extent - t.offset - t.stride for t in self.taps)
        return -(-before // self.total_stride) * self.total_stride, max(0, after)

    @cached_property
    def min_length(self) -> int:
        """The shortest input length along an axis for which every layer has a cell."""
        n = 1
        while min(self.map_sizes(n)) < 1:
            n += 1
        return n

    def map_sizes(self, n: int) -> list[int]:
        """Length of every step's output along an axis of input length ``n``."""
        out = []
        for s in self.steps:
            n = s.out_size(n)
            out.append(n)
        return out

    def tap_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        hs, ws = self.map_sizes(h), self.map_sizes(w)
        pos = {s.index: k for k, s in enumerate(self.steps)}
        return [(hs[pos[t.index]], ws[pos[t.index]]) for t in self.taps]


def trunk_geometry(features: nn.Sequential, taps: Sequence[int], in_channels: int = 3) -> Geometry:
    """Read the tiling geometry off a torchvision ``features`` trunk (up to its last tap)."""
    steps = tuple(_step(i, m) for i, m in enumerate(features[: taps[-1] + 1]))
    out: list[TapGeometry] = []
    stride, offset, extent, channels = 1, 0, 1, in_channels
    tapset = set(taps)
    for s in steps:
        offset += s.padding * stride
        extent += (s.kernel - 1) * stride
        stride *= s.stride
        channels = s.out_channels or channels
        if s.index in tapset:
            out.append(TapGeometry(s.index, channels, stride, offset, extent))
    return Geometry(steps, tuple(out), stride, in_channels)


_GEOMETRY: weakref.WeakKeyDictionary[nn.Module, Geometry] = weakref.WeakKeyDictionary()
_GEOMETRY_LOCK = threading.Lock()


def geometry_of(net: LpipsNet) -> Geometry:
    """The geometry of ``net``'s trunk (computed once per trunk object)."""
    with _GEOMETRY_LOCK:
        geom = _GEOMETRY.get(net.features)
        if geom is None:
            geom = _GEOMETRY[net.features] = trunk_geometry(net.features, net.spec.taps)
    return geom


# -- tiles --------------------------------------------------------------------------------
def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: the input crop and, per tap, the global cells it owns."""

    start: int  # crop [start, stop) in input pixels; start is a multiple of the total stride
    stop: int
    cells: tuple[tuple[int, int], ...]  # per tap: owned cells [first, end) in global indices
    core: tuple[int, int] = (0, 0)  # the pixels [y0, y1) whose cells the tile owns


def axis_tiles(geom: Geometry, n: int, core: int) -> list[AxisTile]:
    """Split an axis of ``n`` pixels into tiles with cores of at most ``core`` pixels."""
    s_tot = geom.total_stride
    if core < s_tot or core % s_tot:
        raise ValueError(f"tile core {core} must be a positive multiple of {s_tot}")
    count = max(1, -(-n // core))
    core = _ceil_div(_ceil_div(n, count), s_tot) * s_tot  # even cores, rounded to the stride
    bounds = [min(n, i * core) for i in range(count)] + [n]
    if count > 1 and bounds[-1] - bounds[-2] < s_tot:  # a sliver joins the tile before it
        del bounds[-2]
        count -= 1
    sizes = geom.map_sizes(n)
    pos = {s.index: k for k, s in enumerate(geom.steps)}
    tiles = []
    for i in range(count):
        y0, y1 = bounds[i], bounds[i + 1]
        if y0 >= y1:
            continue
        cells, lo, hi = [], None, None
        for t in geom.taps:
            size = sizes[pos[t.index]]
            first = min(size, y0 // t.stride)
            end = size if i == count - 1 or y1 >= n else min(size, y1 // t.stride)
            cells.append((first, end))
            if end > first:
                a, b = t.window(first, end - 1)
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
        if lo is None:
            continue
        start = max(0, lo // s_tot * s_tot)
        stop = min(n, hi + 1)
        # A crop too short for the trunk to run (a thin last tile) grows: more context
        # changes none of the cells it owns.
        short = geom.min_length - (stop - start)
        if short > 0:
            stop = min(n, stop + short)
            start = max(0, (stop - geom.min_length) // s_tot * s_tot)
        tiles.append(AxisTile(start, stop, tuple(cells), (y0, y1)))
    _check_axis(geom, n, tiles)
    return tiles


def _check_axis(geom: Geometry, n: int, tiles: list[AxisTile]) -> None:
    """Every cell owned once; every crop aligned and holding the cells it owns."""
    sizes = geom.map_sizes(n)
    pos = {s.index: k for k, s in enumerate(geom.steps)}
    for li, t in enumerate(geom.taps):
        owned = sorted(tile.cells[li] for tile in tiles if tile.cells[li][1] > tile.cells[li][0])
        covered = 0
        for first, end in owned:
            if first != covered:
                raise AssertionError(f"tap {t.index}: cells {covered}..{first} not owned")
            covered = end
        if covered != sizes[pos[t.index]]:
            raise AssertionError(f"tap {t.index}: {covered} of {sizes[pos[t.index]]} cells owned")
    for tile in tiles:
        if tile.start % geom.total_stride:
            raise AssertionError("tile start not aligned to the total stride")
        local = geom.map_sizes(tile.stop - tile.start)
        for li, t in enumerate(geom.taps):
            first, end = tile.cells[li]
            if end > first and end - tile.start // t.stride > local[pos[t.index]]:
                raise AssertionError(f"tap {t.index}: crop too small for its cells")


# -- memory estimates ---------------------------------------------------------------------
def _forward_peak(geom: Geometry, h: int, w: int, batch: int, *, keep_taps: bool,
                  tap_extra: float, input_copies: int) -> int:
    """Peak float32 values alive in one pass over the trunk, its input included.

    ``keep_taps``: tapped outputs stay alive to the end (the untiled route collects them);
    ``tap_extra``: values allocated at a tap while processing it, in units of the tap;
    ``input_copies``: copies of the input alive while it is prepared (LpipsNet.taps makes
    x * 2 - 1, h - shift, the quotient and a channels_last copy: up to 4 with x; the tiled
    route works in place on one buffer: 1).
    """
    hs, ws = geom.map_sizes(h), geom.map_sizes(w)
    tapset = {t.index for t in geom.taps}
    prev = batch * geom.in_channels * h * w
    channels = geom.in_channels
    kept = 0
    peak = input_copies * prev
    for k, s in enumerate(geom.steps):
        channels = s.out_channels or channels
        out = batch * channels * hs[k] * ws[k]
        inner = batch * sum(s.inner_channels) * hs[k] * ws[k]
        # While a module runs its input and output are alive (an in-place ReLU adds nothing);
        # a Fire module also holds its squeeze and both expand outputs.
        here = prev if (s.kind == "relu" and s.inplace) else prev + inner + out
        peak = max(peak, kept + here)
        if s.index in tapset:
            peak = max(peak, kept + out + int(tap_extra * out))
            if keep_taps:
                kept += out
        prev = out
    return int(peak)


def _accumulator_values(geom: Geometry, h: int, w: int, maps: int) -> int:
    total = 0
    for th, tw in geom.tap_sizes(h, w):
        f = display_factor(th, tw)
        total += maps * (-(-th // f)) * (-(-tw // f))
    return total


def display_factor(h: int, w: int) -> int:
    """Block size (cells) so that a map of h x w has at most MAX_DISPLAY_CELLS per side."""
    return max(1, -(-max(h, w) // MAX_DISPLAY_CELLS))


def untiled_bytes(geom: Geometry, h: int, w: int, kind: str = "decompose",
                  batch: int = 1, maps: int = 0) -> int:
    """Peak bytes of tensors of the untiled routes, the input images included.

    ``distance``: LpipsNet.forward on a pair (both images in one batch, taps kept, then
    normalised copies and a squared difference per layer). ``decompose``: the reference
    encoded (ReferenceScorer), the candidate encoded, then per layer float64 copies of both
    and their squared difference (core/decompose.py). ``score``: ``batch`` candidates scored
    against an encoded reference. ``sweep``: ``score``, then SSIM of those candidates
    against the reference (the sensitivity's sweeps, analyses/quality.py). ``gradient``:
    ``batch`` candidates with the autograd graph kept (attribution): every module output is
    saved, and the backward pass holds gradients of the same sizes. ``maps``: full-resolution float64 maps per layer in the result
    (decompose: 1 spatial + 3 per top channel).
    """
    image = geom.in_channels * h * w
    taps = [t.channels * th * tw for t, (th, tw) in zip(geom.taps, geom.tap_sizes(h, w),
                                                        strict=True)]
    largest, total = max(taps), sum(taps)
    if kind == "distance":
        fwd = _forward_peak(geom, h, w, 2, keep_taps=True, tap_extra=0, input_copies=4)
        values = 2 * image + max(fwd, 2 * 2 * total + 2 * largest)
    elif kind == "decompose":
        enc = _forward_peak(geom, h, w, 1, keep_taps=True, tap_extra=0, input_copies=4)
        values = 2 * image + max(total + enc, 2 * total + total,  # ref, raw taps, normalised
                                 2 * total + 8 * largest)  # float64 a, b, a - b, (a - b)^2
    elif kind in ("score", "sweep"):
        enc = _forward_peak(geom, h, w, batch, keep_taps=True, tap_extra=0,
                            input_copies=4)
        values = (1 + batch) * image + total + max(
            enc, 2 * batch * total + 2 * batch * largest)
        if kind == "sweep":  # then SSIM of the batch, SWEEP_SSIM_PIXELS at a time
            chunk = min(batch, max(1, SWEEP_SSIM_PIXELS // max(1, h * w)))
            values = max(values, (1 + 2 * batch + SSIM_PLANES * chunk) * image)
    elif kind == "gradient":
        hs, ws = geom.map_sizes(h), geom.map_sizes(w)
        channels, saved = geom.in_channels, 0
        for k, s in enumerate(geom.steps):
            channels = s.out_channels or channels
            if not (s.kind == "relu" and s.inplace):
                saved += batch * (channels + sum(s.inner_channels)) * hs[k] * ws[k]
        # Saved outputs, normalised taps (and their norms' graph), gradients of the same size.
        values = (2 + 2 * batch) * image + total + 2 * (saved + 2 * batch * total)
    else:
        raise ValueError(f"unknown route {kind!r}")
    cells = sum(th * tw for th, tw in geom.tap_sizes(h, w))
    return int(values * F32 + maps * cells * F64)


def tile_bytes(geom: Geometry, h: int, w: int, crop_h: int, crop_w: int, *,
               maps: int = 0) -> int:
    """Peak bytes of the tiled route: the image pair, the map accumulators and one tile.

    One tile runs both crops as a batch of two; at each tap the owned cells of both images
    are normalised (two copies), then the difference is squared in place. ``maps``: block
    accumulators per layer (1 for the spatial map, 1 + 3 top_k with channel maps).
    """
    image = geom.in_channels * h * w
    fwd = _forward_peak(geom, crop_h, crop_w, 2, keep_taps=False, tap_extra=1.5,
                        input_copies=1)
    # Block maps are accumulated in float32 and returned as float64 arrays.
    return int((2 * image + fwd) * F32 + _accumulator_values(geom, h, w, maps) * (F32 + F64))


# -- plans --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryPlan:
    """How one comparison will run within the memory budget, decided before any work."""

    net: str
    size: tuple[int, int]  # (height, width)
    budget: int  # bytes
    untiled: int  # estimated peak bytes of the untiled route
    estimate: int  # estimated peak bytes of the route chosen
    core: int | None = None  # the largest tile core in pixels (either axis); None: untiled
    tiles: tuple[tuple[AxisTile, ...], tuple[AxisTile, ...]] | None = field(
        default=None, repr=False)
    halo: tuple[int, int] = (0, 0)

    @property
    def tiled(self) -> bool:
        return self.core is not None

    @property
    def count(self) -> int:
        return 1 if self.tiles is None else len(self.tiles[0]) * len(self.tiles[1])

    @property
    def largest_crop(self) -> tuple[int, int]:
        if self.tiles is None:
            return self.size
        return (max(t.stop - t.start for t in self.tiles[0]),
                max(t.stop - t.start for t in self.tiles[1]))

    def describe(self) -> str:
        h, w = self.size
        if not self.tiled:
            return (f"{w}x{h} px with {self.net}: untiled, estimated {format_bytes(self.estimate)} "
                    f"(budget {format_bytes(self.budget)}).")
        ch, cw = self.largest_crop
        return (f"{w}x{h} px with {self.net}: {self.count} tile{'' if self.count == 1 else 's'}"
                f" with cores of up to {self.core} px a side (crops up to {cw}x{ch} px with "
                f"the halo), "
                f"estimated {format_bytes(self.estimate)} against "
                f"{format_bytes(self.untiled)} untiled (budget {format_bytes(self.budget)}).")

    def to_dict(self) -> dict:
        return {"tiled": self.tiled, "tiles": self.count, "core": self.core,
                "largest_crop": list(self.largest_crop), "halo": list(self.halo),
                "estimate_bytes": self.estimate, "untiled_estimate_bytes": self.untiled,
                "budget_bytes": self.budget}


def _advice(net: str) -> str:
    return (f"Raise the budget (--max-memory, Explainer(max_memory=...) or {MAX_MEMORY_ENV}), "
            f"downsize the images" + ("" if net == "alex" else ", or use the alex trunk "
                                      "(the lightest)") + ".")


def plan_memory(net: LpipsNet, size: tuple[int, int], budget: int, *, kind: str = "decompose",
                maps: int = 0, core: int | tuple[int, int] | None = None) -> MemoryPlan:
    """Decide untiled or tiled for images of ``size`` (h, w) within ``budget`` bytes.

    Untiled when its estimate fits; otherwise the largest tile core (a multiple of the
    total stride) whose estimate fits. ``core`` forces tiling with that core (tests,
    benchmarks). Raises MemoryBudgetError before any work when nothing fits.
    """
    geom = geometry_of(net)
    h, w = int(size[0]), int(size[1])
    untiled = untiled_bytes(geom, h, w, kind, maps=maps)
    if core is None and untiled <= budget:
        return MemoryPlan(net.spec.name, (h, w), budget, untiled, untiled)

    def estimate(c: int | tuple[int, int]) -> tuple[int, tuple]:
        cy, cx = (c, c) if isinstance(c, int) else c
        ty, tx = axis_tiles(geom, h, cy), axis_tiles(geom, w, cx)
        ch = max(t.stop - t.start for t in ty)
        cw = max(t.stop - t.start for t in tx)
        return tile_bytes(geom, h, w, ch, cw, maps=maps), (tuple(ty), tuple(tx))

    s_tot = geom.total_stride
    if core is not None:
        cores = (core, core) if isinstance(core, int) else tuple(core)
        if len(cores) != 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < s_tot
                                  or c % s_tot for c in cores):
            raise InputError(f"The tile core must be a positive multiple of {s_tot} px (or a "
                             f"pair of them: rows, columns), got {core!r}.")
        est, tiles = estimate(cores)
        return MemoryPlan(net.spec.name, (h, w), budget, untiled, est, _core_of(tiles), tiles,
                          geom.halo)
    smallest, tiles = estimate(s_tot)
    if smallest > budget:
        image = 2 * geom.in_channels * h * w * F32
        raise MemoryBudgetError(
            f"Comparing two {w}x{h} px images with the {net.spec.name!r} trunk needs an "
            f"estimated {format_bytes(smallest)} even in the smallest tiles "
            f"({s_tot}x{s_tot} px cores; the image pair alone takes {format_bytes(image)}), "
            f"more than the memory budget of {format_bytes(budget)}; nothing was computed. "
            f"{_advice(net.spec.name)}",
            estimate=smallest, budget=budget)
    lo, hi = 1, max(1, -(-max(h, w) // s_tot))  # cores in units of the stride
    best = (smallest, tiles, s_tot)
    while lo < hi:  # the largest core whose estimate fits (estimates grow with the core)
        mid = (lo + hi + 1) // 2
        est, t = estimate(mid * s_tot)
        if est <= budget:
            lo, best = mid, (est, t, mid * s_tot)
        else:
            hi = mid - 1
    est, tiles, _ = best
    return MemoryPlan(net.spec.name, (h, w), budget, untiled, est, _core_of(tiles), tiles,
                      geom.halo)


def _core_of(tiles: tuple[tuple[AxisTile, ...], ...]) -> int:
    """The largest tile core (pixels, either axis) of a tiling."""
    return max(t.core[1] - t.core[0] for axis in tiles for t in axis)


def check_fits(net: LpipsNet, size: tuple[int, int], budget: int, kind: str, batch: int,
               what: str) -> int:
    """Refuse (MemoryBudgetError) an untileable computation whose estimate exceeds the budget."""
    geom = geometry_of(net)
    h, w = int(size[0]), int(size[1])
    est = untiled_bytes(geom, h, w, kind, batch)
    if est > budget:
        raise MemoryBudgetError(
            f"{what} on {w}x{h} px images with the {net.spec.name!r} trunk runs the whole image "
            f"at once (batches of {batch}) and needs an estimated {format_bytes(est)}, more than "
            f"the memory budget of {format_bytes(budget)}; nothing was computed. The distance "
            f"and its layer breakdown work at any size (computed in tiles). "
            f"{_advice(net.spec.name)}", estimate=est, budget=budget)
    return est


# -- the tiled computation ----------------------------------------------------------------
def _block_add(acc: Tensor, m: Tensor, r0: int, c0: int, f: int) -> None:
    """Add map ``m`` (placed at global cell r0, c0) into block sums ``acc`` of f x f cells."""
    m = m.to(torch.float32)
    if f == 1:
        acc[r0: r0 + m.shape[0], c0: c0 + m.shape[1]] += m
        return
    rb0, cb0 = r0 // f, c0 // f
    rows = (torch.arange(r0, r0 + m.shape[0]) // f) - rb0
    cols = (torch.arange(c0, c0 + m.shape[1]) // f) - cb0
    nr, nc = int(rows[-1]) + 1, int(cols[-1]) + 1
    tmp = torch.zeros(nr, m.shape[1]).index_add_(0, rows, m)
    tmp = torch.zeros(nr, nc).index_add_(1, cols, tmp)
    acc[rb0: rb0 + nr, cb0: cb0 + nc] += tmp


def _block_counts(n: int, f: int) -> Tensor:
    return torch.tensor([min(f, n - j * f) for j in range(-(-n // f))], dtype=torch.float64)


class _LayerSums:
    """Per-layer accumulators over tiles: channel sums of dy^2 and block-summed maps."""

    def __init__(self, channels: int, size: tuple[int, int], maps: bool,
                 channel_index: Tensor | None):
        self.size = size
        self.factor = display_factor(*size)
        self.channel_sums = torch.zeros(channels, dtype=torch.float64)
        nb = (-(-size[0] // self.factor), -(-size[1] // self.factor))
        # Block sums of at most display_factor^2 cells: float32 holds them to ~1e-7.
        self.spatial = torch.zeros(nb) if maps else None
        self.channel_index = channel_index
        k = 0 if channel_index is None else len(channel_index)
        self.channel_maps = torch.zeros((3, k, *nb)) if k else None

    def block_means(self, acc: Tensor) -> np.ndarray:
        f = self.factor
        counts = _block_counts(self.size[0], f)[:, None] * _block_counts(self.size[1], f)[None]
        return (acc.to(torch.float64) / counts).numpy()


@torch.no_grad()
def _run(net: LpipsNet, a: Tensor, b: Tensor, plan: MemoryPlan, sums: list[_LayerSums],
         progress: Callable[[int, int, str], None] | None = None) -> None:
    """Run every tile of ``plan`` on the pair (a, b), adding into ``sums`` per layer."""
    geom = geometry_of(net)
    assert plan.tiles is not None
    tapset = {t.index: li for li, t in enumerate(geom.taps)}
    last = geom.taps[-1].index
    heads = [w.to(torch.float32) for w in net.heads]
    total = plan.count
    with freed_memory_returned():
        _run_tiles(net, a, b, plan, sums, progress, geom, tapset, last, heads, total)


def _run_tiles(net: LpipsNet, a: Tensor, b: Tensor, plan: MemoryPlan, sums: list[_LayerSums],
               progress: Callable[[int, int, str], None] | None, geom: Geometry,
               tapset: dict[int, int], last: int, heads: list[Tensor], total: int) -> None:
    assert plan.tiles is not None
    done = 0
    for ty in plan.tiles[0]:
        for tx in plan.tiles[1]:
            x = torch.empty((2, 3, ty.stop - ty.start, tx.stop - tx.start),
                            dtype=torch.float32, memory_format=torch.channels_last)
            x[0].copy_(a[0, :, ty.start: ty.stop, tx.start: tx.stop])
            x[1].copy_(b[0, :, ty.start: ty.stop, tx.start: tx.stop])
            # The same elementwise steps as LpipsNet.taps, in place.
            x.mul_(2).sub_(1)
            if net.version == "0.1":
                x.sub_(net.shift).div_(net.scale)
            h = x
            del x
            for i, module in enumerate(net.features):
                if i > last:
                    break
                h = module(h)
                li = tapset.get(i)
                if li is None:
                    continue
                t = geom.taps[li]
                (r0, r1), (c0, c1) = ty.cells[li], tx.cells[li]
                if r1 <= r0 or c1 <= c0:
                    continue
                lr, lc = ty.start // t.stride, tx.start // t.stride
                f = h[:, :, r0 - lr: r1 - lr, c0 - lc: c1 - lc]
                _add_tap(sums[li], f, heads[li], r0, c0)
            del h
            done += 1
            if progress is not None:
                progress(done, total, "tiles")


def _add_tap(acc: _LayerSums, f: Tensor, w: Tensor, r0: int, c0: int) -> None:
    y0 = f[0:1] * torch.rsqrt((f[0:1] * f[0:1]).sum(dim=1, keepdim=True) + EPS_SQ)
    y1 = f[1:2] * torch.rsqrt((f[1:2] * f[1:2]).sum(dim=1, keepdim=True) + EPS_SQ)
    idx = acc.channel_index
    if idx is not None and len(idx):
        fac = acc.factor
        for j, c in enumerate(idx.tolist()):
            _block_add(acc.channel_maps[1, j], y0[0, c], r0, c0, fac)
            _block_add(acc.channel_maps[2, j], y1[0, c], r0, c0, fac)
    d2 = y0.sub_(y1).square_()
    del y1
    # Summed in float32 within the tile (as the untiled mean is), across tiles in float64;
    # a float64 reduction over a channels_last tensor measured several times slower.
    acc.channel_sums += d2.sum(dim=(0, 2, 3)).to(torch.float64)
    if acc.spatial is not None:
        _block_add(acc.spatial, F.conv2d(d2, w)[0, 0], r0, c0, acc.factor)
    if idx is not None and len(idx):
        for j, c in enumerate(idx.tolist()):
            _block_add(acc.channel_maps[0, j], d2[0, c], r0, c0, acc.factor)


def _layer_sums(net: LpipsNet, plan: MemoryPlan, maps: bool,
                channels: Sequence[Tensor | None] | None = None) -> list[_LayerSums]:
    geom = geometry_of(net)
    sizes = geom.tap_sizes(*plan.size)
    return [_LayerSums(t.channels, sizes[li], maps, None if channels is None else channels[li])
            for li, t in enumerate(geom.taps)]


def tiled_distance(net: LpipsNet, a: Tensor, b: Tensor, plan: MemoryPlan,
                   progress: Callable[[int, int, str], None] | None = None) -> float:
    """d(a, b) for one pair of 1x3xHxW images in [0, 1], computed in the plan's tiles."""
    sums = _layer_sums(net, plan, maps=False)
    _run(net, a, b, plan, sums, progress)
    total = 0.0
    for acc, w in zip(sums, net.heads, strict=True):
        n = acc.size[0] * acc.size[1]
        total += float((w.reshape(-1).to(torch.float64) * acc.channel_sums).sum()) / n
    return total


def tiled_decomposition(net: LpipsNet, a: Tensor, b: Tensor, plan: MemoryPlan,
                        top_k: int = 5,
                        progress: Callable[[int, int, str], None] | None = None
                        ) -> Decomposition:
    """The exact layer and channel breakdown of d(a, b), computed in the plan's tiles.

    Layer and channel terms are exact sums over all cells. Maps are block means over
    ``display_factor`` x ``display_factor`` cells of each layer (stated on every layer);
    the top channels' maps need a second pass over the tiles once the channels are known.
    """
    if top_k < 0:
        raise InputError(f"top_k must be >= 0, got {top_k}.")
    sums = _layer_sums(net, plan, maps=True)
    _run(net, a, b, plan, sums, progress)
    contributions, orders = [], []
    for acc, w in zip(sums, net.heads, strict=True):
        n = acc.size[0] * acc.size[1]
        c = w.reshape(-1).to(torch.float64) * acc.channel_sums / n
        contributions.append(c)
        orders.append(torch.argsort(c, descending=True)[:top_k])
    channel_maps: list[np.ndarray | None] = [None] * len(sums)
    if top_k > 0:
        second = _layer_sums(net, plan, maps=False, channels=orders)
        _run(net, a, b, plan, second, progress)
        channel_maps = [np.stack([s.block_means(m) for m in s.channel_maps.unbind(1)], axis=1)
                        if s.channel_maps is not None else None for s in second]
    layers = []
    dists = [float(c.sum()) for c in contributions]
    total = float(np.sum(dists))
    for li, (acc, c, order) in enumerate(zip(sums, contributions, orders, strict=True)):
        distance = dists[li]
        w64 = net.heads[li].reshape(-1).to(torch.float64)
        top = tuple(
            ChannelDetail(
                index=int(ch), contribution=float(c[ch]), weight=float(w64[ch]),
                share=float(c[ch]) / distance if distance > 0 else 0.0,
                diff_map=channel_maps[li][0, j], activation_a=channel_maps[li][1, j],
                activation_b=channel_maps[li][2, j])
            for j, ch in enumerate(order.tolist()))
        layers.append(LayerBreakdown(
            index=li, name=net.spec.layer_names[li], distance=distance,
            share=distance / total if total > 0 else 0.0, resolution=acc.size,
            weights=w64.numpy().copy(), contributions=c.numpy(),
            spatial=acc.block_means(acc.spatial), top_channels=top,
            display_factor=acc.factor))
    return Decomposition(total, tuple(layers), plan.size, net.spec.name, net.version,
                         tiling=plan.to_dict())


def tiling_note(dec: Decomposition) -> str:
    """One sentence for a tiled result: computed in tiles, exactly, and how maps are shown."""
    t = dec.tiling or {}
    n = t.get("tiles")
    text = (f"Computed in {n} tile{'' if n == 1 else 's'} to stay within the memory budget of "
            f"{format_bytes(t.get('budget_bytes', 0))} (estimated "
            f"{format_bytes(t.get('estimate_bytes', 0))}, against "
            f"{format_bytes(t.get('untiled_estimate_bytes', 0))} untiled); the distance and "
            f"the layer and channel terms are exact, not approximate.")
    factors = [f"{lay.name} {lay.display_factor}x{lay.display_factor}"
               for lay in dec.layers if lay.display_factor > 1]
    if factors:
        text += (" Maps are shown as block means over cells of their layer (" +
                 ", ".join(factors) + ").")
    return text

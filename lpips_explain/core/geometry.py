"""A trunk's layer geometry, read once off its modules: what every tap's cells see.

Each module of a torchvision ``features`` trunk is read as a :class:`Step` along one image
axis (kernel, stride, padding, ceil mode, output channels; all kernels here are square);
:func:`trunk_geometry` follows them down to every tap (:class:`TapGeometry`): cell ``k`` of
a tap with stride ``s``, offset ``p`` and extent ``r`` (its receptive field) reads input
rows ``k*s - p .. k*s - p + r - 1``. A module with no such reading (dilated or grouped
convolutions, padding other than zeros, unknown modules) raises ``NotImplementedError``.

Two users: the tiles (core/tiling.py, and the tile layout below, :func:`axis_tiles`:
where each tile's crop starts and stops and which cells of every tap it owns) and the
windowed scorer (core/windowed.py, which reads :func:`trunk_steps` for the windows a
changed box reaches). tests/core/test_tiling.py checks the geometry against the real
modules (shapes and gradients).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from lpips_explain.core.model import LpipsNet

__all__ = ["AxisTile", "Geometry", "Step", "TapGeometry", "axis_tiles", "geometry_of",
           "trunk_geometry", "trunk_steps"]


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
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise NotImplementedError(f"padding {m.padding!r} in mode {m.padding_mode!r}")
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


def trunk_steps(features: nn.Sequential, last: int | None = None) -> tuple[Step, ...]:
    """Every module of a ``features`` trunk as a :class:`Step` (up to index ``last``)."""
    end = len(features) if last is None else last + 1
    return tuple(_step(i, m) for i, m in enumerate(features[:end]))


def trunk_geometry(features: nn.Sequential, taps: Sequence[int], in_channels: int = 3) -> Geometry:
    """Read the tiling geometry off a torchvision ``features`` trunk (up to its last tap)."""
    steps = trunk_steps(features, taps[-1])
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


# -- the tile layout: crops and the cells each owns -----------------------------------
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

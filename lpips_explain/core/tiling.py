"""Exact LPIPS on large images in bounded memory: trunk features computed in tiles.

Why tiling can be exact. LPIPS is a sum over layers of the mean, over the layer's map, of
``sum_c w_c (y0 - y1)^2`` (docs/architecture.md#maths). Every cell of a tapped layer depends only
on a window of the input (its receptive field), so a cell computed on a crop of the image
equals the same cell computed on the whole image when

* the crop holds the cell's whole receptive field, except where that field runs past a
  true image border (there both see the same padding);
* the crop starts at a multiple of every stride on the way down (the trunk's total
  stride S = 16 for all three trunks), so the crop's cell grid is the image's grid shifted
  by a whole number of cells at every layer, pooling windows included.

The geometry is read from the trunk's modules (core/geometry.py): cell ``k`` of a tap
with stride ``s``, offset ``p`` and extent ``r`` depends on input rows
``k*s - p .. k*s - p + r - 1``. A tile owns the cells ``[y0/s, y1/s)`` of every tap (its
core ``[y0, y1)`` in pixels, y0 a multiple of S), computes the trunk on a crop just large
enough to hold those cells' receptive fields (the halo), and adds each layer's squared
differences over the cells it owns; the sums, divided by the full map sizes, give the
distance. tests/core/test_tiling.py checks the geometry against the real modules (shapes
and gradients) and the tiled distance against the untiled one for all trunks and versions.

Which tiles, and whether to tile at all, is decided before any work by the memory budget
(core/budget.py, :func:`~lpips_explain.core.budget.plan_memory`); this module runs the
plan. While tiles run, glibc is asked to return freed tensors to the system at once (see
:func:`~lpips_explain.core.memory.freed_memory_returned`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lpips_explain.core.budget import MemoryPlan, display_factor, format_bytes
from lpips_explain.core.decompose import ChannelDetail, Decomposition, LayerBreakdown
from lpips_explain.core.geometry import Geometry, geometry_of
from lpips_explain.core.memory import freed_memory_returned
from lpips_explain.core.model import LpipsNet, normalize
from lpips_explain.validation import Progress, counted, integer

__all__ = ["tiled_decomposition", "tiled_distance", "tiling_note"]


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
         progress: Progress | None = None) -> None:
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
               progress: Progress | None, geom: Geometry,
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
    # Out of place: f is a view of the tile's features, which feed the next layer.
    y0, y1 = normalize(f[0:1]), normalize(f[1:2])
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
                   progress: Progress | None = None) -> float:
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
                        progress: Progress | None = None, *, channel_maps: bool = True
                        ) -> Decomposition:
    """The exact layer and channel breakdown of d(a, b), computed in the plan's tiles.

    Layer and channel terms are exact sums over all cells. Maps are block means over
    ``display_factor`` x ``display_factor`` cells of each layer (stated on every layer);
    the top channels' maps need a second pass over the tiles once the channels are known
    (``channel_maps=False`` leaves them out, None, and makes one pass).
    """
    top_k = integer(top_k, "top_k", minimum=0)
    sums = _layer_sums(net, plan, maps=True)
    _run(net, a, b, plan, sums, progress)
    contributions, orders = [], []
    for acc, w in zip(sums, net.heads, strict=True):
        n = acc.size[0] * acc.size[1]
        c = w.reshape(-1).to(torch.float64) * acc.channel_sums / n
        contributions.append(c)
        orders.append(torch.argsort(c, descending=True)[:top_k])
    layer_maps: list[np.ndarray | None] = [None] * len(sums)
    if top_k > 0 and channel_maps:
        second = _layer_sums(net, plan, maps=False, channels=orders)
        _run(net, a, b, plan, second, progress)
        layer_maps = [np.stack([s.block_means(m) for m in s.channel_maps.unbind(1)], axis=1)
                      if s.channel_maps is not None else None for s in second]
    layers = []
    dists = [float(c.sum()) for c in contributions]
    total = float(np.sum(dists))
    for li, (acc, c, order) in enumerate(zip(sums, contributions, orders, strict=True)):
        distance = dists[li]
        maps = layer_maps[li]
        w64 = net.heads[li].reshape(-1).to(torch.float64)
        top = tuple(
            ChannelDetail(
                index=int(ch), contribution=float(c[ch]), weight=float(w64[ch]),
                share=float(c[ch]) / distance if distance > 0 else 0.0,
                diff_map=None if maps is None else maps[0, j],
                activation_a=None if maps is None else maps[1, j],
                activation_b=None if maps is None else maps[2, j])
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
    text = (f"Computed in {counted(n, 'tile')} to stay within the memory budget of "
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

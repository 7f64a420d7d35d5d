"""The memory budget: how much there is, what a computation will take, and the plan.

* the budget: a named one (``max_memory=``, ``--max-memory`` or ``$LPIPS_EXPLAIN_MAX_MEMORY``,
  :func:`named_max_memory`) holds for everything; without one, the distance and its
  breakdown are planned within :func:`default_budget` (the image pair plus a per-trunk
  allowance, :data:`DEFAULT_ALLOWANCE`) and the parts that cannot be tiled are checked
  against the ceiling, half of the memory the system reports available
  (:func:`default_max_memory`, :func:`available_memory`); :func:`parse_bytes` and
  :func:`format_bytes` for sizes as people write them;
* byte estimates: :func:`untiled_bytes` and :func:`tile_bytes` estimate, from the layer
  shapes (core/geometry.py) and the image size alone, the peak bytes of tensors one
  computation holds (the image pair included). The Python interpreter, torch and the
  network weights are not counted (measured in benchmarks/bench_large.py);
* plans: :func:`plan_memory` compares the untiled estimate with the budget, and when it
  does not fit picks the largest tile core whose estimate fits (a :class:`MemoryPlan`,
  which core/tiling.py runs), or refuses (:class:`~lpips_explain.errors.MemoryBudgetError`)
  before any work when even the smallest tile cannot fit; :func:`check_fits` refuses the
  parts that cannot be tiled the same way.
"""

from __future__ import annotations

import numbers
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lpips_explain.core.geometry import AxisTile, Geometry, axis_tiles, geometry_of
from lpips_explain.core.memory import proc_bytes
from lpips_explain.errors import InputError, MemoryBudgetError
from lpips_explain.validation import counted, integer, number

if TYPE_CHECKING:
    from lpips_explain.core.model import LpipsNet

MAX_MEMORY_ENV = "LPIPS_EXPLAIN_MAX_MEMORY"
# Without a budget named, the ceiling is half of the memory the system reports available
# when the Explainer is built (the rest is left to the interpreter, torch, the weights and
# other programs), or FALLBACK_MAX_MEMORY where the system does not say; the distance and
# its breakdown (which tile exactly) are planned within default_budget(), below it.
FALLBACK_MAX_MEMORY = "2GB"
# The default budget of the tileable routes: the image pair in float32 plus this many bytes
# for the trunk's working tensors. Chosen from measurements (benchmarks/bench_default_memory.py,
# docs/performance.md#default-memory; the CLI's `distance`, 2-core machine, 16 MP pairs):
# alex: 0.68 GB at 16 MP, 9 tiles (6 at 4896x3264), peak RSS 1.33 GB (4.3 GB untiled), 32.4 s
# against 32.6 s untiled (one pass over tiles covering 1.17x the image with their halos);
# 4 tiles (a 0.9 GB budget) peaked at 1.48 GB, too close to 1.5. vgg: 1.78 GB at 16 MP, 25
# tiles (1.41x the image), peak RSS 2.25 GB (untiled, 51 GB estimated, does not fit here;
# half the memory available peaked at 5.4 GB in the issue). A 512 px pair is estimated at 0.06 GB
# (alex) and 0.84 GB (vgg): untiled. squeeze (0.6 GB) follows the same estimates, not
# measured against a target.
DEFAULT_ALLOWANCE = {"alex": 300 * 10**6, "vgg": 1400 * 10**6, "squeeze": 600 * 10**6}
DEFAULT_MAX_MEMORY = ("the image pair plus 300 MB (alex), 1.4 GB (vgg) or 600 MB (squeeze) "
                      "for the distance and its breakdown, at most half the memory available")
# Maps of tiled (large) images are kept as block means so that no map has more than this
# many cells on its longer side; the factor is stated on every layer (display_factor).
MAX_DISPLAY_CELLS = 256
F32 = 4  # bytes per float32 value
F64 = 8

# The batch sizes the analyses use by default (sensitivity.py, repair/: batch_size=16;
# attribution.py: internal_batch_size=8); the budget check of those parts assumes them.
SCORE_BATCH = 16
GRADIENT_BATCH = 8
# SSIM (analyses/pair/quality.py) filters this many pixels per image channel at once, holding about
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
    if isinstance(value, numbers.Real):  # a bool is refused by number()
        return int(number(value, "A memory size (bytes)", above=0))
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if m is None or m.group(2).lower() not in _UNITS:
        raise InputError(f"Cannot read the memory size {value!r}: write it like '1.5GB', "
                         f"'800MB' or '2GiB' (GB = 10^9 bytes, GiB = 2^30).")
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    return int(number(size, f"The memory size {value!r}", above=0))


def format_bytes(n: float) -> str:
    """Bytes for people: 1.53 GB, 840 MB (decimal units, as --max-memory reads them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def available_memory() -> int | None:
    """Bytes of memory the system reports available (Linux MemAvailable), or None."""
    available = proc_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        return available
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def named_max_memory() -> int | None:
    """``$LPIPS_EXPLAIN_MAX_MEMORY`` in bytes, or None where it is unset or empty."""
    raw = os.environ.get(MAX_MEMORY_ENV, "").strip()
    if not raw:
        return None
    try:
        return parse_bytes(raw)
    except InputError as exc:
        raise InputError(f"{MAX_MEMORY_ENV}={raw!r}: {exc}") from None


def default_max_memory() -> int:
    """The ceiling when no budget is named (neither passed nor in
    ``$LPIPS_EXPLAIN_MAX_MEMORY``, :func:`named_max_memory`): half of the memory available
    now (FALLBACK_MAX_MEMORY where the system does not say)."""
    available = available_memory()
    return available // 2 if available else parse_bytes(FALLBACK_MAX_MEMORY)


def default_budget(net: str, size: tuple[int, int], ceiling: int,
                   in_channels: int = 3) -> int:
    """The budget of the tileable routes (the distance and its breakdown) when none is named.

    The image pair in float32 (it is held whatever the plan: 384 MB at 16 MP) plus
    :data:`DEFAULT_ALLOWANCE` for the trunk's working tensors, at most ``ceiling`` (half
    the memory available). The allowance keeps a 16 MP pair under 1.5 GB of peak RSS with
    alex (1.33 GB measured, in about the untiled time) and 3 GB with vgg (2.25 GB), and
    exceeds the untiled estimate of a 512 px pair (which is therefore never tiled); it grows
    with the image only by the pair itself, so no pair the ceiling allows is refused for it.
    """
    h, w = int(size[0]), int(size[1])
    allowance = DEFAULT_ALLOWANCE.get(net, max(DEFAULT_ALLOWANCE.values()))
    return int(min(ceiling, 2 * in_channels * h * w * F32 + allowance))


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
    against the reference (the sensitivity's sweeps, analyses/pair/quality.py). ``gradient``:
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
        return (f"{w}x{h} px with {self.net}: {counted(self.count, 'tile')}"
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
    if core is not None:
        est, tiles = _tiles_estimate(geom, h, w, _tile_cores(core, geom.total_stride), maps)
    else:
        est, tiles = _largest_tiles_that_fit(net.spec.name, geom, h, w, budget, maps)
    return MemoryPlan(net.spec.name, (h, w), budget, untiled, est, _core_of(tiles), tiles,
                      geom.halo)


_Tiles = tuple[tuple[AxisTile, ...], tuple[AxisTile, ...]]


def _tiles_estimate(geom: Geometry, h: int, w: int, core: int | tuple[int, int],
                    maps: int) -> tuple[int, _Tiles]:
    """The estimate and the layout of tiles with cores of ``core`` px (or rows, columns)."""
    cy, cx = (core, core) if isinstance(core, int) else core
    ty, tx = axis_tiles(geom, h, cy), axis_tiles(geom, w, cx)
    ch = max(t.stop - t.start for t in ty)
    cw = max(t.stop - t.start for t in tx)
    return tile_bytes(geom, h, w, ch, cw, maps=maps), (tuple(ty), tuple(tx))


def _tile_cores(core: int | tuple[int, int], s_tot: int) -> tuple[int, int]:
    """A tile core a caller forces (one, or rows and columns): positive multiples of the
    total stride."""
    cores = (core, core) if isinstance(core, numbers.Integral) else tuple(core)
    wrong = InputError(f"The tile core must be a positive multiple of {s_tot} px (or a "
                       f"pair of them: rows, columns), got {core!r}.")
    if len(cores) != 2:
        raise wrong
    cy, cx = (integer(c, "The tile core", minimum=s_tot) for c in cores)
    if cy % s_tot or cx % s_tot:
        raise wrong
    return cy, cx


def _largest_tiles_that_fit(net: str, geom: Geometry, h: int, w: int, budget: int,
                            maps: int) -> tuple[int, _Tiles]:
    """The largest tile core whose estimate fits ``budget`` (estimates grow with the core);
    MemoryBudgetError when even the smallest does not."""
    s_tot = geom.total_stride
    smallest, tiles = _tiles_estimate(geom, h, w, s_tot, maps)
    if smallest > budget:
        image = 2 * geom.in_channels * h * w * F32
        raise MemoryBudgetError(
            f"Comparing two {w}x{h} px images with the {net!r} trunk needs an "
            f"estimated {format_bytes(smallest)} even in the smallest tiles "
            f"({s_tot}x{s_tot} px cores; the image pair alone takes {format_bytes(image)}), "
            f"more than the memory budget of {format_bytes(budget)}; nothing was computed. "
            f"{_advice(net)}",
            estimate=smallest, budget=budget)
    lo, hi = 1, max(1, -(-max(h, w) // s_tot))  # cores in units of the stride
    best = (smallest, tiles)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        est, t = _tiles_estimate(geom, h, w, mid * s_tot, maps)
        if est <= budget:
            lo, best = mid, (est, t)
        else:
            hi = mid - 1
    return best


def _core_of(tiles: _Tiles) -> int:
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



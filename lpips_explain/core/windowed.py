"""Exact LPIPS of copies of an image that differ from it only inside one box each.

Repairs (and occlusion) score many copies of B with one patch replaced by A's pixels. A
convolution or pooling output changes only where its window meets a changed input, so a
copy needs the trunk only on a window around its box, layer by layer; every other value
is B's own. The window grows with each layer's kernel and shrinks with its stride; it is
computed on a crop of B's (padded) activation with the copy's changed values pasted in, so
the values inside it are the copy's exact values (float rounding aside: a crop may be
convolved in a different blocking than the whole map, as in core/tiling.py).

d(ref, x) is a mean over positions of per-position terms sum_c w_c (y_ref - y_x)^2 at each
tap, and unit-normalisation works per position, so

    d(ref, copy) = d(ref, B) - sum_taps (B's terms in the window - the copy's terms there) / (h w)

with the window sums of B's terms read from a summed-area table in float64.

A deletion curve is a sequence of images that each differ from the one before in one box:
:meth:`WindowedScorer.take` scores the next one on its windows and keeps it (its layer
inputs and tap terms replace the kept ones there), so a whole curve costs windows, not
whole passes (analyses/pair/repair/curves.py: order_curves).

Only trunks made of ``Conv2d`` (zero padding, no dilation or groups), ``ReLU`` and
``MaxPool2d`` (no dilation, floor mode), all square, are handled: alex and vgg. Their
kernels, strides and paddings are read by core/geometry.py, as the tiles read them. :func:`supports` says whether a
network is one; squeeze (Fire modules) is scored whole by the callers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpips_explain.core.geometry import Step, trunk_steps
from lpips_explain.core.model import LpipsNet, normalize

__all__ = ["Box", "WindowedScorer", "supports", "window_cost"]

Box = tuple[int, int, int, int]  # rows [y0, y1), columns [x0, x1) of the changed pixels


def _ops(net: LpipsNet) -> list[Step] | None:
    """The trunk's modules as windows see them (core/geometry.py), or None when one is not a
    convolution (zero padding, no dilation), a ReLU or a max-pool (no dilation, floor mode)."""
    if not all(isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.ReLU) for m in net.features):
        return None
    try:
        steps = trunk_steps(net.features)
    except NotImplementedError:
        return None
    if not steps or steps[0].kind == "relu" or any(s.ceil_mode for s in steps):
        return None
    return list(steps)


def supports(net: LpipsNet) -> bool:
    """Whether :class:`WindowedScorer` handles the network: the exact fp32 model (not a fast
    mode's, whose passes run elsewhere) with a plain conv / ReLU / max-pool trunk."""
    return type(net) is LpipsNet and _ops(net) is not None


def _out_sizes(ops: Sequence[Step], size: tuple[int, int]) -> list[tuple[int, int]]:
    """Each module's output size (rows, columns) for an input of ``size`` (floor mode)."""
    (h, w), out = size, []
    for op in ops:
        h, w = op.out_size(h), op.out_size(w)
        out.append((h, w))
    return out


def _affected(lo: int, hi: int, k: int, s: int, p: int, size: int) -> tuple[int, int]:
    """Outputs [o0, o1) whose window meets the changed inputs [lo, hi)."""
    return max(0, (lo + p - k) // s + 1), min(size, -(-(hi + p) // s))


class _Window:
    """Per copy, where its changed values sit on one axis: starts, and one common length."""

    def __init__(self, starts: list[int], length: int):
        self.starts, self.length = starts, length

    def through(self, k: int, s: int, p: int, size: int) -> _Window:
        spans = [_affected(st, st + self.length, k, s, p, size) for st in self.starts]
        length = max(1, max(hi - lo for lo, hi in spans))
        return _Window([max(0, min(lo, size - length)) for lo, _ in spans], length)


def _windows(ops: Sequence[Step], size: tuple[int, int], boxes: Sequence[Box]
             ) -> list[tuple[_Window, _Window]]:
    """The window of the input (index 0) and of every module's output (index i + 1: after
    module i), for each copy of an image of ``size`` with one of ``boxes`` changed."""
    rows = _Window([b[0] for b in boxes], max(b[1] - b[0] for b in boxes))
    cols = _Window([b[2] for b in boxes], max(b[3] - b[2] for b in boxes))
    h, w = size
    rows = _Window([max(0, min(s, h - rows.length)) for s in rows.starts], rows.length)
    cols = _Window([max(0, min(s, w - cols.length)) for s in cols.starts], cols.length)
    out = [(rows, cols)]
    for op, (oh, ow) in zip(ops, _out_sizes(ops, size), strict=True):
        if op.kind != "relu":
            rows = rows.through(op.kernel, op.stride, op.padding, oh)
            cols = cols.through(op.kernel, op.stride, op.padding, ow)
        out.append((rows, cols))
    return out


def window_cost(net: LpipsNet, size: tuple[int, int], boxes: Sequence[Box]) -> float:
    """Multiply-adds of the windowed passes over those of whole passes, for copies of an image
    of ``size`` with one of ``boxes`` changed each; computed from the trunk's shapes alone
    (no pass), so a caller can decide before :class:`WindowedScorer` runs B through the trunk."""
    ops = _ops(net)
    if ops is None:
        raise ValueError(f"the {net.spec.label} trunk is not a plain conv / ReLU / max-pool "
                         f"stack")
    windows = _windows(ops, size, boxes)
    local = whole = 0.0
    for i, (op, (oh, ow)) in enumerate(zip(ops, _out_sizes(ops, size), strict=True)):
        if op.kind == "relu":
            continue
        rows, cols = windows[i + 1]
        module = net.features[op.index]
        per_cell = op.kernel * op.kernel * (
            module.in_channels * module.out_channels if op.kind == "conv" else 1)
        local += rows.length * cols.length * per_cell
        whole += oh * ow * per_cell
    return local / whole


def _window_sums(table: Tensor, rows: _Window, cols: _Window) -> Tensor:
    """Sums of a map over each copy's window, from its summed-area table (h+1 x w+1)."""
    y0 = torch.tensor(rows.starts)
    x0 = torch.tensor(cols.starts)
    y1, x1 = y0 + rows.length, x0 + cols.length
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


class WindowedScorer:
    """d(ref, copy of ``base`` with each box taken from ``source``), recomputing only windows.

    ``reference`` is the encoded reference (:meth:`LpipsNet.encode`, as a ReferenceScorer
    holds it). One pass of ``base`` through the trunk is kept (the input of every conv and
    pool, and each tap's per-position terms); :meth:`score` then costs, per copy, the trunk
    on the windows its box reaches. :func:`window_cost` says what share of a whole pass that
    is, before any pass runs.
    """

    def __init__(self, net: LpipsNet, reference: Sequence[Tensor], base: Tensor):
        ops = _ops(net)
        if ops is None:
            raise ValueError(f"the {net.spec.label} trunk is not a plain conv / ReLU / "
                             f"max-pool stack; score the copies whole")
        if not supports(net):
            raise ValueError("windows are scored with the exact fp32 model only (a fast "
                             "mode's passes run elsewhere); score the copies whole")
        self.net, self.ops = net, ops
        self.size = (int(base.shape[-2]), int(base.shape[-1]))
        self.ref = [r.detach() for r in reference]
        self.taps = set(net.spec.taps)
        # The input of each conv and pool, padded as the module pads it, once: every batch
        # of copies crops its windows from these (padding them per batch, or normalising the
        # whole source image per batch, cost more than the windows' convolutions at 12 MP).
        self.padded: dict[int, Tensor] = {}
        self.terms: list[Tensor] = []  # per tap: B's per-position terms (float64)
        # per tap: summed-area table of B's terms, built when score() first needs it (a
        # chain of take() only changes terms: at 12 MP rebuilding the tables took a quarter
        # of each step)
        self.tables: list[Tensor | None] = []
        self.totals: list[float] = []  # per tap: B's terms summed
        self.areas: list[int] = []
        with torch.no_grad():
            h = self._trunk_input(base)
            for i, op in enumerate(ops):
                if op.kind == "relu":
                    h = F.relu(h)  # never in place: the kept inputs must stay B's
                else:
                    fill = 0.0 if op.kind == "conv" else float("-inf")
                    p = op.padding
                    self.padded[i] = F.pad(h, (p, p, p, p), value=fill)
                    h = net.features[i](h)
                if i in self.taps:
                    self._keep_tap(len(self.terms), h)

    def _trunk_input(self, x: Tensor) -> Tensor:
        h = x * 2 - 1
        if self.net.version == "0.1":
            h = (h - self.net.shift) / self.net.scale
        return h.contiguous(memory_format=torch.channels_last)

    def _keep_tap(self, t: int, h: Tensor) -> None:
        terms = self._terms(t, normalize(h), self.ref[t])[0].double()
        self.terms.append(terms)
        self.tables.append(None)
        self.totals.append(float(terms.sum()))
        self.areas.append(int(terms.numel()))

    def _table(self, t: int) -> Tensor:
        """The tap's summed-area table, from its terms (built once per change of them)."""
        table = self.tables[t]
        if table is None:
            terms = self.terms[t]
            table = self.tables[t] = F.pad(terms.cumsum(0).cumsum(1), (1, 0, 1, 0))
        return table

    def _terms(self, t: int, y: Tensor, ref: Tensor) -> Tensor:
        return F.conv2d((ref - y) ** 2, self.net.heads[t])[:, 0]

    def distance(self) -> float:
        """d(ref, base) from the kept pass."""
        return sum(tot / area for tot, area in zip(self.totals, self.areas, strict=True))

    def cost(self, boxes: Sequence[Box]) -> float:
        """:func:`window_cost` of these boxes on this image."""
        return window_cost(self.net, self.size, boxes)

    def copy(self) -> WindowedScorer:
        """An independent scorer holding this one's kept pass (a chain of :meth:`take` on the
        copy leaves this one as it is); the network and the reference are shared."""
        new = object.__new__(WindowedScorer)
        new.net, new.ops, new.size, new.ref, new.taps = (self.net, self.ops, self.size,
                                                         self.ref, self.taps)
        new.padded = {i: v.clone() for i, v in self.padded.items()}
        new.terms = [v.clone() for v in self.terms]
        new.tables = list(self.tables)  # read-only: a take replaces, never writes into one
        new.totals, new.areas = list(self.totals), list(self.areas)
        return new

    @torch.no_grad()
    def take(self, source: Tensor, box: Box) -> float:
        """Take ``box`` from ``source`` for good: the kept pass becomes that copy's (every
        kept layer input and tap term inside the box's windows is replaced by the copy's),
        and its distance is returned. A chain of takes scores a sequence of images that each
        differ from the one before in one box (deletion curves) at the cost of windows."""
        return float(self._pass(source, [box], keep=True)[0])

    @torch.no_grad()
    def score(self, source: Tensor, boxes: Sequence[Box]) -> Tensor:
        """float64 distances, one per box, of ``base`` with that box taken from ``source``."""
        return self._pass(source, boxes, keep=False)

    def _pass(self, source: Tensor, boxes: Sequence[Box], *, keep: bool) -> Tensor:
        if not boxes:
            return torch.empty(0, dtype=torch.float64)
        for y0, y1, x0, x1 in boxes:
            if not (0 <= y0 < y1 <= self.size[0] and 0 <= x0 < x1 <= self.size[1]):
                raise ValueError(f"box {(y0, y1, x0, x1)} is not inside the image")
        windows = _windows(self.ops, self.size, boxes)
        rows, cols = windows[0]
        # The copies' pixels on their first windows: the box from source, the rest from base
        # (read off the first module's padded input; the trunk's input transform is per
        # pixel, so the source is transformed on its boxes only).
        base, p = self.padded[0], self.ops[0].padding
        values = torch.stack([base[0, :, p + r: p + r + rows.length, p + c: p + c + cols.length]
                              for r, c in zip(rows.starts, cols.starts, strict=True)])
        for j, (y0, y1, x0, x1) in enumerate(boxes):
            r, c = rows.starts[j], cols.starts[j]
            values[j, :, y0 - r: y1 - r, x0 - c: x1 - c] = self._trunk_input(
                source[..., y0:y1, x0:x1])[0]
        change = torch.zeros(len(boxes), dtype=torch.float64)
        t = 0
        for i, op in enumerate(self.ops):
            if op.kind == "relu":
                values = F.relu(values)
            else:
                if keep:  # the copy's input of this module, kept in place of B's
                    (rows, cols), p = windows[i], op.padding
                    r, c = rows.starts[0] + p, cols.starts[0] + p
                    self.padded[i][0, :, r: r + rows.length, c: c + cols.length] = values[0]
                values = self._through(i, op, values, windows[i], windows[i + 1])
            if i in self.taps:
                rows, cols = windows[i + 1]
                ref = torch.stack([self.ref[t][0, :, r: r + rows.length, c: c + cols.length]
                                   for r, c in zip(rows.starts, cols.starts, strict=True)])
                terms = self._terms(t, normalize(values), ref).double()
                if keep:
                    r, c = rows.starts[0], cols.starts[0]
                    self.terms[t][r: r + rows.length, c: c + cols.length] = terms[0]
                    self.tables[t] = None
                    self.totals[t] = float(self.terms[t].sum())
                else:
                    theirs = _window_sums(self._table(t), rows, cols)
                    change += (terms.sum(dim=(1, 2)) - theirs) / self.areas[t]
                t += 1
        return self.distance() + change

    def _through(self, i: int, op: Step, values: Tensor, before: tuple[_Window, _Window],
                 after: tuple[_Window, _Window]) -> Tensor:
        """One conv or pool on each copy's window: B's padded input cropped, the copy's
        changed values pasted in, then the module without padding."""
        (r_in, c_in), (r_out, c_out) = before, after
        kh = kw = op.kernel
        sh = sw = op.stride
        ph = pw = op.padding
        padded = self.padded[i]
        ch, cw = (r_out.length - 1) * sh + kh, (c_out.length - 1) * sw + kw
        crops = torch.stack([padded[0, :, r * sh: r * sh + ch, c * sw: c * sw + cw]
                             for r, c in zip(r_out.starts, c_out.starts, strict=True)])
        for j in range(len(r_in.starts)):
            # where the copy's changed values sit in its crop (clipped to the crop)
            dy, dx = r_in.starts[j] + ph - r_out.starts[j] * sh, c_in.starts[j] + pw - c_out.starts[j] * sw
            y0, x0 = max(0, dy), max(0, dx)
            y1, x1 = min(ch, dy + r_in.length), min(cw, dx + c_in.length)
            if y0 < y1 and x0 < x1:
                crops[j, :, y0:y1, x0:x1] = values[j, :, y0 - dy: y1 - dy, x0 - dx: x1 - dx]
        crops = crops.contiguous(memory_format=torch.channels_last)
        if op.kind == "conv":
            m: nn.Conv2d = self.net.features[i]  # type: ignore[assignment]
            return F.conv2d(crops, m.weight, m.bias, m.stride, 0, 1, m.groups)
        return F.max_pool2d(crops, op.kernel, op.stride, 0)

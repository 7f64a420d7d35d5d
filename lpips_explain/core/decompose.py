"""Exact breakdown of an LPIPS distance into layers, channels and spatial maps.

d = sum_l mean_hw sum_c w_lc (dy_lchw)^2, so layer terms add up to d, channel terms add
up to their layer, and each layer's map at its own resolution averages to its layer term.
The sums are taken in float64 so that these identities hold to ~1e-12.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lpips_explain.core.model import LpipsNet
from lpips_explain.errors import InputError, lookup
from lpips_explain.validation import integer

T = TypeVar("T")
MEMO_ENTRIES = 8  # values a decomposition keeps (Decomposition.memo)
_MEMO_LOCK = threading.Lock()
Upsample = Literal["none", "bilinear", "mean_preserving"]
UPSAMPLING: dict[str, str] = {
    "none": "at the layer's own resolution (its mean is exactly the layer's distance)",
    "bilinear": "bilinear to image size, as the official lpips spatial=True "
                "(its mean is only approximately the distance)",
    "mean_preserving": "bilinear to image size, rescaled so its mean is exactly the distance",
}


@dataclass(frozen=True)
class ChannelDetail:
    """One channel's exact share of its layer, with its maps at layer resolution."""

    index: int
    contribution: float  # w_c * mean_hw (dy_c)^2
    weight: float  # the lin weight w_c
    share: float  # contribution / layer distance
    # The maps are None where they were left out (a tiled pair with channel_maps=False).
    diff_map: np.ndarray | None  # (dy_c)^2, h x w, unweighted
    activation_a: np.ndarray | None  # normalised feature y_a[c], h x w
    activation_b: np.ndarray | None  # normalised feature y_b[c], h x w

    def to_dict(self) -> dict:
        return {"index": self.index, "contribution": self.contribution,
                "weight": self.weight, "share": self.share}


@dataclass(frozen=True)
class LayerBreakdown:
    """One tapped layer's term, its channels and its spatial map."""

    index: int
    name: str
    distance: float
    share: float  # of the total distance (0 when the total is 0)
    resolution: tuple[int, int]  # (h, w) of the layer
    weights: np.ndarray  # lin weights, C
    contributions: np.ndarray  # exact per-channel terms, C; they sum to `distance`
    spatial: np.ndarray  # h x w, sum_c w_c dy^2; its mean is `distance`
    top_channels: tuple[ChannelDetail, ...]
    # Maps of large (tiled) images are kept as block means over display_factor x
    # display_factor cells of the layer (edge blocks over the cells they hold), so the
    # spatial and channel maps are ceil(h / f) x ceil(w / f); 1: the full resolution.
    # `distance`, `contributions` and `resolution` always refer to the full map.
    display_factor: int = 1

    @property
    def zero_weight_channels(self) -> np.ndarray:
        """Channels whose lin weight is exactly 0: they can never contribute."""
        return np.flatnonzero(self.weights == 0)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "distance": self.distance,
            "share": self.share,
            "resolution": list(self.resolution),
            "channels": int(self.weights.size),
            "zero_weight_channels": int(self.zero_weight_channels.size),
            "top_channels": [c.to_dict() for c in self.top_channels],
            "display_factor": self.display_factor,
        }


@dataclass(frozen=True)
class Decomposition:
    """An LPIPS distance split exactly by layer, channel and position."""

    distance: float
    layers: tuple[LayerBreakdown, ...]
    size: tuple[int, int]  # (height, width) of the compared images
    net: str
    version: str
    # How the features were computed in tiles (core/budget.py MemoryPlan.to_dict); None:
    # the images went through the trunk whole.
    tiling: dict | None = None
    # Small values derived from this decomposition, computed once (see memo).
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` the first time ``key`` is asked for, the stored value after (the
        last :data:`MEMO_ENTRIES` keys). For small values derived from this decomposition
        (and from what ``key`` names): a page redrawn on every click asks for its sentences
        several times a run, from every session holding the result. Never for arrays a
        caller may change."""
        with _MEMO_LOCK:
            if key in self._memo:
                return self._memo[key]
        value = compute()  # outside the lock: other sessions' pages do not wait for it
        with _MEMO_LOCK:
            while len(self._memo) >= MEMO_ENTRIES and key not in self._memo:
                self._memo.pop(next(iter(self._memo)))  # the oldest goes
            return self._memo.setdefault(key, value)

    def layer(self, key: int | str) -> LayerBreakdown:
        if not isinstance(key, str):
            index = integer(key, "The layer index")
            if not -len(self.layers) <= index < len(self.layers):
                raise InputError(f"Layer index {index} out of range: there are {len(self.layers)}.")
            return self.layers[index]
        return lookup("layer", key, {lay.name: lay for lay in self.layers})  # type: ignore[return-value]

    def spatial_map(self, layer: int | str | None = None, upsample: Upsample = "bilinear") -> np.ndarray:
        """A distance map: one layer's, or the sum over layers (layer=None, needs upsampling)."""
        lookup("upsampling", upsample, UPSAMPLING)
        if layer is None:
            if upsample == "none":
                raise InputError("The summed map needs a common size: use upsample='bilinear' "
                                 "or 'mean_preserving', or pick one layer.")
            # Added up one layer at a time (the same sums, in the same order, as np.sum over
            # the stacked maps): one full-size map at a time beside the total, not one per
            # layer (a 16 MP pair: about 0.3 GB instead of 0.8 GB at the peak).
            total = self.spatial_map(self.layers[0].index, upsample)
            for lay in self.layers[1:]:
                total += self.spatial_map(lay.index, upsample)
            return total
        lay = self.layer(layer)
        if upsample == "none":
            return lay.spatial
        up = F.interpolate(torch.from_numpy(lay.spatial)[None, None], size=self.size,
                           mode="bilinear", align_corners=False)[0, 0].numpy()
        if upsample == "mean_preserving":
            mean = up.mean()
            up = up * (lay.distance / mean) if mean > 0 else np.zeros_like(up)
        return up

    def to_dict(self) -> dict:
        return {"distance": self.distance, "layers": [lay.to_dict() for lay in self.layers],
                "tiling": self.tiling}


def _to_np(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).contiguous().numpy()


@torch.no_grad()
def decompose_encoded(net: LpipsNet, ref: Sequence[Tensor], candidates: Tensor,
                      top_k: int = 5) -> list[Decomposition]:
    """Decompose d(ref, x) for every x in a batch, with the reference already encoded."""
    top_k = integer(top_k, "top_k", minimum=0)
    size = (int(candidates.shape[-2]), int(candidates.shape[-1]))
    feats = net.encode(candidates)
    per_candidate: list[list[LayerBreakdown]] = [[] for _ in range(candidates.shape[0])]
    for li, (y_ref, y, w) in enumerate(zip(ref, feats, net.heads, strict=True)):
        w64 = w.reshape(-1).to(torch.float64)
        for n in range(candidates.shape[0]):
            dy2 = (y_ref[0].to(torch.float64) - y[n].to(torch.float64)) ** 2  # C x h x w
            contributions = w64 * dy2.mean(dim=(1, 2))
            spatial = (dy2 * w64[:, None, None]).sum(dim=0)
            distance = float(contributions.sum())
            order = torch.argsort(contributions, descending=True)[:top_k]
            top = tuple(
                ChannelDetail(
                    index=int(c), contribution=float(contributions[c]), weight=float(w64[c]),
                    share=float(contributions[c]) / distance if distance > 0 else 0.0,
                    diff_map=_to_np(dy2[c]), activation_a=_to_np(y_ref[0, c]),
                    activation_b=_to_np(y[n, c]),
                )
                for c in order.tolist()
            )
            per_candidate[n].append(LayerBreakdown(
                index=li, name=net.spec.layer_names[li],
                distance=distance, share=0.0, resolution=(int(dy2.shape[1]), int(dy2.shape[2])),
                weights=_to_np(w64), contributions=_to_np(contributions),
                spatial=_to_np(spatial), top_channels=top,
            ))
    results = []
    for layers in per_candidate:
        total = float(np.sum([lay.distance for lay in layers]))
        layers = [
            LayerBreakdown(**{**lay.__dict__, "share": lay.distance / total if total > 0 else 0.0})
            for lay in layers
        ]
        results.append(Decomposition(total, tuple(layers), size, net.spec.name, net.version))
    return results


def decompose(net: LpipsNet, a: Tensor, b: Tensor, top_k: int = 5) -> Decomposition:
    """Decompose d(a, b) for one pair of equally sized images in [0, 1]."""
    with torch.no_grad():
        ref = net.encode(a)
    return decompose_encoded(net, ref, b, top_k)[0]

"""DISTS (Ding, Ma, Wang and Simoncelli, TPAMI 2020) on lpips-explain's own engine, split
exactly into per-stage structure and texture terms.

The network is torchvision's VGG16 ``features`` from the verified LPIPS vgg trunk
(``core/weights.load_trunk``), cut after relu5_3, with every max pooling replaced by an
L2 pooling (a 3x3 Hanning window, stride 2, padding 1: sqrt(conv(x^2) + 1e-12)), so its
activations equal LPIPS-vgg's only up to relu1_2. Inputs are in [0, 1] and normalised with
ImageNet's mean and standard deviation; the raw image itself is stage 0. With per-channel
spatial means mu, variances sigma^2 and covariance sigma_xy at each stage's 3 + 64 + 128
+ 256 + 512 + 512 = 1475 channels:

    l_c = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)          texture (global means)
    s_c = (2 sigma_xy + c2) / (sigma_x^2 + sigma_y^2 + c2)      structure (correlation)
    D   = 1 - sum_c (alpha_c l_c + beta_c s_c),   c1 = c2 = 1e-6

with alpha, beta >= 0 from ``dists-pytorch``'s ``weights.pt``, normalised to sum to 1
together (as the reference does). Hence, exactly,

    D = sum_stages [ sum_c alpha_c (1 - l_c)  +  sum_c beta_c (1 - s_c) ]
                     texture term              structure term

and the stage terms add up to the distance (checked on every result, in float64). The
formulas, the L2 pooling filter, the stage taps, the normalisation and the eps constants
are those of the reference package ``DISTS_pytorch`` 0.1 (tests/core/test_second_opinions.py
checks equality on shared inputs to 1e-5 relative). Its loader is not used: it reads
weights from ``sys.prefix`` and downloads VGG16; the alpha/beta file is read as a file
(``core/metric_files``) and the trunk is the verified one.

DISTS has no exact spatial map (its statistics are global over each map), so it explains
by stage, structure/texture and channel, not by position.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpips_explain.core import metric_files
from lpips_explain.core.weights import WeightsInfo, load_trunk
from lpips_explain.errors import ComputationError, ImageTooSmallError, WeightsMismatchError
from lpips_explain.validation import integer

METRIC = "dists"
LABEL = "DISTS"
STAGES: tuple[str, ...] = ("input", "relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
CHANNELS: tuple[int, ...] = (3, 64, 128, 256, 512, 512)
#: torchvision vgg16().features: the last module of each stage (relu1_2 ... relu5_3) and the
#: max poolings DISTS replaces with L2 pooling.
TAPS: tuple[int, ...] = (3, 8, 15, 22, 29)
POOLS: tuple[int, ...] = (4, 9, 16, 23)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
C1 = 1e-6  # texture (means) stabiliser
C2 = 1e-6  # structure (covariance) stabiliser
L2_EPS = 1e-12  # inside the L2 pooling's square root
#: Every stage keeps at least 2 x 2 positions, so that its spatial variance and covariance
#: (the structure term) are measured at all: each L2 pooling maps n to ceil(n / 2).
MIN_STAGE_POSITIONS = 2
MIN_SIZE = next(s for s in range(1, 64)
                if math.ceil(s / 2 ** len(POOLS)) >= MIN_STAGE_POSITIONS)  # 17
#: How close the stage terms must add up to the distance (float64 sums of float32 terms).
SUM_TOLERANCE = 1e-9


def check_size(size: tuple[int, int], *, label: str = "image") -> None:
    """ImageTooSmallError naming DISTS and the size when (height, width) is below MIN_SIZE."""
    h, w = int(size[0]), int(size[1])
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ImageTooSmallError(
            f"The {label} is {w}x{h} px, but {LABEL} needs at least {MIN_SIZE}x{MIN_SIZE} px "
            f"(each of its 4 L2 poolings halves the map, and its last stage must keep "
            f"{MIN_STAGE_POSITIONS}x{MIN_STAGE_POSITIONS} positions for its structure term). "
            f"Use a larger image; LPIPS may still run on this one.")


def stage_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """(height, width) of each stage's map for an h x w image."""
    sizes = [(h, w), (h, w)]
    for _ in POOLS:
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


class L2Pool(nn.Module):
    """DISTS's L2 pooling: sqrt(depthwise_conv(x^2, hanning 3x3, stride 2, pad 1) + 1e-12).

    The window is np.hanning(5)[1:-1] = (0.5, 1, 0.5), its outer product normalised to sum
    to 1 (all values are exact binary fractions)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([0.5, 1.0, 0.5], dtype=torch.float32)
        g = a[:, None] * a[None, :]
        g = g / g.sum()
        self.register_buffer("filter", g[None, None].repeat(channels, 1, 1, 1))
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=1, groups=self.channels)
        return (out + L2_EPS).sqrt()


def build_body(features: nn.Sequential) -> nn.Sequential:
    """VGG16 ``features`` up to relu5_3 with each max pooling replaced by an L2 pooling
    (the trunk's modules are shared, not copied)."""
    modules: list[nn.Module] = []
    channels = 3
    for i, m in enumerate(features[: TAPS[-1] + 1]):
        if i in POOLS:
            if not isinstance(m, nn.MaxPool2d):
                raise WeightsMismatchError(f"VGG16 features[{i}] is {type(m).__name__}, not the "
                                           f"max pooling DISTS replaces.")
            modules.append(L2Pool(channels))
        else:
            if isinstance(m, nn.Conv2d):
                channels = m.out_channels
            modules.append(nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else m)
    return nn.Sequential(*modules)


@dataclass(frozen=True)
class DistsStage:
    """One stage's exact share of the distance, split into texture and structure."""

    index: int
    name: str
    channels: int
    resolution: tuple[int, int]
    texture: float  # sum_c alpha_c (1 - l_c)
    structure: float  # sum_c beta_c (1 - s_c)
    share: float  # (texture + structure) / distance (0 when the distance is 0)
    texture_channels: np.ndarray = field(repr=False)  # alpha_c (1 - l_c), C
    structure_channels: np.ndarray = field(repr=False)  # beta_c (1 - s_c), C

    @property
    def total(self) -> float:
        return self.texture + self.structure

    def top_channels(self, k: int = 5) -> list[dict]:
        """The k channels with the largest (texture + structure) term."""
        both = self.texture_channels + self.structure_channels
        order = np.argsort(-both, kind="stable")[: integer(k, "k", minimum=0)]
        return [{"index": int(c), "texture": float(self.texture_channels[c]),
                 "structure": float(self.structure_channels[c])} for c in order]

    def to_dict(self) -> dict:
        return {"name": self.name, "structure": self.structure, "texture": self.texture,
                "share": self.share, "channels": self.channels,
                "resolution": list(self.resolution)}


@dataclass(frozen=True)
class DistsResult:
    """A DISTS distance and its exact split by stage into texture and structure terms."""

    distance: float
    stages: tuple[DistsStage, ...]
    size: tuple[int, int]
    perceptual: bool  # the verified trunk and the published alpha/beta file
    trunk: dict  # WeightsInfo.to_dict() of the VGG16 trunk
    weights: dict  # the alpha/beta file: path, sha256, verified, note
    reason: str | None = None  # why it is not the verified published DISTS

    metric = METRIC
    net = "vgg"

    @property
    def texture(self) -> float:
        return float(sum(s.texture for s in self.stages))

    @property
    def structure(self) -> float:
        return float(sum(s.structure for s in self.stages))

    def stage(self, name: str) -> DistsStage:
        from lpips_explain.errors import lookup

        return lookup("DISTS stage", name, {s.name: s for s in self.stages})  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return {"metric": METRIC, "net": self.net, "distance": self.distance,
                "texture": self.texture, "structure": self.structure,
                "stages": [s.to_dict() for s in self.stages], "size": list(self.size),
                "perceptual": self.perceptual, "reason": self.reason,
                "trunk": self.trunk, "weights": self.weights}


class DistsNet(nn.Module):
    """DISTS with its trunk run once per image: encode a reference, score candidates.

    Images enter as float tensors N x 3 x H x W in [0, 1]. Weights are frozen; inputs stay
    differentiable."""

    def __init__(self, features: nn.Sequential, alpha: Tensor, beta: Tensor,
                 weights_info: WeightsInfo, file_status: metric_files.FileStatus):
        super().__init__()
        self.body = build_body(features).eval()
        for p in self.body.parameters():
            p.requires_grad_(False)
        self._taps = frozenset(TAPS)
        self.weights_info = weights_info
        self.file_status = file_status
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        a64, b64 = alpha.reshape(-1).double(), beta.reshape(-1).double()
        total = a64.sum() + b64.sum()
        # Normalised in float64 so that sum(alpha) + sum(beta) = 1 to ~1e-16: the stage
        # terms then add up to the distance exactly, not to 1 - (rounding of the weights).
        self.register_buffer("alpha", (a64 / total).float().view(1, -1, 1, 1))
        self.register_buffer("beta", (b64 / total).float().view(1, -1, 1, 1))
        self.register_buffer("alpha64", a64 / total)
        self.register_buffer("beta64", b64 / total)

    @property
    def perceptual(self) -> bool:
        return bool(self.weights_info.perceptual and self.file_status.verified)

    @property
    def reason(self) -> str | None:
        reasons = []
        if not self.weights_info.perceptual:
            reasons.append(f"VGG16 trunk: {self.weights_info.reason}")
        if not self.file_status.verified:
            reasons.append(f"alpha/beta file: {self.file_status.note}")
        return "; ".join(reasons) or None

    def encode(self, x: Tensor) -> list[Tensor]:
        """The 6 stages' maps for images in [0, 1]: the image itself, then relu1_2..relu5_3."""
        check_size((x.shape[-2], x.shape[-1]))
        h = (x - self.mean) / self.std
        outs = [x]
        for i, module in enumerate(self.body):
            h = module(h)
            if i in self._taps:
                outs.append(h)
        return outs

    @staticmethod
    def similarities(ref: Sequence[Tensor], feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """(l, s): per-channel texture and structure similarities, N x 1475 each, computed
        exactly as the reference does (float32, the same operations in the same order)."""
        ls, ss = [], []
        for fr, fx in zip(ref, feats, strict=True):
            x_mean = fr.mean([2, 3], keepdim=True)
            y_mean = fx.mean([2, 3], keepdim=True)
            ls.append(((2 * x_mean * y_mean + C1) / (x_mean ** 2 + y_mean ** 2 + C1)).flatten(1))
            x_var = ((fr - x_mean) ** 2).mean([2, 3], keepdim=True)
            y_var = ((fx - y_mean) ** 2).mean([2, 3], keepdim=True)
            xy_cov = (fr * fx).mean([2, 3], keepdim=True) - x_mean * y_mean
            ss.append(((2 * xy_cov + C2) / (x_var + y_var + C2)).flatten(1))
        n = max(t.shape[0] for t in ls)
        return (torch.cat([t.expand(n, -1) for t in ls], 1),
                torch.cat([t.expand(n, -1) for t in ss], 1))

    def score_encoded(self, ref: Sequence[Tensor], x: Tensor) -> Tensor:
        """D(ref, x) for each candidate in the batch x (differentiable in x), float32."""
        tex_sim, s = self.similarities(ref, self.encode(x))
        a, b = self.alpha.view(1, -1), self.beta.view(1, -1)
        return (a * (1 - tex_sim)).sum(1) + (b * (1 - s)).sum(1)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Plain D(a, b) for batches of pairs (one trunk pass over both)."""
        n = a.shape[0]
        feats = self.encode(torch.cat([a, b]))
        tex_sim, s = self.similarities([f[:n] for f in feats], [f[n:] for f in feats])
        return (self.alpha.view(1, -1) * (1 - tex_sim)).sum(1) + (self.beta.view(1, -1) * (1 - s)).sum(1)

    @torch.no_grad()
    def decompose_encoded(self, ref: Sequence[Tensor], x: Tensor) -> list[DistsResult]:
        """The exact stage / texture / structure split of D(ref, x) for every x in a batch."""
        feats = self.encode(x)
        tex_sim, s = self.similarities(ref, feats)
        tex = self.alpha64[None] * (1 - tex_sim.double())  # N x 1475
        struct = self.beta64[None] * (1 - s.double())
        # The reference's form: 1 - sum(alpha l + beta s), in float64.
        dist = 1 - (self.alpha64[None] * tex_sim.double() + self.beta64[None] * s.double()).sum(1)
        bounds = np.cumsum((0, *CHANNELS))
        sizes = [tuple(int(v) for v in f.shape[-2:]) for f in feats]
        trunk, weights = self.weights_info.to_dict(), self._weights_dict()
        out = []
        for n in range(x.shape[0]):
            d = float(dist[n])
            parts = []
            for k, name in enumerate(STAGES):
                t = tex[n, bounds[k]: bounds[k + 1]].cpu().numpy()
                st = struct[n, bounds[k]: bounds[k + 1]].cpu().numpy()
                parts.append((k, name, t, st))
            total = float(sum(t.sum() + st.sum() for _, _, t, st in parts))
            if not abs(total - d) <= SUM_TOLERANCE * max(1.0, abs(d)):
                raise ComputationError(f"DISTS stage terms add up to {total!r}, not the "
                                       f"distance {d!r}: the decomposition is not exact.")
            stages = tuple(
                DistsStage(k, name, CHANNELS[k], sizes[k], float(t.sum()), float(st.sum()),
                           float(t.sum() + st.sum()) / d if d > 0 else 0.0, t, st)
                for k, name, t, st in parts)
            out.append(DistsResult(d, stages, (int(x.shape[-2]), int(x.shape[-1])),
                                   self.perceptual, trunk, weights, self.reason))
        return out

    def compare(self, a: Tensor, b: Tensor) -> DistsResult:
        """D(a, b) for one pair of equally sized images in [0, 1], decomposed."""
        with torch.no_grad():
            ref = self.encode(a)
        return self.decompose_encoded(ref, b)[0]

    def _weights_dict(self) -> dict:
        st = self.file_status
        return {"file": st.path, "source": st.source, "sha256": st.sha256,
                "verified": st.verified, "note": st.note}


class DistsScorer(nn.Module):
    """f_ref(x) = D(ref, x): the reference is encoded once; each forward runs the trunk once
    on the candidates (a second opinion costs one trunk pass per candidate image)."""

    def __init__(self, net: DistsNet, reference: Tensor, encoded: Sequence[Tensor] | None = None):
        super().__init__()
        self.net = net
        if encoded is None:
            with torch.no_grad():
                encoded = net.encode(reference)
        self.ref = [f.detach() for f in encoded]
        self.reference = reference.detach()

    def forward(self, x: Tensor) -> Tensor:
        return self.net.score_encoded(self.ref, x)

    @torch.no_grad()
    def score_batches(self, x: Tensor, batch_size: int = 8) -> Tensor:
        """Distances of many candidates, in chunks to bound memory."""
        bs = integer(batch_size, "batch_size", minimum=1)
        return torch.cat([self(x[i: i + bs]) for i in range(0, x.shape[0], bs)])

    def decompose(self, x: Tensor) -> list[DistsResult]:
        return self.net.decompose_encoded(self.ref, x)


def _check_weights(state: dict[str, Tensor], path: str | None) -> tuple[Tensor, Tensor]:
    want = (1, sum(CHANNELS), 1, 1)
    for key in ("alpha", "beta"):
        if key not in state:
            raise WeightsMismatchError(f"{path} has no {key!r}: a DISTS weights file holds "
                                       f"'alpha' and 'beta' (it holds {', '.join(state)[:80]}).")
        t = state[key]
        if tuple(t.shape) != want:
            raise WeightsMismatchError(f"{path}: {key} has shape {tuple(t.shape)}, DISTS needs "
                                       f"{want} (3 + 64 + 128 + 256 + 512 + 512 channels).")
        if not torch.isfinite(t).all() or (t < 0).any():
            raise WeightsMismatchError(f"{path}: {key} holds negative, NaN or Inf values; "
                                       f"DISTS weights are non-negative.")
    total = float(state["alpha"].double().sum() + state["beta"].double().sum())
    if not total > 0:
        raise WeightsMismatchError(f"{path}: alpha and beta sum to {total}; they must not all "
                                   f"be 0.")
    return state["alpha"].float(), state["beta"].float()


def build_dists(backbone_weights: str | os.PathLike | None = None, seed: int = 0, *,
                weights: str | os.PathLike | None = None, progress: bool = True) -> DistsNet:
    """DISTS on the VGG16 trunk ``backbone_weights`` resolves to (``imagenet``: the verified
    trunk, as LPIPS-vgg) with the alpha/beta of ``dists-pytorch`` (or the file ``weights``)."""
    file = metric_files.get_file(METRIC, "vgg")
    state, st = metric_files.read(file, weights)
    alpha, beta = _check_weights(state, st.path)
    features, info = load_trunk("vgg", backbone_weights, seed, progress=progress)
    return DistsNet(features, alpha, beta, info, st).eval()

"""How far a new image domain is from another, as LPIPS's trunk sees it, layer by layer.

Per layer, the unit-normalised features (what LPIPS compares) of two image sets are compared
two ways: the shift of their per-channel means and standard deviations (over every position
of every image), and a kernel two-sample test (MMD, Gaussian kernel with the median-distance
bandwidth) on per-image pooled features (each channel's mean and standard deviation over
positions: content and texture) with a permutation p-value. The test treats images as
exchangeable: two sets of the same pictures, one distorted, are paired, and the test is
then conservative. Layers are ranked by
MMD. Beside them, checks computed from the images themselves: sizes against the 64 px
patches the lin heads were fitted on and the ~256 px images the trunk was trained on,
grayscale or colour, dynamic range, and how many judged triplets are available.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.jsonable import SCHEMA as SCHEMA
from lpips_explain.analyses.jsonable import header
from lpips_explain.core.model import LpipsNet
from lpips_explain.core.trunks import check_min_size
from lpips_explain.core.weights import RANDOM, TrunkState, WeightsInfo
from lpips_explain.errors import InputError
from lpips_explain.intake.files import Skipped
from lpips_explain.intake.images import load_image
from lpips_explain.intake.judgments import resize_square
from lpips_explain.validation import Progress, integer

HEADS_PATCH_PX = 64  # BAPPS 2AFC patches, the size the lin heads were fitted on
TRUNK_IMAGE_PX = 256  # ImageNet images are resized to 256 and cropped to 224 for the trunk
DEFAULT_PERMUTATIONS = 1000
LOW_RANGE = 0.5  # an image whose 1st-99th percentile luminance spans less is "low range"
# p-values compare permuted and observed statistics (kernel values in [0, 1]); equal up to
# rounding counts as >=.
_ABS_TOL = 1e-12


@dataclass(frozen=True)
class SetStats:
    """One image set as the trunk sees it, plus what its pixels say."""

    name: str
    n_images: int
    refused: tuple[Skipped, ...]
    sizes: tuple[tuple[int, int], ...]  # (height, width) as loaded
    grayscale: tuple[bool, ...]
    ranges: tuple[float, ...]  # 99th - 1st percentile of luminance, per image, in [0, 1]
    clipped: tuple[float, ...]  # share of pixels at 0 or 1 in any channel, per image
    pooled: tuple[np.ndarray, ...] = field(repr=False, default=())  # per layer: N x 2C (mean,
    # then standard deviation over positions, of each channel)
    mean: tuple[np.ndarray, ...] = field(repr=False, default=())  # per layer: C
    std: tuple[np.ndarray, ...] = field(repr=False, default=())  # per layer: C

    def checks(self) -> dict:
        sides = np.array([min(s) for s in self.sizes], dtype=np.float64)
        med = float(np.median(sides)) if sides.size else None
        return {
            "n_images": self.n_images,
            "n_refused": len(self.refused),
            "refused": [s.to_dict() for s in self.refused],
            "median_size": ([int(np.median([s[0] for s in self.sizes])),
                             int(np.median([s[1] for s in self.sizes]))]
                            if self.sizes else None),
            "min_side": int(sides.min()) if sides.size else None,
            "max_side": int(sides.max()) if sides.size else None,
            "median_side_vs_heads_64px": med / HEADS_PATCH_PX if med else None,
            "median_side_vs_trunk_256px": med / TRUNK_IMAGE_PX if med else None,
            "grayscale_share": float(np.mean(self.grayscale)) if self.grayscale else None,
            "median_dynamic_range": float(np.median(self.ranges)) if self.ranges else None,
            "low_range_share": (float(np.mean(np.array(self.ranges) < LOW_RANGE))
                                if self.ranges else None),
            "median_clipped_share": float(np.median(self.clipped)) if self.clipped else None,
        }


@dataclass(frozen=True)
class LayerGap:
    name: str
    channels: int
    mean_shift: float  # || mean_a - mean_b ||_2 over channels (unit features: at most 2)
    std_shift: float  # || std_a - std_b ||_2 over channels
    top_channels: tuple[tuple[int, float], ...]  # (index, |mean_a - mean_b|), largest first
    mmd2: float  # biased (V-statistic) MMD^2 of per-image pooled features
    p_value: float  # permutation p-value of mmd2, (1 + #{perm >= obs}) / (1 + permutations)
    bandwidth: float  # Gaussian kernel sigma: median pairwise distance of the pooled sample
    rank: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "rank": self.rank, "channels": self.channels,
                "mean_shift": self.mean_shift, "std_shift": self.std_shift,
                "top_channels": [{"index": i, "mean_shift": v} for i, v in self.top_channels],
                "mmd2": self.mmd2, "p_value": self.p_value, "bandwidth": self.bandwidth}


@dataclass(frozen=True)
class DomainGap:
    net: str
    version: str
    backbone: WeightsInfo
    lin_heads: dict | None
    a: SetStats
    b: SetStats
    layers: tuple[LayerGap, ...]  # ranked: largest MMD first
    layer_names: tuple[str, ...]  # the trunk's order
    permutations: int
    seed: int
    size: int | None
    n_judgments: int | None
    head_weights: int
    summary: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            **header("domain_gap", self.net, self.version, self.backbone),
            "lin_heads": self.lin_heads,
            "sets": {"a": {"name": self.a.name, **self.a.checks()},
                     "b": {"name": self.b.name, **self.b.checks()}},
            "layers": [lay.to_dict() for lay in self.layers],
            "ranking": [lay.name for lay in self.layers],
            "permutations": self.permutations,
            "seed": self.seed,
            "size": self.size,
            "judgments": {"n_judgments": self.n_judgments, "head_weights": self.head_weights},
            "summary": list(self.summary),
            "warnings": list(self.warnings),
        }


# --- the statistics ------------------------------------------------------------------------------


def _sq_dists(x: np.ndarray, chunk_elems: int = 2**24) -> np.ndarray:
    """Exact pairwise squared distances by direct differences, in row chunks (bounded
    memory): identical rows give exactly 0, which the Gram-matrix shortcut does not."""
    n = len(x)
    out = np.empty((n, n), dtype=np.float64)
    step = max(1, chunk_elems // max(1, n * x.shape[1]))
    for i in range(0, n, step):
        diff = x[i: i + step, None, :] - x[None, :, :]
        out[i: i + step] = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def mmd_test(xa: np.ndarray, xb: np.ndarray, *, permutations: int = DEFAULT_PERMUTATIONS,
             seed: int = 0) -> tuple[float, float, float]:
    """(MMD^2, permutation p-value, bandwidth) of two samples (rows), Gaussian kernel.

    MMD^2 is the biased V-statistic s'Ks with s = 1/n_a on A's rows and -1/n_b on B's: a
    squared distance between mean embeddings, so >= 0, and exactly 0 for identical samples
    (rounding below 0 is clipped), where every permutation scores at least as much: p = 1.
    The bandwidth is the median of the non-zero pairwise distances of the pooled sample
    (1 if there is none). p = (1 + #{permuted >= observed}) / (1 + permutations).
    """
    x = np.concatenate([xa, xb]).astype(np.float64)
    na, n = len(xa), len(xa) + len(xb)
    d2 = _sq_dists(x)
    off = d2[~np.eye(n, dtype=bool)]
    nonzero = off[off > 0]
    sigma = float(np.median(np.sqrt(nonzero))) if nonzero.size else 1.0
    k = np.exp(-d2 / (2 * sigma * sigma))
    s = np.concatenate([np.full(na, 1.0 / na), np.full(n - na, -1.0 / (n - na))])
    observed = max(float(s @ k @ s), 0.0)
    rng = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, permutations, 256):  # permutations in blocks: one matmul each
        m = min(256, permutations - start)
        perms = np.stack([rng.permutation(s) for _ in range(m)], axis=1)  # n x m
        stats = np.einsum("im,im->m", perms, k @ perms)
        at_least += int((stats >= observed - _ABS_TOL).sum())
    return observed, (1 + at_least) / (1 + permutations), sigma


# --- reading the sets ------------------------------------------------------------------------------


def _luminance_range(t: Tensor) -> tuple[float, bool, float]:
    lum = (0.299 * t[0, 0] + 0.587 * t[0, 1] + 0.114 * t[0, 2]).reshape(-1).double()
    lo, hi = torch.quantile(lum, torch.tensor([0.01, 0.99], dtype=torch.float64)).tolist()
    gray = bool(torch.equal(t[0, 0], t[0, 1]) and torch.equal(t[0, 1], t[0, 2]))
    clipped = float(((t <= 0) | (t >= 1)).any(dim=1).double().mean())
    return hi - lo, gray, clipped


def encode_set(model: LpipsNet, name: str, images: Sequence[tuple[str, object]], *,
               size: int | None = None, max_pixels: int | None = None,
               skipped: Sequence[Skipped] = (), progress: Progress | None = None) -> SetStats:
    """Load every image of a set (refusals kept), encode it once and keep the statistics."""
    n_layers = len(model.spec.taps)
    pooled: list[list[np.ndarray]] = [[] for _ in range(n_layers)]
    s1 = [torch.zeros(c, dtype=torch.float64) for c in model.spec.channels]
    s2 = [torch.zeros(c, dtype=torch.float64) for c in model.spec.channels]
    count = [0] * n_layers
    refused: list[Skipped] = list(skipped)
    sizes, grays, ranges, clipped = [], [], [], []
    for i, (label, source) in enumerate(images):
        try:
            im = load_image(source, max_pixels=max_pixels, name=label)
            t = im.tensor if size is None else resize_square(im.tensor, size)
            check_min_size(tuple(t.shape[-2:]), model.spec.name, label=f"image {label}")
        except InputError as exc:
            refused.append(Skipped(label, str(exc)))
            continue
        sizes.append(im.size)
        rng, gray, clip = _luminance_range(t)
        ranges.append(rng)
        grays.append(gray)
        clipped.append(clip)
        with torch.no_grad():
            feats = model.encode(t)
        for layer, y in enumerate(feats):
            y = y[0].double().reshape(y.shape[1], -1)  # C x positions
            # Mean and spread over positions: content and texture (noise, blur) both show.
            pooled[layer].append(torch.cat([y.mean(dim=1), y.std(dim=1, correction=0)]).numpy())
            s1[layer] += y.sum(dim=1)
            s2[layer] += (y * y).sum(dim=1)
            count[layer] += y.shape[1]
        if progress is not None:
            progress(i + 1, len(images), f"Encoding set {name}")
    if not sizes:
        raise InputError(f"Set {name} has no usable image ({len(refused)} refused"
                         + (f"; first: {refused[0].name}: {refused[0].reason}" if refused else "")
                         + ").")
    means = tuple((s1[k] / count[k]).numpy() for k in range(n_layers))
    stds = tuple(np.sqrt(np.maximum((s2[k] / count[k]).numpy() - means[k] ** 2, 0.0))
                 for k in range(n_layers))
    return SetStats(name, len(sizes), tuple(refused), tuple(sizes), tuple(grays),
                    tuple(ranges), tuple(clipped), tuple(np.stack(p) for p in pooled),
                    means, stds)


def compare_layers(a: SetStats, b: SetStats, names: Sequence[str], *,
                   permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
                   top_k: int = 5) -> tuple[LayerGap, ...]:
    """Per layer: mean and std shift, MMD with its p-value; ranked by MMD (largest first)."""
    permutations = integer(permutations, "permutations", minimum=0)
    out = []
    for k, name in enumerate(names):
        dm = np.abs(a.mean[k] - b.mean[k])
        top = tuple((int(i), float(dm[i])) for i in np.argsort(-dm, kind="stable")[:top_k])
        mmd2, p, sigma = mmd_test(a.pooled[k], b.pooled[k], permutations=permutations,
                                  seed=seed + k)
        out.append(LayerGap(name, int(dm.size), float(np.linalg.norm(a.mean[k] - b.mean[k])),
                            float(np.linalg.norm(a.std[k] - b.std[k])), top, mmd2, p, sigma))
    ranked = sorted(out, key=lambda g: -g.mmd2)  # stable: ties keep the trunk's order
    return tuple(LayerGap(**{**g.__dict__, "rank": r + 1}) for r, g in enumerate(ranked))


def domain_gap(model: LpipsNet, a: SetStats, b: SetStats, *,
               permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
               size: int | None = None, n_judgments: int | None = None) -> DomainGap:
    """Compare two encoded sets and say, from the numbers, what differs."""
    layers = compare_layers(a, b, model.layer_names, permutations=permutations, seed=seed)
    head_weights = int(sum(model.spec.channels))
    gap = DomainGap(model.spec.name, model.version, model.weights_info,
                    model.lin_info.to_dict(), a, b, layers, model.layer_names, permutations,
                    seed, size,
                    n_judgments, head_weights)
    summary, warnings = _statements(gap, model.weights_info.state)
    return DomainGap(**{**gap.__dict__, "summary": tuple(summary), "warnings": tuple(warnings)})


def _size_text(stats: SetStats) -> str:
    c = stats.checks()
    h, w = c["median_size"]
    return (f"{w}x{h} px (median); its median shorter side is "
            f"{c['median_side_vs_heads_64px']:.2g}x the {HEADS_PATCH_PX} px patches the lin "
            f"heads were fitted on and {c['median_side_vs_trunk_256px']:.2g}x the "
            f"~{TRUNK_IMAGE_PX} px images the trunk was trained on")


def _statements(gap: DomainGap, state: TrunkState) -> tuple[list[str], list[str]]:
    lines, warn = [], []
    top = gap.layers[0]
    alpha_note = f"{gap.permutations} permutations" if gap.permutations else "no permutations"
    if top.mmd2 <= 0:
        lines.append(f"No gap: in every layer the two sets' pooled features give MMD^2 = 0 "
                     f"(p = {top.p_value:.3g}).")
    else:
        resolution = 1 / (1 + gap.permutations) if gap.permutations else 1.0
        sig = [g for g in gap.layers if g.p_value <= 0.05]
        lines.append(f"Largest gap in layer {top.name}: MMD^2 {top.mmd2:.3g}, p = "
                     f"{top.p_value:.3g} ({alpha_note}; the smallest possible p is "
                     f"{resolution:.3g}), mean shift {top.mean_shift:.3g}.")
        lines.append(f"{len(sig)} of {len(gap.layers)} layers differ at p <= 0.05: "
                     + (", ".join(g.name for g in sig) if sig else "none") + ".")
        lines.append("Ranking by MMD^2: " + ", ".join(f"{g.name} ({g.mmd2:.3g})"
                                                     for g in gap.layers) + ".")
    for s in (gap.a, gap.b):
        c = s.checks()
        lines.append(f"Set {s.name}: {s.n_images} images, {_size_text(s)}; "
                     f"{c['grayscale_share']:.0%} grayscale; median dynamic range "
                     f"{c['median_dynamic_range']:.2f} (1st-99th percentile of luminance), "
                     f"{c['low_range_share']:.0%} below {LOW_RANGE}.")
        if s.refused:
            warn.append(f"Set {s.name}: {len(s.refused)} files refused (first: "
                        f"{s.refused[0].name}: {s.refused[0].reason}).")
        if s.n_images < 10:
            warn.append(f"Set {s.name} has only {s.n_images} images: the MMD test has little "
                        f"power, and p-values are coarse.")
    if gap.n_judgments is not None:
        lines.append(f"{gap.n_judgments} judged triplets available for {gap.head_weights} "
                     f"head weights ({gap.n_judgments / gap.head_weights:.2g} per weight).")
    if state.code == RANDOM:
        warn.append(f"{state.subject}: this gap is measured in a random network's features, "
                    f"not LPIPS's.")
    elif not state.perceptual:
        warn.append(f"{state.subject}: this gap is measured in that file's features, which "
                    f"are not the published trunk's the lin heads were calibrated on.")
    return lines, warn


__all__ = ["DomainGap", "LayerGap", "SetStats", "compare_layers", "domain_gap",
           "encode_set", "mmd_test"]

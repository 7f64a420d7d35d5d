"""ST-LPIPS, the shift-tolerant LPIPS of Ghildyal and Liu (ECCV 2022), on lpips-explain's own
engine, with the same exact breakdown as LPIPS (layers, channels, spatial maps).

ST-LPIPS keeps LPIPS's formula (``docs/architecture.md#maths``): inputs in [-1, 1] through
the v0.1 scaling layer, five taps unit-normalised over channels, non-negative lin heads,
d = sum_l mean_hw sum_c w_lc (dy_lchw)^2. What differs is the trunk, trained with
anti-aliasing so that a shift of a pixel or two barely moves the distance:

- every stride-2 step becomes a stride-1 step followed by a blur pool: reflection padding
  of 2 on each side, then a depthwise 3x3 binomial filter ([1 2 1] x [1 2 1] / 16, as
  stored in the file) applied with stride 2;
- alex: conv1 runs at stride 1 (11x11, padding 2) and is blur-pooled *before* its ReLU;
  max poolings run at stride 1 (3x3) and are blur-pooled after; taps relu1..relu5;
- vgg: each 2x2 max pooling runs at stride 1 and is blur-pooled after; taps relu1_2 ..
  relu5_3.

The trunk and the heads are the published files of ``stlpips-pytorch`` 0.0.2
(``weights/vST0.0/{alex,vgg}_shift_tolerant.pth``, read as files with
``torch.load(weights_only=True)``, SHA-256 pinned in ``core/metric_files``). The package
itself is never imported (it imports ``torchsummary`` and ``IPython``). The module
indices below are the reference's, so its state_dict maps onto ours key for key, strictly.
Equality with the reference on shared inputs (1e-5 relative) and its README value
(0.7777554988861084 for ex_p0 against ex_ref, alex) are checked in
tests/core/test_second_opinions.py.

The network is an :class:`~lpips_explain.core.model.LpipsNet`, so the reference scorer
(``core/model.ReferenceScorer``: encode the reference once, one trunk pass per candidate)
and the exact decomposition (``core/decompose``) apply unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpips_explain.core import metric_files, trunk_hash
from lpips_explain.core.decompose import Decomposition, decompose
from lpips_explain.core.heads import LinInfo
from lpips_explain.core.model import SCALE, SHIFT, LpipsNet, ReferenceScorer
from lpips_explain.core.trunks import TrunkSpec
from lpips_explain.core.weights import WeightsInfo
from lpips_explain.errors import ImageTooSmallError, WeightsMismatchError
from lpips_explain.validation import choice

METRIC = "stlpips"
LABEL = "ST-LPIPS"
NETS: tuple[str, ...] = ("alex", "vgg")
BLUR_PAD = 2  # the reference's Downsample(filt_size=3, pad_more=True): reflect pad 2 each side


class BlurPool(nn.Module):
    """Reflection padding, then a depthwise blur with stride 2 (its filter comes from the file)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = a[:, None] * a[None, :]
        self.register_buffer("filt", (filt / filt.sum())[None, None].repeat(channels, 1, 1, 1))
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (BLUR_PAD,) * 4, mode="reflect")
        return F.conv2d(x, self.filt, stride=2, groups=self.channels)


def _alex_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=2),  # 0
        BlurPool(64),  # 1
        nn.ReLU(inplace=True),  # 2 relu1
        nn.MaxPool2d(kernel_size=3, stride=1),  # 3
        BlurPool(64),  # 4
        nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 5
        nn.ReLU(inplace=True),  # 6 relu2
        nn.MaxPool2d(kernel_size=3, stride=1),  # 7
        BlurPool(192),  # 8
        nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 9
        nn.ReLU(inplace=True),  # 10 relu3
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 11
        nn.ReLU(inplace=True),  # 12 relu4
        nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 13
        nn.ReLU(inplace=True),  # 14 relu5
    )


def _vgg_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=1), BlurPool(c_in)]
        else:
            layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = int(v)
    return nn.Sequential(*layers)


def _builder(features):
    def build() -> nn.Module:
        m = nn.Module()
        m.features = features()
        return m
    return build


SPECS: dict[str, TrunkSpec] = {
    # min_size: the smallest side for which every tap keeps at least one position and every
    # reflection padding fits its map (measured on the reference and on this network:
    # tests/core/test_second_opinions.py runs both at min and refuses min - 1).
    "alex": TrunkSpec("alex", "AlexNet (shift-tolerant)", (2, 6, 10, 12, 14),
                      ("relu1", "relu2", "relu3", "relu4", "relu5"),
                      (64, 192, 384, 256, 256), 21, "", "",  # no torchvision weights
                      _builder(_alex_features)),
    "vgg": TrunkSpec("vgg", "VGG16 (shift-tolerant)", (3, 9, 17, 25, 33),
                     ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
                     (64, 128, 256, 512, 512), 18, "", "", _builder(_vgg_features)),
}


def check_size(size: tuple[int, int], net: str, *, label: str = "image") -> None:
    """ImageTooSmallError naming ST-LPIPS, its trunk and the size when below its minimum."""
    minimum = SPECS[choice(net, "ST-LPIPS trunk", NETS)].min_size
    h, w = int(size[0]), int(size[1])
    if h < minimum or w < minimum:
        raise ImageTooSmallError(
            f"The {label} is {w}x{h} px, but {LABEL} {net} needs at least {minimum}x{minimum} "
            f"px (its blur pools pad by reflection, which needs a map larger than the "
            f"padding). Use a larger image; LPIPS may still run on this one.")


class StLpipsNet(LpipsNet):
    """ST-LPIPS: an :class:`LpipsNet` on the shift-tolerant trunk and heads."""

    metric = METRIC

    def __init__(self, spec: TrunkSpec, features: nn.Sequential, heads: Sequence[Tensor],
                 weights_info: WeightsInfo, file_status: metric_files.FileStatus):
        super().__init__(spec, features, heads, "0.1", weights_info, file_status.path or "")
        self.file_status = file_status

    @property
    def perceptual(self) -> bool:
        return bool(self.file_status.verified)

    @cached_property
    def lin_info(self) -> LinInfo:
        st = self.file_status
        return LinInfo(st.path or "", st.verified, "official" if st.verified else "custom",
                       st.sha256 or "")

    def taps(self, x: Tensor) -> list[Tensor]:
        check_size((x.shape[-2], x.shape[-1]), self.spec.name)
        return super().taps(x)

    def compare(self, a: Tensor, b: Tensor, top_k: int = 5) -> Decomposition:
        """The exact layer / channel / spatial breakdown of d(a, b) (as LPIPS's)."""
        return decompose(self, a, b, top_k)

    def scorer(self, reference: Tensor) -> ReferenceScorer:
        """f_ref(x) = d(ref, x): the reference encoded once, one trunk pass per candidate."""
        return ReferenceScorer(self, reference)

    def describe(self) -> dict:
        """What the second-opinion JSON says about the weights."""
        st = self.file_status
        return {"metric": METRIC, "net": self.spec.name, "perceptual": self.perceptual,
                "file": st.path, "source": st.source, "sha256": st.sha256,
                "verified": st.verified, "note": st.note}


def _split_state(state: dict[str, Tensor], net: str, path: str | None,
                 features: nn.Sequential) -> tuple[dict[str, Tensor], list[Tensor]]:
    """The reference's state_dict -> (our ``features`` state_dict, lin heads)."""
    trunk: dict[str, Tensor] = {}
    heads: dict[int, Tensor] = {}
    extra = []
    for key, value in state.items():
        if m := re.fullmatch(r"net\.slice\d+\.(\d+\.\w+)", key):
            trunk[m[1]] = value
        elif m := re.fullmatch(r"lin(\d+)\.model\.\d\.weight", key):
            heads[int(m[1])] = value
        elif key.startswith("scaling_layer."):
            want = torch.tensor(SHIFT if key.endswith("shift") else SCALE).view(1, 3, 1, 1)
            if value.shape != want.shape or not torch.allclose(value.float(), want):
                raise WeightsMismatchError(f"{path}: {key} is not LPIPS v0.1's scaling layer.")
        else:
            extra.append(key)
    expected = features.state_dict()
    missing = [k for k in expected if k not in trunk]
    wrong = [f"{k}: {tuple(trunk[k].shape)} instead of {tuple(v.shape)}"
             for k, v in expected.items() if k in trunk and trunk[k].shape != v.shape]
    unexpected = [k for k in trunk if k not in expected] + extra
    spec = SPECS[net]
    if missing or wrong or unexpected or sorted(heads) != list(range(len(spec.taps))):
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + wrong[:3] + \
            ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + \
            ([f"lin heads {sorted(heads)}"] if sorted(heads) != list(range(len(spec.taps))) else [])
        raise WeightsMismatchError(f"{path} is not an ST-LPIPS {net} model: "
                                   + "; ".join(parts) + ".")
    out_heads = []
    for i, c in enumerate(spec.channels):
        w = heads[i]
        if tuple(w.shape) != (1, c, 1, 1):
            raise WeightsMismatchError(f"{path}: lin{i} has shape {tuple(w.shape)}, the "
                                       f"{net} trunk needs (1, {c}, 1, 1).")
        w = w.detach().float().reshape(-1)
        if not torch.isfinite(w).all() or (w < 0).any():
            raise WeightsMismatchError(f"{path}: lin{i} holds negative, NaN or Inf weights; "
                                       f"LPIPS heads are non-negative.")
        out_heads.append(w.clone())
    return trunk, out_heads


def build_stlpips(net: str = "alex", *, weights: str | os.PathLike | None = None) -> StLpipsNet:
    """ST-LPIPS ``net`` (alex or vgg) from the published file of ``stlpips-pytorch`` (or the
    file ``weights``: its digest decides whether it is reported as verified)."""
    choice(net, "ST-LPIPS trunk", NETS)
    file = metric_files.get_file(METRIC, net)
    state, st = metric_files.read(file, weights)
    spec = SPECS[net]
    features = spec.build().features
    trunk, heads = _split_state(state, net, st.path, features)
    features.load_state_dict(trunk, strict=True)
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    info = WeightsInfo(net, st.path or "", f"{file.label} from {st.path} ({st.note})", st.path,
                       perceptual=st.verified, reason=None if st.verified else st.note,
                       sha256=st.sha256,
                       verified_by=trunk_hash.FILE_SHA256 if st.verified else None)
    return StLpipsNet(spec, features, heads, info, st).eval()

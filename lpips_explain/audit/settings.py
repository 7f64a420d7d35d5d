"""What an audit's numbers depend on besides its input rows: the model, rebuilt anywhere.

Every engine (the local one, each Ray actor, a restart) builds the network from one
:class:`AuditSettings`; :func:`model_fingerprint` hashes its weights so that two places
agree only on the same model.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass

import torch

from lpips_explain.core.model import LpipsNet, build_lpips
from lpips_explain.core.trunks import get_trunk
from lpips_explain.core.weights import official_lin_path
from lpips_explain.intake.align import SIZE_POLICIES
from lpips_explain.validation import choice


@dataclass(frozen=True)
class AuditSettings:
    """What an audit's numbers depend on besides the input: every engine builds from this."""

    net: str = "alex"
    version: str = "0.1"
    backbone_weights: str = "imagenet"  # resolved: "imagenet", "random" or a path
    seed: int = 0
    lin_weights: str | None = None
    size_policy: str = "resize"
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        get_trunk(self.net)
        choice(self.size_policy, "size policy", SIZE_POLICIES)

    def build(self, *, progress: bool = False) -> LpipsNet:
        return build_lpips(self.net, self.version, self.backbone_weights, self.seed,
                           lin_weights=self.lin_weights, progress=progress)

    def to_dict(self) -> dict:
        return asdict(self)


def settings_for(model: LpipsNet, *, size_policy: str, max_pixels: int | None) -> AuditSettings:
    """The settings that rebuild ``model`` anywhere (a Ray worker, a restart)."""
    info = model.weights_info
    official = os.path.abspath(official_lin_path(model.spec.name, model.version))
    lin = None if os.path.abspath(model.lin_file) == official else model.lin_file
    return AuditSettings(model.spec.name, model.version, info.spec, int(info.seed or 0)
                         if info.spec == "random" else 0, lin, size_policy, max_pixels)


def model_fingerprint(net: LpipsNet) -> str:
    """A hash of every weight of the network: two engines agree only on the same model."""
    h = hashlib.sha256(f"{net.spec.name}|{net.version}".encode())
    for name, t in sorted({**dict(net.named_parameters()), **dict(net.named_buffers())}.items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]

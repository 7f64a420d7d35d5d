"""What an audit's numbers depend on besides its input rows: the model, rebuilt anywhere.

Every engine (the local one, each Ray actor, a restart) builds the network from one
:class:`AuditSettings`; :func:`model_fingerprint` hashes its weights so that two places
agree only on the same model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from lpips_explain.audit.columns import METRIC_COLUMNS
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
    metrics: tuple[str, ...] = ()  # optional metric columns (columns.METRIC_COLUMNS)
    precision: str = "fp32"  # the scoring mode (core.modes.PRECISIONS): fp32 is exact

    def __post_init__(self) -> None:
        get_trunk(self.net)
        choice(self.size_policy, "size policy", SIZE_POLICIES)
        metrics = tuple(dict.fromkeys(self.metrics or ()))
        for m in metrics:
            choice(m, "audit metric", METRIC_COLUMNS)
        object.__setattr__(self, "metrics", metrics)

    def build_metric(self, metric: str) -> torch.nn.Module:
        """The network of an optional metric column, chosen as
        :meth:`lpips_explain.Explainer.metric_model` chooses it: ST-LPIPS on this trunk
        (alex or vgg; squeeze is seconded by alex), DISTS on this VGG16 trunk setting when
        the audit's trunk is vgg or random, else on the published ImageNet VGG16."""
        if metric == "stlpips":
            from lpips_explain.core.stlpips import build_stlpips

            return build_stlpips("vgg" if self.net == "vgg" else "alex").eval()
        from lpips_explain.core.dists import build_dists

        random = self.backbone_weights == "random"
        trunk = self.backbone_weights if random or self.net == "vgg" else "imagenet"
        return build_dists(trunk, self.seed if random else 0, progress=False).eval()

    def build(self, *, progress: bool = False) -> LpipsNet:
        return build_lpips(self.net, self.version, self.backbone_weights, self.seed,
                           lin_weights=self.lin_weights, progress=progress)

    def to_dict(self) -> dict:
        d = asdict(self)
        # Left out when empty (fp32): exact runs without metric columns keep their earlier
        # fingerprint; an approximate run's parts are never mixed with exact ones.
        if d["metrics"]:
            d["metrics"] = list(d["metrics"])
        else:
            del d["metrics"]
        if d["precision"] == "fp32":
            del d["precision"]
        return d


def settings_for(model: LpipsNet, *, size_policy: str, max_pixels: int | None,
                 metrics: Sequence[str] = (), precision: str = "fp32") -> AuditSettings:
    """The settings that rebuild ``model`` anywhere (a Ray worker, a restart)."""
    info = model.weights_info
    official = os.path.abspath(official_lin_path(model.spec.name, model.version))
    lin = None if os.path.abspath(model.lin_file) == official else model.lin_file
    return AuditSettings(model.spec.name, model.version, info.spec, int(info.seed or 0)
                         if info.spec == "random" else 0, lin, size_policy, max_pixels,
                         tuple(metrics), precision)


def model_fingerprint(net: LpipsNet) -> str:
    """A hash of every weight of the network: two engines agree only on the same model."""
    h = hashlib.sha256(f"{net.spec.name}|{net.version}".encode())
    for name, t in sorted({**dict(net.named_parameters()), **dict(net.named_buffers())}.items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]

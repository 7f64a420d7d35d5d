"""Where the trunk (backbone) and lin-head weights come from, and the checks that they loaded."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lpips_explain.core import trunk_hash
from lpips_explain.core.trunks import get_trunk
from lpips_explain.errors import (
    InputError,
    WeightsError,
    WeightsMismatchError,
    WeightsUnavailableError,
    lookup,
)
from lpips_explain.notices import RANDOM_TRUNK_TEXT

BACKBONE_ENV = "LPIPS_EXPLAIN_BACKBONE_WEIGHTS"
OFFLINE_ENV = "LPIPS_EXPLAIN_OFFLINE"
VERSIONS = ("0.1", "0.0")


@dataclass(frozen=True)
class WeightsInfo:
    """Where a trunk's weights came from, and whether the result is a perceptual metric."""

    net: str
    spec: str  # "imagenet", "random" or the path as given
    source: str  # one sentence for people
    file: str | None
    perceptual: bool  # True only for torchvision's published file, SHA-256 verified
    seed: int | None = None
    reason: str | None = None  # why the trunk is not a (verified) perceptual metric
    sha256: str | None = None  # the trunk file's digest (None for a random trunk)

    @property
    def warning(self) -> str | None:
        """What every result made with this trunk says (None for the verified published one)."""
        if self.perceptual:
            return None
        if self.spec == "random":
            return RANDOM_TRUNK_TEXT
        return (f"The trunk weights are not torchvision's published file ({self.reason}). The "
                f"official lin heads were calibrated on that file, so these numbers are NOT a "
                f"verified perceptual metric.")

    def to_dict(self) -> dict:
        return {
            "weights": self.spec,
            "perceptual": self.perceptual,
            "reason": self.reason,
            "source": self.source,
            "file": self.file,
            "sha256": self.sha256,
            "seed": self.seed,
        }


def default_backbone_spec() -> str:
    """The backbone weights used when none are named: env LPIPS_EXPLAIN_BACKBONE_WEIGHTS or imagenet."""
    return os.environ.get(BACKBONE_ENV, "").strip() or "imagenet"


def imagenet_url(net: str) -> str:
    return get_trunk(net).url


def imagenet_cache_path(net: str) -> Path:
    """The file torchvision's hub cache would hold for this trunk (TORCH_HOME aware)."""
    url = imagenet_url(net)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def build_features(net: str, seed: int = 0) -> nn.Sequential:
    """A randomly initialised torchvision ``features`` trunk, deterministic in ``seed``."""
    spec = get_trunk(net)
    # fork_rng keeps the caller's global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build().features


def _missing_message(net: str, path: Path, reason: str) -> str:
    return (
        f"The ImageNet weights of the {net!r} trunk are not available ({reason}). "
        f"Expected file: {path}. Either put torchvision's file {path.name} there "
        f"(the hub cache follows TORCH_HOME), or name a local torchvision state_dict: "
        f"--backbone-weights PATH on the command line, the 'Trunk weights' setting in the "
        f"app, or the {BACKBONE_ENV} environment variable for both. "
        f"For structure-only demos, a random trunk works offline (not a perceptual metric)."
    )


def _fetch_imagenet(net: str, progress: bool) -> Path:
    path = imagenet_cache_path(net)
    if path.is_file():
        return path
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        raise WeightsUnavailableError(
            _missing_message(net, path, f"not cached and {OFFLINE_ENV} forbids downloading")
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # torchvision's file names carry a sha256 prefix: check it, as torchvision does.
        hash_prefix = re.search(r"-([a-f0-9]+)\.", path.name)
        torch.hub.download_url_to_file(imagenet_url(net), str(path), progress=progress,
                                       hash_prefix=hash_prefix[1] if hash_prefix else None)
    except Exception as exc:  # URLError, socket errors, HTTP errors: all mean "not here"
        raise WeightsUnavailableError(
            _missing_message(net, path, f"download failed: {exc}")
        ) from None
    return path


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file can fail anywhere inside the unpickler
        if "weights only load failed" in str(exc).lower():
            why = ("it holds Python objects besides tensors, and lpips-explain never runs code "
                   "from a weights file (weights_only=True)")
        else:
            why = f"it is not a readable PyTorch file ({type(exc).__name__})"
        raise WeightsError(
            f"Could not load {path}: {why}. Save weights as a plain state_dict with "
            f"torch.save(model.state_dict(), path)."
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state_dict (a mapping of names to tensors).")
    return obj


def _features_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept a full torchvision model's state_dict or one of its ``features`` alone."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return dict(state)


def load_features_state(features: nn.Sequential, state: Mapping[str, torch.Tensor], *,
                        net: str, origin: str) -> None:
    """Load ``state`` into ``features`` strictly; any mismatch is a WeightsMismatchError."""
    state = _features_only(state)
    expected = features.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shape mismatch " + "; ".join(wrong[:3]))
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise WeightsMismatchError(
            f"{origin} does not fit the {net!r} trunk ({get_trunk(net).label} features): "
            + "; ".join(parts)
            + ". Use a torchvision state_dict of that architecture (full model or `features`)."
        )
    features.load_state_dict(state, strict=True)


def load_trunk(net: str, spec: str | os.PathLike | None = None, seed: int = 0, *,
               progress: bool = True) -> tuple[nn.Sequential, WeightsInfo]:
    """Build the trunk's ``features`` and fill it from ``spec`` (imagenet, random or a path)."""
    trunk = get_trunk(net)
    spec = default_backbone_spec() if spec is None else spec
    spec_str = os.fspath(spec)
    if not spec_str.strip():  # a bad setting (exit 2), not missing weights
        raise InputError(
            "The backbone weights setting is empty: use 'imagenet', 'random' or a file path.")
    features = build_features(net, seed)
    if spec_str == "random":
        info = WeightsInfo(net, "random", f"random initialisation, seed {seed} (not perceptual)",
                           None, perceptual=False, seed=seed,
                           reason="random weights, for structure demos and tests only")
    elif spec_str == "imagenet":
        path = _fetch_imagenet(net, progress)
        load_features_state(features, _read_state_dict(path), net=net, origin=str(path))
        # A cached file is checked too (torch hub only checks at download time).
        verdict = trunk_hash.verify(net, path)
        info = WeightsInfo(net, "imagenet",
                           f"torchvision {trunk.weights_enum} from {path}"
                           + (" (SHA-256 verified)" if verdict.verified else
                              " (SHA-256 does NOT match torchvision's published file)"),
                           str(path), perceptual=verdict.verified,
                           reason=None if verdict.verified else f"the cached file {verdict.reason}",
                           sha256=verdict.sha256)
    else:
        path = Path(spec_str).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"Backbone weights file {path} does not exist. Name an existing torchvision "
                f"state_dict, or use 'imagenet' or 'random'."
            )
        load_features_state(features, _read_state_dict(path), net=net, origin=str(path))
        verdict = trunk_hash.verify(net, path)
        info = WeightsInfo(net, spec_str,
                           f"local file {path}" + (
                               " (SHA-256 verified: torchvision's published file)"
                               if verdict.verified else " (custom: not torchvision's published "
                                                        "file)"),
                           str(path.resolve()), perceptual=verdict.verified,
                           reason=None if verdict.verified else f"the file {verdict.reason}",
                           sha256=verdict.sha256)
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features, info


def official_lin_path(net: str, version: str) -> Path:
    """The lin-head file that ships inside the official ``lpips`` package."""
    import lpips  # the reference package ships the official heads

    lookup("lin version", version, {v: v for v in VERSIONS})
    return Path(lpips.__file__).parent / "weights" / f"v{version}" / f"{net}.pth"


def load_lin_heads(net: str, version: str, channels: tuple[int, ...],
                   path: str | os.PathLike | None = None) -> tuple[list[torch.Tensor], str]:
    """Read the per-layer lin weights (1-D, non-negative) and check every one really loaded."""
    file = Path(path) if path is not None else official_lin_path(net, version)
    if not file.is_file():
        raise WeightsUnavailableError(f"Lin-head file {file} does not exist.")
    state = _read_state_dict(file)
    heads = []
    for i, c in enumerate(channels):
        key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.model.0.weight",
                                f"lins.{i}.model.1.weight") if k in state), None)
        if key is None:
            raise WeightsMismatchError(
                f"{file} has no weights for lin layer {i} (looked for 'lin{i}.model.1.weight'); "
                f"it holds: {', '.join(list(state)[:6])}."
            )
        raw = state[key]
        if tuple(raw.shape) not in ((1, c, 1, 1), (c,), (1, c)):
            raise WeightsMismatchError(
                f"{file}: lin layer {i} has shape {tuple(raw.shape)}; the {net!r} trunk needs "
                f"{c} channels, as (1, {c}, 1, 1) like the official heads."
            )
        w = raw.detach().to(torch.float32).reshape(-1)
        if not torch.isfinite(w).all():
            raise WeightsMismatchError(f"{file}: lin layer {i} holds NaN or Inf.")
        if (w < 0).any():
            raise WeightsMismatchError(
                f"{file}: lin layer {i} has {int((w < 0).sum())} negative weights; LPIPS heads "
                f"are non-negative (a negative weight would make the distance able to go below 0)."
            )
        heads.append(w.clone())
    extra = [k for k in state if (m := re.match(r"lins?\.?(\d+)\.", k)) and int(m[1]) >= len(channels)]
    if extra:
        raise WeightsMismatchError(f"{file} holds more lin layers than the {net!r} trunk has.")
    return heads, str(file.resolve())

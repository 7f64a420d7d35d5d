"""The one registry of LPIPS trunks: everything weights, model, intake checks and the CLI need.

Adding a trunk is a change here and nowhere else: its torchvision builder and weights enum,
the tapped layers, their channel counts, the smallest image it can process and its label.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lpips_explain.errors import ImageTooSmallError, lookup


def _build_vgg16() -> nn.Module:
    # Building the whole VGG16 initialises a 102M-parameter classifier we never use;
    # torchvision's own make_layers gives the same `features` with its init.
    from torchvision.models import vgg

    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    model = nn.Module()
    model.features = features
    return model


def _build_alexnet() -> nn.Module:
    # torchvision's AlexNet also initialises a 58M-parameter classifier (230 MB, measured as
    # +210 MB of peak memory) that LPIPS never uses. Its `features` come first in
    # AlexNet.__init__, so building them alone draws the same random init (checked against
    # torchvision in tests/core/test_tiling.py).
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    return model


def _build_squeezenet() -> nn.Module:
    from torchvision.models import squeezenet1_1

    return squeezenet1_1(weights=None)


@dataclass(frozen=True)
class TrunkSpec:
    """One trunk: which torchvision layers are tapped, what they hold, where weights come from."""

    name: str  # the CLI / API name: "alex", "vgg", "squeeze"
    label: str  # for people: "AlexNet"
    taps: tuple[int, ...]  # index in torchvision's `features` of each official slice's last module
    layer_names: tuple[str, ...]
    channels: tuple[int, ...]
    # Smallest height and width the trunk can process; measured on the real networks
    # (tests/core/test_model.py runs the trunk at min and min - 1 to keep this true).
    min_size: int
    # torchvision's published ImageNet weights: the enum's name and its download address
    # (strings, so that scoring never imports torchvision: about 2 s and 170 MB resident;
    # tests/core/test_weights.py checks them against torchvision's enums)
    weights_name: str
    weights_url: str
    build: Callable[[], nn.Module]  # the full torchvision model (random init); `.features` is used
    # SHA-256 over the published trunk's tensors (trunk_hash.content_digest): recognises the
    # published weights whatever file they come in. Measured on the package-index copies
    # (core/published.py); None where no such copy was measured.
    content_digest: str | None = None

    @property
    def file_name(self) -> str:
        """torchvision's file name for the published weights (it carries a SHA-256 prefix)."""
        return os.path.basename(self.weights_url)

    @property
    def url(self) -> str:
        return self.weights_url


TRUNKS: dict[str, TrunkSpec] = {
    "alex": TrunkSpec(
        "alex", "AlexNet", (1, 4, 7, 9, 11),
        ("relu1", "relu2", "relu3", "relu4", "relu5"),
        (64, 192, 384, 256, 256), 31,
        "AlexNet_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", _build_alexnet,
        "2b566cc3a4d6f0a7343701af22f461f1ac3dcd03a3ac28cce10968a1d3c85fdc",
    ),
    "vgg": TrunkSpec(
        "vgg", "VGG16", (3, 8, 15, 22, 29),
        ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
        (64, 128, 256, 512, 512), 16,
        "VGG16_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/vgg16-397923af.pth", _build_vgg16,
        "40acdda7c6b05249f81637b2571671ce938507c5f986db17af374cf62a2f42a6",
    ),
    "squeeze": TrunkSpec(
        "squeeze", "SqueezeNet 1.1", (1, 4, 7, 9, 10, 11, 12),
        ("relu1", "fire3", "fire5", "fire6", "fire7", "fire8", "fire9"),
        (64, 128, 256, 384, 384, 512, 512), 17,
        "SqueezeNet1_1_Weights.IMAGENET1K_V1",
        "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", _build_squeezenet,
    ),
}
NETS: tuple[str, ...] = tuple(TRUNKS)
VERSIONS = ("0.1", "0.0")  # the lin-head versions shipped in the official lpips package


def get_trunk(net: str) -> TrunkSpec:
    """The spec of trunk ``net``; an unknown name is an UnknownOptionError with a hint."""
    return lookup("trunk", net, TRUNKS)  # type: ignore[return-value]


def check_min_size(size: tuple[int, int], net: str, *, label: str = "image") -> None:
    """Raise ImageTooSmallError if (height, width) ``size`` is too small for trunk ``net``."""
    minimum = get_trunk(net).min_size
    h, w = int(size[0]), int(size[1])
    if h < minimum or w < minimum:
        others = ", ".join(f"{k}: {v.min_size}x{v.min_size} px" for k, v in TRUNKS.items()
                           if k != net)
        raise ImageTooSmallError(
            f"The {label} is {w}x{h} px, but the {net!r} trunk needs at least "
            f"{minimum}x{minimum} px. Use a larger image or another trunk ({others})."
        )


def build_features(net: str, seed: int = 0) -> nn.Sequential:
    """A randomly initialised torchvision ``features`` trunk, deterministic in ``seed``."""
    spec = get_trunk(net)
    # fork_rng keeps the caller's global RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build().features


def empty_features(net: str) -> nn.Sequential:
    """The torchvision ``features`` trunk with uninitialised parameters, for a state_dict to
    fill every one of them (core/weights.load_features_state loads strictly). Built on the
    meta device: no initialisation runs and no classifier is allocated (vgg16's random
    initialisation took 1.6 s, nearly all of it in the classifier that is then dropped)."""
    with torch.device("meta"):
        model = get_trunk(net).build()
    return model.features.to_empty(device="cpu")


def official_lin_path(net: str, version: str) -> Path:
    """The lin-head file that ships inside the official ``lpips`` package."""
    import importlib.util

    get_trunk(net)
    lookup("lin version", version, {v: v for v in VERSIONS})
    # Found, not imported: importing lpips imports torchvision (about 2 s and 170 MB
    # resident), which scoring never needs.
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("The official lpips package is not installed: pip install "
                                  "lpips (it ships the official lin heads).")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder / "weights" / f"v{version}" / f"{net}.pth"

"""Speed modes: which precision and device the forward passes run in, each result labelled.

``fp32`` on the CPU is the exact reference path (the plain :class:`LpipsNet`, unchanged).
The other modes are approximate and say so wherever their numbers appear:

* ``bf16``: the trunk's forward under ``torch.autocast`` in bfloat16 (CPUs with native bf16,
  or CUDA); features are cast back to float32 before the unit-normalisation and lin heads.
* ``fp16``: the same in float16, on CUDA only.
* ``int8``: static post-training quantisation of the trunk with torchao's PT2E flow
  (``X86InductorQuantizer``, calibrated on the images bundled in ``assets/``,
  ``convert_pt2e``), compiled by Inductor with weight freezing, together with the
  normalisation; the lin-head tail is compiled in float32. CPUs with VNNI or AMX only.
  The compiled model is built once per process per network and reused; its shapes are
  dynamic (batch, height and width), so new image sizes do not recompile it.

Gradients never run in these modes: attribution always uses the exact float32 model.
Where a mode cannot run on this machine, :class:`ModeUnavailableError` says why; nothing
ever falls back silently to another mode.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpips_explain.core.model import LpipsNet, normalize
from lpips_explain.errors import InputError, lookup

PRECISIONS: dict[str, str] = {
    "fp32": "exact: float32 throughout (the reference path)",
    "bf16": "approximate: bfloat16 autocast on the trunk (CPU with native bf16, or CUDA)",
    "fp16": "approximate: float16 autocast on the trunk (CUDA only)",
    "int8": "approximate: static int8 trunk (torchao PT2E, X86InductorQuantizer, calibrated on "
            "the bundled images), compiled with Inductor (CPU with VNNI or AMX)",
}
DEVICES: dict[str, str] = {
    "auto": "CUDA when a GPU is visible, else the CPU",
    "cpu": "the CPU",
    "cuda": "the first CUDA GPU (cuda:N for another)",
}
ASSETS = Path(__file__).resolve().parents[2] / "assets"
# Channels of the images the int8 trunk is calibrated on (the bundled samples, 256 px).
CALIBRATION_GLOB = ("originals/*.png", "distorted/*.png")


class ModeUnavailableError(InputError):
    """A precision or device that cannot run on this machine (no CUDA, no VNNI, no compiler).

    Raised before any work; never replaced by a silent fallback to another mode.
    """


@dataclass(frozen=True)
class Mode:
    """How the forward passes of a result were computed; ``exact`` is False for approximations."""

    precision: str = "fp32"
    device: str = "cpu"

    @property
    def exact(self) -> bool:
        return self.precision == "fp32"

    @property
    def label(self) -> str:
        """``exact (fp32)`` or ``approximate (bf16)``, the device named when it is not the CPU."""
        where = "" if self.device == "cpu" else f", {self.device}"
        return f"{'exact' if self.exact else 'approximate'} ({self.precision}{where})"

    @property
    def notice(self) -> str:
        """The sentence every approximate result carries (empty for an exact mode)."""
        return self.notice_for("distances, layer and channel terms, sweeps and repairs")

    def notice_for(self, parts: str, exact_parts: str = "") -> str:
        """The approximate-numbers sentence naming the ``parts`` that ran in this mode (and,
        when some ran exactly anyway, ``exact_parts``); empty for an exact mode."""
        if self.exact:
            return ""
        also = f" {exact_parts[:1].upper()}{exact_parts[1:]} are exact fp32." if exact_parts else ""
        return (f"Approximate numbers ({self.precision} mode on {self.device}): {parts} come "
                f"from a {self.precision} forward pass and differ slightly from the exact fp32 "
                f"answer (measured fidelity: the Performance page, lpips_explain.analyses."
                f"fidelity). Attribution maps are computed in exact fp32.{also}")

    def to_dict(self) -> dict:
        return {"precision": self.precision, "device": self.device, "exact": self.exact}


EXACT = Mode()


# --- what this machine can do ------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpp_compiler() -> str | None:
    """The C++ compiler Inductor would use for CPU kernels, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when CUDA is available, else "cpu"; "cuda" without CUDA is an error."""
    if not isinstance(device, str):
        raise InputError(f"device must be a string (auto, cpu, cuda), got {device!r}.")
    name = device.strip().lower()
    base = name.split(":", 1)[0]
    lookup("device", base, DEVICES)
    if base == "auto":
        return "cuda" if cuda_available() else "cpu"
    if base == "cuda":
        if not cuda_available():
            raise ModeUnavailableError(
                f"Device {device!r} was asked for but torch sees no CUDA GPU on this machine "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
                "Use --device cpu (or auto).")
        if ":" in name:
            idx = name.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise ModeUnavailableError(
                    f"Device {device!r}: there are {torch.cuda.device_count()} CUDA devices.")
        return name
    return "cpu"


def check_mode(precision: str, device: str) -> None:
    """Raise :class:`ModeUnavailableError` if ``precision`` cannot run on ``device`` here."""
    lookup("precision", precision, PRECISIONS)
    on_cuda = device.startswith("cuda")
    if precision == "bf16":
        if on_cuda and not torch.cuda.is_bf16_supported():
            raise ModeUnavailableError("bf16 needs a GPU with bfloat16 support; this one has "
                                       "none. Use --precision fp16 or fp32.")
        if not on_cuda and not _cpu_bf16():
            raise ModeUnavailableError(
                "bf16 on the CPU needs native bfloat16 instructions (AVX512-BF16 or AMX); "
                f"this CPU ({platform.processor() or platform.machine()}) has neither, so "
                f"bf16 would be slower than fp32. Use {_cpu_choices('bf16')}.")
    elif precision == "fp16" and not on_cuda:
        raise ModeUnavailableError("fp16 is a CUDA mode (float16 autocast is slow on CPUs). "
                                   f"On this CPU use {_cpu_choices('fp16')}.")
    elif precision == "int8":
        if on_cuda:
            raise ModeUnavailableError("int8 is a CPU mode (x86 VNNI/AMX kernels). On CUDA use "
                                       "--precision bf16 or fp16.")
        missing = int8_missing()
        if missing:
            raise ModeUnavailableError(f"int8 cannot run here: {missing}. Use "
                                       f"{_cpu_choices('int8')}.")


def _cpu_choices(refused: str) -> str:
    """The precisions that do run on this CPU, for a message refusing ``refused``:
    "--precision fp32 (exact)", with bf16 and int8 where this CPU runs them."""
    others = [p for p, ok in (("bf16", _cpu_bf16), ("int8", lambda: not int8_missing()))
              if p != refused and ok()]
    return "--precision fp32 (exact)" + "".join(f" or {p}" for p in others)


def _cpu_bf16() -> bool:
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def int8_missing() -> str:
    """Why int8 cannot run on this machine ("" when it can)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the int8 kernels are for x86 CPUs, this is {platform.machine()}"
    flags = cpu_flags()
    if not {"avx512_vnni", "avx_vnni", "amx_int8"} & flags:
        return "the CPU has no VNNI or AMX int8 instructions"
    if cpp_compiler() is None:
        return "no C++ compiler (g++ or clang++) for torch.compile's CPU kernels"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return "torchao is not installed (pip install torchao==0.18.0)"
    return ""


def available_modes(device: str = "cpu") -> dict[str, str]:
    """Each precision on ``device`` -> "" where it can run, else the reason it cannot."""
    out = {}
    for p in PRECISIONS:
        try:
            check_mode(p, device)
            out[p] = ""
        except ModeUnavailableError as exc:
            out[p] = str(exc)
    return out


# --- the networks --------------------------------------------------------------------------


class ModeNet(LpipsNet):
    """An :class:`LpipsNet` whose forward passes run in an approximate precision or on a GPU.

    It shares the exact network's trunk (on the CPU) and copies it once to a GPU; inputs
    move to the device once per call and every score comes back to the CPU. Never used for
    gradients.
    """

    def __init__(self, exact: LpipsNet, mode: Mode):
        features = exact.features
        if mode.device != "cpu":
            import copy

            features = copy.deepcopy(exact.features)  # never move the exact model's trunk
        super().__init__(exact.spec, features, exact.heads, exact.version, exact.weights_info,
                         exact.lin_file)
        self.mode = mode
        self.exact_net = [exact]  # a list: not registered as a submodule
        self._int8: _Int8Encoder | None = None
        if mode.device != "cpu":
            self.to(mode.device)
        if mode.precision == "int8":
            self._int8 = int8_encoder(exact)

    def train(self, mode: bool = True) -> ModeNet:  # the trunk is always in eval mode
        return super().train(False)

    def _autocast(self):
        if self.mode.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.mode.precision == "bf16" else torch.float16
            return torch.autocast(self.mode.device.split(":")[0], dtype=dtype)
        if self.mode.device.startswith("cuda"):
            # fp32 on a GPU stays fp32: no TF32 convolutions.
            return torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
        import contextlib

        return contextlib.nullcontext()

    def taps(self, x: Tensor) -> list[Tensor]:
        """Trunk features in the mode, as float32 on the mode's device.

        For int8 they come unit-normalised (the compiled graph fuses the normalisation);
        LPIPS only ever uses them normalised, and normalising again changes nothing.
        """
        x = x.to(self.mode.device, non_blocking=True)
        if self._int8 is not None:
            return self._int8.encode(x)
        with torch.no_grad(), self._autocast():
            feats = super().taps(x)
        return [f.float() for f in feats]

    def encode(self, x: Tensor) -> list[Tensor]:
        if self._int8 is not None:
            return self._int8.encode(x.to(self.mode.device))
        return [normalize(f) for f in self.taps(x)]

    def layer_maps(self, ref: Sequence[Tensor], x: Tensor) -> list[Tensor]:
        return [m.cpu() for m in super().layer_maps(ref, x)]

    def score_encoded(self, ref: Sequence[Tensor], x: Tensor) -> Tensor:
        if self._int8 is not None:
            return self._int8.score(ref, x, self.heads)
        return super().score_encoded(ref, x)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return super().forward(a, b).cpu()


def mode_net(exact: LpipsNet, precision: str = "fp32", device: str = "auto"
             ) -> tuple[LpipsNet, Mode]:
    """The network the forward passes of ``precision`` on ``device`` run on, and its mode.

    fp32 on the CPU returns ``exact`` itself: the exact path is unchanged, bit for bit.
    """
    lookup("precision", precision, PRECISIONS)
    dev = resolve_device(device)
    check_mode(precision, dev)
    mode = Mode(precision, dev)
    if precision == "fp32" and dev == "cpu":
        return exact, mode
    return ModeNet(exact, mode), mode


# --- int8: PT2E static quantisation, compiled once per process per network ------------------


class _Encoder(nn.Module):
    """Image batch -> unit-normalised features at the taps (what gets quantised and compiled)."""

    def __init__(self, net: LpipsNet):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(normalize(f) for f in LpipsNet.taps(self.net, x))


class _Call(nn.Module):
    """Holds the quantised graph as a submodule: Inductor then freezes its weights as
    constants and prepacks the int8 convolutions (compiling the graph module itself makes
    its weights graph inputs, which cannot be prepacked)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return self.module(x)


def _tail(ref: Sequence[Tensor], feats: Sequence[Tensor], heads: Sequence[Tensor]) -> Tensor:
    """d(ref, x) from normalised features: the lin heads on squared differences, averaged."""
    return sum(F.conv2d((r - y) ** 2, w).mean(dim=(1, 2, 3))
               for r, y, w in zip(ref, feats, heads, strict=True))


def calibration_images(size: int = 256) -> Tensor:
    """The bundled sample images (assets/originals and assets/distorted) as one batch."""
    from PIL import Image

    paths = sorted(p for g in CALIBRATION_GLOB for p in ASSETS.glob(g))
    if not paths:
        raise ModeUnavailableError(f"int8 calibration needs the bundled images in {ASSETS} "
                                   "(assets/originals, assets/distorted); none were found.")
    out = []
    for p in paths:
        with Image.open(p) as im:
            rgb = im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        t = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        out.append(t.view(size, size, 3).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out)


def min_side(net: LpipsNet) -> int:
    """The smallest square side whose every tapped map is at least 2 x 2 cells."""
    def fits(s: int) -> bool:
        with torch.no_grad():
            return all(min(f.shape[-2:]) >= 2
                       for f in LpipsNet.taps(net, torch.zeros(1, 3, s, s)))

    lo, hi = net.spec.min_size, 512
    while lo < hi:  # the map sizes grow with the image side
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo


def net_fingerprint(net: LpipsNet) -> str:
    """A content hash of the trunk weights and lin heads (the int8 cache key)."""
    h = hashlib.sha1(f"{net.spec.name}|{net.version}".encode())
    for t in [*net.features.state_dict().values(), *net.heads]:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _freezing():
    """Inductor's weight freezing, on while the int8 graph is (re)compiled.

    Set through the config, not ``torch.compile(options=...)``: with the option the
    quantised weights reach Inductor as graph inputs and oneDNN's prepack fails on them.
    """
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


class _Int8Encoder:
    """The quantised, compiled encoder of one network (and the compiled float32 tail)."""

    def __init__(self, net: LpipsNet):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

        calib = calibration_images()
        side = calib.shape[-1]
        dims = {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
        with torch.no_grad():
            exported = torch.export.export(_Encoder(net).eval(), (calib[:2],),
                                           dynamic_shapes=(dims,)).module()
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(exported, quantizer)
            for i in range(0, calib.shape[0], 4):
                prepared(calib[i: i + 4])
            self.module = convert_pt2e(prepared)
        # Weight freezing lets Inductor prepack the int8 convolutions (oneDNN); dynamic
        # shapes keep one compiled graph for every batch size and image size.
        self._encode = torch.compile(_Call(self.module), dynamic=True)
        self._tail = torch.compile(_tail, dynamic=True)
        self.min_side = min_side(net)
        self.lock = threading.Lock()
        self.warm = False
        # Compile now, once, not inside a user's first request. The warm-up shape has all
        # sizes distinct (batch, height, width): dynamo gives equal sizes one symbol ("duck
        # sizing"), and a square warm-up would recompile for the first non-square image.
        h = min(side - 32, max(self.min_side, 112))
        warm = calib[:2, :, :h, : h + 32]
        with torch.no_grad():
            feats = self.encode(warm)
            self.score([f[:1] for f in feats], warm, net.heads)
        self.warm = True

    def encode(self, x: Tensor) -> list[Tensor]:
        if min(x.shape[-2:]) < self.min_side:
            raise ModeUnavailableError(
                f"int8 mode needs images at least {self.min_side} px on each side (its "
                f"compiled graph assumes every tapped map has 2 or more cells); these are "
                f"{x.shape[-2]}x{x.shape[-1]}. Use --precision fp32 or bf16 for them.")
        # Dynamo specialises a batch of 1; a batch of one image runs as two copies so that one
        # compiled graph serves every batch size.
        n = x.shape[0]
        if n == 1:
            x = x.expand(2, -1, -1, -1)
        with torch.no_grad(), _freezing():
            if self.warm:
                feats = self._encode(x.contiguous())
            else:
                with self.lock:
                    feats = self._encode(x.contiguous())
        return [f[:n] for f in feats]

    def score(self, ref: Sequence[Tensor], x: Tensor, heads: Sequence[Tensor]) -> Tensor:
        feats = self.encode(x)
        with torch.no_grad():
            if x.shape[0] == 1:  # the compiled tail is specialised to batches of 2+
                return _tail(list(ref), feats, list(heads))
            return self._tail(list(ref), feats, list(heads))


_INT8: dict[str, _Int8Encoder] = {}
_INT8_LOCK = threading.Lock()


def int8_encoder(net: LpipsNet) -> _Int8Encoder:
    """The process-wide int8 encoder of ``net``'s weights (built and compiled on first use)."""
    key = net_fingerprint(net)
    with _INT8_LOCK:
        enc = _INT8.get(key)
        if enc is None:
            enc = _INT8[key] = _Int8Encoder(net)
        return enc


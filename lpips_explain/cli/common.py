"""What every command shares: model options, the explainer they build, a progress bar."""

from __future__ import annotations

import argparse
import sys

from lpips_explain.core.trunks import NETS
from lpips_explain.core.weights import BACKBONE_ENV, OFFLINE_ENV, VERSIONS
from lpips_explain.explainer import Explainer
from lpips_explain.intake.align import SIZE_POLICIES

EPILOG = f"""\
exit codes: 0 done, 2 bad input, 3 weights unavailable.

weights: --backbone-weights imagenet (default) uses torchvision's ImageNet file from the
torch hub cache (downloaded once; TORCH_HOME moves the cache); a PATH names a local
torchvision state_dict (full model or `features` only); `random` runs offline but is NOT a
perceptual metric. {BACKBONE_ENV} sets the default; {OFFLINE_ENV}=1 never downloads.
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
                   help="custom lin-head file (default: the official one for --version)")
    g.add_argument("--size-policy", default="resize", choices=list(SIZE_POLICIES),
                   help="when the images differ in size: resize (antialiased, to the smaller; "
                        "default), crop (centre) or error")
    g.add_argument("--seed", type=int, default=0, help="seed for random trunks and noise")
    g.add_argument("--top-k", type=int, default=5, help="top channels listed per layer")
    g.add_argument("--json", action="store_true", help="print the JSON result on stdout")
    g.add_argument("--quiet", action="store_true", help="no progress bar")



def add_command(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand with the shared epilog (exit codes, weights)."""
    return sub.add_parser(name, help=help, epilog=EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def make_explainer(args: argparse.Namespace) -> Explainer:
    """The Explainer the model options name."""
    return Explainer(args.net, args.version, args.backbone_weights, args.seed,
                     size_policy=args.size_policy, lin_weights=args.lin_weights,
                     progress=not args.quiet)


class ProgressBar:
    """A tqdm progress bar on stderr fed by the engine's progress(done, total, label) calls."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self.label = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or label != self.label:
            self.close()
            self.bar = tqdm(total=total, desc=label, file=sys.stderr, leave=False)
            self.label = label
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None



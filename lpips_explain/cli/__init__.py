"""The lpips-explain command line. Each command lives in its own module and registers itself.

Adding a command: a module here with ``register(sub)`` that adds a subparser and sets
``func`` (``args -> exit code``), named once in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from lpips_explain import __version__
from lpips_explain.cli.common import EPILOG
from lpips_explain.errors import LpipsExplainError

# Modules of lpips_explain.cli, each registering its commands. `weights` alone is imported
# for `lpips-explain weights ...`: it needs none of the engine (a warm install in ~2 s).
COMMANDS = ("pair", "audit", "profile", "calibrate", "domain_gap", "faithfulness", "weights")
LIGHT = {"weights": ("weights",)}


def build_parser(modules: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpips-explain",
        description="Explain LPIPS perceptual distances: exact per-layer and per-channel "
                    "breakdowns, attribution maps, counterfactual sensitivities and repairs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Before the command only: after it, --version is the LPIPS version (0.1 or 0.0).
    parser.add_argument("-V", "--version", action="version",
                        version=f"lpips-explain {__version__}",
                        help="print the package's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(f"lpips_explain.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(LIGHT.get(argv[0], COMMANDS) if argv else COMMANDS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
    try:
        return args.func(args)
    except LpipsExplainError as exc:
        print(f"lpips-explain: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lpips-explain: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. --out not writable
        print(f"lpips-explain: error: {exc}", file=sys.stderr)
        return 2

"""``lpips-explain domain-gap DIR_A DIR_B``: how far image set B is from set A, layer by
layer (MMD with permutation p-values, mean and spread shifts)."""

from __future__ import annotations

import argparse
import sys

from lpips_explain.analyses.calibration.domain_gap import DEFAULT_PERMUTATIONS
from lpips_explain.cli.common import (
    ProgressBar,
    add_command,
    add_model_options,
    add_resize_option,
    make_explainer,
)
from lpips_explain.output.serialize import to_json


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "domain-gap", "how far image set B is from set A, layer by layer")
    p.add_argument("dir_a", help="folder (or .zip) of images of the domain the metric knows")
    p.add_argument("dir_b", help="folder (or .zip) of images of the new domain")
    p.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS,
                   help=f"permutations for the MMD p-values (default {DEFAULT_PERMUTATIONS})")
    p.add_argument("--judgments", default=None, metavar="PATH",
                   help="judgments (CSV or BAPPS folder) available for set B, to count them")
    add_resize_option(p)
    add_model_options(p)
    p.set_defaults(func=run_domain_gap)


def run_domain_gap(args: argparse.Namespace) -> int:
    explainer = make_explainer(args)
    bar = ProgressBar(not args.quiet)
    try:
        gap = explainer.domain_gap(args.dir_a, args.dir_b, permutations=args.permutations,
                                   seed=args.seed, size=args.resize, judgments=args.judgments,
                                   progress=bar)
    finally:
        bar.close()
    if args.json:
        print(to_json(gap))
    else:
        print(f"{'rank':>4} {'layer':<10} {'MMD^2':>10} {'p':>8} {'mean shift':>11} "
              f"{'std shift':>10}")
        for g in gap.layers:
            print(f"{g.rank:>4} {g.name:<10} {g.mmd2:>10.4g} {g.p_value:>8.3g} "
                  f"{g.mean_shift:>11.4g} {g.std_shift:>10.4g}")
        print()
        for line in gap.summary:
            print(line)
    for w in gap.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0

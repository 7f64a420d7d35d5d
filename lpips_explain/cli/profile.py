"""profile: latency, throughput and peak memory per trunk, image size and mode, on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from lpips_explain.analyses.checks.mode_error import fidelity_set, measure_fidelity
from lpips_explain.cli.common import ProgressBar, add_command
from lpips_explain.core.model import build_lpips
from lpips_explain.core.modes import PRECISIONS, check_mode, mode_net, resolve_device
from lpips_explain.core.profiling import machine, profile
from lpips_explain.core.trunks import NETS
from lpips_explain.core.weights import BACKBONE_ENV, VERSIONS

SCHEMA = "lpips-explain-profile/1"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "profile", "latency, throughput and peak memory per trunk, size and "
                                    "mode, with the fidelity of each approximate mode")
    p.add_argument("--net", nargs="+", default=["alex"], choices=list(NETS),
                   help="trunks to profile (default alex)")
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 256],
                   help="square image sides in px (default 64 128 256)")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                   choices=list(PRECISIONS),
                   help="modes to profile (default fp32 bf16; int8 compiles first, ~15 s+)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda|cuda:N|auto",
                   help="where the forward passes run (default cpu)")
    p.add_argument("--version", default="0.1", choices=list(VERSIONS))
    p.add_argument("--backbone-weights", default=None, metavar="imagenet|random|PATH",
                   help=f"trunk weights (default: ${BACKBONE_ENV} or imagenet); speed does not "
                        "depend on them, fidelity does")
    p.add_argument("--batch", type=int, default=16, help="candidates per batch (default 16)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median)")
    p.add_argument("--fidelity-size", type=int, default=128,
                   help="image side of the fidelity set (default 128; 0 skips fidelity)")
    p.add_argument("--seed", type=int, default=0, help="seed for random trunks")
    p.add_argument("--json", action="store_true", help="print the JSON result on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    for precision in args.precision:
        check_mode(precision, device)  # refuse before loading anything
    bar = ProgressBar(not args.quiet)
    nets = [build_lpips(n, args.version, args.backbone_weights, args.seed,
                        progress=not args.quiet) for n in dict.fromkeys(args.net)]
    try:
        rows = profile(nets, args.sizes, list(dict.fromkeys(args.precision)), device=device,
                       batch=args.batch, repeats=args.repeats, progress=bar)
        fidelity = []
        if args.fidelity_size:
            fset = fidelity_set(args.fidelity_size)
            for exact in nets:
                for precision in dict.fromkeys(args.precision):
                    net, mode = mode_net(exact, precision, device)
                    if mode.exact and mode.device == "cpu":
                        continue  # exact against itself: nothing to measure
                    fid = measure_fidelity(exact, net, mode, fset=fset, progress=bar)
                    fidelity.append({"net": exact.spec.name, **fid.to_dict(),
                                     "checks": fid.checks()})
    finally:
        bar.close()
    result = {"schema": SCHEMA, "machine": machine(),
              "backbone": nets[0].weights_info.to_dict(),
              "rows": [r.to_dict() for r in rows], "fidelity": fidelity}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = result["machine"]
    print(f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
          f"load average {m['load_average']}")
    print(f"{'net':<8} {'mode':<22} {'size':>5} {'pair ms':>9} {'img/s':>8} "
          f"{'batch ms':>9} {'peak MB':>8} {'build s':>8}")
    for r in rows:
        label = ("exact" if r.mode.exact else "APPROXIMATE") + f" {r.mode.precision}"
        print(f"{r.net:<8} {label:<22} {r.size:>5} {r.latency_ms:>9.2f} {r.throughput:>8.1f} "
              f"{r.batch_ms:>9.1f} {r.peak_mb:>8.1f} {r.build_s:>8.1f}")
    for f in fidelity:
        checks = ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in f["checks"].items())
        print(f"fidelity {f['net']} {f['mode']['precision']} vs exact fp32 ({f['pairs']} pairs, "
              f"{f['triplets']} triplets, {f['size']} px): Spearman {f['spearman']:.5f}, mean "
              f"|err| {f['mean_abs_error']:.2e}, max |err| {f['max_abs_error']:.2e}, 2AFC "
              f"agreement {f['agreement_2afc']:.4f}" + (f" [{checks}]" if checks else ""),
              file=sys.stdout)
    return 0

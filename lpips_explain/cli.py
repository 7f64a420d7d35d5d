"""The lpips-explain command line: distance, explain and triplet on image files."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from lpips_explain.core.trunks import NETS
from lpips_explain.core.weights import BACKBONE_ENV, OFFLINE_ENV, VERSIONS
from lpips_explain.errors import LpipsExplainError
from lpips_explain.intake.align import SIZE_POLICIES

EPILOG = f"""\
exit codes: 0 done, 2 bad input, 3 weights unavailable.

weights: --backbone-weights imagenet (default) uses torchvision's ImageNet file from the
torch hub cache (downloaded once; TORCH_HOME moves the cache); a PATH names a local
torchvision state_dict (full model or `features` only); `random` runs offline but is NOT a
perceptual metric. {BACKBONE_ENV} sets the default; {OFFLINE_ENV}=1 never downloads.
"""


def _common(p: argparse.ArgumentParser) -> None:
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


def _explain_opts(p: argparse.ArgumentParser) -> None:
    from lpips_explain.analyses.attribution import METHODS

    p.add_argument("--out", required=True, type=Path, help="folder for the JSON, report and maps")
    p.add_argument("--attribution", default="integrated_gradients",
                   help=f"attribution method: {', '.join(METHODS)} or none")
    p.add_argument("--steps", type=int, default=None,
                   help="integration steps for integrated_gradients (default: adaptive, "
                        "until the completeness gap is at most 1%%)")
    p.add_argument("--patch", type=int, default=32, help="patch size in px for repair (32)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpips-explain",
        description="Explain LPIPS perceptual distances: exact per-layer and per-channel "
                    "breakdowns, attribution maps, counterfactual sensitivities and repairs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("distance", help="distance of A to B with its layer breakdown",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="first image (reference)")
    p.add_argument("b", help="second image (candidate)")
    _common(p)
    p = sub.add_parser("explain", help="full explanation of d(A, B) written to --out",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="reference image")
    p.add_argument("b", help="candidate image (the one attributed)")
    _common(p)
    _explain_opts(p)
    p = sub.add_parser("triplet", help="why LPIPS prefers A or B as closer to REF (2AFC)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref", help="reference image")
    p.add_argument("a", help="candidate A")
    p.add_argument("b", help="candidate B")
    _common(p)
    _explain_opts(p)
    return parser


class _Bar:
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


def _layer_table(result_dict: dict) -> str:
    rows = [f"{'layer':<10} {'resolution':>11} {'distance':>10} {'share':>7}  top channels "
            f"(index: contribution)"]
    for lay in result_dict["layers"]:
        res = "x".join(str(v) for v in reversed(lay["resolution"]))
        top = ", ".join(f"{c['index']}: {c['contribution']:.4g}" for c in lay["top_channels"])
        rows.append(f"{lay['name']:<10} {res:>11} {lay['distance']:>10.5f} "
                    f"{100 * lay['share']:>6.1f}%  {top}")
    rows.append(f"{'total':<10} {'':>11} {result_dict['distance']:>10.5f} {'100.0%':>7}")
    return "\n".join(rows)


def _print_human(d: dict) -> None:
    bb = d["backbone"]
    print(f"LPIPS distance: {d['distance']:.6f}  ({d['category']})")
    print(f"net {d['net']} v{d['version']}, trunk weights: {bb['weights']}"
          + ("" if bb["perceptual"] else "  [RANDOM: NOT A PERCEPTUAL METRIC]"))
    size = d["inputs"]["size"]
    print(f"A: {d['inputs']['a']['name']}  B: {d['inputs']['b']['name']}  "
          f"compared at {size[1]}x{size[0]} px (policy {d['inputs']['policy']})")
    print()
    print(_layer_table(d))
    for w in d["warnings"]:
        print(f"warning: {w}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from lpips_explain.explainer import Explainer

    bar = _Bar(not args.quiet)
    explainer = Explainer(args.net, args.version, args.backbone_weights, args.seed,
                          size_policy=args.size_policy, lin_weights=args.lin_weights,
                          progress=not args.quiet)
    if args.command == "distance":
        expl = explainer.explain(args.a, args.b, attribution=None, sensitivity=False,
                                 repair=False, top_k=args.top_k)
        from lpips_explain.output.report import to_json

        if args.json:
            print(to_json(expl))
        else:
            _print_human(expl.to_dict())
        return 0
    attribution = None if args.attribution.lower() in ("none", "off", "") else args.attribution
    from lpips_explain.output.report import to_json, write_explanation, write_triplet

    args.out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before the work

    try:
        if args.command == "explain":
            result = explainer.explain(args.a, args.b, attribution=attribution, steps=args.steps,
                                       patch=args.patch, top_k=args.top_k, progress=bar)
            files = write_explanation(result, args.out)
        else:
            result = explainer.explain_triplet(args.ref, args.a, args.b, attribution=attribution,
                                               steps=args.steps, patch=args.patch,
                                               top_k=args.top_k, progress=bar)
            files = write_triplet(result, args.out)
    finally:
        bar.close()
    if args.json:
        print(to_json(result))
    else:
        for line in result.summary:
            print(line)
        print(f"\nwrote {len(files)} files to {args.out}/ "
              f"({', '.join(sorted(p.name for p in files.values())[:6])}, ...)")
        for w in result.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
    try:
        return _run(args)
    except LpipsExplainError as exc:
        print(f"lpips-explain: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lpips-explain: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. --out not writable
        print(f"lpips-explain: error: {exc}", file=sys.stderr)
        return 2

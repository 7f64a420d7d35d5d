"""distance, explain and triplet: one pair (or one 2AFC triplet) of image files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpips_explain.analyses.attribution import METHODS
from lpips_explain.analyses.pair.repair import REPAIR_POINTS
from lpips_explain.cli.common import ProgressBar, add_command, add_model_options, make_explainer
from lpips_explain.output.serialize import to_json


def _explain_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="folder for the JSON, report and maps")
    p.add_argument("--attribution", default="integrated_gradients",
                   help=f"attribution method: {', '.join(METHODS)} or none")
    p.add_argument("--steps", type=int, default=None,
                   help="integration steps for integrated_gradients (default: adaptive: nested "
                        "trapezoid sizes 8, 16, 32, ... until the completeness gap is at most "
                        "1%% and the map changes less than 2%%)")
    p.add_argument("--patch", type=int, default=None,
                   help="patch size in px for repair (default 32, larger for images that 32 px "
                        "would cut into more than 1024 patches)")


def _repair_points(text: str) -> int | None:
    """--repair-points: an integer of at least 2, or 'all' (every step)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 or 'all', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 or 'all', got {value}")
    return value


METRIC_NAMES = ("lpips", "stlpips", "dists", "ssim", "psnr", "all")


def _metrics_opt(p: argparse.ArgumentParser, default: str, key: str = "second_opinions",
                 what: str = "second opinions beside LPIPS") -> None:
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC",
                   help=f"{what}, each on its own scale: "
                        f"{', '.join(METRIC_NAMES)} (default: {default}); JSON key "
                        f"{key}. A metric that cannot run is reported with its "
                        f"reason, the others still shown (see docs/cli.md#metrics)")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "distance", "distance of A to B with its layer breakdown")
    p.add_argument("a", help="first image (reference)")
    p.add_argument("b", help="second image (candidate)")
    add_model_options(p)
    _metrics_opt(p, "lpips only, and no second_opinions key")
    p.set_defaults(func=run_distance)
    p = add_command(sub, "explain", "full explanation of d(A, B) written to --out")
    p.add_argument("a", help="reference image")
    p.add_argument("b", help="candidate image (the one attributed)")
    add_model_options(p)
    _explain_opts(p)
    p.add_argument("--repair-orders", nargs="+", default=None, metavar="ORDER",
                   help="repair orders tried for explain, the best shown: single_gain, "
                        "greedy (true greedy search, slower), ranking (by the attribution "
                        "map's patch sums); default: single_gain and ranking (single_gain "
                        "alone with --attribution none), see docs/faithfulness.md")
    p.add_argument("--repair-points", type=_repair_points, default=REPAIR_POINTS, metavar="N",
                   help=f"evaluate each repair curve at about N points, refined around the "
                        f"goal to one patch (default {REPAIR_POINTS}; every point a real "
                        f"distance); 'all' evaluates every step (one trunk pass per patch)")
    _metrics_opt(p, "all")
    p.set_defaults(func=run_explain)
    p = add_command(sub, "triplet", "why LPIPS prefers A or B as closer to REF (2AFC)")
    p.add_argument("ref", help="reference image")
    p.add_argument("a", help="candidate A")
    p.add_argument("b", help="candidate B")
    add_model_options(p)
    _explain_opts(p)
    _metrics_opt(p, "all", "metric_choices", "each metric's own 2AFC choice beside LPIPS's")
    p.set_defaults(func=run_explain)


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


def _mode_tag(d: dict) -> str:
    """"  [APPROXIMATE (bf16)]" for a result of an approximate mode, "" for exact fp32."""
    mode = d.get("mode") or {}
    if mode.get("exact", True):
        return ""
    where = "" if mode.get("device") == "cpu" else f", {mode.get('device')}"
    return f"  [approximate ({mode.get('precision')}{where})]"


def _print_human(d: dict) -> None:
    from lpips_explain.core.weights import trunk_state

    bb = d["backbone"]
    print(f"LPIPS distance: {d['distance']:.6f}"
          + (f"  ({d['category']})" if d.get("category") else "  (no category)")
          + _mode_tag(d))
    verified = {"file sha256": "verified: torchvision's published file",
                "content digest": "verified by content digest: the published trunk"}
    print(f"net {d['net']} v{d['version']}, trunk weights: {bb['weights']}"
          + (f" ({verified.get(bb.get('verified_by'), 'verified')})" if bb["perceptual"] else
             f"  [{trunk_state(bb['weights'], False).tag}]"))
    size = d["inputs"]["size"]
    print(f"A: {d['inputs']['a']['name']}  B: {d['inputs']['b']['name']}  "
          f"compared at {size[1]}x{size[0]} px (policy {d['inputs']['policy']})")
    print()
    print(_layer_table(d))
    for w in d["warnings"]:
        print(f"warning: {w}", file=sys.stderr)


def _opinions_table(records: list[dict]) -> str:
    """The second opinions, one line each on its own scale, then their sentences."""
    rows = [f"{'metric':<9} {'net':<5} {'value':>11}  scale"]
    for r in records:
        if r["error"]:
            value = "-"
        elif r["distance"] is None:
            value = "identical" if r["metric"] == "psnr" else "n/a"
        else:
            value = (f"{r['distance']:.2f} dB" if r["metric"] == "psnr"
                     else f"{r['distance']:.5f}")
        line = f"{r['label']:<9} {r['net'] or '':<5} {value:>11}  {r['scale']}"
        if r["error"]:
            line += f"  [not computed: {r['error_type']}]"
        rows.append(line)
    rows += [f"- {r['sentence']}" for r in records if r["sentence"]]
    return "\n".join(rows)


def _choices_table(records: list[dict]) -> str:
    """Each metric's 2AFC choice on a triplet, one line each on its own scale."""
    rows = [f"{'metric':<9} {'net':<5} {'REF-A':>11} {'REF-B':>11} {'choice':>7} "
            f"{'margin':>10}  drivers"]

    def value(r: dict, v: float | None) -> str:
        if v is None:
            return "-" if r["error"] else "identical" if r["metric"] == "psnr" else "n/a"
        return f"{v:.2f} dB" if r["metric"] == "psnr" else f"{v:.5f}"

    for r in records:
        choice = (r["choice"] or "-").upper() if r["choice"] != "tie" else "tie"
        margin = "-" if r["margin"] is None else f"{r['margin']:+.5f}"
        drivers = ", ".join(f"{d['name']} {100 * d['share']:.0f}%" for d in r["drivers"][:3])
        line = (f"{r['label']:<9} {r['net'] or '':<5} {value(r, r['value_a']):>11} "
                f"{value(r, r['value_b']):>11} {choice:>7} {margin:>10}  {drivers}")
        if r["error"]:
            line += f"[not computed: {r['error_type']}]"
        rows.append(line)
    rows.append("(margin on each metric's own scale; positive means A is closer)")
    return "\n".join(rows)


def _opinion_failures(expl, args: argparse.Namespace) -> int:
    """Print why metrics could not run (stderr); the exit code: 0, or the failed metric's
    code when ``--metrics`` named exactly one metric besides LPIPS and that one failed."""
    opinions = getattr(expl, "second_opinions", None)
    if opinions is None:
        choices = getattr(expl, "metric_choices", None)
        if choices is None:
            return 0
        failed = [c for c in choices.choices if c.error]
    else:
        failed = [o for o in opinions.opinions if o.error]
    for o in failed:
        print(f"warning: {o.label} not computed: {o.error}", file=sys.stderr)
    named = {m.lower().replace("-", "").replace("_", "") for m in args.metrics or ()}
    others = named - {"lpips"}
    if args.metrics and len(others) == 1 and "all" not in others:
        return next((int(o.exit_code or 1) for o in failed if o.metric in others), 0)
    return 0


def run_distance(args: argparse.Namespace) -> int:
    explainer = make_explainer(args)
    expl = explainer.explain(args.a, args.b, attribution=None, sensitivity=False,
                             repair=False, equivalents=False, top_k=args.top_k,
                             metrics=args.metrics,
                             channel_maps=False)  # no maps shown: one pass over tiles
    d = expl.to_dict()
    if args.json:
        print(to_json(expl))
    else:
        _print_human(d)
        if len(d.get("second_opinions") or ()) > 1:
            print("\nsecond opinions (each on its own scale)")
            print(_opinions_table(d["second_opinions"]))
    return _opinion_failures(expl, args)


def run_explain(args: argparse.Namespace) -> int:
    """explain and triplet: the full explanation, files written to --out."""
    # Imported here, not at the top: plotly stays out of the commands that do not draw.
    from lpips_explain.output.report import write_explanation, write_triplet

    explainer = make_explainer(args)
    bar = ProgressBar(not args.quiet)
    attribution = None if args.attribution.lower() in ("none", "off", "") else args.attribution
    args.out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before the work
    try:
        if args.command == "explain":
            result = explainer.explain(args.a, args.b, attribution=attribution, steps=args.steps,
                                       patch=args.patch, top_k=args.top_k, progress=bar,
                                       repair_orders=args.repair_orders,
                                       metrics=args.metrics or "all",
                                       repair_points=args.repair_points)
            files = write_explanation(result, args.out)
        else:
            result = explainer.explain_triplet(args.ref, args.a, args.b, attribution=attribution,
                                               steps=args.steps, patch=args.patch,
                                               top_k=args.top_k, progress=bar,
                                               metrics=args.metrics or "all")
            files = write_triplet(result, args.out)
    finally:
        bar.close()
    if args.json:
        print(to_json(result))
    else:
        tag = _mode_tag({"mode": result.mode.to_dict()})
        if tag:
            print(f"mode:{tag}  (attribution in exact fp32)")
        d = result.to_dict()
        if args.command == "triplet":
            verdict = {"A": "A is closer", "B": "B is closer",
                       "too_close": "too close to call"}[d["verdict"]]
            print(f"verdict: {verdict}  (margin {d['margin']:+.6f})")
        for line in result.summary:
            print(line)
        opinions = d.get("second_opinions") if args.command == "explain" else None
        if opinions and len(opinions) > 1:
            print("\nsecond opinions (each on its own scale)")
            print(_opinions_table(opinions))
        choices = d.get("metric_choices") if args.command == "triplet" else None
        if choices and len(choices) > 1:
            print("\neach metric's choice (each on its own scale)")
            print(_choices_table(choices))
        print(f"\nwrote {len(files)} files to {args.out}/ "
              f"({', '.join(sorted(p.name for p in files.values())[:6])}, ...)")
        for w in result.warnings:
            print(f"warning: {w}", file=sys.stderr)
    return _opinion_failures(result, args)



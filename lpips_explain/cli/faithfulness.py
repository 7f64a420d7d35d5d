"""faithfulness: are the attribution maps of d(A, B) faithful? Deletion curves against random
orders, cascading randomisation and the correlation with |B - A|."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lpips_explain.analyses.attribution import METHODS
from lpips_explain.analyses.checks.faithfulness import DEFAULT_METHODS, RANDOMISATION_WARN
from lpips_explain.cli.common import ProgressBar, add_command, add_model_options, make_explainer


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "faithfulness",
                    "check the attribution maps of d(A, B): deletion, randomisation, |B - A|")
    p.add_argument("a", help="reference image")
    p.add_argument("b", help="candidate image (the one attributed)")
    add_model_options(p)
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                   help=f"attribution methods to check (default: {' '.join(DEFAULT_METHODS)}; "
                        f"any of {', '.join(METHODS)})")
    p.add_argument("--patch", type=int, default=None,
                   help="patch size in px (default 32, larger for images that 32 px would cut "
                        "into more than 1024 patches)")
    p.add_argument("--random-orders", type=int, default=8,
                   help="seeded random orders for the band (default 8)")
    p.add_argument("--no-randomisation", action="store_true",
                   help="skip the cascading randomisation (the slowest part)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for faithfulness.json and faithfulness.html (the charts)")
    p.set_defaults(func=run_faithfulness)


def run_faithfulness(args: argparse.Namespace) -> int:
    # Imported here, not at the top: plotly stays out of the commands that do not draw.
    from lpips_explain.output.faithfulness_plots import deletion_chart, randomisation_chart

    explainer = make_explainer(args)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before the work
    bar = ProgressBar(not args.quiet)
    try:
        result = explainer.faithfulness(args.a, args.b, methods=args.methods, patch=args.patch,
                                        random_orders=args.random_orders,
                                        randomisation=not args.no_randomisation, progress=bar)
    finally:
        bar.close()
    data = result.to_dict()
    text = json.dumps(data, indent=2, allow_nan=False)
    if args.out is not None:
        (args.out / "faithfulness.json").write_text(text + "\n", encoding="utf-8")
        figs = [deletion_chart(result)]
        if result.stages:
            figs.append(randomisation_chart(result, RANDOMISATION_WARN))
        html = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0))
                       for i, fig in enumerate(figs))
        (args.out / "faithfulness.html").write_text(
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Faithfulness</title>"
            f"</head><body>{html}</body></html>\n", encoding="utf-8")
    notes = list(result.inputs.warnings)
    if args.json:
        print(text)
        notes += result.warnings  # (in the human output they close the summary)
    else:
        for line in result.summary:
            print(line)
        if args.out is not None:
            print(f"\nwrote faithfulness.json and faithfulness.html to {args.out}/")
    for w in notes:
        print(f"warning: {w}", file=sys.stderr)
    return 0

"""audit: score many pairs or judged triplets, find where LPIPS disagrees, explain the worst."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpips_explain.cli.common import add_command, add_model_options, make_explainer
from lpips_explain.output.serialize import to_json
from lpips_explain.validation import counted


class RateBar:
    """A tqdm bar on stderr with rate and ETA, fed by progress(done, total, label); rows
    found finished from an earlier run count as done without inflating the rate."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self.label: str | None = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or label != self.label:
            self.close()
            # initial=done: tqdm's rate and ETA count only rows done from here on.
            self.bar = tqdm(total=total, initial=done, desc=label, unit="row", file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)
            self.label = label
            return
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "audit", "score many pairs or judged triplets; find and explain "
                                  "where LPIPS disagrees with PSNR, SSIM or people")
    p.add_argument("input", help="a CSV of pairs (a,b[,id,...]), a CSV of judged triplets "
                                 "(ref,p0,p1,judge[,id,...]; paths relative to the CSV) or a "
                                 "folder with a/ and b/ matched by file name")
    p.add_argument("--out", required=True, type=Path,
                   help="folder for audit.parquet, summary.json, audit.html, thumbs/, "
                        "explained/ and the resumable parts/")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local (default: worker processes on this machine) or ray (Ray Data; "
                        "pip install 'lpips-explain[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="an existing Ray cluster (e.g. ray://head:10001 or auto); default: "
                        "start a local Ray instance")
    p.add_argument("--explain-top", type=int, default=3, metavar="N",
                   help="full explanations of the top N rows of each finding (default 3; 0: none)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="decoding processes of the local engine (default: half the CPUs, 1 to 4; "
                        "0 decodes in the main process)")
    p.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="Ray actors (default: one per GPU, else one per CPU of the cluster)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="rows scored per trunk pass (default 16)")
    p.add_argument("--metrics", nargs="+", default=[], metavar="METRIC",
                   choices=["stlpips", "dists"],
                   help="optional metric columns beside LPIPS: stlpips, dists (default none: "
                        "each adds a trunk pass per image); the summary then lists the rows "
                        "they rank most differently and, for judged triplets, their 2AFC "
                        "agreement with the judges")
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="rows listed per finding in summary.json (default 10)")
    g = p.add_argument_group("explanations of the top rows")
    g.add_argument("--attribution", default="integrated_gradients",
                   help="attribution method of the explanations, or none")
    g.add_argument("--steps", type=int, default=None,
                   help="integration steps (default: adaptive: nested "
                        "trapezoid sizes 8, 16, 32, ... until the completeness gap is at most "
                        "1%% and the map changes less than 2%%)")
    g.add_argument("--patch", type=int, default=None,
                   help="repair patch size in px (default 32, larger for large images)")
    add_model_options(p)
    p.set_defaults(func=run_audit)


def _explain_options(args: argparse.Namespace) -> dict:
    attribution = None if args.attribution.lower() in ("none", "off", "") else args.attribution
    return {"attribution": attribution, "steps": args.steps, "patch": args.patch,
            "top_k": args.top_k}


def run_audit(args: argparse.Namespace) -> int:
    # Imported here, not at the top: plotly stays out of the commands that do not draw.
    from lpips_explain.audit.sentences import summary_sentences

    explainer = make_explainer(args)
    args.out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before the work
    bar = RateBar(not args.quiet)
    try:
        result = explainer.audit(args.input, args.out, engine=args.engine,
                                 ray_address=args.ray_address, explain_top=args.explain_top,
                                 workers=args.workers, batch_size=args.batch_size,
                                 concurrency=args.concurrency, top=args.top,
                                 explain_options=_explain_options(args), progress=bar,
                                 metrics=args.metrics)
    finally:
        bar.close()
    s = result.summary
    if args.json:
        print(to_json(s))
        return 0
    for line in summary_sentences(s["kind"], s):
        print(line)
    eng = s["engine"]
    rate = f", {eng['rows_per_second']:.1f} rows/s" if eng.get("rows_per_second") else ""
    print(f"engine {eng['engine']}: {eng['computed']} rows computed, {eng['reused']} reused "
          f"from an earlier run, {eng['seconds']:.1f} s{rate}")
    print(f"wrote {args.out}/audit.parquet, summary.json, audit.html"
          + (f" and {counted(len(s['explained']), 'explanation')} under explained/"
             if s.get("explained") else ""))
    for rid, err in (s.get("explain_errors") or {}).items():
        print(f"warning: row {rid} could not be explained: {err}", file=sys.stderr)
    for w in s.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    return 0

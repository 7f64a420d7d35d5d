"""Compute the similarity-category limits shipped in lpips_explain/analyses/pair/category_limits.json.

For each trunk and version: the LPIPS distance of every bundled sample pair (assets/samples.json,
pairs and triplet candidates) and of every perturbation of the registry, at its sweep strengths,
applied to each bundled original; the 25th, 50th and 75th percentiles of those distances become
the limits of "very similar", "similar", "different" (above: "very different").

Only the published trunk counts: a trunk that is not verified (by torchvision's file SHA-256
or by the content digest of its tensors; random, or any other file) is skipped, and its entry
left out, so that the app gives no category for it. Run where the published trunks are (the
torch hub cache, or `lpips-explain weights install`):

    python scripts/make_categories.py                  # every trunk and version, update in place
    python scripts/make_categories.py --nets alex --versions 0.1 --out /tmp/limits.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from lpips_explain.analyses.pair import categories
from lpips_explain.analyses.pair import perturbations as P
from lpips_explain.core.model import LpipsNet, build_lpips
from lpips_explain.core.trunks import NETS
from lpips_explain.core.weights import VERSIONS
from lpips_explain.errors import LpipsExplainError
from lpips_explain.intake.images import load_image

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
SWEEP_POINTS = 4
SEED = 0


def _load(rel: str) -> torch.Tensor:
    return load_image(ASSETS / rel).tensor


def bundled_pairs(assets: Path = ASSETS) -> tuple[list[tuple[torch.Tensor, torch.Tensor]],
                                                  list[str]]:
    """(reference, distorted) tensors and a label for each, in a fixed order."""
    manifest = json.loads((assets / "samples.json").read_text(encoding="utf-8"))
    seen: dict[tuple[str, str], None] = {}
    for p in manifest["pairs"]:
        seen[(p["a"], p["b"])] = None
    for t in manifest["triplets"]:
        seen[(t["ref"], t["a"])] = None
        seen[(t["ref"], t["b"])] = None
    pairs, labels = [], []
    for ref, dist in seen:
        pairs.append((_load(ref), _load(dist)))
        labels.append(f"{ref} vs {dist}")
    originals = sorted({ref for ref, _ in seen} | {p["a"] for p in manifest["pairs"]})
    for rel in originals:
        x = _load(rel)
        for name, spec in P.PERTURBATIONS.items():
            for s in spec.sweep_values(SWEEP_POINTS):
                y = P.apply(name, x, float(s), seed=SEED)
                if torch.equal(x, y):
                    continue  # the identity point of a sweep is not a distortion
                pairs.append((x, y))
                labels.append(f"{rel} {name} {s:g}")
    return pairs, labels


def verified_models(nets: list[str], versions: list[str], backbone_weights: str, table: dict,
                    what: str) -> Iterator[tuple[str, str, LpipsNet]]:
    """(net, version, model) for each combination whose trunk is the verified published one;
    the others are reported on stderr and their entries dropped from ``table``."""
    for net in nets:
        for version in versions:
            try:
                model = build_lpips(net, version, backbone_weights, progress=True)
            except LpipsExplainError as exc:
                print(f"{net} v{version}: skipped: {exc}", file=sys.stderr)
                continue
            info = model.weights_info
            if not info.perceptual:
                print(f"{net} v{version}: skipped: the trunk is not the verified published one "
                      f"({info.reason}); no {what} for it.", file=sys.stderr)
                table["tables"].pop(f"{net}/{version}", None)
                continue
            yield net, version, model


def table_args(doc: str, default_out: Path,
               argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    """The options of a script that writes a shipped trunk/version table (--nets, --versions,
    --backbone-weights, --out) and the table already at --out (entries not recomputed stay)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--versions", nargs="+", default=list(VERSIONS), choices=list(VERSIONS))
    ap.add_argument("--backbone-weights", default="imagenet",
                    help="imagenet (default) or a file; only a verified published trunk counts")
    ap.add_argument("--out", type=Path, default=default_out)
    args = ap.parse_args(argv)
    table = (json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {})
    table.setdefault("tables", {})
    return args, table


def main(argv: list[str] | None = None) -> int:
    args, table = table_args(__doc__, categories.TABLE_FILE, argv)
    table["method"] = json.loads(categories.TABLE_FILE.read_text(encoding="utf-8"))["method"]
    pairs = None  # built once, for the first verified trunk
    wrote = 0
    for net, version, model in verified_models(args.nets, args.versions, args.backbone_weights,
                                               table, "category limits"):
        if pairs is None:
            pairs, _ = bundled_pairs()
        entry = categories.table_entry(
            model, pairs, source=f"scripts/make_categories.py, lpips-explain, "
                                 f"{len(pairs)} pairs, seed {SEED}")
        table["tables"][categories.key(net, version)] = entry
        wrote += 1
        print(f"{net} v{version}: limits {entry['limits']} over {entry['pairs']} pairs")
    args.out.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {wrote} entries to {args.out}")
    return 0 if wrote else 3


if __name__ == "__main__":
    sys.exit(main())

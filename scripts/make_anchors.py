"""Compute the fixed distance scales shipped in lpips_explain/analyses/pair/distance_anchors.json.

For each trunk and version with the verified published trunk: the distance between each
bundled original (assets/originals) and that original distorted by each marker of
lpips_explain.analyses.pair.anchors.MARKERS (the perturbation registry's functions, seed 0);
a marker's place on the scale is the median over the originals; the scale's top is
anchors.nice_top of the category limits and the markers. Run after make_categories.py:

    python scripts/make_anchors.py                  # every trunk and version, update in place
    python scripts/make_anchors.py --nets alex --versions 0.1 --out /tmp/anchors.json
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_categories import ASSETS, SEED, table_args, verified_models

from lpips_explain.analyses.pair import anchors, categories
from lpips_explain.analyses.pair import perturbations as P
from lpips_explain.intake.images import load_image

METHOD = ("Fixed distance scale per trunk and version: markers of familiar distortions, each "
          "the median over the bundled originals (assets/originals) of the LPIPS distance "
          "between an original and that original distorted at a fixed strength (the "
          "perturbation registry, seed 0), computed with the verified published trunk by "
          "scripts/make_anchors.py; top = max(1.5 x the highest category limit, 1.15 x the "
          "farthest marker) rounded up to two significant digits. No entry: no anchor.")


def marker_distances(model, originals: dict[str, object]) -> dict[str, dict[str, float]]:
    """{marker label: {original file name: distance}}."""
    out: dict[str, dict[str, float]] = {}
    for m in anchors.MARKERS:
        pairs = [(x, P.apply(m.perturbation, x, m.strength, seed=SEED))
                 for x in originals.values()]
        d = categories.distances(model, pairs)
        out[m.label] = {name: float(v) for name, v in zip(originals, d, strict=True)}
    return out


def main(argv: list[str] | None = None) -> int:
    args, table = table_args(__doc__, anchors.TABLE_FILE, argv)
    table["method"] = METHOD
    originals = {p.name: load_image(p).tensor
                 for p in sorted((ASSETS / "originals").glob("*.png"))}
    limits_table = categories.load_table().get("tables", {})
    wrote = 0
    for net, version, model in verified_models(args.nets, args.versions, args.backbone_weights,
                                               table, "distance anchors"):
        per_image = marker_distances(model, originals)
        specs = {m.label: m for m in anchors.MARKERS}
        markers = [{"label": label, "words": specs[label].words,
                    "perturbation": specs[label].perturbation,
                    "strength": specs[label].strength,
                    "distance": statistics.median(per.values()), "per_image": per}
                   for label, per in per_image.items()]
        limits = tuple(limits_table.get(categories.key(net, version), {}).get("limits", ()))
        top = anchors.nice_top(limits, [m["distance"] for m in markers])
        table["tables"][categories.key(net, version)] = {
            "top": top, "markers": sorted(markers, key=lambda m: m["distance"]),
            "images": len(originals), "seed": SEED,
            "source": f"scripts/make_anchors.py, {len(originals)} originals, seed {SEED}"}
        wrote += 1
        print(f"{net} v{version}: top {top}; " + ", ".join(
            f"{m['label']} {m['distance']:.3f}" for m in markers))
    import json

    args.out.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {wrote} entries to {args.out}")
    return 0 if wrote else 3


if __name__ == "__main__":
    sys.exit(main())

"""Compute the fixed colour-scale limits of distance maps, shipped in
lpips_explain/analyses/pair/map_scales.json.

For each trunk and version: the spatial distance maps of the same bundled distortions as
the category limits (scripts/make_categories.py: every sample pair of assets/samples.json
and every perturbation of the registry at its sweep strengths, applied to the bundled
originals); the 95th percentile of the per-position distance, pooled over all of them,
becomes the top of the colour scale of the summed map (bilinear) and of each layer's own map
(rounded up to two significant digits). Only the verified published trunk counts; any other
trunk is skipped and its entry left out, so that its maps keep the pair's own scale.

    python scripts/make_map_scales.py                  # every trunk and version, in place
    python scripts/make_map_scales.py --nets alex --versions 0.1 --out /tmp/scales.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_categories import SEED, bundled_pairs, table_args, verified_models

from lpips_explain.analyses.pair import map_scale
from lpips_explain.core.decompose import decompose_encoded

METHOD = ("Fixed colour-scale limits of distance maps per trunk and version: the 95th "
          "percentile of the per-position LPIPS distance, pooled over the spatial maps of the "
          "bundled distortions (the category limits' set: every sample pair of "
          "assets/samples.json and every perturbation of the registry at its sweep strengths "
          "applied to the bundled originals), for the map summed over layers (bilinear) and "
          "for each layer's own map, rounded up to two significant digits; computed with the "
          "verified published trunk by scripts/make_map_scales.py. No entry: maps use the "
          "pair's own maximum.")


def maps_of(model, pairs) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Every pair's summed bilinear map and each layer's own map (float32)."""
    summed: list[np.ndarray] = []
    layers: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for ref, x in pairs:
            dec = decompose_encoded(model, model.encode(ref), x, top_k=0)[0]
            summed.append(dec.spatial_map(None, "bilinear").astype(np.float32))
            for lay in dec.layers:
                layers.setdefault(lay.name, []).append(lay.spatial.astype(np.float32))
    return summed, layers


def main(argv: list[str] | None = None) -> int:
    args, table = table_args(__doc__, map_scale.TABLE_FILE, argv)
    table["method"] = METHOD
    pairs = None  # built once, for the first verified trunk
    wrote = 0
    for net, version, model in verified_models(args.nets, args.versions, args.backbone_weights,
                                               table, "fixed map scale"):
        if pairs is None:
            pairs, _ = bundled_pairs()
        summed, layers = maps_of(model, pairs)
        entry = map_scale.table_entry(
            summed, layers, pairs=len(pairs),
            source=f"scripts/make_map_scales.py, {len(pairs)} pairs, seed {SEED}")
        table["tables"][map_scale.key(net, version)] = entry
        wrote += 1
        print(f"{net} v{version}: all layers {entry[map_scale.SUMMED]}, layers "
              f"{entry['layers']} over {entry['pairs']} pairs", flush=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {wrote} entries to {args.out}")
    return 0 if wrote else 3


if __name__ == "__main__":
    sys.exit(main())

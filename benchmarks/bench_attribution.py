"""Adaptive integrated gradients: what the settled-map test costs and what it buys.

For each sample pair (assets/samples.json), on a seeded random trunk unless told otherwise:

* gap only (the old stopping rule): Gauss-Legendre rule sizes 8, 16, ... each run afresh
  until the completeness gap is at most 1%;
* gap AND settled (the current rule, ``attribute(...)`` defaults): sizes 8, 16, ... until the
  gap is at most 1% and the map changed by less than 2% (relative L1) from the previous size;
* a 256-point map as the reference for both.

Printed per pair: the sizes each rule tried, each final map's relative L1 error against the
256-point map, and the CPU-time ratio (settled / gap only), the two run interleaved in one
process. Absolute times depend on the machine and its load; compare ratios and errors.

    python benchmarks/bench_attribution.py [--pairs 3] [--net alex] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lpips_explain import Explainer
from lpips_explain.analyses.attribution import (
    IG_MAX_STEPS,
    IG_START_STEPS,
    IG_TARGET_GAP,
    attribute,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def gap_only(net, a, b):
    n, tried = IG_START_STEPS, []
    while True:
        r = attribute(net, a, b, steps=n)
        tried.append(n)
        if r.relative_gap is None or r.relative_gap <= IG_TARGET_GAP or n >= IG_MAX_STEPS:
            return r, tried
        n *= 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--net", default="alex")
    ap.add_argument("--size", type=int, default=128, help="images are resized to size x size")
    ap.add_argument("--backbone-weights", default="random")
    args = ap.parse_args()
    ex = Explainer(args.net, "0.1", args.backbone_weights, seed=0)
    manifest = json.loads((ASSETS / "samples.json").read_text())
    ratios = []
    for pair in manifest["pairs"][: args.pairs]:
        prep = ex.prepare(ASSETS / pair["a"], ASSETS / pair["b"])
        a, b = (F.interpolate(t, size=(args.size, args.size), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1) for t in prep.tensors[:2])
        ref_map = attribute(ex.model, a, b, steps=256).per_channel

        def err(m: np.ndarray, ref_map: np.ndarray = ref_map) -> float:
            return float(np.abs(m - ref_map).sum() / np.abs(ref_map).sum())

        t0 = time.process_time()
        old, old_tried = gap_only(ex.model, a, b)
        t1 = time.process_time()
        new = attribute(ex.model, a, b)
        t2 = time.process_time()
        ratio = (t2 - t1) / (t1 - t0)
        ratios.append(ratio)
        conv = new.convergence
        print(f"{pair['id']}: gap only {tuple(old_tried)} -> map error {err(old.per_channel):.1%} "
              f"(gap {old.relative_gap:.2%}); gap and settled {conv.steps_tried} -> map error "
              f"{err(new.per_channel):.1%} (gap {conv.gaps[-1]:.2%}, last change "
              f"{conv.map_changes[-1]:.1%}, settled {conv.settled}); CPU time ratio "
              f"{ratio:.1f}x", flush=True)
    print(f"median CPU time ratio (settled / gap only): {np.median(ratios):.1f}x "
          f"(torch threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()

"""Adaptive integrated gradients: what the settled-map test costs and what it buys.

For each sample pair (assets/samples.json), on a seeded random trunk unless told otherwise:

* gap only (the oldest stopping rule): Gauss-Legendre rule sizes 8, 16, ... each run afresh
  until the completeness gap is at most 1%;
* gap AND settled with Gauss-Legendre (``rule="gausslegendre"``, Captum's rule, each size
  afresh): sizes 8, 16, ... until the gap is at most 1% and the map changed by less than 2%
  (relative L1) from the previous size;
* gap AND settled with the nested trapezoid (the ``attribute(...)`` defaults): the same
  stopping rule, each size reusing the smaller sizes' gradients;
* a 256-point Gauss-Legendre map as the reference for all three.

Printed per pair: the sizes each rule tried, each final map's relative L1 error against the
256-point map, and the CPU-time ratios against gap only, all run in one process. Absolute
times depend on the machine and its load; compare ratios and errors.

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
        r = attribute(net, a, b, steps=n, rule="gausslegendre")
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
        ref_map = attribute(ex.model, a, b, steps=256, rule="gausslegendre").per_channel

        def err(m: np.ndarray, ref_map: np.ndarray = ref_map) -> float:
            return float(np.abs(m - ref_map).sum() / np.abs(ref_map).sum())

        t0 = time.process_time()
        old, old_tried = gap_only(ex.model, a, b)
        t1 = time.process_time()
        gl = attribute(ex.model, a, b, rule="gausslegendre")
        t2 = time.process_time()
        new = attribute(ex.model, a, b)
        t3 = time.process_time()
        ratios.append(((t2 - t1) / (t1 - t0), (t3 - t2) / (t1 - t0)))
        line = f"{pair['id']}: gap only {tuple(old_tried)} -> map error {err(old.per_channel):.1%}"
        for name, r, ratio in (("Gauss-Legendre", gl, ratios[-1][0]),
                               ("nested trapezoid", new, ratios[-1][1])):
            conv = r.convergence
            line += (f"; {name} {conv.steps_tried} ({r.params['gradient_evaluations']} "
                     f"gradients) -> map error {err(r.per_channel):.1%} (gap "
                     f"{conv.gaps[-1]:.2%}, last change {conv.map_changes[-1]:.1%}, settled "
                     f"{conv.settled}), CPU time {ratio:.1f}x gap only")
        print(line, flush=True)
    gl_r, nested_r = np.median(np.array(ratios), axis=0)
    print(f"median CPU time against gap only: settled Gauss-Legendre {gl_r:.1f}x, settled "
          f"nested trapezoid {nested_r:.1f}x (torch threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()

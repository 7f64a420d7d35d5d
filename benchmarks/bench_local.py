"""Single-patch repairs scored on windows (core/windowed.py) vs whole trunk passes, side by side.

For each trunk, image size and patch size: the share of whole passes' multiply-adds the
windows cost (``WindowedScorer.cost``, what analyses/pair/repair/scoring.py compares with
LOCAL_MAX_COST), then the median time of scoring every single-patch copy of B both ways,
interleaved in one process, and their ratio (whole / windowed: above 1 the windows are
faster). Every windowed distance is checked against the whole pass first (relative 1e-5).

    python benchmarks/bench_local.py [--nets alex vgg] [--sizes 128 192 256 512]
                                     [--patches 16 32 64] [--repeats 5]

``--curves``: deletion curves instead (analyses/pair/repair/curves.py: order_curves, as the
explanation's deletion check runs them: about 16 patches, the map's order and 8 random
ones), each order a chain of windowed steps (WindowedScorer.take) against every point a
whole pass (LOCAL_MAX_COST forced below 0), interleaved; the curves are compared first.

    python benchmarks/bench_local.py --curves [--nets alex] [--shapes 256x256 400x600 1280x1920]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
import torch

from lpips_explain.analyses.checks.faithfulness import (
    CHECK_PATCHES,
    CHECK_RANDOM_ORDERS,
    check_patch_size,
)
from lpips_explain.analyses.pair import repair
from lpips_explain.analyses.pair.repair import LOCAL_MAX_COST, scoring
from lpips_explain.analyses.pair.repair.patches import patch_boxes
from lpips_explain.core.model import ReferenceScorer, build_lpips
from lpips_explain.core.windowed import WindowedScorer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=["alex", "vgg"])
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 192, 256, 512])
    p.add_argument("--patches", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--curves", action="store_true",
                   help="time deletion curves (chains of windowed steps vs whole passes)")
    p.add_argument("--shapes", nargs="+", default=["256x256", "400x600", "1280x1920"],
                   metavar="HxW", help="image shapes for --curves")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.curves:
        curves(args)
        return
    print(f"threads={torch.get_num_threads()} load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs; LOCAL_MAX_COST = {LOCAL_MAX_COST}")
    print(f"{'net':<5} {'size':>5} {'patch':>5} {'copies':>6} {'cost':>5} {'whole ms':>9} "
          f"{'windows ms':>10} {'ratio':>6}  route chosen")
    for name in args.nets:
        net = build_lpips(name, "0.1", "random", progress=False)
        for size in args.sizes:
            a = torch.rand(1, 3, size, size)
            b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
            scorer = ReferenceScorer(net, a)
            for patch in args.patches:
                if patch >= size:
                    continue
                g = math.ceil(size / patch)
                boxes = patch_boxes((size, size), patch, (g, g))
                ids = torch.from_numpy(np.arange(g * g)).view(-1, 1, 1)
                rows = torch.arange(size) // patch
                pix = rows[:, None] * g + rows[None, :]

                def whole(boxes=boxes, ids=ids, pix=pix, a=a, b=b, scorer=scorer):
                    out = []
                    with torch.no_grad():
                        for i in range(0, len(boxes), args.batch):
                            m = (pix[None] == ids[i: i + args.batch]).unsqueeze(1)
                            out.append(scorer(torch.where(m, a, b)).double())
                    return torch.cat(out).numpy()

                def windows(boxes=boxes, a=a, b=b, scorer=scorer, net=net):
                    local = WindowedScorer(net, scorer.ref, b)
                    return np.concatenate([local.score(a, boxes[i: i + args.batch]).numpy()
                                           for i in range(0, len(boxes), args.batch)])

                np.testing.assert_allclose(windows(), whole(), rtol=1e-5)
                cost = WindowedScorer(net, scorer.ref, b).cost(boxes)
                tw, tl = [], []
                for _ in range(args.repeats):
                    for fn, ts in ((whole, tw), (windows, tl)):
                        t0 = time.perf_counter()
                        fn()
                        ts.append(time.perf_counter() - t0)
                mw, ml = 1000 * statistics.median(tw), 1000 * statistics.median(tl)
                route = "windows" if cost <= LOCAL_MAX_COST else "whole"
                print(f"{name:<5} {size:>5} {patch:>5} {len(boxes):>6} {cost:>5.2f} {mw:>9.0f} "
                      f"{ml:>10.0f} {mw / ml:>5.2f}x  {route}")


def curves(args: argparse.Namespace) -> None:
    """The deletion check's curves on chains of windowed steps against whole passes."""
    print(f"{'net':<5} {'shape':>10} {'patch':>5} {'points':>6} {'whole s':>8} "
          f"{'chains s':>8} {'ratio':>6}  max |difference|")
    for name in args.nets:
        net = build_lpips(name, "0.1", "random", progress=False)
        for shape in args.shapes:
            h, w = (int(v) for v in shape.split("x"))
            a = torch.rand(1, 3, h, w)
            b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
            patch = check_patch_size((h, w), CHECK_PATCHES)
            n = math.ceil(h / patch) * math.ceil(w / patch)
            rng = np.random.default_rng(0)
            orders = [rng.permutation(n) for _ in range(1 + CHECK_RANDOM_ORDERS)]

            def run(forced_whole: bool, a=a, b=b, patch=patch, orders=orders, net=net):
                saved = scoring.LOCAL_MAX_COST  # read there, when the copies are scored
                scoring.LOCAL_MAX_COST = -1.0 if forced_whole else saved
                try:
                    t0 = time.perf_counter()
                    _, out = repair.order_curves(net, a, b, orders, patch=patch)
                    return time.perf_counter() - t0, np.concatenate([d for _, d in out])
                finally:
                    scoring.LOCAL_MAX_COST = saved

            (_, whole), (_, chained) = run(True), run(False)
            diff = float(np.abs(whole - chained).max())
            np.testing.assert_allclose(chained, whole, rtol=1e-5, atol=1e-7)
            tw, tc = [], []
            for _ in range(args.repeats):
                tw.append(run(True)[0])
                tc.append(run(False)[0])
            mw, mc = statistics.median(tw), statistics.median(tc)
            print(f"{name:<5} {shape:>10} {patch:>5} {1 + n * len(orders):>6} {mw:>8.2f} "
                  f"{mc:>8.2f} {mw / mc:>5.2f}x  {diff:.1e}")


if __name__ == "__main__":
    main()

"""The feature cache: one reference against many uploads, one at a time (the app's pattern).

Two Explainers on the same random trunk, one with a private FeatureCache and one without,
score the same reference against the same candidates one ``distance`` call at a time,
interleaved, and the answers are checked identical (bit for bit) before anything is
timed. Prints the median wall time and CPU time (all threads) per call on each side, their
ratio, the cache's stats and the bytes one encoded reference takes. On a shared, loaded
machine trust the CPU-time ratio more than the wall-clock one.

    python benchmarks/bench_cache.py [--net alex] [--sizes 256 512] [--candidates 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def main() -> None:
    from lpips_explain import Explainer
    from lpips_explain.core.cache import FeatureCache

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="alex")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"net={args.net} threads={torch.get_num_threads()} (median time per call)")
    print(f"{'case':<34} {'no cache ms':>12} {'cache ms':>9} {'ratio':>6}  cache")
    for s in args.sizes:
        cache = FeatureCache("512MB")
        cached = Explainer(args.net, "0.1", "random", feature_cache=cache)
        plain = Explainer(args.net, "0.1", "random", feature_cache=None)
        g = torch.Generator().manual_seed(s)
        ref = torch.rand(1, 3, s, s, generator=g)
        cands = [(ref + 0.1 * torch.rand(1, 3, s, s, generator=g)).clamp(0, 1)
                 for _ in range(args.candidates)]
        for c in cands:  # equality first: the same numbers, bit for bit
            assert cached.distance(ref, c, value_range="[0,1]") == plain.distance(
                ref, c, value_range="[0,1]")
        times: dict[str, list[float]] = {"plain wall": [], "cached wall": [],
                                         "plain cpu": [], "cached cpu": []}
        for _ in range(args.repeats):
            for c in cands:  # interleaved, so machine noise hits both sides alike
                for name, e in (("plain", plain), ("cached", cached)):
                    w0, c0 = time.perf_counter(), time.process_time()
                    e.distance(ref, c, value_range="[0,1]")
                    times[f"{name} wall"].append(time.perf_counter() - w0)
                    times[f"{name} cpu"].append(time.process_time() - c0)
        med = {k: 1000 * statistics.median(v) for k, v in times.items()}
        st = cache.stats()
        for kind in ("wall", "cpu"):
            mp, mc = med[f"plain {kind}"], med[f"cached {kind}"]
            print(f"{f'{s}px, 1 ref vs {args.candidates} one by one, {kind}':<34} {mp:>12.1f} "
                  f"{mc:>9.1f} {mp / mc:>5.2f}x  hits {st.hits}, misses {st.misses}, "
                  f"{st.bytes / 1e6:.1f} MB for {st.entries} reference")


if __name__ == "__main__":
    main()

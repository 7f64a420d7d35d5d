"""Core speed vs the official lpips package, same trunk weights, measured side by side.

Prints time per pair for ours and the official model and their ratio (>1 means ours is
faster) for: one pair, a batch of 16 pairs, and one reference against 16 candidates
(ours encodes the reference once). Both sides run interleaved in one process, so machine
noise hits both alike; the median of several repeats is reported.

    python benchmarks/bench_core.py [--net alex] [--sizes 256 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def _official(net: str):
    import lpips

    return lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()


def _ours_from(official, net: str, tmp: str):
    from lpips_explain.core.model import build_lpips

    state = {k.split(".", 1)[1]: v for k, v in official.net.state_dict().items()}
    torch.save(state, tmp)
    return build_lpips(net, "0.1", tmp)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cases(official, ours, s, n, a1, b1, an, bn) -> dict:
    from lpips_explain.core.model import ReferenceScorer

    return {
        f"{s}px one pair": (lambda: official(a1 * 2 - 1, b1 * 2 - 1), lambda: ours(a1, b1), 1),
        f"{s}px batch of {n} pairs": (lambda: official(an * 2 - 1, bn * 2 - 1),
                                      lambda: ours(an, bn), n),
        # official: the reference goes through the trunk once per candidate; ours: once
        f"{s}px 1 ref vs {n} cands": (
            lambda: official(a1.expand(n, -1, -1, -1) * 2 - 1, bn * 2 - 1),
            lambda: ReferenceScorer(ours, a1)(bn), n),
    }


def main() -> None:
    from lpips_explain.core.model import ReferenceScorer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="alex")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    torch.manual_seed(0)
    official = _official(args.net)
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pth") as f:
        ours = _ours_from(official, args.net, f.name)
    print(f"net={args.net} threads={torch.get_num_threads()} repeats={args.repeats} "
          f"(median; time per pair)")
    print(f"{'case':<28} {'official ms':>12} {'ours ms':>10} {'ratio':>7}")
    n = args.batch
    for s in args.sizes:
        a1, b1 = torch.rand(1, 3, s, s), torch.rand(1, 3, s, s)
        an, bn = torch.rand(n, 3, s, s), torch.rand(n, 3, s, s)
        with torch.inference_mode():
            # equality first: a benchmark of a wrong answer is worthless
            d_off = official(an * 2 - 1, bn * 2 - 1).flatten()
            d_ours = ours(an, bn)
            assert torch.allclose(d_off, d_ours, atol=1e-5), (d_off - d_ours).abs().max()
            ref_scorer = ReferenceScorer(ours, a1)
            assert torch.allclose(official(a1 * 2 - 1, bn * 2 - 1).flatten(), ref_scorer(bn),
                                  atol=1e-5)
            cases = _cases(official, ours, s, n, a1, b1, an, bn)
            for name, (f_off, f_ours, per) in cases.items():
                f_off(), f_ours()  # warm-up
                t_off, t_ours = [], []
                for _ in range(args.repeats):  # interleave the two sides
                    t_off.append(_median_time(f_off, 1))
                    t_ours.append(_median_time(f_ours, 1))
                mo, mu = statistics.median(t_off) / per, statistics.median(t_ours) / per
                print(f"{name:<28} {1000 * mo:>12.2f} {1000 * mu:>10.2f} {mo / mu:>6.2f}x")


if __name__ == "__main__":
    main()

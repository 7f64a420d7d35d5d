"""Each speed mode against the exact fp32 path, side by side in one run, with the targets.

Case timed (the issue's): one reference against 16 candidates at 256 px, the reference encoded
once (``ReferenceScorer``), the same images for every mode; plus one pair ``d(a, b)``. The
exact path and each mode run interleaved in one process (noise hits both alike); medians of
``--repeats`` runs. Building a mode (int8: calibration on the bundled images, export,
quantisation and compilation) is timed apart and never mixed in.

Fidelity (lpips_explain.analyses.checks.mode_error) is measured first, on the fixed set: the bundled
pairs and triplets plus generated distortions of the bundled originals: Spearman rank
correlation, mean and max absolute error, 2AFC agreement on triplets.

Weights: the official ``lpips.LPIPS(net, pnet_rand=True)`` trunk after
``torch.manual_seed(0)`` (torchvision's ImageNet weights cannot be downloaded here) with the
official lin heads; speed does not depend on the weight values, fidelity may.

Targets: int8 >= 2.5x exact with Spearman >= 0.99 and 2AFC agreement >= 0.98; bf16 >= 1.3x
with Spearman >= 0.995.

    python benchmarks/bench_modes.py [--net alex] [--size 256] [--batch 16] [--repeats 9]
                                     [--modes bf16 int8] [--fidelity-size 256] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")


def _exact_net(net: str):
    import lpips

    from lpips_explain.core.model import build_lpips

    torch.manual_seed(0)
    official = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    state = {k.split(".", 1)[1]: v for k, v in official.net.state_dict().items()}
    with tempfile.NamedTemporaryFile(suffix=".pth") as f:
        torch.save(state, f.name)
        return build_lpips(net, "0.1", f.name, progress=False)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _cpu_ms(fn) -> float:
    """Process CPU time of one call (less sensitive than wall time to other jobs)."""
    c0 = time.process_time()
    fn()
    return 1000 * (time.process_time() - c0)


def main() -> None:
    from lpips_explain.analyses.checks.mode_error import TARGETS, fidelity_set, measure_fidelity
    from lpips_explain.core.model import ReferenceScorer
    from lpips_explain.core.modes import available_modes, mode_net
    from lpips_explain.core.profiling import machine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="alex")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--modes", nargs="+", default=["bf16", "int8"])
    p.add_argument("--fidelity-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    m = machine()
    print(f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}, {torch.get_num_threads()} "
          f"threads, load average {m['load_average']} at start")
    exact = _exact_net(args.net)
    avail = available_modes("cpu")
    for mode in args.modes:
        if avail.get(mode):
            print(f"{mode}: NOT RUN on this machine: {avail[mode]}")
    modes = [mode for mode in args.modes if not avail.get(mode)]

    built = {}
    for name in modes:
        t0 = time.perf_counter()
        built[name] = mode_net(exact, name, "cpu")
        print(f"{name}: built in {time.perf_counter() - t0:.1f} s (calibration/compilation, "
              f"once per process; not in the timings below)")

    fset = fidelity_set(args.fidelity_size)
    fid = {name: measure_fidelity(exact, net, mode, fset=fset)
           for name, (net, mode) in built.items()}

    g = torch.Generator().manual_seed(0)
    s, n = args.size, args.batch
    ref = torch.rand(1, 3, s, s, generator=g)
    cands = torch.rand(n, 3, s, s, generator=g)
    b1 = cands[:1]
    scorers = {"fp32": ReferenceScorer(exact, ref)}
    nets = {"fp32": exact}
    for name, (net, _) in built.items():
        scorers[name] = ReferenceScorer(net, ref)
        nets[name] = net
    t_many: dict[str, list[float]] = {k: [] for k in scorers}
    c_many: dict[str, list[float]] = {k: [] for k in scorers}
    t_pair: dict[str, list[float]] = {k: [] for k in scorers}
    with torch.no_grad():
        for k in scorers:  # warm-up
            scorers[k](cands)
            nets[k](ref, b1)
        for i in range(args.repeats):
            order = list(scorers) if i % 2 == 0 else list(reversed(scorers))
            for k in order:
                t_many[k].append(_median_ms(lambda k=k: scorers[k](cands), 1))
                c_many[k].append(_cpu_ms(lambda k=k: scorers[k](cands)))
                t_pair[k].append(_median_ms(lambda k=k: nets[k](ref, b1), 1))
    med = {k: statistics.median(v) for k, v in t_many.items()}
    pair = {k: statistics.median(v) for k, v in t_pair.items()}
    print(f"\nnet={args.net}: 1 reference vs {n} candidates at {s}x{s} px, medians of "
          f"{args.repeats} interleaved runs; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'mode':<22} {'1 vs ' + str(n) + ' ms':>11} {'speed-up':>9} {'pair ms':>8} "
          f"{'Spearman':>9} {'mean|err|':>10} {'max|err|':>9} {'2AFC':>7}  targets")
    print(f"{'fp32 (exact)':<22} {med['fp32']:>11.1f} {'1.00x':>9} {pair['fp32']:>8.1f} "
          f"{'1':>9} {'0':>10} {'0':>9} {'1':>7}  reference")
    for name in built:
        f = fid[name]
        speed = med["fp32"] / med[name]
        t = TARGETS.get(name, {})
        checks = []
        if "speedup" in t:
            checks.append(f"speed >= {t['speedup']}x: {'met' if speed >= t['speedup'] else 'MISSED'}")
        checks += [f"{k}: {'met' if v else 'MISSED'}" for k, v in f.checks().items()]
        print(f"{name + ' (approximate)':<22} {med[name]:>11.1f} {speed:>8.2f}x "
              f"{pair[name]:>8.1f} {f.spearman:>9.5f} {f.mean_abs_error:>10.2e} "
              f"{f.max_abs_error:>9.2e} {f.agreement_2afc:>7.4f}  {'; '.join(checks)}")
    cpu = {k: statistics.median(v) for k, v in c_many.items()}
    print("process CPU time per 1 vs " + str(n) + " (ms): " + ", ".join(
        f"{k} {v:.0f} ({cpu['fp32'] / v:.2f}x)" for k, v in cpu.items()))
    print(f"\nfidelity set: {fset.pairs} pairs, {len(fset.triplets)} triplets at "
          f"{fset.size} px (bundled pairs and triplets + generated distortions)")


if __name__ == "__main__":
    main()

"""Second opinions: lpips-explain's DISTS and ST-LPIPS against the reference packages run one
after another, side by side in one run.

The workload is a one-to-many comparison (one reference, K candidates), the shape that the
Explain page's second-opinion line, sweeps and audits have: lpips-explain encodes the
reference once and scores the candidates in batches (one trunk pass per candidate); the
reference packages compute each pair on its own (two trunk passes per pair). Also printed:
the largest relative difference between the two on the same inputs.

    PYTHONPATH=. LPIPS_EXPLAIN_OFFLINE=1 python benchmarks/bench_second_opinions.py [--size 256] [-k 8]

Needs the installed vgg trunk (`lpips-explain weights install`) and the packages
dists-pytorch and stlpips-pytorch (requirements-dev.txt). Never downloads.
"""

from __future__ import annotations

import argparse
import platform
import time
import types
import warnings

import torch
import torchvision

from lpips_explain.core import metric_files
from lpips_explain.core.dists import DistsScorer, build_dists
from lpips_explain.core.stlpips import build_stlpips
from lpips_explain.core.weights import resolve_imagenet


def reference_dists():
    import DISTS_pytorch.DISTS_pt as dists_pt

    state = torch.load(resolve_imagenet("vgg", fetch=False), map_location="cpu", weights_only=True)

    def vgg16(pretrained=False, **_):
        m = torchvision.models.vgg16(weights=None)
        m.features.load_state_dict(state)
        return m

    real, dists_pt.models = dists_pt.models, types.SimpleNamespace(vgg16=vgg16)
    try:
        ref = dists_pt.DISTS(load_weights=False)
    finally:
        dists_pt.models = real
    w = torch.load(metric_files.locate(metric_files.get_file("dists", "vgg")).path,
                   map_location="cpu", weights_only=True)
    ref.alpha.data, ref.beta.data = w["alpha"], w["beta"]
    return ref.eval()


def reference_stlpips(net):
    from stlpips_pytorch import stlpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stlpips.LPIPS(net=net, variant="shift_tolerant", verbose=False).eval()


def best_of(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("-k", type=int, default=8, help="candidates per reference")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, args.size, args.size, generator=g)
    cands = (ref + 0.2 * (torch.rand(args.k, 3, args.size, args.size, generator=g) - 0.5)).clamp(0, 1)
    print(f"second opinions, {args.k} candidates of {args.size}x{args.size} against one "
          f"reference; best of {args.repeats}; torch {torch.__version__}, {args.threads} "
          f"threads, {platform.processor() or platform.machine()}")
    print(f"{'metric':16} {'ours (s)':>9} {'reference (s)':>14} {'ratio':>7} {'max rel diff':>13}")
    rows = [("DISTS", build_dists("imagenet", progress=False), reference_dists(), None)]
    rows += [(f"ST-LPIPS {n}", build_stlpips(n), reference_stlpips(n), n) for n in ("alex", "vgg")]
    with torch.no_grad():
        for name, ours, theirs, net in rows:
            if net is None:
                def run_ours(ours=ours):
                    return DistsScorer(ours, ref).score_batches(cands, batch_size=args.k)

                def run_ref(theirs=theirs):
                    return torch.stack([theirs(ref, c[None]).reshape(()) for c in cands])
            else:
                def run_ours(ours=ours):
                    return ours.scorer(ref).score_batches(cands, batch_size=args.k)

                def run_ref(theirs=theirs):
                    return torch.stack([theirs(ref * 2 - 1, c[None] * 2 - 1).reshape(())
                                        for c in cands])
            run_ours()  # warm-up
            t_ours, d_ours = best_of(run_ours, args.repeats)
            t_ref, d_ref = best_of(run_ref, args.repeats)
            rel = float(((d_ours.double() - d_ref.double()).abs() / d_ref.double().abs()).max())
            print(f"{name:16} {t_ours:9.3f} {t_ref:14.3f} {t_ref / t_ours:6.2f}x {rel:13.2e}")


if __name__ == "__main__":
    main()

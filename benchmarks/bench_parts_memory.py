"""Memory of the explanation parts that cannot be tiled: the estimate lpips-explain refuses
by (``core/budget.untiled_bytes``) against the peak measured when the part runs.

Each (part, size) runs in its own fresh process: a warm-up at 64 px, then the process's
high-water mark (VmHWM) is reset through /proc/self/clear_refs, the part runs on a random
pair, and the rise of VmHWM is reported beside the estimate (Linux only). Parts:

* ``saliency``: one gradient (route ``gradient``, batch 1);
* ``integrated_gradients``: 8 steps in internal batches of ``budget.GRADIENT_BATCH``;
* ``sensitivity``: the default counterfactuals and sweeps (route ``sweep``: batches of
  ``budget.SCORE_BATCH`` scored, then their SSIM);
* ``repair``: 32 px patches (route ``score``).

    python benchmarks/bench_parts_memory.py [--net alex] [--sizes 256 512 1024]
                                            [--parts saliency sensitivity ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from lpips_explain.core.memory import peak_rss, reset_peak

REPO = Path(__file__).resolve().parents[1]
PARTS = ("saliency", "integrated_gradients", "sensitivity", "repair")


def _child(part: str, size: int, net: str) -> None:
    import torch

    from lpips_explain import Explainer
    from lpips_explain.core import budget
    from lpips_explain.core.geometry import geometry_of

    ex = Explainer(net, "0.1", "random", seed=0, feature_cache=None)
    geom = geometry_of(ex.model)

    def run(x: torch.Tensor, y: torch.Tensor) -> int:
        h, w = x.shape[-2:]
        if part in ("saliency", "integrated_gradients"):
            from lpips_explain.analyses.attribution import attribute

            batch = 1 if part == "saliency" else budget.GRADIENT_BATCH
            params = {} if part == "saliency" else {"internal_batch_size": batch}
            attribute(ex.model, x, y, part, steps=None if part == "saliency" else 8,
                      **params)
            return budget.untiled_bytes(geom, h, w, "gradient", batch)
        if part == "sensitivity":
            from lpips_explain.analyses.pair.sensitivity import sensitivity

            sensitivity(ex.model, x, y, seed=0)
            return budget.untiled_bytes(geom, h, w, "sweep", budget.SCORE_BATCH)
        from lpips_explain.analyses.pair.repair import repair

        repair(ex.model, x, y, patch=32)
        return budget.untiled_bytes(geom, h, w, "score", budget.SCORE_BATCH)

    g = torch.Generator().manual_seed(size)
    run(torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g))
    a, b = torch.rand(1, 3, size, size, generator=g), torch.rand(1, 3, size, size, generator=g)
    before = reset_peak()  # VmHWM := VmRSS
    estimate = run(a, b)
    print(json.dumps({"estimate": estimate, "rise": peak_rss() - before}))


def measure(part: str, size: int, net: str = "alex") -> dict:
    """The estimate and the measured VmHWM rise (bytes) of ``part`` at ``size`` px."""
    proc = subprocess.run([sys.executable, __file__, "--child", part, str(size), net],
                          capture_output=True, text=True, cwd=REPO, timeout=1800,
                          env={**os.environ, "LPIPS_EXPLAIN_OFFLINE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{part} at {size} px failed: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="alex")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = ap.parse_args()
    print(f"net={args.net}; MB = 10^6 bytes; rise = VmHWM after the part minus VmRSS before")
    print(f"{'part':<22} {'size':>6} {'estimate MB':>12} {'measured MB':>12} {'measured/est':>13}")
    for part in args.parts:
        for size in args.sizes:
            m = measure(part, size, args.net)
            print(f"{part:<22} {size:>6} {m['estimate'] / 1e6:>12.0f} {m['rise'] / 1e6:>12.0f} "
                  f"{m['rise'] / m['estimate']:>13.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()

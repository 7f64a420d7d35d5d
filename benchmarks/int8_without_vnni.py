"""Why int8 is refused on x86 CPUs without VNNI or AMX: its speed and its error there.

``core/modes.int8_missing`` refuses the int8 mode on a CPU with neither VNNI nor AMX int8
instructions. This script lifts that refusal for its own process only, builds the int8
encoder exactly as the mode does (torchao PT2E, X86InductorQuantizer, calibrated on the
bundled images, compiled by Inductor), and compares it side by side with the exact fp32
encoder on the bundled images (batch of 11 at 256 px, interleaved, best of 5): speed, each
tapped layer's relative feature error (||int8 - fp32|| / ||fp32||) and the distances of
the bundled images paired in order. On a CPU with VNNI or AMX it measures the real mode.

    .venv/bin/python benchmarks/int8_without_vnni.py [--net alex]
"""

from __future__ import annotations

import argparse
import time

import torch

from lpips_explain.core import modes
from lpips_explain.core.model import build_lpips


def best_of(fn, x: torch.Tensor, repeats: int = 5) -> float:
    with torch.no_grad():
        fn(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="alex")
    args = ap.parse_args()
    flags = sorted({"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}
                   & modes.cpu_flags())
    refused = modes.int8_missing()
    print(f"CPU flags: {', '.join(flags) or 'none of interest'}; torch threads "
          f"{torch.get_num_threads()}; the mode says: {refused or 'int8 can run here'}")
    modes.int8_missing = lambda: ""  # this process only
    net = build_lpips(args.net, backbone_weights="imagenet")
    t0 = time.perf_counter()
    enc = modes.int8_encoder(net)
    print(f"int8 encoder built in {time.perf_counter() - t0:.1f} s")
    x = modes.calibration_images()
    with torch.no_grad():
        exact, quant = net.encode(x), enc.encode(x)
        errors = [float((q - e).norm() / e.norm()) for e, q in zip(exact, quant, strict=True)]
        n = x.shape[0] // 2
        d32 = net(x[:n], x[n: 2 * n])
        d8 = enc.score([f[:n] for f in quant], x[n: 2 * n], net.heads)
    fp32_s, int8_s = [], []
    for _ in range(2):  # interleaved
        fp32_s.append(best_of(net.encode, x))
        int8_s.append(best_of(enc.encode, x))
    print(f"encode {x.shape[0]} images at {x.shape[-1]} px: fp32 {min(fp32_s) * 1e3:.0f} ms, "
          f"int8 {min(int8_s) * 1e3:.0f} ms: int8 {min(fp32_s) / min(int8_s):.2f}x")
    print("relative feature error per layer: "
          + ", ".join(f"{name} {e:.1%}" for name, e in zip(net.layer_names, errors, strict=True)))
    rel = ((d8 - d32).abs() / d32).tolist()
    print("distances of the bundled images paired in order (fp32 -> int8): "
          + ", ".join(f"{a:.4f} -> {b:.4f}" for a, b in zip(d32.tolist(), d8.tolist(),
                                                           strict=True))
          + f"; relative error up to {max(rel):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Occlusion with the reference as baseline: the distance drop when a window of the explained
image is replaced by the reference's pixels."""

from __future__ import annotations

import math

from lpips_explain.analyses.attribution.result import MethodResult
from lpips_explain.analyses.attribution.support import Counted, RunContext, int_param


def run_occlusion(ctx: RunContext) -> MethodResult:
    from captum.attr import Occlusion

    x, p = ctx.x, ctx.params
    h, w = int(x.shape[-2]), int(x.shape[-1])
    window = int_param(p, "window", 1, min(h, w))
    stride = window if p["stride"] is None else int_param(p, "stride", 1, window)
    n_windows = (math.ceil((h - window) / stride) + 1) * (math.ceil((w - window) / stride) + 1)
    counted = Counted(ctx.scorer, ctx.progress, n_windows, "occlusion: windows", grad_only=False,
                      skip_first=True)
    attr = Occlusion(counted).attribute(
        x.clone(), sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=ctx.base, perturbations_per_eval=ctx.batch)
    counted.finish()
    # Every channel holds the same value (windows span all three): keep one.
    note = (f"Each pixel holds the distance drop when its {window} x {window} window is "
            f"replaced by the reference's pixels"
            + (" (averaged over overlapping windows)." if stride < window else ".")
            + " The map's sum counts each window once per pixel, so it is not comparable "
              "with the distance.")
    cause = (f"Replacing any {window} x {window} window of the explained image by the "
             f"reference's pixels leaves the distance unchanged (to float precision), so every "
             f"window's drop is zero; this is not a pair of identical images. A smaller window "
             f"may separate the difference.")
    return MethodResult(signed=attr[0, 0],
                        params={"window": window, "stride": stride, "windows": n_windows},
                        notes=(note,), blank_cause=cause)

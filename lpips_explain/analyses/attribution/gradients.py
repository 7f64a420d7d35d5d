"""Gradient maps at the explained image: saliency, input x gradient, (B - reference) x gradient,
SmoothGrad (a seeded loop over Captum's Saliency: no private Captum API, no global RNG)."""

from __future__ import annotations

import torch

from lpips_explain.analyses.attribution.result import MethodResult
from lpips_explain.analyses.attribution.support import Counted, RunContext, float_param, int_param


def run_saliency(ctx: RunContext) -> MethodResult:
    from captum.attr import Saliency

    attr = Saliency(ctx.scorer).attribute(ctx.x.clone().requires_grad_(True), abs=False)
    ctx.done()
    return MethodResult(per_channel=attr[0])


def run_input_x_gradient(ctx: RunContext) -> MethodResult:
    from captum.attr import InputXGradient

    x, base = ctx.x, ctx.base
    attr = InputXGradient(ctx.scorer).attribute(x.clone().requires_grad_(True))
    ctx.done()
    notes: list[str] = []
    mass = attr[0].detach().double().abs().sum(0)
    same = (x == base).all(dim=1)[0]
    total = float(mass.sum())
    if bool(same.any()) and total > 0:
        on_same = float(mass[same].sum()) / total
        notes.append(f"{on_same:.0%} of this map's mass lies on pixels identical to the "
                     f"reference ({float(same.double().mean()):.0%} of the image), where the "
                     f"images do not differ at all: input x gradient is measured against a "
                     f"black image, not against the reference. (B - reference) x gradient is "
                     f"the pair-aware estimate.")
    cause = None
    if not bool(x.any()):
        cause = ("Input x gradient is pixel value times gradient, and every pixel of the "
                 "explained image is 0 (black): the map is blank because the image is, not "
                 "because the gradient vanished. Use saliency, (B - reference) x gradient or "
                 "integrated gradients instead.")
    return MethodResult(per_channel=attr[0], notes=tuple(notes), blank_cause=cause)


def run_delta_x_gradient(ctx: RunContext) -> MethodResult:
    """(x - reference) * dd/dx at x: the first-order (tangent) estimate of d(ref, x) - d(ref, ref)."""
    from captum.attr import Saliency

    x, base = ctx.x, ctx.base
    grad = Saliency(ctx.scorer).attribute(x.clone().requires_grad_(True), abs=False)
    ctx.done()
    attr = (x - base).to(grad.dtype) * grad
    differ = ~(x == base).all(dim=1)
    cause = None
    if bool(differ.any()):
        cause = (f"The gradient of the distance is exactly zero on every pixel where the images "
                 f"differ ({float(differ.double().mean()):.0%} of the image), so the first-order "
                 f"estimate is zero there; this is not a pair of identical images. Integrated "
                 f"gradients or occlusion do not rely on the gradient at one point.")
    return MethodResult(per_channel=attr[0], blank_cause=cause)


def run_smoothgrad(ctx: RunContext) -> MethodResult:
    """Mean saliency over ``samples`` noisy copies x + stdev * N(0, 1).

    The noise of sample i is the i-th draw of a private generator seeded with ``seed`` (one
    draw per sample, in order), so the result depends on the seed only: not on the batch
    size, not on torch's global RNG, not on other threads.
    """
    from captum.attr import Saliency

    p = ctx.params
    samples = int_param(p, "samples", 1)
    stdev = float_param(p, "stdev", 0.0, inclusive=True)
    seed = p["seed"]
    x = ctx.x
    counted = Counted(ctx.scorer, ctx.progress, samples, "smoothgrad: noisy samples",
                      grad_only=True)
    saliency = Saliency(counted)
    gen = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    for start in range(0, samples, ctx.batch):
        n = min(ctx.batch, samples - start)
        noise = torch.cat([torch.randn(x.shape, generator=gen, dtype=x.dtype) for _ in range(n)])
        noisy = (x + stdev * noise.to(x.device)).requires_grad_(True)
        grads = saliency.attribute(noisy, abs=False)
        total += grads.detach().double().sum(0)
    counted.finish()
    return MethodResult(per_channel=total / samples,
                        params={"samples": samples, "stdev": stdev, "seed": seed})

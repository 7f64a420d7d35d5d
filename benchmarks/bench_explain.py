"""The default explanation vs the same numbers computed naively with the official lpips package.

Both sides use the same trunk weights (the official ``lpips.LPIPS(net, pnet_rand=True)``
trunk, copied into ours through a torchvision-format state_dict file) and the official lin
heads, on the sample pair astronaut.png / astronaut_jpeg_q10.png.

Ours: ``Explainer.explain(a, b)`` with its defaults (breakdown, adaptive integrated
gradients, sensitivity, repair, summary), and the fast first view
``explain(a, b, attribution=None, sensitivity=False, repair=False)``.

Naive official route: one official call per quantity, replicating one-for-one the set of
quantities the default explanation evaluated (read back from its result):

* breakdown: ``official(a, b)``, ``official(a, b, retPerLayer=True)`` and a
  ``spatial=True`` official model call;
* integrated gradients with the reference as baseline: for each point of every rule size
  ours tried (``result.attribution.steps_tried``; the rule is ours, the nested trapezoid by
  default, whose t = 0 point is skipped on both sides), one forward + backward through the
  official model on the interpolated image, summing grad x (b - a) x weight. Each size is
  computed afresh, as a loop over Captum's ``IntegratedGradients`` would; ours reuses the
  smaller sizes' points;
* sensitivity: one official call per distinct perturbed B (the defaults, the geometric
  table and the sweeps, identity strengths excluded as ours does), each built with our own
  perturbation functions (image building is timed on both sides alike), plus PSNR and SSIM
  of B and of every variant, one image at a time, with scikit-image's
  ``peak_signal_noise_ratio(data_range=1)`` and ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)``: the same
  quantities ours computes batched in torch (Gaussian SSIM, Wang et al.);
* repair: one official call per single-patch repair image and per repair-curve point
  (k = 0 is B itself and is not re-scored; neither side re-scores it).

Every number of the naive route is checked against ours (to 1e-5 for distances and SSIM,
1e-6 relative for PSNR) BEFORE any timing. The two sides then run interleaved in one process, so machine noise hits both alike;
medians of ``--repeats`` runs are printed. Read the ratio as naive / ours: above 1 ours is
faster (target: >= 3 for the default explanation). For the fast first view the ratio is
(1 official distance call) / ours (target: >= 1, i.e. ours no slower than one call).
Absolute times depend on the machine and its load; only the ratios are meant to be compared.

    python benchmarks/bench_explain.py [--net alex] [--size 256] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
IMAGE_A = ROOT / "assets" / "originals" / "astronaut.png"
IMAGE_B = ROOT / "assets" / "distorted" / "astronaut_jpeg_q10.png"
ATOL = 1e-5


# --- set-up ------------------------------------------------------------------------------


def _officials(net: str):
    import lpips

    official = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    spatial = lpips.LPIPS(net=net, pnet_rand=True, spatial=True, verbose=False).eval()
    spatial.load_state_dict(official.state_dict())
    return official, spatial


def _ours_from(official, net: str):
    from lpips_explain import Explainer

    state = {k.split(".", 1)[1]: v for k, v in official.net.state_dict().items()}
    with tempfile.NamedTemporaryFile(suffix=".pth") as f:
        torch.save(state, f.name)
        return Explainer(net, "0.1", backbone_weights=f.name)


def _load_pair(size: int):
    from lpips_explain.intake.images import load_image

    loaded = []
    for path in (IMAGE_A, IMAGE_B):
        im = load_image(path)
        if im.size != (size, size):
            t = F.interpolate(im.tensor, size=(size, size), mode="bilinear",
                              antialias=True, align_corners=False).clamp(0, 1)
            im = load_image(t, value_range="[0,1]", name=im.name)
        loaded.append(im)
    return loaded


# --- the naive official route --------------------------------------------------------------


class Plan:
    """What the default explanation evaluated, read back from its result."""

    def __init__(self, result, seed: int):
        from lpips_explain.analyses.pair import perturbations

        self.seed = seed
        sens, rep = result.sensitivity, result.repair
        # (transform, strength) -> distance ours reported; identity rows are B itself.
        self.variants: dict[tuple[str, float], tuple[float, float | None, float]] = {}
        rows = [(i.transform, i.strength, i.distance, i.psnr, i.ssim)
                for i in (*sens.items, *sens.geometric)]
        for sw in sens.sweeps:
            rows += [(sw.transform, float(s), float(d), float(p), float(q))
                     for s, d, p, q in zip(sw.strengths, sw.distances, sw.psnr, sw.ssim,
                                           strict=True)]
        for name, s, d, p, q in rows:
            if float(s) != perturbations.get_perturbation(name).identity:
                self.variants.setdefault((name, float(s)), (d, p, q))
        self.ig_steps = list(result.attribution.steps_tried)
        self.ig_rule = result.attribution.params["rule"]
        self.ig_map = result.attribution.per_channel  # 3 x H x W, the last rule size's
        self.patch, self.grid = rep.patch, rep.grid
        self.base = rep.base_distance
        self.single = rep.base_distance - rep.gains.ravel()  # d with patch p repaired
        self.order = rep.order
        self.curve = [(int(k), float(d)) for k, d in zip(rep.curve_steps, rep.curve_distance,
                                                         strict=True) if k > 0]


def _patch_ids(h: int, w: int, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    rows = torch.arange(h) // patch
    cols = torch.arange(w) // patch
    return rows[:, None] * grid[1] + cols[None, :]


def _sk_quality(ref: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    """PSNR and Gaussian SSIM of one image with scikit-image (the naive, per-image route)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    r = ref[0].permute(1, 2, 0).double().numpy()
    c = x[0].permute(1, 2, 0).double().numpy()
    with np.errstate(divide="ignore"):
        p = peak_signal_noise_ratio(r, c, data_range=1.0)
    s = structural_similarity(r, c, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    return float(p), float(s)


def _rule(rule: str, n: int) -> list[tuple[float, float]]:
    """(position on the path, weight) of each gradient a rule of size n evaluates."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return [(0.5 * (1 + float(x)), 0.5 * float(w)) for x, w in zip(nodes, weights,
                                                                       strict=True)]
    if rule == "nested_trapezoid":
        # n intervals; t = 0 (the reference, where the gradient is 0) is skipped, as ours
        # does: the naive route is charged n gradients per size, not n + 1.
        return [(j / n, (0.5 if j == n else 1.0) / n) for j in range(1, n + 1)]
    raise SystemExit(f"bench_explain: no naive route for the IG rule {rule!r}")


class Naive:
    """One official call per quantity; each group returns its values for the checks."""

    def __init__(self, official, spatial, a: torch.Tensor, b: torch.Tensor, plan: Plan):
        self.official, self.spatial = official, spatial
        self.a, self.b, self.plan = a, b, plan

    def _d(self, x: torch.Tensor) -> float:
        return float(self.official(self.a * 2 - 1, x * 2 - 1).flatten()[0])

    def breakdown(self) -> dict:
        with torch.no_grad():
            a, b = self.a * 2 - 1, self.b * 2 - 1
            d = float(self.official(a, b).flatten()[0])
            _, per_layer = self.official(a, b, retPerLayer=True)
            spatial = self.spatial(a, b)
        return {"distance": d, "layers": [float(v.flatten()[0]) for v in per_layer],
                "spatial": spatial}

    def integrated_gradients(self) -> np.ndarray:
        a, delta = self.a, self.b - self.a
        a2 = a * 2 - 1
        attr = None
        for n in self.plan.ig_steps:  # every rule size ours tried, each computed afresh
            acc = torch.zeros_like(a)
            for alpha, weight in _rule(self.plan.ig_rule, n):
                x = (a + alpha * delta).requires_grad_(True)
                d = self.official(a2, x * 2 - 1).sum()
                (g,) = torch.autograd.grad(d, x)
                acc += g * weight
            attr = (acc * delta)[0].double().numpy()
        return attr

    def sensitivity(self, parts: dict | None = None) -> dict:
        from lpips_explain.analyses.pair import perturbations

        out, t_build, t_lpips, t_quality = {}, 0.0, 0.0, 0.0
        with torch.no_grad():
            t0 = time.perf_counter()
            base_q = _sk_quality(self.a, self.b)
            t_quality += time.perf_counter() - t0
            for name, s in self.plan.variants:
                t0 = time.perf_counter()
                x = perturbations.apply(name, self.b, s, seed=self.plan.seed)
                t1 = time.perf_counter()
                d = self._d(x)
                t2 = time.perf_counter()
                q = _sk_quality(self.a, x)
                t3 = time.perf_counter()
                t_build, t_lpips, t_quality = t_build + t1 - t0, t_lpips + t2 - t1, t_quality + t3 - t2
                out[(name, s)] = (d, *q)
        if parts is not None:
            parts.update(build=t_build, lpips=t_lpips, quality=t_quality)
        out["B"] = base_q
        return out

    def repair_single(self) -> np.ndarray:
        p = self.plan
        h, w = self.a.shape[-2:]
        ids = _patch_ids(h, w, p.patch, p.grid)
        out = np.empty(p.grid[0] * p.grid[1])
        with torch.no_grad():
            for i in range(out.size):
                out[i] = self._d(torch.where(ids == i, self.a, self.b))
        return out

    def repair_curve(self) -> list[float]:
        p = self.plan
        h, w = self.a.shape[-2:]
        rank = torch.empty(p.order.size, dtype=torch.long)
        rank[torch.from_numpy(p.order)] = torch.arange(p.order.size)
        pix_rank = rank[_patch_ids(h, w, p.patch, p.grid)]
        with torch.no_grad():
            return [self._d(torch.where(pix_rank < k, self.a, self.b)) for k, _ in p.curve]


# --- checks ----------------------------------------------------------------------------------


def _close(what: str, got: float, want: float, atol: float = ATOL) -> None:
    if not abs(got - want) <= atol:
        raise SystemExit(f"MISMATCH {what}: official {got!r} vs ours {want!r} "
                         f"(|diff| {abs(got - want):.3g} > {atol:g})")


def _check(naive: Naive, plan: Plan, result) -> str:
    """Compare every naive quantity with ours before any timing; returns a one-line summary."""
    br = naive.breakdown()
    _close("distance", br["distance"], result.distance)
    for lay, v in zip(result.decomposition.layers, br["layers"], strict=True):
        _close(f"layer {lay.name}", v, lay.distance)
    # spatial=True upsamples bilinearly: its mean only approximates d, loosely
    _close("spatial map mean", float(br["spatial"].mean()), result.distance,
           atol=0.05 * result.distance + 1e-6)

    sens = naive.sensitivity()
    for (name, s), (d, p, q) in plan.variants.items():
        nd, np_, nq = sens[(name, s)]
        _close(f"sensitivity {name}={s:g}", nd, d)
        _close(f"SSIM {name}={s:g}", nq, q, atol=1e-5)
        if p is not None and math.isfinite(p):
            _close(f"PSNR {name}={s:g}", np_, p, atol=1e-6 * abs(p))

    single = naive.repair_single()
    for i, (nd, d) in enumerate(zip(single, plan.single, strict=True)):
        _close(f"repair patch {i}", float(nd), float(d))
    curve = naive.repair_curve()
    for (k, d), nd in zip(plan.curve, curve, strict=True):
        _close(f"repair curve k={k}", nd, d)

    ig = naive.integrated_gradients()
    scale = float(np.abs(plan.ig_map).max())
    ig_diff = float(np.abs(ig - plan.ig_map).max())
    # float32 gradients summed in a different order (and eps placed differently): loose
    if not ig_diff <= 1e-3 * scale + 1e-9:
        raise SystemExit(f"MISMATCH integrated gradients: max |diff| {ig_diff:.3g} "
                         f"vs max |attr| {scale:.3g}")
    return (f"checks passed: distance, {len(br['layers'])} layers, {len(plan.variants)} "
            f"perturbations (+PSNR/SSIM), {single.size} single-patch repairs and "
            f"{len(curve)} curve points to {ATOL:g}; IG map max |diff| {ig_diff:.2g} "
            f"(max |attr| {scale:.2g}); IG sum {ig.sum():.6g} vs d {result.distance:.6g}")


# --- timing ------------------------------------------------------------------------------------


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", default="alex")
    p.add_argument("--size", type=int, default=256, help="side of the (square) images, px")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side")
    p.add_argument("--fast-repeats", type=int, default=9,
                   help="interleaved runs for the (cheap) fast first view")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: torch's default)")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    official, spatial = _officials(args.net)
    ours = _ours_from(official, args.net)
    la, lb = _load_pair(args.size)
    a, b = la.tensor, lb.tensor

    # Reference run of ours (also a warm-up): it tells the naive route what to evaluate.
    result = ours.explain(la, lb)
    plan = Plan(result, ours.seed)
    naive = Naive(official, spatial, a, b, plan)
    # Equality first: a benchmark of a wrong answer is worthless (also warms the naive route).
    print(_check(naive, plan, result))

    groups = {
        "breakdown: distance, retPerLayer, spatial": (3, naive.breakdown),
        f"integrated gradients: {'+'.join(map(str, plan.ig_steps))} pts fwd+bwd":
            (sum(plan.ig_steps), naive.integrated_gradients),
        f"sensitivity: {len(plan.variants)} variants +PSNR/SSIM":
            (len(plan.variants), None),
        f"repair: {plan.single.size} single patches": (plan.single.size, naive.repair_single),
        f"repair: {len(plan.curve)} curve points": (len(plan.curve), naive.repair_curve),
    }
    ours_part = {"breakdown": "decompose", "integrated": "attribution",
                 "sensitivity": "sensitivity"}
    t_naive: dict[str, list[float]] = {g: [] for g in groups}
    t_sens_parts: dict[str, list[float]] = {"build": [], "lpips": [], "quality": []}
    t_ours, t_naive_total, t_ours_parts = [], [], []
    cpu_ours, cpu_naive = [], []

    def run_ours() -> None:
        c0 = time.process_time()
        dt, res = _timed(lambda: ours.explain(la, lb))
        cpu_ours.append(time.process_time() - c0)
        t_ours.append(dt)
        t_ours_parts.append(res.timings_ms)

    def run_naive() -> None:
        c0 = time.process_time()
        total = 0.0
        for g, (_, fn) in groups.items():
            if fn is None:
                parts: dict = {}
                dt, _ = _timed(lambda parts=parts: naive.sensitivity(parts))
                for k, v in parts.items():
                    t_sens_parts[k].append(v)
            else:
                dt, _ = _timed(fn)
            t_naive[g].append(dt)
            total += dt
        cpu_naive.append(time.process_time() - c0)
        t_naive_total.append(total)

    for i in range(args.repeats):  # interleave the two sides, alternating which goes first
        for run in ((run_ours, run_naive) if i % 2 == 0 else (run_naive, run_ours)):
            run()

    def med_ms(xs: list[float]) -> float:
        return 1000 * statistics.median(xs)

    def ours_ms(part: str) -> float:
        return statistics.median(t[part] for t in t_ours_parts)

    print(f"net={args.net} size={args.size}x{args.size} threads={torch.get_num_threads()} "
          f"repeats={args.repeats} (medians; ours and naive interleaved); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'quantity group (naive official route)':<46} {'calls':>6} {'naive ms':>10} "
          f"{'ours ms':>9} {'ratio':>7}")
    for g, (calls, _) in groups.items():
        key = next((v for k, v in ours_part.items() if g.startswith(k)), None)
        naive_ms = med_ms(t_naive[g])
        if key is not None:
            o = ours_ms(key)
            tail = f"{o:>9.0f} {naive_ms / o:>6.2f}x"
        else:
            tail = f"{'':>9} {'':>7}"
        print(f"{g:<46} {calls:>6} {naive_ms:>10.0f} {tail}")
        if g.startswith("sensitivity"):
            sp = {k: med_ms(v) for k, v in t_sens_parts.items()}
            print(f"{'  of which: build images / LPIPS / PSNR+SSIM':<46} {'':>6} "
                  f"{sp['build']:>4.0f}/{sp['lpips']:.0f}/{sp['quality']:.0f}")
    rep_naive = statistics.median(
        sum(t_naive[g][i] for g in groups if g.startswith("repair")) for i in range(args.repeats))
    print(f"{'repair: both parts':<46} {'':>6} {1000 * rep_naive:>10.0f} "
          f"{ours_ms('repair'):>9.0f} {1000 * rep_naive / ours_ms('repair'):>6.2f}x")
    print(f"{'(ours only) load + summary + overhead':<46} {'':>6} {'':>10} "
          f"{med_ms(t_ours) - sum(ours_ms(k) for k in ('decompose', 'attribution', 'sensitivity', 'repair')):>9.0f}")
    n_calls = sum(c for c, _ in groups.values())
    mo, mn = med_ms(t_ours), med_ms(t_naive_total)
    ratio = mn / mo
    print(f"{'total':<46} {n_calls:>6} {mn:>10.0f} {mo:>9.0f} {ratio:>6.2f}x")
    print(f"default explanation: ours {mo:.0f} ms, naive official {mn:.0f} ms "
          f"({n_calls} calls), ratio {ratio:.2f}x (target >= 3x: "
          f"{'met' if ratio >= 3 else 'MISSED'})")
    cr = statistics.median(cpu_naive) / statistics.median(cpu_ours)
    print(f"  (process CPU time, less sensitive to other jobs: ours "
          f"{med_ms(cpu_ours):.0f} ms, naive {med_ms(cpu_naive):.0f} ms, ratio {cr:.2f}x)")

    # The fast first view vs one official distance call.
    a2, b2 = a * 2 - 1, b * 2 - 1

    def one_call():
        with torch.no_grad():
            official(a * 2 - 1, b * 2 - 1)

    def fast():
        return ours.explain(la, lb, attribution=None, sensitivity=False, repair=False)

    fr = fast()
    with torch.no_grad():
        _close("fast view distance", float(official(a2, b2).flatten()[0]), fr.distance)
    one_call()
    t_fast, t_one = [], []
    for _ in range(args.fast_repeats):
        t_fast.append(_timed(fast)[0])
        t_one.append(_timed(one_call)[0])
    fo, ft = med_ms(t_fast), med_ms(t_one)
    print(f"fast first view: ours {fo:.0f} ms, 1 official distance call {ft:.0f} ms, "
          f"ratio {ft / fo:.2f}x over {args.fast_repeats} runs (target >= 1x: "
          f"{'met' if ft >= fo else 'MISSED'})")


if __name__ == "__main__":
    main()

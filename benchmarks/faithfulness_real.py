"""Faithfulness of every attribution method and repair order on the published trunks.

Until issue 16 every explanation method had only been measured on a random trunk. This
script runs the faithfulness checks of ``Explainer.faithfulness`` (analyses/checks/faithfulness.py)
with the real AlexNet and VGG16 trunks (v0.1 heads) for every method of the attribution
registry, on the bundled sample pairs (assets/samples.json) and on distortions generated
from the bundled originals with lpips_explain.analyses.pair.perturbations (blur, JPEG, noise,
shift, colour), all at ``--size`` px:

* deletion: each map's patches of B replaced by A's in the map's order, AUC of d / d(A, B)
  against the repaired area (lower is better), against 8 seeded random orders; "beats
  random" counts the pairs where the map's AUC is below every random order's;
* randomisation: Spearman of |map| with |map| once the lin heads and every trunk layer are
  random (the last stage of the cascade, ``faithfulness.randomised_copies``; the stages in
  between are skipped here to save time: the table reports the last one);
* |B - A|: Spearman of |map| with the plain pixel difference;
* the per-pair check an explanation carries (``attribution.deletion``: about 16 patches
  against 8 random orders) and how often its verdict agrees with the full check's;
* repair orders: ``single_gain`` and ``greedy`` (patch-level, as ``explain`` runs them) and
  ``ranking`` by each map: deletion AUC, area that halves the distance, trunk passes.

Then integrated gradients' stopping rule on the real weights: completeness gap, map change
between sizes and map error against a 256-point (vgg: 128-point) map at 8, 16, 32, ...
points of the nested trapezoid, and where the adaptive rule (gap <= 1% AND change <= 2%)
stops compared with a gap-only rule.

Every pair is timed and printed as it finishes; a phase that would run past its share of
``--budget`` seconds stops early and says so. The tables go to stdout, to ``--json`` and
between the markers of ``--doc`` (the rest of that file is left as it is).

    python benchmarks/faithfulness_real.py [--nets alex vgg] [--size 128] [--budget 900]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lpips_explain import Explainer
from lpips_explain.analyses.attribution import (
    IG_MAP_TOLERANCE,
    IG_TARGET_GAP,
    METHODS,
    NestedTrapezoid,
    attribute,
)
from lpips_explain.analyses.attribution.integrated import captum_gradient
from lpips_explain.analyses.checks import faithfulness as fa
from lpips_explain.analyses.pair import perturbations as pt
from lpips_explain.analyses.pair.repair import curve_auc, order_curves, patch_sums, ranked, repair
from lpips_explain.core.model import ReferenceScorer

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
BEGIN, END = "<!-- faithfulness_real:begin -->", "<!-- faithfulness_real:end -->"
# Generated distortions of the bundled originals: (kind, [(perturbation, strength), ...]).
DISTORTIONS: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = (
    ("blur", (("gaussian_blur", 1.5),)),
    ("jpeg", (("jpeg", 20.0),)),
    ("noise", (("gaussian_noise", 0.05),)),
    ("shift", (("translation", 3.0),)),
    ("colour", (("hue", 0.05), ("saturation", 1.5))),
)
ORIGINALS = ("astronaut", "coffee", "chelsea", "rocket")


# --------------------------------------------------------------------------- pairs


def _load(ex: Explainer, path: Path, size: int) -> torch.Tensor:
    t = ex.prepare(path, path).tensors[0]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def pairs(ex: Explainer, size: int, seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """The bundled sample pairs, then generated ones, interleaved so that any prefix of the
    generated ones covers every distortion kind on different originals."""
    manifest = json.loads((ASSETS / "samples.json").read_text())
    out = [(f"{p['id']} (bundled)", _load(ex, ASSETS / p["a"], size),
            _load(ex, ASSETS / p["b"], size)) for p in manifest["pairs"]]
    originals = {o: _load(ex, ASSETS / "originals" / f"{o}.png", size) for o in ORIGINALS}
    for j in range(len(ORIGINALS)):
        for k, (kind, steps) in enumerate(DISTORTIONS):
            name = ORIGINALS[(j + k) % len(ORIGINALS)]
            a = originals[name]
            b = a
            for pert, strength in steps:
                b = pt.apply(pert, b, strength, seed=seed)
            what = " + ".join(f"{p} {s:g}" for p, s in steps)
            out.append((f"{name} {kind} ({what})", a, b))
    return out


# --------------------------------------------------------------------------- one pair


def measure_pair(ex: Explainer, a: torch.Tensor, b: torch.Tensor, *, patch: int, seed: int,
                 randomise: bool, verify: bool) -> dict[str, Any]:
    """Every number of the tables for one pair."""
    methods = list(METHODS)
    t0 = time.perf_counter()
    f = ex.faithfulness(a, b, methods=methods, patch=patch, seed=seed, randomisation=False,
                        value_range="[0,1]")
    t_faith = time.perf_counter() - t0
    net = ex.model
    ref, cand = f.inputs.tensors[0], f.inputs.tensors[1]
    h, w = (int(s) for s in ref.shape[-2:])
    n = f.grid[0] * f.grid[1]
    base = f.base_distance

    def half_area(area: np.ndarray, dist: np.ndarray) -> float | None:
        hit = np.flatnonzero(np.asarray(dist) <= base / 2)
        return float(area[hit[0]]) if hit.size else None

    rows: dict[str, dict[str, Any]] = {}
    for c in f.deletion:
        rows[c.method] = {
            "auc": c.auc, "relative": c.auc / f.random_order.auc,
            "beats_random": not f.no_better_than_random(c.method),
            "pixel": next(p.spearman for p in f.pixel_difference if p.method == c.method),
            "half_area": half_area(c.area, c.distance)}

    # The last stage of the cascade only: lin heads and every trunk block random.
    t1 = time.perf_counter()
    if randomise:
        *_, (_, twin) = fa.randomised_copies(net, seed)()  # the last stage: all random
        for m in methods:
            after = attribute(twin, ref, cand, m, seed=seed).signed
            rows[m]["random_spearman"] = fa.spearman(np.abs(f.maps[m]), np.abs(after))
    t_rand = time.perf_counter() - t1

    # The baseline a map must also beat: patches ranked by plain |B - A| (no network).
    scorer = ReferenceScorer(net, ref)
    diff = (cand - ref).abs().sum(dim=1)[0].double().numpy()
    _, [(d_area, d_dist)] = order_curves(net, ref, cand, [ranked(patch_sums(diff, (h, w), patch))],
                                         patch=patch, scorer=scorer)
    d_auc = curve_auc(d_area, d_dist, base)
    pixel_baseline = {"auc": d_auc, "relative": d_auc / f.random_order.auc,
                      "beats_random": bool(base > 0 and d_auc < f.random_order.aucs.min()),
                      "half_area": half_area(d_area, d_dist)}

    # The per-pair check of an explanation: one call of deletion_check per method would
    # score the same seeded random orders each time; scored once here, with the same orders.
    # On the deletion grid itself the check is the full check (same seeded orders).
    t2 = time.perf_counter()
    cpatch = fa.check_patch_size((h, w))
    cgrid = (math.ceil(h / cpatch), math.ceil(w / cpatch))
    if cpatch == patch:
        for m in methods:
            rows[m]["check_auc"] = rows[m]["auc"]
            rows[m]["check_beats_random"] = rows[m]["beats_random"]
        rand_aucs = f.random_order.aucs
        caucs = np.array([rows[methods[0]]["auc"]])
    else:
        rng = np.random.default_rng(seed)
        perms = [rng.permutation(cgrid[0] * cgrid[1]) for _ in range(fa.CHECK_RANDOM_ORDERS)]
        map_orders = [ranked(patch_sums(f.maps[m], (h, w), cpatch)) for m in methods]
        cbase, curves = order_curves(net, ref, cand, [*map_orders, *perms], patch=cpatch,
                                     scorer=scorer)
        caucs = np.array([curve_auc(x, y, cbase) for x, y in curves])
        rand_aucs = caucs[len(methods):]
        for m, auc in zip(methods, caucs[: len(methods)], strict=True):
            rows[m]["check_auc"] = float(auc)
            rows[m]["check_beats_random"] = bool(cbase > 0 and auc < rand_aucs.min())
    t_shared = time.perf_counter() - t2
    check: dict[str, Any] = {"patch": cpatch, "grid": list(cgrid), "same_grid": cpatch == patch,
                             "random_auc": float(rand_aucs.mean()), "shared_seconds": t_shared}
    if verify:
        # One check as an explanation runs it (its cost); it must agree with the shared one.
        first = fa.deletion_check(net, ref, cand, f.maps[methods[0]], seed=seed, scorer=scorer)
        if abs(first.auc - caucs[0]) > 1e-9 or not np.allclose(first.random_aucs, rand_aucs):
            raise RuntimeError("the shared per-pair check disagrees with deletion_check")
        check.update(seconds=first.seconds, evaluations=first.evaluations)

    # Repair orders as explain runs them (patch-level greedy, default budget).
    t3 = time.perf_counter()
    rep = repair(net, ref, cand, patch=patch, orders=("single_gain", "greedy"), scorer=scorer)
    t_rep = time.perf_counter() - t3
    orders = {o.name: {"auc": o.auc, "half_area": o.goal_area, "evaluations": o.evaluations}
              for o in rep.orders_tried}
    return {"distance": base, "grid": list(f.grid), "patches": n, "methods": rows,
            "random_auc": f.random_order.auc, "random_spread": f.random_order.spread,
            "random_min": float(f.random_order.aucs.min()),
            "best_order": {"name": f.best_order.method, "auc": f.best_order.auc},
            "check": check, "pixel_baseline": pixel_baseline,
            "orders": orders,
            "seconds": {"faithfulness": t_faith, "randomisation": t_rand, "repair": t_rep,
                        "total": time.perf_counter() - t0}}


# --------------------------------------------------------------------------- repairs


def repair_at_size(ex: Explainer, a: torch.Tensor, b: torch.Tensor, patch: int,
                   seed: int) -> dict[str, Any]:
    """The repair orders as ``explain`` runs them at the app's size: area that halves d,
    trunk passes and seconds; ranking by the default attribution map and by |B - A|."""
    net = ex.model
    h, w = (int(s) for s in a.shape[-2:])
    scorer = ReferenceScorer(net, a)
    t0 = time.perf_counter()
    single = repair(net, a, b, patch=patch, orders=("single_gain",), scorer=scorer)
    t_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    both = repair(net, a, b, patch=patch, orders=("single_gain", "greedy"), scorer=scorer)
    t_both = time.perf_counter() - t0
    ig = attribute(net, a, b, "integrated_gradients", seed=seed).signed
    diff = (b - a).abs().sum(dim=1)[0].double().numpy()
    base, curves = order_curves(net, a, b, [ranked(patch_sums(m, (h, w), patch))
                                            for m in (ig, diff)], patch=patch, scorer=scorer)

    def half(area: np.ndarray, dist: np.ndarray) -> float | None:
        hit = np.flatnonzero(np.asarray(dist) <= base / 2)
        return float(area[hit[0]]) if hit.size else None

    out = {o.name: {"half_area": o.goal_area, "auc": o.auc, "evaluations": o.evaluations}
           for o in both.orders_tried}
    for name, (area, dist) in zip(("ranking: integrated_gradients", "ranking: |B - A|"),
                                  curves, strict=True):
        out[name] = {"half_area": half(area, dist), "auc": curve_auc(area, dist, base),
                     "evaluations": len(area) - 1}
    return {"distance": base, "size": [h, w], "patch": patch, "orders": out,
            "seconds_single_gain": t_single, "seconds_with_greedy": t_both,
            "shown_single": single.half_area}


# --------------------------------------------------------------------------- IG's rule


def ig_rule(ex: Explainer, a: torch.Tensor, b: torch.Tensor, max_steps: int) -> dict[str, Any]:
    """Gap, change and error against the ``max_steps`` map at 8, 16, ... points (nested
    trapezoid, every gradient reused), and where the stopping rules stop."""
    net = ex.model
    scorer = ReferenceScorer(net, a)
    with torch.no_grad():
        d = float(scorer(b)[0]) - float(scorer(a)[0])
    rule = NestedTrapezoid(b, a, 8)
    grad = captum_gradient(scorer)
    sizes, maps = [], []
    n = 8
    while n <= max_steps:
        maps.append(rule.attribute(n, grad)[0].clone())
        sizes.append(n)
        n *= 2
    ref_map = maps[-1]
    rows = []
    for i, (n, m) in enumerate(zip(sizes, maps, strict=True)):
        change = (None if i == 0 else
                  float((m - maps[i - 1]).abs().sum() / m.abs().sum()))
        rows.append({"steps": n, "gap": abs(float(m.sum()) - d) / d, "change": change,
                     "error": float((m - ref_map).abs().sum() / ref_map.abs().sum())})
    # The rules, on the sizes below the reference (the reference itself cannot be judged).
    judged = rows[:-1]
    both = next((r for r in judged if r["gap"] <= IG_TARGET_GAP and r["change"] is not None
                 and r["change"] <= IG_MAP_TOLERANCE), None)
    gap_only = next((r for r in judged if r["gap"] <= IG_TARGET_GAP), None)
    adaptive = attribute(net, a, b, "integrated_gradients")
    return {"distance": d, "rows": rows, "reference_steps": max_steps,
            "stop_both": both, "stop_gap_only": gap_only,
            "adaptive_steps": adaptive.params["steps"],
            "adaptive_gap": adaptive.relative_gap,
            "adaptive_error": float(np.abs(adaptive.per_channel - ref_map.numpy()).sum()
                                    / ref_map.abs().sum())}


# --------------------------------------------------------------------------- tables


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(vals)) if vals else None


def _md(text: str) -> str:
    """Text for a markdown table cell (a bare | would end the cell)."""
    return text.replace("|", "\\|")


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def method_table(results: list[dict[str, Any]]) -> list[str]:
    n = len(results)
    nr = sum("random_spearman" in next(iter(r["methods"].values())) for r in results)
    lines = [f"| method | deletion AUC (mean) | beats every random order | AUC / random mean | "
             f"Spearman, all random ({nr} pairs) | Spearman with \\|B - A\\| | per-pair check "
             f"beats random | check agrees with full | area to halve d (mean) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, spec in METHODS.items():
        rows = [r["methods"][m] for r in results]
        halves = [x["half_area"] for x in rows]
        agree = sum(x["check_beats_random"] == x["beats_random"] for x in rows)
        lines.append(
            f"| {spec.label} (`{m}`) | {_f(_mean([x['auc'] for x in rows]))} | "
            f"{sum(x['beats_random'] for x in rows)}/{n} | "
            f"{_f(_mean([x['relative'] for x in rows]), '.2f')} | "
            f"{_f(_mean([x.get('random_spearman') for x in rows]), '.2f')} | "
            f"{_f(_mean([x['pixel'] for x in rows]), '.2f')} | "
            f"{sum(x['check_beats_random'] for x in rows)}/{n} | {agree}/{n} | "
            f"{_f(_mean(halves), '.1%')} ({sum(h is not None for h in halves)}/{n} reach it) |")
    rows = [r["pixel_baseline"] for r in results]
    halves = [x["half_area"] for x in rows]
    lines.append(f"| baseline, not a method: patches ranked by \\|B - A\\| | "
                 f"{_f(_mean([x['auc'] for x in rows]))} | "
                 f"{sum(x['beats_random'] for x in rows)}/{n} | "
                 f"{_f(_mean([x['relative'] for x in rows]), '.2f')} | | 1.00 (itself) | | | "
                 f"{_f(_mean(halves), '.1%')} ({sum(h is not None for h in halves)}/{n} "
                 f"reach it) |")
    rand = _mean([r["random_auc"] for r in results])
    spread = _mean([r["random_spread"] for r in results])
    lines.append(f"| 8 random orders | {_f(rand)} (spread {_f(spread)}) | | 1.00 | | | | | |")
    return lines


def wins_table(results: list[dict[str, Any]]) -> list[str]:
    """Pairs where each method's deletion AUC is below the |B - A| ranking's."""
    n = len(results)
    cells = []
    for m in METHODS:
        wins = sum(r["methods"][m]["auc"] < r["pixel_baseline"]["auc"] for r in results)
        cells.append(f"`{m}` {wins}/{n}")
    return ["Pairs where the map's deletion AUC is below the \\|B - A\\| ranking's: "
            + ", ".join(cells) + "."]


def order_table(results: list[dict[str, Any]]) -> list[str]:
    n = len(results)
    names = ["single_gain", "greedy", *(f"ranking: {m}" for m in METHODS), "ranking: |B - A|"]

    def row_of(r: dict[str, Any], name: str) -> dict[str, Any]:
        if name == "ranking: |B - A|":
            x = r["pixel_baseline"]
            return {"auc": x["auc"], "half_area": x["half_area"], "evaluations": None}
        if name.startswith("ranking: "):
            x = r["methods"][name.split(": ", 1)[1]]
            return {"auc": x["auc"], "half_area": x["half_area"], "evaluations": None}
        return r["orders"][name]

    lines = ["| order | deletion AUC (mean) | AUC / random mean | area to halve d (mean) | "
             "smallest area to halve (pairs, ties count) | trunk passes (mean) |",
             "|---|---|---|---|---|---|"]
    for name in names:
        rows = [row_of(r, name) for r in results]
        best = 0
        for r in results:
            areas = [row_of(r, o)["half_area"] for o in names]
            reached = [x for x in areas if x is not None]
            mine = row_of(r, name)["half_area"]
            best += bool(reached) and mine is not None and mine <= min(reached) + 1e-12
        rel = _mean([x["auc"] / r["random_auc"] for x, r in zip(rows, results, strict=True)])
        lines.append(
            f"| `{_md(name)}` | {_f(_mean([x['auc'] for x in rows]))} | {_f(rel, '.2f')} | "
            f"{_f(_mean([x['half_area'] for x in rows]), '.1%')} | {best}/{n} | "
            f"{_f(_mean([x['evaluations'] for x in rows]), '.0f')} |")
    return lines


def pair_table(results: list[dict[str, Any]], names: list[str]) -> list[str]:
    ms = list(METHODS)
    lines = ["| pair | d | random AUC (min) | " + " | ".join(f"`{m}`" for m in ms) + " |",
             "|---|---|---|" + "---|" * len(ms)]
    for name, r in zip(names, results, strict=True):
        cells = [f"{r['methods'][m]['auc']:.3f}{'' if r['methods'][m]['beats_random'] else ' ✗'}"
                 for m in ms]
        lines.append(f"| {name} | {r['distance']:.4f} | {r['random_auc']:.3f} "
                     f"({r['random_min']:.3f}) | " + " | ".join(cells) + " |")
    return lines


def repair_size_table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    names = ["single_gain", "greedy", "ranking: integrated_gradients", "ranking: |B - A|"]
    lines = ["| pair | d | " + " | ".join(f"`{_md(n)}`: area to halve (passes)" for n in names)
             + " | seconds: single_gain / single_gain + greedy |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for name, r in rows:
        cells = [f"{_f(r['orders'][n]['half_area'], '.1%')} ({r['orders'][n]['evaluations']})"
                 for n in names]
        lines.append(f"| {name} | {r['distance']:.4f} | " + " | ".join(cells)
                     + f" | {r['seconds_single_gain']:.1f} / {r['seconds_with_greedy']:.1f} |")
    means = [_mean([r["orders"][n]["half_area"] for _, r in rows]) for n in names]
    lines.append("| mean | | " + " | ".join(_f(m, ".1%") for m in means) + " | "
                 f"{_f(_mean([r['seconds_single_gain'] for _, r in rows]), '.1f')} / "
                 f"{_f(_mean([r['seconds_with_greedy'] for _, r in rows]), '.1f')} |")
    return lines


def ig_table(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    lines = ["| net | pair | d | gap / change / error vs reference, by points | stops at "
             "(gap AND change) | error there | gap only stops at | error there | "
             "`attribute` default: points, error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for net, name, r in rows:
        cells = "; ".join(f"{x['steps']}: {x['gap']:.2%} / "
                          f"{'-' if x['change'] is None else format(x['change'], '.1%')} / "
                          f"{x['error']:.1%}" for x in r["rows"][:-1])
        both, gap = r["stop_both"], r["stop_gap_only"]
        lines.append(
            f"| {net} | {name} | {r['distance']:.4f} | {cells} (reference: "
            f"{r['reference_steps']}) | {both['steps'] if both else 'not reached'} | "
            f"{format(both['error'], '.1%') if both else '-'} | "
            f"{gap['steps'] if gap else 'not reached'} | "
            f"{format(gap['error'], '.1%') if gap else '-'} | {r['adaptive_steps']}, "
            f"{r['adaptive_error']:.1%} |")
    return lines


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def _load_avg() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------- main


def run_phase(label: str, items: list[Any], work: Callable[[Any], Any], deadline: float,
              start: float) -> tuple[list[Any], int]:
    """``work`` on each item until the next one would likely end past ``deadline``."""
    done: list[Any] = []
    took: list[float] = []
    for i, item in enumerate(items):
        now = time.perf_counter()
        if took and now + float(np.mean(took)) > deadline:
            print(f"[{now - start:7.1f} s] {label}: stopping after {i} of {len(items)} "
                  f"(budget)", flush=True)
            return done, len(items) - i
        t = time.perf_counter()
        done.append(work(item))
        took.append(time.perf_counter() - t)
        print(f"[{time.perf_counter() - start:7.1f} s] {label}: {i + 1}/{len(items)} "
              f"{item[0]} ({took[-1]:.1f} s)", flush=True)
    return done, 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["alex", "vgg"], choices=["alex", "vgg"])
    ap.add_argument("--size", type=int, default=128, help="images resized to size x size")
    ap.add_argument("--patch", type=int, nargs="+", default=[16, 32], metavar="PX",
                    help="deletion patch per net, in --nets order (default: alex 16 px = "
                         "the 8x8 grid of the app's 32 px patches at 256 px; vgg 32 px)")
    ap.add_argument("--pairs", type=int, nargs="+", default=[10, 2], metavar="N",
                    help="pairs per net, in --nets order (bundled first, then generated)")
    ap.add_argument("--randomise", type=int, nargs="+", default=[10, 1], metavar="N",
                    help="pairs per net (the first N) that get the randomisation check")
    ap.add_argument("--repair-pairs", nargs="+", metavar="ID",
                    default=["astronaut_jpeg", "rocket_shift", "coffee_colour"],
                    help="bundled pairs whose repair orders are measured at the app's size "
                         "(stored 256 px, 32 px patches) with the first net (default: one "
                         "local distortion, the shift and the colour change)")
    ap.add_argument("--ig-pairs", type=int, nargs="+", default=[2, 1], metavar="N")
    ap.add_argument("--ig-size", type=int, nargs="+", default=[256, 128], metavar="PX",
                    help="image size per net for IG's rule check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: 1 when the load average is at least the "
                         "number of CPUs, where competing OpenMP threads made a 128 px alex "
                         "batch 3x slower than one thread; else torch's default)")
    ap.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                    "faithfulness_real.json")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "faithfulness.md")
    args = ap.parse_args()

    def per_net(values: list[int], i: int) -> int:
        return values[min(i, len(values) - 1)]

    threads = args.threads
    if threads is None and os.getloadavg()[0] >= (os.cpu_count() or 1):
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)

    start = time.perf_counter()
    command = "python " + " ".join(shlex.quote(x) for x in [
        os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    load_start = _load_avg()
    out: dict[str, Any] = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                           "machine": machine(), "command": command, "size": args.size,
                           "seed": args.seed, "nets": {}, "ig": []}
    # Shares of the budget: the faithfulness phases, the repairs at the app's size, then
    # the check's cost (one explanation) and IG's rule (the rest).
    shares = {"alex": 0.40, "vgg": 0.25} if len(args.nets) == 2 else {args.nets[0]: 0.65}
    deadline = start
    for i, net in enumerate(args.nets):
        ex = Explainer(net, "0.1")
        if not ex.perceptual:
            raise SystemExit(f"{net}: not the published trunk ({ex.weights_info.reason}); run "
                             f"`lpips-explain weights install` first.")
        patch = per_net(args.patch, i)
        todo = pairs(ex, args.size, args.seed)[: per_net(args.pairs, i)]
        n_rand = per_net(args.randomise, i)
        deadline += shares[net] * args.budget
        indexed = [(name, a, b, k < n_rand, k == 0 and i == 0)
                   for k, (name, a, b) in enumerate(todo)]
        results, skipped = run_phase(f"{net} faithfulness", indexed, lambda it, ex=ex, p=patch:
                                     measure_pair(ex, it[1], it[2], patch=p, seed=args.seed,
                                                  randomise=it[3], verify=it[4]),
                                     deadline, start)
        out["nets"][net] = {"patch": patch, "pairs": [it[0] for it in indexed[: len(results)]],
                            "skipped": skipped, "results": results,
                            "trunk": ex.weights_info.source}
    # The repair orders at the app's size (first net, bundled pairs as stored).
    manifest = json.loads((ASSETS / "samples.json").read_text())
    ex = Explainer(args.nets[0], "0.1")
    deadline += 0.12 * args.budget
    by_id = {p["id"]: p for p in manifest["pairs"]}
    rep_items = [(i, *ex.prepare(ASSETS / by_id[i]["a"], ASSETS / by_id[i]["b"]).tensors)
                 for i in args.repair_pairs]
    reps, rep_skipped = run_phase("repairs at the app's size", rep_items, lambda it: repair_at_size(
        ex, it[1], it[2], 32, args.seed), deadline, start)
    out["repairs"] = {"net": args.nets[0], "skipped": rep_skipped,
                      "pairs": [(it[0], r) for it, r in zip(rep_items, reps, strict=False)]}
    # What the per-pair check adds to an explanation at the app's size (the default pair).
    pair = next(p for p in manifest["pairs"] if p["id"] == manifest["default_pair"])
    ex = Explainer(args.nets[0], "0.1")
    expl = ex.explain(ASSETS / pair["a"], ASSETS / pair["b"], sensitivity=False, repair=False)
    check = expl.attribution.deletion
    out["cost"] = {"net": args.nets[0], "pair": pair["id"], "size": list(expl.inputs.size),
                   "method": expl.attribution.method,
                   "attribution_ms": expl.timings_ms["attribution"],
                   "check_ms": expl.timings_ms["attribution_check"],
                   "evaluations": check.evaluations, "grid": list(check.grid),
                   "better_than_random": check.better_than_random}
    print(f"[{time.perf_counter() - start:7.1f} s] cost of the per-pair check: {out['cost']}",
          flush=True)
    deadline = start + args.budget
    ig_items = []
    for i, net in enumerate(args.nets):
        ex = Explainer(net, "0.1")
        manifest = json.loads((ASSETS / "samples.json").read_text())["pairs"]
        size = per_net(args.ig_size, i)
        for p in manifest[: per_net(args.ig_pairs, i)]:
            ig_items.append((f"{net} {p['id']}", net, ex, _load(ex, ASSETS / p["a"], size),
                             _load(ex, ASSETS / p["b"], size)))
    ig, ig_skipped = run_phase("IG rule", ig_items, lambda it: ig_rule(
        it[2], it[3], it[4], 256 if it[1] == "alex" else 128), deadline, start)
    out["ig"] = [{"net": it[1], "pair": it[0].split(" ", 1)[1], "size": int(it[3].shape[-1]), **r}
                 for it, r in zip(ig_items, ig, strict=False)]
    out["ig_skipped"] = ig_skipped
    out["seconds"] = time.perf_counter() - start
    out["load_average"] = {"start": load_start, "end": _load_avg()}

    lines = [f"Measured {out['date']} on {out['machine']}; load average (1, 5, 15 min) "
             f"{load_start} at the start and {out['load_average']['end']} at the end (a "
             f"shared machine); {out['seconds'] / 60:.1f} min in all.", "",
             f"Command: `{command}`", ""]
    for net, block in out["nets"].items():
        res = block["results"]
        if not res:
            continue
        g = res[0]["grid"]
        cg = res[0]["check"]["grid"]
        lines += [f"### {net} (v0.1), {len(res)} pairs at {args.size} px", "",
                  f"Trunk: {block['trunk']}. Deletion on a {g[0]}x{g[1]} grid of "
                  f"{block['patch']} px patches, 8 seeded random orders (seed {args.seed}); "
                  f"the per-pair check on a {cg[0]}x{cg[1]} grid of "
                  f"{res[0]['check']['patch']} px patches."
                  + (f" {block['skipped']} further pairs skipped for the time budget."
                     if block["skipped"] else ""), "",
                  "**Attribution methods**", "", *method_table(res), "", *wins_table(res), "",
                  "**Repair orders**", "", *order_table(res), "",
                  f"<details><summary>{net}: deletion AUC per pair (✗: not below every random "
                  f"order)</summary>", "", *pair_table(res, block["pairs"]), "", "</details>", ""]
    if out["repairs"]["pairs"]:
        r0 = out["repairs"]["pairs"][0][1]
        lines += [f"### Repair orders at the app's size ({out['repairs']['net']}, "
                  f"{r0['size'][1]}x{r0['size'][0]} px, {r0['patch']} px patches)", "",
                  "As `explain` runs them: `greedy` re-scores every remaining patch after each "
                  "pick until half the distance is reached; rankings by the default "
                  "attribution map and by \\|B - A\\| cost only their curve. Passes are "
                  "trunk passes (single-patch and greedy candidates on the patches' windows "
                  "where that is cheaper)." + (f" {out['repairs']['skipped']} pairs skipped "
                                               f"for the time budget."
                                               if out["repairs"]["skipped"] else ""), "",
                  *repair_size_table(out["repairs"]["pairs"]), ""]
    c = out["cost"]
    lines += ["### What the per-pair check costs", "",
              f"`Explainer.explain` on the default pair ({c['pair']}, {c['size'][1]}x"
              f"{c['size'][0]} px, {c['net']}, `{c['method']}`, no sensitivity or repair): "
              f"attribution {c['attribution_ms'] / 1000:.1f} s, the check "
              f"{c['check_ms'] / 1000:.1f} s ({c['evaluations']} trunk passes on a "
              f"{c['grid'][0]}x{c['grid'][1]} grid; better than random: "
              f"{c['better_than_random']}).", ""]
    if out["ig"]:
        sizes = ", ".join(f"{n} {per_net(args.ig_size, i)} px" for i, n in enumerate(args.nets))
        lines += [f"### Integrated gradients: the stopping rule on the real trunks ({sizes})",
                  "",
                  "Gap: |sum - d| / d. Change: relative L1 change of the per-channel map from "
                  "the previous size. Error: relative L1 distance from the reference map "
                  "(256 points for alex, 128 for vgg; nested trapezoid, every gradient reused). "
                  f"The rule stops at the first size with gap <= {IG_TARGET_GAP:.0%} and change "
                  f"<= {IG_MAP_TOLERANCE:.0%}." + (f" {ig_skipped} pairs skipped for the time "
                                                    f"budget." if ig_skipped else ""), "",
                  *ig_table([(r["net"], r["pair"], r) for r in out["ig"]]), ""]
    text = "\n".join(lines)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, default=float))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    old = (args.doc.read_text() if args.doc.exists() else
           f"# Faithfulness on the real trunks\n\n{BEGIN}\n{END}\n")
    if BEGIN not in old or END not in old:
        old = old.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    args.doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"wrote {args.json} and {args.doc}")


if __name__ == "__main__":
    main()

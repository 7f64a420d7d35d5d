"""Calibration on a hidden teacher: the default recipe ("auto", chosen from the data) against
the official one, on judged triplets whose true answer is known.

    .venv/bin/python benchmarks/bench_calibration.py                   # 600 + 400 triplets
    .venv/bin/python benchmarks/bench_calibration.py --teachers 3 --splits 3 --json out.json

The set: 64 px crops of the bundled photographs (assets/originals, each downscaled to a
random size between 128 and 256 px first), each with two candidates made by two different
registered perturbations (lpips_explain/analyses/pair/perturbations.py). Strengths are matched:
for every perturbation the median distance the official heads give at eight strengths is
measured on a few crops, and both candidates of a triplet take the strength nearest a
common target distance (log-uniform in 0.03-0.3), so the official heads find them about
equally far and the heads' weighting decides. The images are written as PNG (8 bits) into
an in-memory zip and the trunk runs once over all of them (``Explainer.judgment_features``).

The teacher: the real alex trunk (v0.1) with the official heads, every layer and every
channel scaled by a seeded log-normal factor (sigma 1 each). Its judges: with the teacher's
distances t0 and t1, each of 5 judges picks p1 with probability sigmoid((t0 - t1) / tau),
tau half the median |t0 - t1|; ``judge`` is the share of the 5 (as in BAPPS). The first 600
triplets are what a user would calibrate on (``val_fraction`` 0.2: 480 trained, 120 held
out, the split fixed by the split seed); the other 400 are never seen by any recipe and give
the honest numbers: agreement with the teacher's own verdict (d0 < d1 the same way round)
and 2AFC against the noisy judgments, before (the official heads) and after.

Rows: ``official`` (--recipe official), ``auto`` (the default), and ``flags`` (the official
recipe with the flags the issue tried by hand: --lr 1e-3 --epochs 30 --decay-epochs 10
--patience 0). Needs the published alex trunk (``lpips-explain weights install``); the
trunk pass takes most of the time (about a minute on a busy 2-core CPU).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lpips_explain import Explainer  # noqa: E402
from lpips_explain.analyses.calibration import JudgmentFeatures, two_afc  # noqa: E402
from lpips_explain.analyses.pair.perturbations import get_perturbation  # noqa: E402
from lpips_explain.core.weights import load_lin_heads  # noqa: E402
from lpips_explain.intake.judgments import read_judgments_archive  # noqa: E402

SIZE = 64
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# Eight strengths per perturbation, weakest first.
LEVELS: dict[str, np.ndarray] = {
    "gaussian_blur": np.geomspace(0.3, 2.5, 8), "gaussian_noise": np.geomspace(0.005, 0.15, 8),
    "jpeg": np.array([90, 75, 60, 45, 30, 20, 12, 6.0]), "contrast": np.geomspace(0.95, 0.35, 8),
    "saturation": np.linspace(0.85, 0.0, 8), "hue": np.geomspace(0.01, 0.2, 8),
    "brightness": np.linspace(1.04, 1.5, 8), "gamma": np.geomspace(1.05, 2.0, 8),
    "translation": np.geomspace(0.3, 4, 8), "rotation": np.geomspace(0.5, 10, 8),
    "scale": np.geomspace(1.01, 1.25, 8),
}
TARGET = (0.03, 0.3)  # the common target distance of a triplet's candidates, log-uniform
CURVE_CROPS = 8
TEACHER_SIGMA = (1.0, 1.0)  # log-normal spread of the teacher's layer and channel factors
JUDGES = 5
TAU = 0.5  # the judges' temperature, as a share of the median |t0 - t1|
FLAGS = {"recipe": "official", "lr": 1e-3, "epochs": 30, "decay_epochs": 10, "patience": 0}
RECIPES = {"official": {"recipe": "official"}, "auto": {"recipe": "auto"}, "flags": FLAGS}


def _crops(n: int, rng: np.random.Generator) -> torch.Tensor:
    photos = [Image.open(REPO / "assets" / "originals" / f"{p}.png").convert("RGB")
              for p in PHOTOS]
    out = []
    for i in range(n):
        side = int(rng.integers(2 * SIZE, 257))
        im = photos[i % len(photos)].resize((side, side), Image.Resampling.LANCZOS)
        x, y = (int(v) for v in rng.integers(0, side - SIZE + 1, size=2))
        arr = np.array(im.crop((x, y, x + SIZE, y + SIZE)))
        out.append(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255)
    return torch.cat(out)


def _q(t: torch.Tensor) -> torch.Tensor:
    """What an 8-bit PNG will hold."""
    return (t.clamp(0, 1) * 255).round() / 255


def _png(t: torch.Tensor) -> bytes:
    u8 = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG")
    return buf.getvalue()


def make_triplets(ex: Explainer, n: int, seed: int) -> tuple[bytes, str]:
    """``n`` strength-matched triplets as a zip of PNGs and its CSV (judge 0.5: placeholder)."""
    rng = np.random.default_rng(seed)
    names = list(LEVELS)
    probe = _q(_crops(CURVE_CROPS, rng))
    curve: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for k, name in enumerate(names):
            p = get_perturbation(name)
            curve[name] = np.array([
                float(ex.model(probe, _q(p.apply(probe, float(s),
                                                 torch.Generator().manual_seed(k)))).median())
                for s in LEVELS[name]])
    refs = _q(_crops(n, rng))
    target = np.exp(rng.uniform(*np.log(TARGET), n))
    groups: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for i in range(n):
        for role, j in zip(("p0", "p1"), rng.choice(len(names), size=2, replace=False),
                           strict=True):
            name = names[j]
            want = np.log(target[i]) + rng.normal(0, 0.1)
            level = int(np.argmin(np.abs(np.log(np.maximum(curve[name], 1e-6)) - want)))
            groups.setdefault((name, level), []).append((i, role))
    cands: dict[tuple[int, str], torch.Tensor] = {}
    for g, ((name, level), items) in enumerate(sorted(groups.items())):
        idx = [i for i, _ in items]
        out = get_perturbation(name).apply(refs[idx], float(LEVELS[name][level]),
                                           torch.Generator().manual_seed(1000 + g))
        for k, key in enumerate(items):
            cands[key] = out[k]
    buf = io.BytesIO()
    rows = ["ref,p0,p1,judge"]
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            for role, t in (("ref", refs[i]), ("p0", cands[(i, "p0")]), ("p1", cands[(i, "p1")])):
                zf.writestr(f"{role}/{i:04d}.png", _png(t))
            rows.append(f"ref/{i:04d}.png,p0/{i:04d}.png,p1/{i:04d}.png,0.5")
    return buf.getvalue(), "\n".join(rows) + "\n"


def teacher_heads(released: torch.Tensor, channels: tuple[int, ...], seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    sl, sc = TEACHER_SIGMA
    factors = np.concatenate([np.exp(sl * rng.standard_normal() + sc * rng.standard_normal(c))
                              for c in channels])
    return released * torch.from_numpy(factors)


def judge(features: JudgmentFeatures, w: torch.Tensor, seed: int) -> tuple[torch.Tensor,
                                                                           np.ndarray]:
    """Noisy judgments from the teacher, and the teacher's own verdict (p1 closer)."""
    t0, t1 = features.d0 @ w, features.d1 @ w
    tau = TAU * float((t0 - t1).abs().median())
    p = torch.sigmoid((t0 - t1) / tau).numpy()
    shares = np.random.default_rng(seed).binomial(JUDGES, p) / JUDGES
    return torch.from_numpy(shares.astype(np.float64)), (t1 < t0).numpy()


def subset(f: JudgmentFeatures, idx: range, judges: torch.Tensor) -> JudgmentFeatures:
    ix = list(idx)
    return replace(f, rows=tuple(f.rows[i] for i in ix), d0=f.d0[ix], d1=f.d1[ix],
                   judges=judges[ix], masked=tuple(f.masked[i] for i in ix))


def measure(w: torch.Tensor, f: JudgmentFeatures, verdict: np.ndarray) -> tuple[float, float]:
    """(agreement with the teacher's verdict, 2AFC against the judgments) with heads ``w``."""
    d0, d1 = f.d0 @ w, f.d1 @ w
    teacher = float(((d1 < d0).numpy() == verdict).mean())
    return teacher, float(two_afc(d0.numpy(), d1.numpy(), f.judges.numpy()).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calibrate", type=int, default=600, help="triplets to calibrate on")
    ap.add_argument("--test", type=int, default=400, help="triplets never seen (honest numbers)")
    ap.add_argument("--teachers", type=int, default=2, help="teachers (seeds 1..)")
    ap.add_argument("--splits", type=int, default=2, help="split seeds per teacher (0..)")
    ap.add_argument("--json", type=Path, default=None, help="write every run here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # small tensors; the machine is shared

    t_start = time.perf_counter()
    ex = Explainer("alex", "0.1")
    info = ex.model.weights_info
    if not info.perceptual:
        print(f"warning: the alex trunk is not the published one ({info.reason}); install it "
              f"with `lpips-explain weights install`", file=sys.stderr)
    n = args.calibrate + args.test
    archive, csv_text = make_triplets(ex, n, seed=0)
    t_made = time.perf_counter()
    features = ex.judgment_features(read_judgments_archive(archive, csv_text=csv_text))
    t_feats = time.perf_counter()
    channels = ex.model.spec.channels
    released = torch.cat(load_lin_heads("alex", "0.1", channels)[0]).double()
    print(f"{n} triplets at {SIZE} px: made in {t_made - t_start:.0f} s, trunk features in "
          f"{t_feats - t_made:.0f} s ({info.verified_by or info.spec} alex trunk)\n")

    runs = []
    header = (f"{'teacher':>7} {'split':>5} {'recipe':<9} {'steps':>5} {'kept':>9} {'s':>5} "
              f"{'held-out 2AFC':>15} {'test: teacher':>15} {'test: 2AFC':>15}")
    print(header)
    for t in range(1, args.teachers + 1):
        w_t = teacher_heads(released, channels, seed=t)
        shares, verdict = judge(features, w_t, seed=100 + t)
        cal_set = subset(features, range(args.calibrate), shares)
        test_set = subset(features, range(args.calibrate, n), shares)
        test_verdict = verdict[args.calibrate:]
        ceiling = measure(w_t, test_set, test_verdict)
        start = measure(released, test_set, test_verdict)
        for s in range(args.splits):
            for name, kw in RECIPES.items():
                t0 = time.perf_counter()
                cal = ex.calibrate(cal_set, seed=s, **kw)
                secs = time.perf_counter() - t0
                heads = torch.from_numpy(np.concatenate(cal.heads)).double()
                after = measure(heads, test_set, test_verdict)
                steps = cal.epochs[-1].step if cal.epochs else 0
                run = {"teacher": t, "split": s, "recipe": name, "options": kw,
                       "steps": steps, "best_epoch": cal.best_epoch,
                       "epochs_run": len(cal.epochs), "seconds": secs,
                       "val_2afc": [cal.before.val_2afc, cal.after.val_2afc],
                       "test_teacher": [start[0], after[0]], "test_2afc": [start[1], after[1]],
                       "teacher_ceiling_2afc": ceiling[1], "schedule": cal.schedule}
                runs.append(run)
                print(f"{t:>7} {s:>5} {name:<9} {steps:>5} "
                      f"{cal.best_epoch:>4}/{len(cal.epochs):<4} {secs:>5.1f} "
                      f"{cal.before.val_2afc:>7.3f}>{cal.after.val_2afc:.3f} "
                      f"{start[0]:>7.3f}>{after[0]:.3f} {start[1]:>7.3f}>{after[1]:.3f}")
        print(f"{'':>7} teacher {t}'s own 2AFC on the test triplets (the ceiling): "
              f"{ceiling[1]:.3f}")

    print("\nmeans over teachers and splits (before > after):")
    summary = {}
    for name in RECIPES:
        rs = [r for r in runs if r["recipe"] == name]
        m = {k: [float(np.mean([r[k][i] for r in rs])) for i in (0, 1)]
             for k in ("val_2afc", "test_teacher", "test_2afc")}
        summary[name] = m | {"seconds": float(np.mean([r["seconds"] for r in rs])),
                             "steps": float(np.mean([r["steps"] for r in rs]))}
        print(f"  {name:<9} held-out 2AFC {m['val_2afc'][0]:.3f} > {m['val_2afc'][1]:.3f}   "
              f"test agreement with the teacher {m['test_teacher'][0]:.3f} > "
              f"{m['test_teacher'][1]:.3f}   test 2AFC {m['test_2afc'][0]:.3f} > "
              f"{m['test_2afc'][1]:.3f}   ({summary[name]['steps']:.0f} steps, "
              f"{summary[name]['seconds']:.1f} s)")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s on {platform.node()} ({platform.machine()}, "
          f"torch {torch.__version__})")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "means": summary, "triplets": n,
                                         "calibrate": args.calibrate, "test": args.test,
                                         "seconds": total}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

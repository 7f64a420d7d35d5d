"""Audit throughput: the local engine against a plain loop over the official ``lpips`` package,
and the Ray engine on this machine against the local one (its overhead).

    .venv/bin/python benchmarks/bench_audit.py                 # 96 pairs at 256 px
    .venv/bin/python benchmarks/bench_audit.py --pairs 192 --size 128 --repeats 3 --no-ray
    .venv/bin/python benchmarks/bench_audit.py --per-reference 8 --no-ray   # shared references

The rows are pairs of the bundled photographs (assets/originals, 256 px) and seeded
distortions of them, written as PNG files. Both sides read the same files and use the same
trunk weights (our seeded random trunk, copied into the official model; its official lin
heads are the same file), so their distances are checked equal first (to 1e-5). Times
include decoding. The official loop decodes each file with Pillow, converts it with
``lpips.im2tensor`` and calls the model on one pair at a time: it computes the distance
only. The local engine also computes the per-layer shares, PSNR, SSIM and thumbnails and
writes the Parquet parts and audit.parquet. Sides run interleaved, each repeat in a fresh
output folder; the best repeat of each counts (these machines are shared: trust ratios).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lpips_explain import Explainer  # noqa: E402
from lpips_explain.audit.local import default_workers, run_local, scoring_threads  # noqa: E402
from lpips_explain.audit.settings import settings_for  # noqa: E402
from lpips_explain.audit.table import read_audit_input  # noqa: E402
from lpips_explain.core.cache import FeatureCache  # noqa: E402


def make_rows(folder: Path, n: int, size: int, per_reference: int = 1) -> Path:
    """``n`` pairs: a crop of a bundled photograph and a seeded distortion of it; each crop is
    the reference of ``per_reference`` consecutive rows (distortion datasets look like that)."""
    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sorted((REPO / "assets" / "originals").glob("*.png"))]
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        if i % per_reference == 0:
            src = photos[(i // per_reference) % len(photos)]
            scale = size / 256 * rng.uniform(1.0, 1.6)
            im = src.resize((int(256 * scale),) * 2, Image.Resampling.BILINEAR)
            x, y = (int(v) for v in rng.integers(0, im.width - size + 1, size=2))
            a = im.crop((x, y, x + size, y + size))
            a_name = f"img/{i}_a.png"
            a.save(folder / a_name)
        kind = i % 3
        if kind == 0:
            arr = np.asarray(a, dtype=np.float64) + rng.normal(0, 12, (size, size, 3))
            b = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        elif kind == 1:
            b = a.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
        else:
            b = Image.fromarray(np.roll(np.asarray(a), int(rng.integers(1, 8)), axis=1))
        b.save(folder / "img" / f"{i}_b.png")
        rows.append((a_name, f"img/{i}_b.png", f"p{i}"))
    path = folder / "pairs.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "id"])
        w.writerows(rows)
    return path


def official_model(ours):
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    feats = ours.features.state_dict()
    state = official.net.state_dict()
    official.net.load_state_dict({k: feats[k.split(".", 1)[1]].clone() for k in state})
    return official


def official_loop(official, csv_path: Path) -> list[float]:
    """The plain way: decode, convert and score one pair at a time."""
    import lpips

    base = csv_path.parent
    out = []
    with csv_path.open() as f, torch.no_grad():
        for row in csv.DictReader(f):
            a = lpips.im2tensor(np.asarray(Image.open(base / row["a"]).convert("RGB")))
            b = lpips.im2tensor(np.asarray(Image.open(base / row["b"]).convert("RGB")))
            out.append(float(official(a, b).flatten()[0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None,
                    help=f"decoding processes of the local engine (default {default_workers()})")
    ap.add_argument("--per-reference", type=int, default=1,
                    help="rows sharing each reference image (default 1: every row its own); "
                         "above 1 the local engine is also timed without its feature cache")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    ap.add_argument("--no-int8", action="store_true",
                    help="skip the local engine in --precision int8 (timed with its error "
                         "sample re-scored exactly, as an audit runs it)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of this process, both sides (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ex = Explainer("alex", "0.1", "random", seed=0)
    official = official_model(ex.model)
    settings = settings_for(ex.model, size_policy="resize", max_pixels=None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        csv_path = make_rows(tmp_path / "rows", args.pairs, args.size, args.per_reference)
        table = read_audit_input(csv_path)
        n = len(table)
        workers = args.workers if args.workers is not None else default_workers()
        print(f"{n} pairs of {args.size} px PNGs, {args.per_reference} per reference; torch threads {torch.get_num_threads()} "
              f"(the local engine scores with {scoring_threads(workers) if workers else torch.get_num_threads()} "
              f"while {workers} worker(s) decode), CPUs {os.cpu_count()}, load average "
              f"{os.getloadavg()[0]:.1f}")

        # Agreement first.
        ref = official_loop(official, csv_path)
        res = run_local(table, tmp_path / "check", settings, model=ex.model, workers=args.workers)
        ours = res.rows.column("distance").to_pylist()
        err = float(np.max(np.abs(np.array(ours) - np.array(ref))))
        print(f"max |local - official| over {n} distances: {err:.2e}")
        if err > 1e-5:
            raise SystemExit("the two sides disagree: not timing them")

        fast = None
        if not args.no_int8:
            from lpips_explain.audit.approx import measure_error
            from lpips_explain.core.modes import int8_missing, mode_net

            if int8_missing():
                print(f"int8 skipped: {int8_missing()}")
            else:
                t0 = time.perf_counter()
                fast, _ = mode_net(ex.model, "int8", "cpu")
                print(f"int8 trunk quantised and compiled once in {time.perf_counter() - t0:.1f} s "
                      f"(not counted below)")
                settings8 = settings_for(ex.model, size_policy="resize", max_pixels=None,
                                         precision="int8")

                def run_int8(out: Path) -> dict:
                    res8 = run_local(table, out, settings8, model=ex.model,
                                     workers=args.workers, cache=FeatureCache(), scorer=fast)
                    return measure_error(table, res8.rows.to_pydict(), settings8, ex.model)

                error = run_int8(tmp_path / "int8check")
                print(f"int8 error on a seeded sample of {error['sample_rows']} rows re-scored "
                      f"exactly: max {error['max_abs']:.2e}, mean {error['mean_abs']:.2e}, "
                      f"Spearman {error['spearman']}")

        # The local engine as Explainer.audit runs it: references through a feature cache
        # (a fresh one each repeat, so nothing carries over between repeats).
        t_off, t_loc, t_plain, t_int8 = [], [], [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            official_loop(official, csv_path)
            t_off.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cached = run_local(table, tmp_path / f"local{r}", settings, model=ex.model,
                               workers=args.workers, cache=FeatureCache())
            t_loc.append(time.perf_counter() - t0)
            if fast is not None:
                t0 = time.perf_counter()
                run_int8(tmp_path / f"int8_{r}")
                t_int8.append(time.perf_counter() - t0)
            if args.per_reference > 1:
                t0 = time.perf_counter()
                run_local(table, tmp_path / f"plain{r}", settings, model=ex.model,
                          workers=args.workers)
                t_plain.append(time.perf_counter() - t0)
        off, loc = min(t_off), min(t_loc)
        print(f"official loop:  {n / off:7.1f} pairs/s  (best of {args.repeats}: {off:.2f} s)")
        print(f"local engine:   {n / loc:7.1f} pairs/s  (best of {args.repeats}: {loc:.2f} s; "
              f"feature cache {cached.cache})")
        if t_plain:
            plain = min(t_plain)
            print(f"  without cache:{n / plain:7.1f} pairs/s  (best of {args.repeats}: "
                  f"{plain:.2f} s): the cache makes it {plain / loc:.2f}x faster")
        print(f"local engine vs official loop: {off / loc:.2f}x (target >= 1.5x); load "
              f"average now {os.getloadavg()[0]:.1f}")
        if t_int8:
            i8 = min(t_int8)
            print(f"local engine int8 (error sample included): {n / i8:7.1f} pairs/s (best of "
                  f"{args.repeats}: {i8:.2f} s): {off / i8:.2f}x the official loop "
                  f"(target >= 3x)")

        if args.no_ray:
            return
        try:
            import ray
        except ImportError:
            print("Ray is not installed (pip install 'lpips-explain[ray]'): skipped")
            return
        from lpips_explain.audit.ray_engine import run_ray

        t0 = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t0
        try:
            t_ray = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                out = run_ray(table, tmp_path / f"ray{r}", settings, model=ex.model)
                t_ray.append(time.perf_counter() - t0)
            diff = np.max(np.abs(np.array(out.rows.column("distance").to_pylist())
                                 - np.array(ours)))
        finally:
            ray.shutdown()
        best = min(t_ray)
        print(f"Ray engine:     {n / best:7.1f} pairs/s  (best of {args.repeats}: {best:.2f} s, "
              f"actors started each run; starting the local Ray instance took "
              f"{t_init:.1f} s more); max |ray - local| {diff:.1e}")
        print(f"Ray engine on one machine vs local engine: {best / loc:.2f}x the time "
              f"(overhead {100 * (best / loc - 1):+.0f}%, {1000 * (best - loc) / n:+.1f} ms per "
              f"row; Ray's workers: {out.workers})")


if __name__ == "__main__":
    main()

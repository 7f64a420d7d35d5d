"""Large images: exact tiled LPIPS against the untiled answer, with peak memory measured.

Every case runs in its own subprocess, which reports its own peak resident memory (VmHWM,
else ``resource.getrusage(RUSAGE_SELF).ru_maxrss``) when its work is done, next to the
estimate lpips-explain made before running. The CLI cases call the same ``main`` as
``python -m lpips_explain``. The trunk is a random one taken from the official ``lpips`` package
(``pnet_rand=True``, seed 1234) and written in torchvision's format, the lin heads are the
official ones, so the official package is the oracle.

* ``alex``: ``lpips-explain distance A.png B.png --max-memory BUDGET --json`` on a SIZE x
  SIZE pair (default 4000: 16 MP) against the official package run untiled on the same
  decoded pixels (its own peak memory is reported too), and ``Explainer.distance`` from
  Python with the same budget;
* ``vgg``: the same command on the same pair (the untiled official run does not fit here:
  the issue measured it killed at 24 GB); equality is checked at ``--check-size`` (default
  1024), where the official untiled answer fits, with tiles of the same core size the
  16 MP run used;
* ``baseline``: the same command on a 64 px pair: what Python, torch, lpips-explain and
  the network take before any large tensor (not counted by --max-memory).

    python benchmarks/bench_large.py [--cases alex vgg] [--size 4000] [--alex-budget 0.5GB]
                                     [--vgg-budget 1.5GB] [--check-size 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[1]


# -- the children -----------------------------------------------------------------------------
def _load_png(path: str):
    import numpy as np
    import torch
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255


def _child_official(net: str, a: str, b: str) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import official_model

    model = official_model(net)
    x0, x1 = _load_png(a), _load_png(b)
    t0 = time.perf_counter()
    with torch.no_grad():
        d = float(model(x0 * 2 - 1, x1 * 2 - 1).flatten()[0])
    return {"distance": d, "seconds": time.perf_counter() - t0}


def _child_tiled(net: str, a: str, b: str, trunk: str, core: int) -> dict:
    from lpips_explain import Explainer
    from lpips_explain.core import budget, tiling

    e = Explainer(net, "0.1", trunk)
    x0, x1 = _load_png(a), _load_png(b)
    plan = budget.plan_memory(e.model, tuple(x0.shape[-2:]), e.max_memory, kind="distance",
                              core=core)
    t0 = time.perf_counter()
    d = tiling.tiled_distance(e.model, x0, x1, plan)
    return {"distance": d, "seconds": time.perf_counter() - t0, "tiles": plan.count,
            "plan": plan.describe()}


def _child_cli(argv: list[str]) -> dict:
    """``lpips-explain ARGV`` (the same ``main`` as ``python -m lpips_explain``) in this
    process, its JSON result returned."""
    import contextlib
    import io

    from lpips_explain.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    return json.loads(buf.getvalue()) if code == 0 else {"exit": code}


def _child_api(net: str, a: str, b: str, trunk: str, budget: str) -> dict:
    """``Explainer(...).distance(A, B)`` from Python: one pass over the tiles, no maps."""
    from lpips_explain import Explainer

    e = Explainer(net, "0.1", trunk, max_memory=budget)
    t0 = time.perf_counter()
    d = e.distance(a, b)
    return {"distance": d, "seconds": time.perf_counter() - t0}


def _child(argv: list[str]) -> None:
    from lpips_explain.core.memory import peak_rss

    kind, *rest = argv
    if kind == "cli":
        out = _child_cli(rest)
    elif kind == "api":
        out = _child_api(*rest)
    elif kind == "official":
        out = _child_official(*rest)
    elif kind == "tiled":
        out = _child_tiled(rest[0], rest[1], rest[2], rest[3], int(rest[4]))
    elif kind == "pair":
        size = int(rest[0])
        out = dict(zip("ab", write_pair(size, size, Path(rest[1]), rest[2], seed=size),
                       strict=True))
    elif kind == "crop":
        out = dict(zip("ab", _crop_pair(rest[0], rest[1], int(rest[2]), Path(rest[3])),
                       strict=True))
    else:
        out = {"trunk": _trunk_file(rest[0], Path(rest[1]))}
    # This process's own peak, read when the work is done (torch's teardown at interpreter
    # exit adds about 0.12 GB more to what the kernel reports afterwards, measured). VmHWM
    # where Linux has it: ru_maxrss also holds the forking process's high-water mark, copied
    # in at exec.
    out["peak_rss"] = peak_rss()
    print(json.dumps(out))


# -- the parent -------------------------------------------------------------------------------
def _run(cmd: list[str], env: dict | None = None) -> tuple[dict | None, float, float, str]:
    """Run ``cmd``; (its JSON stdout, peak RSS in GB from its own rusage, seconds, stderr).

    The parent stays small (it never imports torch): Linux carries the forking process's
    peak RSS into the child's ru_maxrss at exec, so a large parent would inflate it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    peak_gb = usage.ru_maxrss * 1024 / 1e9  # Linux reports kilobytes
    try:
        data = json.loads(text) if p.returncode == 0 else None
    except json.JSONDecodeError:
        data = None
    if data is not None and "peak_rss" in data:
        peak_gb = data["peak_rss"] / 1e9
    if data is None:
        errors = f"exit {p.returncode}: {errors.strip()[-600:]}"
    return data, peak_gb, seconds, errors


def write_pair(w: int, h: int, folder: Path, tag: str, seed: int | None = None
               ) -> tuple[str, str]:
    """A natural-ish w x h pair as PNGs (smooth structure plus fine detail, B a distortion
    of A), seeded by ``seed`` (default ``w * h``)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    g = torch.Generator().manual_seed(w * h if seed is None else seed)

    def smooth() -> torch.Tensor:
        coarse = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
        img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
        return img + 0.05 * torch.rand(1, 3, h, w, generator=g)

    a = smooth().clamp(0, 1)
    b = (a + 0.15 * (smooth() - 0.5)).clamp(0, 1)
    paths = []
    for name, t in (("a", a), ("b", b)):
        arr = (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        path = folder / f"{tag}_{name}.png"
        Image.fromarray(arr).save(path, compress_level=1)
        paths.append(str(path))
    return paths[0], paths[1]


def _crop_pair(a: str, b: str, size: int, folder: Path) -> tuple[str, str]:
    from PIL import Image

    out = []
    for p, name in ((a, "a"), (b, "b")):
        path = folder / f"crop{size}_{name}.png"
        Image.open(p).crop((0, 0, size, size)).save(path, compress_level=1)
        out.append(str(path))
    return out[0], out[1]


def _trunk_file(net: str, folder: Path) -> str:
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import official_model, official_trunk_state

    path = folder / f"trunk_{net}.pth"
    if not path.exists():
        torch.save(official_trunk_state(official_model(net)), path)
    return str(path)


def _cli(net: str, a: str, b: str, trunk: str, budget: str | None, top_k: int) -> list[str]:
    cmd = [sys.executable, __file__, "--child", "cli", "distance", a, b, "--net", net,
           "--backbone-weights", trunk, "--json", "--quiet", "--top-k", str(top_k)]
    return cmd + (["--max-memory", budget] if budget else [])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["alex", "vgg"], choices=["alex", "vgg"])
    p.add_argument("--size", type=int, default=4000)
    p.add_argument("--alex-budget", default="0.5GB")
    p.add_argument("--vgg-budget", default="1.5GB")
    p.add_argument("--check-size", type=int, default=1024)
    p.add_argument("--alex-top-k", type=int, default=5,
                   help="top channels per layer (their maps need a second pass over the tiles)")
    p.add_argument("--vgg-top-k", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="folder for the images (kept)")
    args = p.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_large_"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LPIPS_EXPLAIN_OFFLINE": "1"}
    me = [sys.executable, __file__, "--child"]

    def helper(*argv: str) -> dict:
        data, _, _, err = _run([*me, *argv], env)
        if data is None:
            raise SystemExit(f"bench_large: {argv[0]} failed: {err}")
        return data

    pair = helper("pair", str(args.size), str(folder), f"s{args.size}")
    a, b = pair["a"], pair["b"]
    small = helper("pair", "64", str(folder), "s64")
    sa, sb = small["a"], small["b"]
    mp = args.size * args.size / 1e6
    rows = []
    for net in args.cases:
        trunk = helper("trunk", net, str(folder))["trunk"]
        top_k = args.alex_top_k if net == "alex" else args.vgg_top_k
        budget = args.alex_budget if net == "alex" else args.vgg_budget
        base, base_gb, _, err = _run(_cli(net, sa, sb, trunk, None, top_k), env)
        rows.append((f"{net} baseline: CLI on a 64 px pair", base and base["distance"], None,
                     base_gb, None, err if base is None else "process without large tensors"))
        ours, ours_gb, ours_s, err = _run(_cli(net, a, b, trunk, budget, top_k), env)
        tiling = (ours or {}).get("tiling") or {}
        note = (f"{tiling.get('tiles')} tiles, core {tiling.get('core')} px, estimate "
                f"{tiling.get('estimate_bytes', 0) / 1e9:.2f} GB (budget {budget})"
                if ours else err)
        if net == "alex":
            off, off_gb, off_s, oerr = _run([*me, "official", net, a, b], env)
            rows.append((f"alex {mp:.0f} MP official untiled", off and off["distance"], None,
                         off_gb, off_s, oerr if off is None else "the oracle"))
            rel = (abs(ours["distance"] - off["distance"]) / off["distance"]
                   if ours and off else None)
            rows.append((f"alex {mp:.0f} MP lpips-explain distance", ours and ours["distance"],
                         rel, ours_gb, ours_s, note))
            api, api_gb, api_s, aerr = _run([*me, "api", net, a, b, trunk, budget], env)
            rel = (abs(api["distance"] - off["distance"]) / off["distance"]
                   if api and off else None)
            rows.append((f"alex {mp:.0f} MP Explainer.distance (API)", api and api["distance"],
                         rel, api_gb, api_s, aerr if api is None else f"budget {budget}, "
                         "one pass, no maps"))
        else:
            rows.append((f"vgg {mp:.0f} MP lpips-explain distance", ours and ours["distance"],
                         None, ours_gb, ours_s, note))
            if ours and tiling.get("core"):
                crop = helper("crop", a, b, str(args.check_size), str(folder))
                ca, cb = crop["a"], crop["b"]
                t, t_gb, t_s, terr = _run([*me, "tiled", net, ca, cb, trunk,
                                           str(tiling["core"])], env)
                off, off_gb, off_s, oerr = _run([*me, "official", net, ca, cb], env)
                rel = (abs(t["distance"] - off["distance"]) / off["distance"]
                       if t and off else None)
                cs = args.check_size
                rows.append((f"vgg {cs}px official untiled", off and off["distance"], None,
                             off_gb, off_s, oerr if off is None else "the oracle at a size "
                             "that fits"))
                rows.append((f"vgg {cs}px tiled, core {tiling['core']} px", t and t["distance"],
                             rel, t_gb, t_s, terr if t is None else t["plan"]))
    import platform

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end; images in {folder}")
    print("peak RSS: the whole process (Python, torch, lpips-explain and the network "
          "included), GB = 10^9 bytes; seconds: the whole process")
    print(f"{'case':<42} {'distance':>12} {'rel. error':>11} {'peak RSS':>10} {'seconds':>8}  "
          f"note")
    for name, d, rel, gb, s, note in rows:
        ds = f"{d:.8f}" if isinstance(d, float) else "-"
        rs = f"{rel:.1e}" if rel is not None else "-"
        ss = f"{s:.1f}" if s is not None else "-"
        print(f"{name:<42} {ds:>12} {rs:>11} {gb:>7.3f}GB {ss:>8}  {note}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        main()

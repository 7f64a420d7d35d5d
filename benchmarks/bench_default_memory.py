"""The default memory budget against untiled: peak RSS and time of 16 MP pairs, no flag.

Each case is ``lpips-explain distance A B --json`` (the same ``main`` as ``python -m
lpips_explain``, default ``--top-k 5``, the published ImageNet trunk) in its own process,
which reports its own peak resident memory (VmHWM) when its work is done; the parent never
imports torch (benchmarks/bench_large.py's ``_run``). Side by side in one run, per trunk:

* ``default``: no ``--max-memory`` and ``$LPIPS_EXPLAIN_MAX_MEMORY`` unset (the rule in
  lpips_explain/core/budget.py, :func:`default_budget`);
* ``untiled``: ``--max-memory`` large enough that the pair runs untiled, where the untiled
  estimate fits in 80 % of the memory available; else (vgg at 16 MP: 51 GB estimated) the
  largest budget the machine allows, half the memory available (the default before this
  rule), which tiles in a few large tiles, and the row says so;
* ``512 px``: the same command on a 512 px pair with the default: the plan (untiled) and
  its time;
* ``--budgets``: extra explicit budgets, to see where the rule's choice sits.

The distances of all cases of one trunk and size must agree to 1e-6 (tiling is exact).

    python benchmarks/bench_default_memory.py [--cases alex vgg] [--sizes 4000x4000
        4896x3264] [--vgg-top-k 5] [--budgets 0.9GB ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_large  # noqa: E402  (the children and _run; it imports no torch at module level)


def _child(argv: list[str]) -> None:
    import json

    from lpips_explain.core.memory import peak_rss

    kind, *rest = argv
    if kind == "pair":
        out = dict(zip("ab", bench_large.write_pair(int(rest[0]), int(rest[1]), Path(rest[2]),
                                                    f"{rest[0]}x{rest[1]}"),
                       strict=True))
    elif kind == "estimate":  # the untiled estimate and the default plan, no work
        from lpips_explain import Explainer

        e = Explainer(rest[0])
        size = (int(rest[2]), int(rest[1]))
        plan = e.memory_plan(size, top_k=int(rest[3]))
        out = {"untiled": plan.untiled, "default": plan.describe()}
    else:
        out = bench_large._child_cli(rest)
    out["peak_rss"] = peak_rss()
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["alex", "vgg"], choices=["alex", "vgg"])
    p.add_argument("--sizes", nargs="+", default=["4000x4000"],
                   help="WxH of the large pairs (4000x4000, 4896x3264: 16 MP)")
    p.add_argument("--alex-top-k", type=int, default=5)
    p.add_argument("--vgg-top-k", type=int, default=5)
    p.add_argument("--budgets", nargs="*", default=[], help="extra explicit budgets")
    p.add_argument("--no-untiled", action="store_true", help="skip the untiled reference")
    p.add_argument("--keep", type=Path, default=None, help="folder for the images (kept)")
    args = p.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_default_memory_"))
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "LPIPS_EXPLAIN_MAX_MEMORY"}
    env["LPIPS_EXPLAIN_OFFLINE"] = "1"
    me = [sys.executable, __file__, "--child"]

    def helper(*argv: str) -> dict:
        data, _, _, err = bench_large._run([*me, *argv], env)
        if data is None:
            raise SystemExit(f"bench_default_memory: {argv[0]} failed: {err}")
        return data

    def distance(net: str, a: str, b: str, top_k: int, budget: str | None):
        cmd = [*me, "cli", "distance", a, b, "--net", net, "--json", "--quiet", "--top-k",
               str(top_k)] + (["--max-memory", budget] if budget else [])
        return bench_large._run(cmd, env)

    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f
                     if line.startswith("MemAvailable:"))
    pairs = {}
    for spec in args.sizes:
        w, h = (int(v) for v in spec.lower().split("x"))
        pairs[(w, h)] = tuple(helper("pair", str(w), str(h), str(folder)).values())[:2]
    small = tuple(helper("pair", "512", "512", str(folder)).values())[:2]
    rows = []
    for net in args.cases:
        top_k = args.alex_top_k if net == "alex" else args.vgg_top_k
        for (w, h), (a, b) in pairs.items():
            est = helper("estimate", net, str(w), str(h), str(top_k))
            cases: list[tuple[str, str | None]] = [("default", None)]
            if not args.no_untiled:
                if est["untiled"] <= 0.8 * avail:
                    cases.append(("untiled", "1TB"))
                else:
                    cases.append(("half available (old default; untiled does not fit)",
                                  f"{avail // 2}"))
            cases += [(f"--max-memory {x}", x) for x in args.budgets]
            ref_s = ref_d = None
            got = []
            for label, budget in cases:
                data, gb, s, err = distance(net, a, b, top_k, budget)
                tiling = (data or {}).get("tiling") or {}
                note = (err if data is None else
                        f"{tiling.get('tiles')} tiles, core {tiling.get('core')} px, estimate "
                        f"{tiling.get('estimate_bytes', 0) / 1e9:.2f} GB of budget "
                        f"{tiling.get('budget_bytes', 0) / 1e9:.2f} GB" if tiling else
                        "untiled")
                got.append((label, data and data["distance"], gb, s, note))
                if label != "default" and ref_s is None and data is not None:
                    ref_s, ref_d = s, data["distance"]
            for label, d, gb, s, note in got:
                ratio = f"{s / ref_s:.2f}x" if ref_s else "-"
                agree = "-" if d is None or ref_d is None else f"{abs(d - ref_d):.1e}"
                rows.append((f"{net} {w}x{h} {label}", d, gb, s, ratio, agree, note))
                print("done:", rows[-1], file=sys.stderr, flush=True)
        data, gb, s, err = distance(net, *small, top_k, None)
        rows.append((f"{net} 512x512 default", data and data["distance"], gb, s, "-", "-",
                     err if data is None else ("untiled" if not data.get("tiling")
                                               else f"TILED: {data['tiling']}")))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {avail / 1e9:.1f} GB "
          f"available at the start, load average {os.getloadavg()[0]:.1f} at the end; "
          f"images in {folder}")
    print("peak RSS: VmHWM of the whole process (GB = 10^9 bytes); seconds: the whole "
          "process (start-up and decoding included); ratio: seconds / the reference row's "
          "(untiled, or half available); |diff|: distance against the reference row's")
    print(f"{'case':<62} {'distance':>11} {'peak RSS':>9} {'seconds':>8} {'ratio':>6} "
          f"{'|diff|':>8}  note")
    for name, d, gb, s, ratio, agree, note in rows:
        ds = f"{d:.8f}" if isinstance(d, float) else "-"
        print(f"{name:<62} {ds:>11} {gb:>7.3f}GB {s:>8.1f} {ratio:>6} {agree:>8}  {note}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        main()

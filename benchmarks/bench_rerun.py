"""A click on the Explain page: the script's rerun on stored results, figures kept or rebuilt.

Every widget click reruns the page's script on the server. The parts are stored, so a rerun
only draws; ``ui.widgets.drawn`` keeps each figure and image (the channel grid, the repair
curve, its gains and images, the map, the swipe view, the card's crops, map and repaired
thumbnail) while its results and display options are unchanged.
This drives the real page in Streamlit's AppTest (no browser: the server's side only) on
one pair, computes it once, then times reruns alternating two arms in one process:

* ``rebuilt``: ``drawn`` patched, in every UI module that uses it, to build every time
  (as before it existed);
* ``kept``: the page as it is.

Both arms must show the same charts (their plotly specs are compared) before anything is
timed. Prints the median rerun per arm and their ratio.

    python benchmarks/bench_rerun.py [--pair A B] [--reruns 10] [--trunk imagenet|random]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", nargs=2, type=Path, default=None,
                   help="two image files (default: the app's default sample)")
    p.add_argument("--reruns", type=int, default=10, help="reruns per arm")
    p.add_argument("--trunk", default="imagenet", choices=("imagenet", "random"),
                   help="the app's trunk weights (imagenet: the installed published trunk)")
    args = p.parse_args()
    os.environ["LPIPS_EXPLAIN_BACKBONE_WEIGHTS"] = args.trunk
    os.environ.setdefault("LPIPS_EXPLAIN_OFFLINE", "1")

    from streamlit.testing.v1 import AppTest

    from lpips_explain.ui import explain, explain_panels, explain_where  # noqa: F401
    from lpips_explain.ui.widgets import drawn as kept

    arms = {"rebuilt": lambda name, build, *sources, options=(): build(), "kept": kept}
    users = [m for name, m in list(sys.modules.items())
             if name.startswith("lpips_explain.ui.") and getattr(m, "drawn", None) is kept
             and not name.endswith(".widgets")]

    def use(arm: str) -> None:
        for module in users:
            module.drawn = arms[arm]

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    if args.pair is not None:
        at.run()
        for key, path in zip(("upload_a", "upload_b"), args.pair, strict=True):
            at.file_uploader(key=key).set_value((path.name, path.read_bytes(), "image/png"))
    t0 = time.perf_counter()
    at.run()  # computes the parts once; every rerun below draws stored results
    if at.exception:
        raise SystemExit(f"the page failed: {at.exception[0].value}")
    print(f"trunk={args.trunk}; first run (computing) {time.perf_counter() - t0:.2f} s; "
          f"drawn patched in {', '.join(sorted(m.__name__ for m in users))}")

    def specs() -> dict[str, str]:
        return {c.key: c.proto.spec for c in at.get("plotly_chart") if c.key}

    shown = {}
    for arm in arms:
        use(arm)
        at.run()
        shown[arm] = specs()
    if shown["rebuilt"] != shown["kept"]:
        raise SystemExit("the two arms draw different charts")
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.reruns):
        for arm in arms:
            use(arm)
            t = time.perf_counter()
            at.run()
            times[arm].append(time.perf_counter() - t)
    use("kept")
    med = {arm: statistics.median(v) for arm, v in times.items()}
    print(f"{len(shown['kept'])} charts, the same in both arms; median of {args.reruns} "
          f"reruns per arm, alternating:")
    for arm, v in times.items():
        print(f"  {arm:<8} {med[arm]:.3f} s (min {min(v):.3f}, max {max(v):.3f})")
    print(f"  ratio rebuilt/kept: {med['rebuilt'] / med['kept']:.2f}x")


if __name__ == "__main__":
    main()

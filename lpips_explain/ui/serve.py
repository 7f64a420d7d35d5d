"""Start the app with its engine warmed up: ``python -m lpips_explain.ui.serve [streamlit
options]`` is ``streamlit run app.py`` in a process that, while the server starts, imports
the heavy modules, builds the default network and runs it once on the sample pair (the
CPU kernels are prepared on first use), with the second opinions' networks. The first visitor then waits for the analysis
only, not for the set-up. scripts/run_app.sh starts the app this way.

The network built here is handed to the app's cache (resources.get_explainer) for the
default options; a visitor who arrives before it is ready waits for it rather than
building a second one.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
# What the warm-up took, for the Diagnostics page and the app benchmark (seconds by step).
TIMINGS: dict[str, float] = {}


def warm_up(model_key: tuple | None = None) -> dict[str, float]:
    """Import, build and run once (see the module docstring); the seconds of each step."""
    t0 = time.perf_counter()
    import captum.attr  # noqa: F401  (the attribution methods)

    from lpips_explain.output import figures  # noqa: F401  (plotly: about a second)
    from lpips_explain.ui import controls, inputs, resources  # streamlit, torch, the engine

    TIMINGS["imports"] = time.perf_counter() - t0
    key = model_key or controls.default_model_key()
    t1 = time.perf_counter()
    explainer = resources.warm_explainer(key)
    TIMINGS["network"] = time.perf_counter() - t1
    if explainer is not None:
        t2 = time.perf_counter()
        m = inputs.manifest()
        pair = next(p for p in m["pairs"] if p["id"] == m["default_pair"])
        a, b = (inputs.ASSETS / pair["a"], inputs.ASSETS / pair["b"])
        # The breakdown and one repair and equivalents run: the kernels of the sample's size
        # are prepared, and the sample's reference is encoded into the feature cache.
        expl = explainer.explain(a, b, attribution=None, sensitivity=False, repair=True,
                                 equivalents=True)
        TIMINGS["first run"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        explainer.opinions_of(expl, "all")  # DISTS and ST-LPIPS built (where installed)
        TIMINGS["second opinions"] = time.perf_counter() - t3
    TIMINGS["total"] = time.perf_counter() - t0
    return dict(TIMINGS)


def _warm_quietly() -> None:
    try:
        warm_up()
    except Exception as exc:  # the app still starts; the page will say what is wrong
        print(f"lpips-explain: warm-up skipped: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Warm up in a background thread and run the Streamlit server in this process."""
    from streamlit.web import cli as stcli

    args = list(sys.argv[1:] if argv is None else argv)
    threading.Thread(target=_warm_quietly, name="lpips-explain-warm-up", daemon=True).start()
    sys.argv = ["streamlit", "run", str(APP), *args]
    return int(stcli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())

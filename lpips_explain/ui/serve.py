"""Start the app with its engine warmed up: ``python -m lpips_explain.ui.serve [streamlit
options]`` is ``streamlit run app.py`` in a process that, while the server starts, imports
the heavy modules, builds the default network and computes the default sample pair's
first parts and second opinions under the Explain page's own keys, so the first visitor
finds its answer ready (and the CPU kernels prepared). The first visitor then waits for the analysis
only, not for the set-up. scripts/run_app.sh starts the app this way.

The network built here is handed to the app's cache (resources.get_explainer) for the
default options; a visitor who arrives before it is ready waits for it rather than
building a second one.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
# What the warm-up took, for the Diagnostics page and the app benchmark (seconds by step).
TIMINGS: dict[str, float] = {}


def warm_up(model_key: tuple | None = None,
            reserved: list[tuple[str, tuple]] | None = None) -> dict[str, float]:
    """Import, build and run once (see the module docstring); the seconds of each step.
    ``reserved``: the sample's keys already marked as being computed (main() does it
    before the server answers); reserved here otherwise."""
    t0 = time.perf_counter()
    keys = reserved if reserved is not None else (
        _reserve_sample() if model_key is None else [])
    try:
        return _warm(model_key, t0)
    finally:
        from lpips_explain.ui import resources

        for kind, key in keys:  # whatever was not stored: a waiting page computes it
            resources.result_store().release(kind, key)


def _reserve_sample() -> list[tuple[str, tuple]]:
    """Mark the sample's first parts as being computed, before anything slow: a visitor
    who arrives meanwhile waits for them rather than computing them beside the warm-up."""
    from lpips_explain.ui import resources

    keys = list(_sample_keys().values())
    for kind, key in keys:
        resources.result_store().reserve(kind, key)
    return keys


def _warm(model_key: tuple | None, t0: float) -> dict[str, float]:
    import captum.attr  # noqa: F401  (the attribution methods)

    from lpips_explain.output import figures  # noqa: F401  (plotly: about a second)
    from lpips_explain.ui import controls, resources  # streamlit, torch, the engine

    TIMINGS["imports"] = time.perf_counter() - t0
    key = model_key or controls.default_model_key()
    t1 = time.perf_counter()
    explainer = resources.warm_explainer(key)
    TIMINGS["network"] = time.perf_counter() - t1
    if explainer is not None:
        t2 = time.perf_counter()
        fast = _sample_parts(explainer)
        TIMINGS["first run"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        _sample_opinions(explainer, fast)  # DISTS and ST-LPIPS built (where installed)
        TIMINGS["second opinions"] = time.perf_counter() - t3
    TIMINGS["total"] = time.perf_counter() - t0
    return dict(TIMINGS)


@functools.cache
def _sample() -> tuple:
    """The default options and the default sample pair, as the Explain page builds them
    (its files read once)."""
    from lpips_explain.ui import controls, inputs

    pair = inputs.sample_pair()
    if pair is None:
        raise RuntimeError(f"the sample manifest {inputs.MANIFEST} cannot be read")
    return controls.default_options(), pair


def _sample_keys() -> dict[str, tuple[str, tuple]]:
    """The Explain page's own (kind, key) of each part the warm-up computes, by part."""
    from lpips_explain.ui import explain

    opts, pair = _sample()
    base = (opts.model_key, pair.key, False)
    keys = {"prepare": ("prepare", (opts.model_key, pair.key))}
    keys.update({part: (f"explain-{part}", explain.part_key(part, base, opts))
                 for part in ("breakdown", *explain.CARD_PARTS)})
    keys["opinions"] = ("explain-opinions", (*base, opts.top_k))
    return keys


def _sample_parts(explainer):
    """The default sample's parts that the Explain page computes first, stored under the
    page's own keys (its first visitor finds them ready); they prepare the CPU kernels."""
    from lpips_explain.ui import explain, resources

    opts, pair = _sample()
    store, keys = resources.result_store(), _sample_keys()
    prep = explainer.prepare(pair.a.source(), pair.b.source())
    store.put(*keys["prepare"], prep)
    fast = None
    for part in ("breakdown", *explain.CARD_PARTS):
        value = explain.compute_part(explainer, prep, opts, False, part, None, fast)
        store.put(*keys[part], value)
        fast = fast or value
    return fast


def _sample_opinions(explainer, fast) -> None:
    from lpips_explain.ui import explain, resources

    resources.result_store().put(*_sample_keys()["opinions"],
                                 explain.compute_opinions(explainer, fast))


def _warm_quietly(reserved: list[tuple[str, tuple]]) -> None:
    try:
        warm_up(reserved=reserved)
    except Exception as exc:  # the app still starts; the page will say what is wrong
        print(f"lpips-explain: warm-up skipped: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Warm up in a background thread and run the Streamlit server in this process."""
    from streamlit.web import cli as stcli

    args = list(sys.argv[1:] if argv is None else argv)
    try:  # before the server answers, so that no visitor computes the sample beside it
        reserved = _reserve_sample()
    except Exception as exc:
        print(f"lpips-explain: warm-up skipped: {exc}", file=sys.stderr)
        reserved = []
    threading.Thread(target=_warm_quietly, args=(reserved,), name="lpips-explain-warm-up",
                     daemon=True).start()
    sys.argv = ["streamlit", "run", str(APP), *args]
    return int(stcli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())

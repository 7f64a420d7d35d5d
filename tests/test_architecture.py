"""The folder tree is the architecture: no import cycles, no UI in the engine.

The layers contract itself is checked by `lint-imports` in scripts/test.sh (what CI runs),
not a second time here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = "lpips_explain"
ROOT = Path(__file__).resolve().parents[1]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None)


def _cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One import cycle among the package's modules (imports inside functions count), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.find_modules_directly_imported_by(m)):
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph.modules):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    graph = _graph()
    graph.add_import(importer="lpips_explain.core.trunks", imported="lpips_explain.core.model")
    cycle = _cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]


def test_no_import_cycle_anywhere():
    assert _cycle(_graph()) is None


def test_engine_never_imports_streamlit():
    graph = grimp.build_graph(PACKAGE, "streamlit", cache_dir=None)
    engine = [m for m in graph.modules if m.startswith(PACKAGE)
              and not m.startswith(f"{PACKAGE}.ui")]
    assert engine
    for m in engine:
        assert "streamlit" not in {i.split(".")[0] for i in graph.find_modules_directly_imported_by(m)}, m


@pytest.mark.slow
def test_scoring_commands_do_not_load_the_chart_libraries():
    """The CLI imports plotly and scipy only in the commands that draw or correlate, and
    Captum (which loads matplotlib's pyplot: about a second) only when an attribution runs:
    a 16 MP ``distance`` run is held to a memory target, and every megabyte of import
    counts there."""
    code = ("import sys, lpips_explain.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('plotly', 'scipy', 'captum', 'matplotlib') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow  # over 2 s on the 2-core machine (2026-12-07 16:20): the whole suite only
def test_scoring_does_not_import_torchvision_or_the_official_package():
    """torchvision (and the official lpips package, which imports it) costs about 2 s and
    170 MB resident at import, Captum with matplotlib about 1 s and 30 MB: same-size
    scoring and the CLI's parser never load them."""
    code = ("import sys, numpy as np, lpips_explain.cli as c; c.build_parser(); "
            "from lpips_explain import Explainer; "
            "x = np.zeros((64, 64, 3), np.uint8); "
            "d = Explainer('alex', '0.1', 'random', seed=0).explain(x, x + 9, attribution=None, "
            "sensitivity=False, repair=False, equivalents=False).distance; "
            "print(d > 0, sorted({m.split('.')[0] for m in sys.modules} "
            "& {'torchvision', 'lpips', 'captum', 'matplotlib'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "True []"


def test_notices_carry_codes_and_survive_pickling():
    import pickle

    from lpips_explain import notices

    n = notices.Notice(notices.ALIGNMENT, "B resized")
    assert n == "B resized" and n.code == notices.ALIGNMENT
    back = pickle.loads(pickle.dumps(n))
    assert back == n and back.code == notices.ALIGNMENT
    assert notices.without([n, notices.random_trunk()], notices.RANDOM_TRUNK) == [n]
    import pytest

    with pytest.raises(ValueError, match="Unknown notice code"):
        notices.Notice("typo", "x")


def test_prepared_warnings_are_typed(random_explainer, pair):
    from lpips_explain import notices

    a, _ = pair
    prep = random_explainer.prepare(a, a.clone(), value_range="[0,1]")
    codes = [getattr(w, "code", None) for w in prep.warnings]
    assert codes[0] == notices.RANDOM_TRUNK  # a random trunk is never perceptual
    assert notices.IDENTICAL_IMAGES in codes and None not in codes

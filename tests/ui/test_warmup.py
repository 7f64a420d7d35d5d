"""The warm-up (ui/serve.py): the network it builds before the first visitor is the one the
page's default options ask for, and it is handed over rather than built twice."""

from __future__ import annotations

import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest

from lpips_explain.ui import controls, resources, serve

pytestmark = [pytest.mark.app, pytest.mark.usefixtures("random_trunk_env")]


@pytest.fixture
def fresh_warm_store():
    resources.result_store().clear()  # nothing left by earlier tests: only the warm-up's
    resources.get_explainer.clear()
    resources._WARM.clear()
    resources._CLAIMED.clear()
    yield
    resources.get_explainer.clear()
    resources._WARM.clear()
    resources._CLAIMED.clear()


def test_the_warm_network_is_the_one_the_first_visitor_uses(fresh_warm_store):
    timings = serve.warm_up()
    assert {"imports", "network", "first run", "second opinions", "total"} <= set(timings)
    key = controls.default_model_key()
    warm = resources._WARM[key]
    assert warm.net == "alex" and not warm.perceptual  # random_trunk_env: a random trunk
    store = resources.result_store()
    before = dict(store.computed)
    at = AppTest.from_file(str(REPO / "pages" / "0_Explain.py"), default_timeout=180).run()
    assert not at.exception
    # The sample's first parts were ready: the first visitor computed none of them.
    for kind in ("prepare", "explain-breakdown", "explain-repair", "explain-equivalents",
                 "explain-opinions"):
        assert store.computed[kind] == before[kind], kind
    shown = [c.value for c in at.caption if c.value.startswith("distance = ")]
    assert shown, [c.value for c in at.caption]
    # The page asked for exactly the warmed key, and took the warm network (not a new one).
    assert key in resources._CLAIMED and key not in resources._WARM
    assert resources.get_explainer(*key) is warm


def test_no_network_is_warmed_once_a_page_asked_for_it(fresh_warm_store):
    key = controls.default_model_key()
    first = resources.get_explainer(*key)
    assert resources.warm_explainer(key) is None  # too late: nothing built twice
    assert resources.get_explainer(*key) is first and not resources._WARM

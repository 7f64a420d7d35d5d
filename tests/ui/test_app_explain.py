"""AppTest drives of the Explain page (pages/0_Explain.py, the default page of app.py): sample,
uploads, bad uploads, options, weights."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from conftest import REPO, assert_clean, png_bytes
from streamlit.testing.v1 import AppTest

from lpips_explain import Explainer
from lpips_explain.core.weights import trunk_state

TIMEOUT = 180
# The Explain page's engineering panels (hidden in presentation mode).
ENGINEERING_PANELS = {"Where is the difference?", "Layer by layer", "Top channels",
                      "What changes the distance", "What would have to be repaired",
                      "In plain words", "Downloads"}
DISTANCE = re.compile(r"^distance = (\d+\.\d{6})$")


png = png_bytes


A_PNG = png(1)
B_PNG = png(1, shift=0.3)


pytestmark = [pytest.mark.app, pytest.mark.usefixtures("random_trunk_env")]


def app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)


def distance_caption(at: AppTest) -> float:
    found = [float(m[1]) for c in at.caption if (m := DISTANCE.match(c.value))]
    assert len(found) == 1, [c.value for c in at.caption]
    return found[0]


def caption_with(at: AppTest, prefix: str) -> str:
    found = [c.value for c in at.caption if c.value.startswith(prefix)]
    assert found, [c.value for c in at.caption]
    return found[0]


def banner_shown(at: AppTest) -> bool:
    return any("NOT a perceptual metric" in w.value for w in at.warning)


def started() -> AppTest:
    """The page after its first run (the default sample, cached after the first test), with
    saliency, the cheapest attribution: keeps tests fast on 2 cores. (The method picker sits
    beside the attribution map; its state is set directly.)"""
    at = app()
    at.session_state["sb_method"] = "saliency"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_state(at: AppTest) -> str:
    """The run state line at the top of the page (it names every part)."""
    return next(m.value for m in at.markdown if "breakdown" in m.value)


def ask_sensitivity(at: AppTest) -> AppTest:
    """Press the sensitivity panel's button (the sensitivity is computed on request)."""
    at.button(key="sensitivity_button").click().run()
    return at


def show_attribution(at: AppTest) -> AppTest:
    """Switch the large "where" view to the attribution map (method picker beside it)."""
    at.segmented_control(key="where_view").set_value("attribution").run()
    return at


def upload(at: AppTest, a: bytes, b: bytes, names=("a.png", "b.png")) -> AppTest:
    at.file_uploader(key="upload_a").set_value((names[0], a, "image/png"))
    at.file_uploader(key="upload_b").set_value((names[1], b, "image/png"))
    return at


def test_default_sample_renders_full_explanation(reference):
    at = app().run()
    assert_clean(at)
    assert banner_shown(at)
    manifest = __import__("json").loads((REPO / "assets/samples.json").read_text())
    pair = next(p for p in manifest["pairs"] if p["id"] == manifest["default_pair"])
    expected = reference.distance(REPO / "assets" / pair["a"], REPO / "assets" / pair["b"])
    assert distance_caption(at) == pytest.approx(expected, abs=1.5e-6)
    assert caption_with(at, "5 layers (relu1, relu2, relu3, relu4, relu5)")
    assert caption_with(at, "Map: spatial LPIPS distance over B, all layers summed")
    # The run state at the top says every part is ready, the attribution on request.
    state = run_state(at)
    assert state.startswith("**Ready**") and "failed" not in state
    assert "attribution (on request)" in state and "sensitivity (on request)" in state
    assert "Integrated gradients" not in " ".join(m.value for m in at.markdown)
    assert not [c for c in at.get("plotly_chart") if c.key == "sensitivity_chart"]
    ask_sensitivity(at)  # then it follows every pair, as the attribution does
    assert "sensitivity (on request)" not in run_state(at)
    # The attribution (the default method, with its completeness) beside the large map.
    show_attribution(at)
    assert_clean(at)
    assert {"Sum of attributions", "Completeness gap"} <= {m.label for m in at.metric}
    assert caption_with(at, "Integrated gradients from the reference to B")
    assert len(at.get("plotly_chart")) >= 6
    assert any("of the area" in md.value and "distance" in md.value for md in at.markdown)
    assert {b.proto.label for b in at.get("download_button")} == {
        "JSON (numbers)", "HTML report (offline)", "PNG summary figure"}
    assert at.session_state["current_pair"].origin.startswith("sample")


def default_description() -> str:
    manifest = __import__("json").loads((REPO / "assets/samples.json").read_text())
    return next(p for p in manifest["pairs"] if p["id"] == manifest["default_pair"])[
        "description"]


def test_upload_gives_the_engines_distance(reference):
    at = started().run()
    assert default_description() in [c.value for c in at.caption]
    upload(at, A_PNG, B_PNG).run()
    assert_clean(at)
    # The disabled sample picker no longer describes a sample that is not in use.
    assert at.selectbox(key="sample_pair").disabled
    assert default_description() not in [c.value for c in at.caption]
    assert distance_caption(at) == pytest.approx(reference.distance(A_PNG, B_PNG), abs=1.5e-6)
    assert f"{distance_caption(at):.6f}" == f"{reference.distance(A_PNG, B_PNG):.6f}"
    assert at.session_state["current_pair"].origin == "upload"


def _engine_message(data: bytes, name: str = "a.png") -> str:
    """What the engine says about an upload (a named file object, as the page passes it)."""
    upload = io.BytesIO(data)
    upload.name = name
    try:
        Explainer("alex", "0.1", "random").prepare(upload, B_PNG)
    except Exception as exc:
        return str(exc)
    raise AssertionError("the engine accepted a bad input")


@pytest.mark.parametrize("bad", [
    pytest.param(A_PNG[: len(A_PNG) // 2], id="truncated"),
    pytest.param(b"", id="empty"),
    pytest.param(b"this is not an image at all", id="not-an-image"),
    pytest.param(png(3, size=16), id="too-small"),
])
def test_bad_upload_shows_the_engines_message_and_recovers(bad, reference):
    at = upload(started(), bad, B_PNG).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert at.error[0].value == _engine_message(bad)
    assert not [c for c in at.caption if DISTANCE.match(c.value)]
    # The page keeps working: the uploaders are still there and a good upload works.
    at.file_uploader(key="upload_a").set_value(("good.png", A_PNG, "image/png"))
    at.run()
    assert_clean(at)
    assert distance_caption(at) == pytest.approx(reference.distance(A_PNG, B_PNG), abs=1.5e-6)


def test_oversized_upload_is_refused_before_decoding(monkeypatch, reference):
    a, b = png(11), png(11, shift=0.2)  # a pair no other test computed (results are cached)
    at = started()
    monkeypatch.setenv("LPIPS_EXPLAIN_MAX_PIXELS", "1000")  # the 64x64 uploads have 4096
    upload(at, a, b).run()
    assert not at.exception
    assert len(at.error) == 1
    assert at.error[0].value == _engine_message(a)
    assert "cap of 1,000 pixels" in at.error[0].value
    monkeypatch.delenv("LPIPS_EXPLAIN_MAX_PIXELS")
    at.run()
    assert_clean(at)
    assert distance_caption(at) == pytest.approx(reference.distance(a, b), abs=1.5e-6)


def test_a_failing_panel_shows_an_error_and_the_page_goes_on():
    def script():
        import streamlit as st

        from lpips_explain.errors import InputError
        from lpips_explain.ui.feedback import panel

        @panel("the broken panel")
        def broken():
            raise ZeroDivisionError("division by zero")

        @panel("the refusing panel")
        def refusing():
            raise InputError("The engine says no.")

        broken()
        refusing()
        st.markdown("still here")

    at = AppTest.from_function(script, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Unexpected error while drawing the broken panel: ZeroDivisionError: division by zero",
        "The engine says no."]
    assert at.markdown[-1].value == "still here"


def test_one_upload_asks_for_the_other():
    at = started()
    at.file_uploader(key="upload_a").set_value(("a.png", A_PNG, "image/png"))
    at.run()
    assert not at.exception
    assert any("Upload image B" in i.value for i in at.sidebar.info)


def test_switching_trunk_changes_layers_and_distance():
    at = upload(started(), A_PNG, B_PNG).run()
    before = distance_caption(at)
    assert caption_with(at, "5 layers")
    at.selectbox(key="sb_net").set_value("squeeze").run()
    assert_clean(at)
    assert caption_with(at, "7 layers (relu1, fire3, fire5, fire6, fire7, fire8, fire9)")
    squeeze = Explainer("squeeze", "0.1", "random").distance(A_PNG, B_PNG)
    assert distance_caption(at) == pytest.approx(squeeze, abs=1.5e-6)
    assert distance_caption(at) != pytest.approx(before, abs=1e-6)


SLOW_PARTS = ("explain-attribution", "explain-sensitivity", "explain-repair",
              "explain-equivalents")
FAST_PART = "explain-breakdown"


def test_display_options_do_not_recompute(reference):
    from lpips_explain.ui.resources import result_store

    b = png(2)
    at = upload(started(), A_PNG, b).run()
    assert_clean(at)
    store = result_store()
    first = dict(store.computed)
    # The attribution is computed on request: when the map view is switched to it.
    assert "attribution (on request)" in run_state(at)
    ask_sensitivity(at)
    show_attribution(at)
    computed = dict(store.computed)
    assert computed["explain-attribution"] == first.get("explain-attribution", 0) + 1
    assert all(computed.get(kind, 0) >= 1 for kind in SLOW_PARTS), computed
    at.segmented_control(key="where_view").set_value("spatial").run()
    # "No upsampling" is offered for one layer only (a summed map needs a common size).
    assert "none" not in at.selectbox(key="map_upsample").options
    at.selectbox(key="map_layer").set_value("relu3").run()
    assert caption_with(at, "Map: spatial LPIPS distance over B, layer relu3")
    at.selectbox(key="map_upsample").set_value("none").run()
    assert "Upsampling: at the layer's own resolution" in caption_with(at, "Map: spatial LPIPS distance over B, layer relu3")
    at.slider(key="where_opacity").set_value(0.3).run()
    at.selectbox(key="channel_layer").set_value("relu5").run()
    assert caption_with(at, "relu5: 256 channels")
    show_attribution(at)
    at.selectbox(key="attr_view").set_value("magnitude").run()
    # The repair slider offers the evaluated points only: each shows a measured distance.
    from lpips_explain.ui.explain import APP_REPAIR_POINTS

    rep = reference.explain(A_PNG, b, attribution=None, sensitivity=False, repair=True,
                            repair_points=APP_REPAIR_POINTS).repair
    assert at.select_slider(key="repair_area").options == [f"{a:.1%}" for a in rep.curve_area]
    at.select_slider(key="repair_area").set_value(float(rep.curve_area[1])).run()
    shown = next(m.value for m in at.markdown if m.value.startswith(
        f"{int(rep.curve_steps[1])} of "))
    assert f"({rep.curve_area[1]:.1%} of the area): distance after repair " \
           f"{rep.curve_distance[1]:.4f}" in shown
    assert_clean(at)
    assert dict(store.computed) == computed


def test_a_rerun_redraws_kept_figures_and_rebuilds_what_changed(monkeypatch):
    """A click reruns the page's script: figures whose results and options are unchanged are
    the ones built before (ui.widgets.drawn), a changed option or a new pair builds anew,
    and what the page shows is the same either way."""
    from lpips_explain.output import figures as plots
    from lpips_explain.ui import keys

    built: list[str] = []
    for name in ("channel_grid", "repair_curve", "spatial_map_figure", "heatmap_overlay"):
        real = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _real=real, _name=name, **k: (
            built.append(_name), _real(*a, **k))[1])

    def specs(at: AppTest) -> dict[str, str]:
        return {c.key: c.proto.spec for c in at.get("plotly_chart") if c.key}

    at = upload(started(), A_PNG, png(6)).run()
    assert_clean(at)
    assert {"channel_grid", "repair_curve", "spatial_map_figure"} <= set(built), built
    before = specs(at)
    built.clear()
    at.run()  # a click that changes nothing the figures depend on
    assert_clean(at)
    assert built == [] and specs(at) == before
    at.radio(key="channel_view").set_value("activation_a").run()
    assert built == ["channel_grid"], built  # only the changed figure is built
    changed = specs(at)
    assert changed["channel_chart"] != before["channel_chart"]
    assert {k: v for k, v in changed.items() if k != "channel_chart"} == {
        k: v for k, v in before.items() if k != "channel_chart"}
    built.clear()
    earlier = at.session_state[keys.DRAWN]["repair curve"][0]  # its sources: the repair
    at = upload(at, A_PNG, png(7)).run()  # a new pair: every figure anew
    assert {"channel_grid", "repair_curve", "spatial_map_figure"} <= set(built), built
    assert specs(at)["repair_chart"] != changed["repair_chart"]
    # One drawing kept per figure, the new pair's: the earlier pair's results are let go.
    kept = at.session_state[keys.DRAWN]
    assert set(kept) <= {"channel grid", "repair curve", "repair gains", "repair images",
                         "spatial map", "attribution map", "comparison", "card images",
                         "repaired thumbnail"}, set(kept)
    assert kept["repair curve"][0][0] is not earlier[0]


def test_a_drawing_that_fails_is_one_panel_s_error(monkeypatch):
    """A kept drawing's builder runs inside its panel's guard: when the swipe view cannot be
    drawn, an error stands in its place and the panels below it are still drawn."""
    from lpips_explain.ui import explain_panels

    def broken(expl, width):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(explain_panels, "_comparison", broken)
    at = started()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Unexpected error while drawing the comparison: ZeroDivisionError: division by zero"]
    assert "Layer by layer" in [h.value for h in at.subheader]


def test_a_rerun_on_stored_parts_draws_no_card_waiting_for_them(monkeypatch):
    """A click on a display option reruns the page: its parts are stored, so the card is
    drawn complete at once (a card waiting for its parts is drawn for a new pair only)."""
    from lpips_explain.ui import explain

    at = started()
    drawn: list[tuple] = []
    real = explain.verdict_card
    monkeypatch.setattr(explain, "verdict_card", lambda expl, waiting=(): (
        drawn.append(tuple(waiting)), real(expl, waiting=waiting))[1])
    at.slider(key="where_opacity").set_value(0.3).run()
    assert_clean(at)
    assert drawn == [(), ()], drawn  # the card with its parts, then with the whole result
    drawn.clear()
    upload(at, A_PNG, png(3)).run()
    assert_clean(at)
    assert drawn[0] == tuple(explain.CARD_PARTS) and drawn[-1] == (), drawn


def test_each_slow_part_is_cached_on_its_own_options():
    from lpips_explain.ui.resources import result_store

    at = show_attribution(ask_sensitivity(upload(started(), A_PNG, png(4)).run()))
    assert_clean(at)
    store = result_store()
    before = dict(store.computed)
    # Another attribution method: only the attribution is computed again.
    at.selectbox(key="sb_method").set_value("input_x_gradient").run()
    assert_clean(at)
    assert "Input x gradient" in caption_with(at, "Map: signed")
    after = dict(store.computed)
    assert after["explain-attribution"] == before["explain-attribution"] + 1
    for kind in (FAST_PART, "explain-sensitivity", "explain-repair"):
        assert after[kind] == before[kind], kind
    # Another patch size: only the repair.
    at.select_slider(key="sb_patch").set_value(16).run()
    assert_clean(at)
    assert any("patches of 16 px repaired" in m.value for m in at.markdown)
    final = dict(store.computed)
    assert final["explain-repair"] == after["explain-repair"] + 1
    for kind in (FAST_PART, "explain-attribution", "explain-sensitivity"):
        assert final[kind] == after[kind], kind
    # Back to the first method: served from the store, nothing computed.
    at.selectbox(key="sb_method").set_value("saliency").run()
    assert_clean(at)
    assert dict(store.computed) == final
    # Fewer top channels: the breakdown (and the second opinions, whose ST-LPIPS breakdown
    # lists them too) again; the slow parts come from the store.
    at.slider(key="sb_top_k").set_value(3).run()
    assert_clean(at)
    fewer = dict(store.computed)
    assert fewer[FAST_PART] == final[FAST_PART] + 1
    for kind in SLOW_PARTS:
        assert fewer[kind] == final[kind], kind
    channels = [t.value for t in at.dataframe if "channel" in t.value.columns]
    assert channels and all(len(t) == 3 for t in channels)


def roles_said(at: AppTest) -> list[str]:
    texts = [e.value for kind in ("caption", "warning", "info")
             for e in getattr(at, kind)]
    return [t for t in texts if "roles swapped" in t.lower()]


def test_swap_explains_a():
    at = ask_sensitivity(upload(started(), A_PNG, B_PNG).run())
    assert roles_shown(at) == "A is the reference, B is explained."
    assert not roles_said(at)
    at.button(key="swap_button").click().run()
    assert_clean(at)
    assert caption_with(at, "Map: spatial LPIPS distance over A")
    assert roles_shown(at) == "B is the reference, A is explained."
    assert len(roles_said(at)) == 1 and any("Roles swapped" in w.value for w in at.info)
    # The uploaders name the images, not their roles (the note beside says the roles).
    assert [u.proto.label for u in at.get("file_uploader")] == ["Image A", "Image B"]
    # The sensitivity panel speaks of A, the explained image, and never of perturbing B.
    assert caption_with(at, "LPIPS, PSNR and SSIM (one panel each) as A is")
    assert any("(small rotations, shifts and a zoom of A" in m.value for m in at.markdown)
    geometric = next(t.value for t in at.dataframe if "perturbation of A" in t.value.columns)
    assert set(geometric["perturbation of A"]) == {"Rotation", "Translation", "Scale"}
    assert not [t.value for t in at.dataframe if "perturbation of B" in t.value.columns]
    chart = next(c for c in at.get("plotly_chart") if "Perturbing A" in c.proto.spec)
    assert "unperturbed A" in chart.proto.spec


def roles_shown(at: AppTest) -> str:
    found = [m.value for m in at.markdown if "is explained." in m.value]
    assert len(found) == 1, found
    return re.sub(r"<[^>]+>", "", found[0])


def test_missing_imagenet_weights_offer_a_random_trunk(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    at = app().run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "alexnet-owt-7be5be79.pth" in message and str(tmp_path) in message
    assert "LPIPS_EXPLAIN_BACKBONE_WEIGHTS" in message
    # The app's own advice: where the file goes, the sidebar's local-file option, the env var.
    advice = at.info[0].value
    assert "alexnet-owt-7be5be79.pth" in advice and str(tmp_path) in advice
    assert "'local torchvision state_dict file'" in advice
    assert "LPIPS_EXPLAIN_BACKBONE_WEIGHTS=" in advice
    assert not banner_shown(at)
    at.button(key="use_random_trunk").click().run()
    assert_clean(at)
    assert banner_shown(at)
    assert at.selectbox(key="sb_backbone").value == "random"
    assert distance_caption(at) > 0


def test_missing_local_weights_file_gets_advice_for_the_app(monkeypatch, tmp_path: Path):
    missing = tmp_path / "nowhere" / "alexnet.pth"
    monkeypatch.setenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", str(missing))
    at = app().run()
    assert not at.exception
    assert at.selectbox(key="sb_backbone").value == "file"
    assert at.text_input(key="sb_backbone_path").value == str(missing)
    assert len(at.error) == 1 and str(missing) in at.error[0].value
    advice = at.info[0].value
    # Not "choose the local-file option": that is the option already chosen.
    assert "choose 'local torchvision state_dict file'" not in advice
    assert "'Weights file' in the sidebar" in advice
    at.button(key="use_random_trunk").click().run()
    assert_clean(at)
    assert banner_shown(at)


def test_core_never_imports_streamlit():
    core = REPO / "lpips_explain"
    offenders = [
        str(p.relative_to(REPO)) for p in core.rglob("*.py")
        if "ui" not in p.relative_to(core).parts[:1]
        and re.search(r"^\s*(import streamlit|from streamlit)", p.read_text(encoding="utf-8"),
                      re.MULTILINE)
    ]
    assert offenders == []
    assert any(re.search(r"^import streamlit", p.read_text(encoding="utf-8"), re.MULTILINE)
               for p in (core / "ui").glob("*.py"))


def test_result_defaults_follow_a_new_pair(reference):
    """Choices whose default is read off the result (the layer with the largest share) are
    not carried over from the previous pair: they follow the new one."""
    at = started()
    assert_clean(at)
    pairs = [(png(s), png(s + 7, shift=0.4)) for s in (3, 11, 23)]
    tops = [max(reference.decompose(a, b).layers, key=lambda lay: lay.distance).name
            for a, b in pairs]
    for (a, b), top in zip(pairs, tops, strict=True):
        upload(at, a, b).run()
        assert_clean(at)
        assert at.selectbox(key="channel_layer").value == top


# --- state rules: complete, changed inputs only; a new pair resets the swap; links -----------


def test_replacing_one_image_compares_at_once(reference):
    a, b, a2, b2 = png(31), png(31, shift=0.3), png(32), png(32, shift=0.2)
    at = upload(started(), a, b).run()
    assert_clean(at)
    first = distance_caption(at)
    # The drop zone is at the top of the sidebar (on the first screen), not in the page.
    assert {u.key for u in at.sidebar.get("file_uploader")} == {"upload_a", "upload_b"}
    # Replace A only: the new A is compared with the current B at once.
    at.file_uploader(key="upload_a").set_value(("a2.png", a2, "image/png")).run()
    assert_clean(at)
    assert distance_caption(at) == pytest.approx(reference.distance(a2, b), abs=1.5e-6)
    assert distance_caption(at) != pytest.approx(first, abs=1e-6)
    # A display change afterwards keeps that pair.
    at.selectbox(key="channel_layer").set_value("relu1").run()
    assert distance_caption(at) == pytest.approx(reference.distance(a2, b), abs=1.5e-6)
    # Then B: the new pair.
    at.file_uploader(key="upload_b").set_value(("b2.png", b2, "image/png")).run()
    assert_clean(at)
    assert distance_caption(at) == pytest.approx(reference.distance(a2, b2), abs=1.5e-6)


def test_a_new_pair_resets_the_swap():
    at = upload(started(), png(41), png(41, shift=0.3)).run()
    at.button(key="swap_button").click().run()
    assert at.session_state["swap_roles"] is True
    assert roles_shown(at) == "B is the reference, A is explained."
    upload(at, png(42), png(42, shift=0.3)).run()
    assert_clean(at)
    assert at.session_state["swap_roles"] is False
    assert roles_shown(at) == "A is the reference, B is explained."
    assert caption_with(at, "Map: spatial LPIPS distance over B")
    # Choosing a sample after a swap is a new pair too.
    at.button(key="swap_button").click().run()
    assert at.session_state["swap_roles"] is True
    at.file_uploader(key="upload_a").set_value(None)
    at.file_uploader(key="upload_b").set_value(None)
    at.run()
    at.selectbox(key="sample_pair").set_value("coffee_blur").run()
    assert_clean(at)
    assert at.session_state["swap_roles"] is False


def test_the_sample_picker_names_what_is_shown():
    at = upload(started(), png(51), png(51, shift=0.3), names=("mine_a.png", "mine_b.png")).run()
    picker = at.selectbox(key="sample_pair")
    assert picker.value == "__uploaded__" and picker.disabled
    # After another page, the uploaders are empty but the uploaded pair is still shown: the
    # picker says so (not a sample's title), and a sample can be chosen from it.
    at.switch_page("pages/2_Sensitivity.py").run()
    at.switch_page("pages/0_Explain.py").run()
    assert_clean(at)
    picker = at.selectbox(key="sample_pair")
    assert picker.value == "__uploaded__" and not picker.disabled
    assert any("uploaded earlier (mine_a.png, mine_b.png)" in c.value for c in at.caption)
    picker.set_value("coffee_blur").run()
    assert_clean(at)
    assert at.session_state["current_pair"].sample_id == "coffee_blur"
    assert "__uploaded__" not in at.selectbox(key="sample_pair").options
    assert at.query_params.get("sample") == "coffee_blur"


def test_query_parameters_round_trip():
    manifest = __import__("json").loads((REPO / "assets/samples.json").read_text())
    pair = next(p for p in manifest["pairs"] if p["id"] == "coffee_blur")
    at = app()
    at.query_params.update({"sample": "coffee_blur", "net": "squeeze", "version": "0.0",
                            "method": "saliency", "swap": "1"})
    at.run()
    assert_clean(at)
    assert at.selectbox(key="sample_pair").value == "coffee_blur"
    assert at.selectbox(key="sb_net").value == "squeeze"
    assert at.radio(key="sb_version").value == "0.0"
    assert at.session_state["sb_method"] == "saliency"
    assert roles_shown(at) == "B is the reference, A is explained."
    squeeze = Explainer("squeeze", "0.0", "random").distance(REPO / "assets" / pair["a"],
                                                              REPO / "assets" / pair["b"])
    assert distance_caption(at) == pytest.approx(squeeze, abs=1.5e-6)
    # The URL carries the view back out, unchanged; an edit shows up in it.
    assert {k: at.query_params[k] for k in ("sample", "net", "version", "method", "swap")} == {
        "sample": "coffee_blur", "net": "squeeze", "version": "0.0", "method": "saliency",
        "swap": "1"}
    at.selectbox(key="sb_net").set_value("alex").run()
    assert at.query_params["net"] == "alex"
    # Unknown values are ignored (and said), never crash the page.
    bad = app()
    bad.query_params.update({"sample": "nope", "net": "resnet"})
    bad.run()
    assert not bad.exception
    assert bad.selectbox(key="sb_net").value == "alex"
    assert any("net=resnet" in t.value for t in bad.get("toast"))


def test_presentation_mode_from_the_link():
    at = app()
    at.session_state["sb_method"] = "saliency"
    at.query_params["present"] = "1"
    at.run()
    assert_clean(at)
    assert at.toggle(key="present_mode").value is True
    # No captions (timings, explanations of figures) and the style that hides the sidebar.
    assert not [c.value for c in at.caption]
    styles = " ".join(h.proto.body for h in at.get("html"))
    assert '[data-testid="stSidebar"]' in styles and "display:none" in styles
    assert at.query_params["present"] == "1"
    # The card and the large swipe view only: no engineering panel, no downloads, no
    # glossary, no run-state line once ready; the trunk's state in one short line.
    heads = {h.value for h in at.subheader}
    assert "Compare A and B" in heads
    assert not heads & ENGINEERING_PANELS, heads & ENGINEERING_PANELS
    assert not at.get("download_button")
    assert not at.main.expander  # no glossary (the drop zone is in the sidebar)
    assert not any("breakdown" in m.value for m in at.markdown)
    bodies = " ".join(h.proto.body for h in at.get("html"))
    assert 'class="lx-distance"' in bodies  # the verdict card
    short = trunk_state("random", False).short
    assert f'<span class="lx-trunk-line">{short}</span>' in bodies  # beside the title
    assert not any("NOT a perceptual metric" in w.value for w in at.warning)
    at.toggle(key="present_mode").set_value(False).run()
    assert any(DISTANCE.match(c.value) for c in at.caption)
    assert "present" not in at.query_params
    # Out of presentation mode the same page has every panel, the downloads, the banner.
    assert {h.value for h in at.subheader} >= ENGINEERING_PANELS
    assert len(at.get("download_button")) == 3 and banner_shown(at)
    assert any(m.value.startswith("**Ready**") for m in at.markdown)
    assert "Glossary" in [e.label for e in at.main.expander]

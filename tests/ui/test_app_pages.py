"""AppTest drives of the Triplet, Sensitivity and Diagnostics pages, and of the pair they share."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, assert_clean, png_bytes
from streamlit.testing.v1 import AppTest

from lpips_explain import Explainer
from lpips_explain.intake.images import load_image

TIMEOUT = 180
DISTANCE = re.compile(r"^distance = (\d+\.\d{6})$")
TRIPLET = re.compile(r"^distance_a = (\d+\.\d{6}), distance_b = (\d+\.\d{6}), margin = ")
MANIFEST = json.loads((REPO / "assets" / "samples.json").read_text(encoding="utf-8"))


png = png_bytes


pytestmark = [pytest.mark.app, pytest.mark.usefixtures("random_trunk_env")]


def page(name: str) -> AppTest:
    return AppTest.from_file(str(REPO / name), default_timeout=TIMEOUT)


def banner_shown(at: AppTest) -> bool:
    return any("NOT a perceptual metric" in w.value for w in at.warning)


def distance_caption(at: AppTest) -> float:
    found = [float(m[1]) for c in at.caption if (m := DISTANCE.match(c.value))]
    assert len(found) == 1, [c.value for c in at.caption]
    return found[0]


def asset(rel: str):
    return REPO / "assets" / rel


def default_pair() -> dict:
    return next(p for p in MANIFEST["pairs"] if p["id"] == MANIFEST["default_pair"])


def test_triplet_default_sample(reference):
    at = page("pages/1_Triplet.py")
    # saliency, the cheapest method (8 s less on 2 cores); the triplet's default integrated
    # gradients are checked in tests/test_explainer.py
    at.session_state["sb_method"] = "saliency"
    at.run()
    assert_clean(at)
    assert banner_shown(at)
    tri = next(t for t in MANIFEST["triplets"] if t["id"] == MANIFEST["default_triplet"])
    m = next(m for c in at.caption if (m := TRIPLET.match(c.value)))
    da, db = reference.distance(asset(tri["ref"]), [asset(tri["a"]), asset(tri["b"])])
    assert float(m[1]) == pytest.approx(da, abs=1.5e-6)
    assert float(m[2]) == pytest.approx(db, abs=1.5e-6)
    verdict = "A is closer" if da < db else "B is closer"
    assert any(f'<p class="lx-distance">{verdict}</p>' in h.value for h in at.get("html"))
    state = next(md.value for md in at.markdown if "attributions" in md.value
                 and "verdict" in md.value)
    assert state.startswith("**Ready**")
    # Margin chart, both candidates' maps on one scale, where each loses, both attribution
    # maps, the repair curve; the flip and the downloads.
    keys = {c.proto.id for c in at.get("plotly_chart")}
    assert len(keys) >= 5
    assert any("flips the decision" in s.value for s in at.success)
    assert len(at.get("download_button")) == 3
    # The repair curve shows the rival's distance and where the decision flips.
    curve = next(c for c in at.get("plotly_chart") if "decision flips" in c.proto.spec)
    assert "the other candidate's distance" in curve.proto.spec
    # One colour scale for both candidates: one figure, one shared colour axis.
    maps = next(c for c in at.get("plotly_chart") if "d(REF, A) over A" in c.proto.spec)
    assert '"coloraxis"' in maps.proto.spec and "d(REF, B) over B" in maps.proto.spec
    # Human column names in the layer table.
    layers = next(t.value for t in at.dataframe if "margin (B - A)" in t.value.columns)
    assert list(layers.columns) == ["layer", "d(REF, A)", "d(REF, B)", "margin (B - A)",
                                    "favours"]
    # "Top channels per layer" is used here: one table of A's and B's top channels per layer.
    channels = [t.value for t in at.dataframe if "A: channel" in t.value.columns]
    assert len(channels) == 5 and all(len(t) == 5 for t in channels)  # alex, top 5
    from lpips_explain.ui.resources import result_store

    before = dict(result_store().computed)
    at.slider(key="sb_top_k").set_value(3).run()
    assert_clean(at)
    channels = [t.value for t in at.dataframe if "B: channel" in t.value.columns]
    assert len(channels) == 5 and all(len(t) == 3 for t in channels)
    # Only the (fast) verdict stage is computed again: the flip and the other metrics'
    # choices do not depend on the number of top channels.
    after = dict(result_store().computed)
    assert after["triplet-verdict"] == before["triplet-verdict"] + 1
    for kind in ("triplet-flip", "triplet-metrics", "triplet-attributions"):
        assert after[kind] == before[kind], (kind, before, after)


def test_triplet_uploads_and_a_bad_one(reference):
    at = page("pages/1_Triplet.py")
    at.session_state["sb_method"] = "saliency"  # as above: the default sample is not asked for
    at.run()
    ref, a, b = png(5), png(5, shift=0.2), png(5, shift=0.5)
    at.file_uploader(key="triplet_upload_ref").set_value(("ref.png", ref, "image/png"))
    at.file_uploader(key="triplet_upload_a").set_value(("a.png", a, "image/png"))
    at.file_uploader(key="triplet_upload_b").set_value(("b.png", b"GIF89a broken", "image/gif"))
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    with pytest.raises(Exception) as engine:
        load_image(b"GIF89a broken")
    # the engine's own message, naming which of the three uploads it refused
    assert at.error[0].value == f"Image B (b.png): {engine.value}"
    at.file_uploader(key="triplet_upload_b").set_value(("b.png", b, "image/png"))
    at.run()
    assert_clean(at)
    m = next(m for c in at.caption if (m := TRIPLET.match(c.value)))
    da, db = reference.distance(ref, [a, b])
    assert (float(m[1]), float(m[2])) == (pytest.approx(da, abs=1.5e-6),
                                          pytest.approx(db, abs=1.5e-6))


def test_sensitivity_default_pair(reference):
    at = page("pages/2_Sensitivity.py").run()
    assert_clean(at)
    assert banner_shown(at)
    pair = default_pair()
    assert distance_caption(at) == pytest.approx(
        reference.distance(asset(pair["a"]), asset(pair["b"])), abs=1.5e-6)
    chosen = at.multiselect(key="sens_transforms").value
    charts = {c.proto.id for c in at.get("plotly_chart")}
    assert len(charts) == len(chosen) + 1  # one sweep per transform, plus the bars
    tables = at.dataframe
    assert len(tables) >= 2  # sweep numbers, geometric table
    # The colour spaces are a static table, so that their descriptions wrap.
    spaces = [r for r in at.table if "space" in r.value.columns]
    assert list(spaces[0].value["space"]) == ["RGB", "LAB", "HSV", "YUV"]
    assert spaces[0].value["what LPIPS sees"].str.len().max() > 60
    geometric = [r for r in tables if "LPIPS change" in r.value.columns]
    assert set(geometric[0].value["perturbation of B"]) == {"Rotation", "Translation", "Scale"}
    # The app runs on the random trunk here: the table is LPIPS alone, and says why.
    assert not any(c.startswith("ST-LPIPS") for c in geometric[0].value.columns)
    assert any("LPIPS alone: ST-LPIPS was not computed" in c.value and "random weights" in
               c.value for c in at.caption)


def test_sensitivity_range_and_points_reach_the_sweep():
    at = page("pages/2_Sensitivity.py").run()
    at.multiselect(key="sens_transforms").set_value(["gaussian_blur"])
    at.slider(key="sens_points").set_value(4)
    at.run()
    at.slider(key="sens_range_gaussian_blur").set_value((1.0, 2.5))
    at.run()
    assert_clean(at)
    table = next(t.value for t in at.dataframe if "LPIPS" in t.value.columns
                 and "strength" in t.value.columns and "SSIM" in t.value.columns
                 and "change" not in t.value.columns)
    assert list(table["strength"]) == pytest.approx([1.0, 1.5, 2.0, 2.5])
    base = distance_caption(at)
    assert len(table) == 4 and (table["LPIPS"] > 0).all()
    assert not (table["LPIPS"] == base).any()  # sigma >= 1 changes B: none is the unperturbed pair


def test_diagnostics_default_pair():
    at = page("pages/3_Diagnostics.py").run()
    assert_clean(at)
    assert banner_shown(at)
    assert any("self-checks passed" in s.value for s in at.success)
    # The run state at the top: done parts, the unrequested faithfulness checks skipped.
    state = next(md.value for md in at.markdown if "self-checks" in md.value
                 and "robust scores" in md.value)
    assert state.startswith("**Ready**")
    assert ":green[:material/check_circle: self-checks]" in state
    assert ":gray[:material/remove_circle_outline: faithfulness]" in state
    # The input table speaks words, not the report's keys.
    inputs = next(d.value for d in at.dataframe if "compared at" in d.value.columns)
    assert "resized or cropped" in inputs.columns and "resized_or_cropped" not in inputs.columns
    assert list(inputs["image"]) == ["A", "B"]
    robust = next(t.value for t in at.table if "LPIPS refused because" in t.value.columns)
    refused = robust[robust["LPIPS refused because"] != ""]
    assert len(refused) >= 3
    assert refused["LPIPS"].isna().all()  # a refusal never gets a number from the other metric
    counts = {m.label: m.value for m in at.metric}
    assert int(counts["LPIPS scored"]) + int(counts["LPIPS refused"]) == len(robust)
    assert any("different metric" in c for c in robust.columns)
    # The sample pair is named as such, and in-memory cases are not called "<bytes>".
    label = robust["pair"][0].replace("\\", "")  # st.table cells come Markdown-escaped
    assert label == f"the current pair ({default_pair()['title']}): A vs B"
    assert not robust["LPIPS refused because"].str.contains("<bytes>").any()


def test_pair_carries_across_pages(reference):
    at = page("app.py")
    at.session_state["sb_method"] = "saliency"
    at.run()
    a, b = png(7), png(7, shift=0.4)
    at.file_uploader(key="upload_a").set_value(("mine_a.png", a, "image/png"))
    at.file_uploader(key="upload_b").set_value(("mine_b.png", b, "image/png"))
    at.run()
    assert_clean(at)
    expected = reference.distance(a, b)
    at.switch_page("pages/2_Sensitivity.py").run()
    assert_clean(at)
    assert banner_shown(at)
    assert any("A = mine_a.png, B = mine_b.png" in c.value for c in at.caption)
    assert distance_caption(at) == pytest.approx(expected, abs=1.5e-6)
    # Sidebar choices survive the page switch too.
    assert at.selectbox(key="sb_net").value == "alex"
    at.switch_page("pages/3_Diagnostics.py").run()
    assert_clean(at)
    assert banner_shown(at)
    robust = next(t.value for t in at.table if "LPIPS refused because" in t.value.columns)
    assert robust["LPIPS"][0] == pytest.approx(expected, abs=1e-6)
    # (cells of st.table render Markdown, so the underscores come escaped)
    assert robust["pair"][0].replace("\\", "") == "the current pair: mine_a.png vs mine_b.png"


def test_choices_and_uploads_survive_page_switches(reference):
    at = page("app.py")
    at.session_state["sb_method"] = "saliency"
    at.run()
    a, b = png(8), png(8, shift=0.3)
    at.file_uploader(key="upload_a").set_value(("x.png", a, "image/png"))
    at.file_uploader(key="upload_b").set_value(("y.png", b, "image/png"))
    at.run()
    at.selectbox(key="sb_net").set_value("squeeze").run()
    assert_clean(at)
    at.switch_page("pages/3_Diagnostics.py").run()
    assert_clean(at)
    assert at.selectbox(key="sb_net").value == "squeeze"
    # Back on Explain: the method (not drawn on Diagnostics) and the uploaded pair are kept.
    at.switch_page("pages/0_Explain.py").run()
    assert_clean(at)
    assert at.session_state["sb_method"] == "saliency"
    assert at.selectbox(key="sb_net").value == "squeeze"
    assert any("uploaded earlier (x.png, y.png)" in c.value for c in at.caption)
    squeeze = Explainer("squeeze", "0.1", "random").distance(a, b)
    assert distance_caption(at) == pytest.approx(squeeze, abs=1.5e-6)


# --- Diagnostics: faithfulness charts, skipped checks, unverified trunk files (issue 8) ---


def test_diagnostics_faithfulness_charts(reference):
    at = page("pages/3_Diagnostics.py").run()
    assert_clean(at)
    assert not [c for c in at.get("plotly_chart") if "Deletion" in c.proto.spec]  # off by default
    at.multiselect(key="diag_faith_methods").set_value(["saliency"])
    at.select_slider(key="diag_faith_patch").set_value(64)
    at.toggle(key="diag_faith_run").set_value(True)
    at.run()
    assert_clean(at)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Deletion" in s and "random orders" in s for s in specs)
    assert any("Cascading randomisation" in s for s in specs)
    table = next(t.value for t in at.dataframe if "deletion AUC" in t.value.columns)
    pair = default_pair()
    expected = reference.faithfulness(asset(pair["a"]), asset(pair["b"]), methods=["saliency"],
                                      patch=64, randomisation=False)
    assert len(table) == 1
    assert table["deletion AUC"][0] == pytest.approx(expected.deletion[0].auc, abs=1e-6)
    # A warning on the page for each map that is no better than random, and only then.
    no_better = expected.no_better_than_random("saliency")
    assert any("no better than random" in w.value for w in at.warning) == no_better


def test_diagnostics_shows_skipped_checks_as_skipped():
    at = page("app.py").run()
    same = png(9)
    at.file_uploader(key="upload_a").set_value(("same_a.png", same, "image/png"))
    at.file_uploader(key="upload_b").set_value(("same_b.png", same, "image/png"))
    at.run()
    at.switch_page("pages/3_Diagnostics.py").run()
    assert not at.exception
    summary = [w.value for w in at.warning if "self-checks passed" in w.value]
    assert summary and "1 skipped" in summary[0]
    assert not any("self-checks passed" in s.value for s in at.success)
    ig = next(m.value for m in at.markdown if "integrated gradients" in m.value)
    assert "skipped" in ig and "pass" not in ig.split("**")[0]


def test_diagnostics_custom_trunk_file_is_not_perceptual(tmp_path, monkeypatch):
    from lpips_explain.core.weights import build_features

    path = tmp_path / "alexnet-owt-7be5be79.pth"  # torchvision's name, not its file
    import torch

    torch.save(build_features("alex", 3).state_dict(), path)
    monkeypatch.setenv("LPIPS_EXPLAIN_BACKBONE_WEIGHTS", str(path))
    at = page("pages/3_Diagnostics.py").run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("NOT a verified perceptual metric" in w for w in warnings)  # the banner
    assert any("Unverified trunk file" in w and "SHA-256" in w for w in warnings)
    assert not any("random" in w.lower() for w in warnings)
    assert not any("A perceptual metric" in s.value for s in at.success)

"""AppTest drives of the Calibrate page (pages/5_Calibrate.py): the synthetic sample trained
and checked against the engine (the default recipe with settings given, and the official
recipe), the learning curve with its held-out loss, the heads used in the app (labelled
custom in the sidebar), a changed triplet opened on the Triplet page, uploads with bad rows,
and the domain gap."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, assert_clean, png_bytes, run_state, zip_bytes
from streamlit.testing.v1 import AppTest

from lpips_explain.intake.judgments import read_judgments, read_judgments_archive
from lpips_explain.ui import keys

TIMEOUT = 300
SAMPLE = REPO / "assets" / "judgments"
BEFORE_AFTER = re.compile(r"^held-out 2AFC before = ([\d.]+|n/a), after = ([\d.]+|n/a)$")
TRIPLET = re.compile(r"^distance_a = (\d+\.\d{6}), distance_b = (\d+\.\d{6}), margin = ")
FAST = {"cal_epochs": 3, "cal_decay_epochs": 2}  # few epochs; lr set per test

pytestmark = [pytest.mark.app, pytest.mark.usefixtures("random_trunk_env")]


@pytest.fixture(autouse=True)
def _heads_root(tmp_path, monkeypatch):
    import lpips_explain.ui.calibrate as cal_ui

    monkeypatch.setattr(cal_ui, "HEADS_ROOT", tmp_path / "heads")


def calibrate_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/5_Calibrate.py")
    return at.run()


def train(at: AppTest, lr: float, **settings: float) -> AppTest:
    for key, value in {**FAST, **settings}.items():
        widget = at.slider(key=key) if key == "cal_val_fraction" else at.number_input(key=key)
        widget.set_value(value)
    at.select_slider(key="cal_lr").set_value(lr)
    at.button(key="cal_train").click()
    return at.run()


def shown_scores(at: AppTest) -> tuple[str, str]:
    m = next(m for c in at.caption if (m := BEFORE_AFTER.match(c.value)))
    return m[1], m[2]


def test_sample_trains_and_matches_the_engine(reference):
    at = calibrate_page()
    assert_clean(at)
    assert any("SYNTHETIC judgments" in i.value for i in at.info)
    assert any("36 of 36 judged triplets readable" in c.value for c in at.caption)
    assert not at.get("download_button")  # nothing trained yet
    parts = ("judgments", "trunk features", "training", "domain gap")
    state = run_state(at, *parts)
    assert state.startswith("**Ready**") and ":gray[:material/remove_circle_outline: training]" in state
    at = train(at, 1e-2)
    assert_clean(at)
    assert ":green[:material/check_circle: training]" in run_state(at, *parts)
    expected = reference.calibrate(read_judgments(SAMPLE / "synthetic_judgments.csv"),
                                   init="released", recipe="auto", epochs=3, decay_epochs=2,
                                   lr=1e-2, val_fraction=0.2, seed=0)
    assert any(c.value == expected.schedule["description"] for c in at.caption)
    assert shown_scores(at) == (f"{expected.before.val_2afc:.3f}",
                                f"{expected.after.val_2afc:.3f}")
    held_out = next(m for m in at.metric if m.label == "Held-out 2AFC")
    assert held_out.value == f"{expected.after.val_2afc:.3f}"
    kept = next(m for m in at.metric if m.label == "Kept epoch")
    assert kept.value == f"{expected.best_epoch} of {len(expected.epochs)}"
    assert [s.value for s in at.subheader][:4] == [
        "Before and after", "Triplets whose verdict changed", "Per-layer weight changes",
        "The heads"]
    assert len(at.get("download_button")) == 3
    assert len(at.get("plotly_chart")) >= 3  # curves, weights, domain gap
    curves = next(c.proto.spec for c in at.get("plotly_chart")
                  if "2AFC agreement with the judges" in c.proto.spec)
    assert "held-out loss (end of epoch)" in curves and "training loss" in curves
    # A display-only rerun keeps the result without training again; Cancel with nothing
    # running says so and keeps it too (a click during training interrupts that run).
    at.run()
    assert shown_scores(at) == (f"{expected.before.val_2afc:.3f}",
                                f"{expected.after.val_2afc:.3f}")
    at.button(key=keys.CAL_CANCEL).click().run()
    assert_clean(at)
    assert any("Nothing is being trained" in i.value for i in at.info)
    assert shown_scores(at) == (f"{expected.before.val_2afc:.3f}",
                                f"{expected.after.val_2afc:.3f}")


def test_official_recipe_is_one_choice_away(reference):
    at = calibrate_page()
    plan = next(c.value for c in at.caption if c.value.startswith("Recipe auto"))
    assert "chosen from 29 training triplets" in plan  # 36 triplets, 7 held out
    at.radio(key=keys.CAL_RECIPE).set_value("official").run()
    assert any(c.value.startswith("Recipe official (the official recipe): 5 + 5 epochs")
               for c in at.caption)
    at.button(key="cal_train").click().run()
    assert_clean(at)
    expected = reference.calibrate(read_judgments(SAMPLE / "synthetic_judgments.csv"),
                                   recipe="official", seed=0)
    assert expected.schedule["lr"] == 1e-4 and expected.schedule["steps"] == 10
    assert shown_scores(at) == (f"{expected.before.val_2afc:.3f}",
                                f"{expected.after.val_2afc:.3f}")
    kept = next(m for m in at.metric if m.label == "Kept epoch")
    assert kept.value == f"{expected.best_epoch} of {len(expected.epochs)}"


def test_heads_used_in_the_app_are_labelled_and_a_changed_triplet_opens(reference):
    at = calibrate_page()
    # No held-out part: the last epoch is kept, so the heads really change.
    at = train(at, 5e-2, cal_val_fraction=0.0, cal_batch=4)
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "before" in d.value.columns
                 and "after" in d.value.columns)
    assert len(table) > 0 and (table["before"] != table["after"]).all()
    at.button(key="cal_use_heads").click().run()
    assert_clean(at)
    assert at.session_state[keys.LIN_KIND] == "file"
    path = at.session_state[keys.LIN_PATH]
    assert path.endswith("lin.pth")
    assert any("Calibrated lin heads in use" in w.value for w in at.sidebar.warning)
    assert any("These heads are in use" in s.value for s in at.success)
    # Open the first changed triplet on the Triplet page, with the calibrated heads.
    first = table["triplet"].iloc[0]
    at.selectbox(key=keys.CAL_CHANGED_PICK).set_value(first).run()
    at.button(key=keys.CAL_OPEN).click().run()
    assert not at.exception, [e.value for e in at.exception]
    m = next(m for c in at.caption if (m := TRIPLET.match(c.value)))
    from lpips_explain import Explainer

    calibrated = Explainer("alex", "0.1", "random", seed=0, lin_weights=path)
    assert calibrated.model.lin_info.kind == "calibrated"
    line = int(first.split()[-1])  # "line 5": the CSV's 4th data row (line 1 is the header)
    row = read_judgments(SAMPLE / "synthetic_judgments.csv").rows[line - 2]
    d0, d1 = calibrated.distance(SAMPLE / row.ref, [SAMPLE / row.p0, SAMPLE / row.p1])
    assert (float(m[1]), float(m[2])) == (pytest.approx(d0, abs=1.5e-6),
                                          pytest.approx(d1, abs=1.5e-6))
    # Every result made with the heads says so.
    assert any("calibrated (custom) lin heads" in w.value
               for w in [*at.warning, *at.info, *at.caption])
    # And back to the official heads.
    at.switch_page("pages/5_Calibrate.py").run()
    at.button(key=keys.CAL_OFFICIAL_HEADS).click().run()
    assert_clean(at)
    assert at.session_state[keys.LIN_KIND] == "official"
    assert not any("lin heads in use" in w.value for w in at.sidebar.warning)


def test_uploaded_csv_and_zip_with_bad_rows(reference):
    members = {f"imgs/{i}.png": png_bytes(i, 48, shift=0.1 * (i % 3)) for i in range(9)}
    members["../evil.png"] = png_bytes(1, 48)
    rows = ["ref,p0,p1,judge"]
    for k in range(3):
        rows.append(f"imgs/{3 * k}.png,imgs/{3 * k + 1}.png,imgs/{3 * k + 2}.png,0.{2 * k + 2}")
    rows.append("imgs/0.png,imgs/1.png,imgs/missing.png,0.5")
    rows.append("imgs/0.png,imgs/1.png,imgs/2.png,2.0")
    text = "\n".join(rows) + "\n"
    data = zip_bytes(members)
    at = calibrate_page()
    at.radio(key=keys.CAL_SOURCE).set_value("upload").run()
    assert any("Upload a zip" in i.value for i in at.info) and not at.exception
    at.file_uploader(key=keys.CAL_ZIP).set_value(("mine.zip", data, "application/zip"))
    at.file_uploader(key=keys.CAL_CSV).set_value(("mine.csv", text.encode(), "text/csv"))
    at.run()
    assert_clean(at)
    refused = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    expected = read_judgments_archive(data, csv_text=text, label="mine.zip").refused
    assert list(refused["row"]) == [r.row for r in expected]
    assert "archive member ../evil.png" in list(refused["row"])
    assert {"line 5", "line 6"} <= set(refused["row"])
    assert any("3 of 6 judged triplets readable" in c.value for c in at.caption)
    at = train(at, 1e-2, cal_val_fraction=0.35)
    assert_clean(at)
    assert next(m for m in at.metric if m.label == "Triplets used").value == "3"


def test_domain_gap_of_two_uploaded_sets(reference):
    a = zip_bytes({f"a/{i}.png": png_bytes(i, 40) for i in range(6)})
    b = zip_bytes({f"b/{i}.png": png_bytes(50 + i, 40, shift=0.3) for i in range(6)})
    at = calibrate_page()
    assert_clean(at)
    sample = next(d.value for d in at.dataframe if "MMD²" in d.value.columns)
    assert len(sample) == 5
    at.file_uploader(key=keys.GAP_ZIP_A).set_value(("a.zip", a, "application/zip")).run()
    assert any("Upload the other set too" in i.value for i in at.info)
    assert run_state(at, "domain gap").startswith("**Waiting for the other image set**")
    at.file_uploader(key=keys.GAP_ZIP_B).set_value(("b.zip", b, "application/zip"))
    at.run()
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "MMD²" in d.value.columns)
    expected = reference.domain_gap(a, b)
    assert list(table["layer"]) == [g.name for g in expected.layers]
    assert list(table["MMD²"]) == pytest.approx([g.mmd2 for g in expected.layers], rel=1e-9)
    assert list(table["p"]) == pytest.approx([g.p_value for g in expected.layers])
    checks = next(d.value for d in at.dataframe if "grayscale" in d.value.columns)
    assert list(checks["images"]) == [6, 6]

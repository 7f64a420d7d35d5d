"""AppTest drives of the Audit page (pages/6_Audit.py): the bundled sample sets, the filters,
one row's drill-down opened on the Explain and Triplet pages, and uploads (CSV + zip)."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from conftest import REPO, assert_clean, png_bytes, run_state, zip_bytes
from streamlit.testing.v1 import AppTest

from lpips_explain.analyses.pair import quality
from lpips_explain.intake.images import load_image

TIMEOUT = 300
SAMPLE = REPO / "assets" / "audit_sample"
DISTANCE = re.compile(r"^distance = (\d+\.\d{6});")  # the Audit page's row caption
EXPLAIN_DISTANCE = re.compile(r"^distance = (\d+\.\d{6})$")  # the Explain page's
TRIPLET = re.compile(r"^distance_a = (\d+\.\d{6}), distance_b = (\d+\.\d{6}), margin = ")

pytestmark = [pytest.mark.app, pytest.mark.usefixtures("random_trunk_env")]


@pytest.fixture(autouse=True)
def _work_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LPIPS_EXPLAIN_AUDIT_DIR", str(tmp_path / "audit-work"))


def audit_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/6_Audit.py")
    return at.run()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def rows_table(at: AppTest):
    return next(d.value for d in at.dataframe if "status" in d.value.columns)


def _csv(name: str) -> list[dict]:
    with (SAMPLE / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_sample_pairs_table_filters_and_open_on_explain(reference):
    at = audit_page()
    assert_clean(at)
    state = run_state(at, "rows", "audit")
    assert state.startswith("**Ready**") and ":green[:material/check_circle: audit]" in state
    assert (metric(at, "Rows"), metric(at, "Scored"), metric(at, "Failed")) == ("36", "36", "0")
    table = rows_table(at)
    assert len(table) == 36 and table["id"].tolist() == [r["id"] for r in _csv("pairs.csv")]
    # The numbers are the engine's: distances and SSIM against independent calls.
    for r in _csv("pairs.csv")[::9]:
        shown = table.set_index("id").loc[r["id"]]
        a, b = SAMPLE / r["a"], SAMPLE / r["b"]
        assert shown["distance"] == pytest.approx(reference.distance(a, b), abs=1e-6)
        ssim = quality.ssim(load_image(a).tensor, load_image(b).tensor)[0]
        assert shown["ssim"] == pytest.approx(float(ssim), abs=1e-6)
    assert table["img_a"].str.startswith("data:image/jpeg;base64,").all()
    assert len(at.get("plotly_chart")) == 2  # the disagreement plot and the row's layers

    # Filters: a finding, then text, then failed rows only.
    at.selectbox(key="audit_finding").set_value("largest_distance").run()
    top = rows_table(at)
    assert len(top) == 10 and top["distance"].min() >= table["distance"].nlargest(10).min()
    at.selectbox(key="audit_finding").set_value("all").run()
    at.text_input(key="audit_search").set_value("blur").run()
    assert set(rows_table(at)["id"]) == {r["id"] for r in _csv("pairs.csv")
                                         if r["distortion"] == "blur"}
    at.text_input(key="audit_search").set_value("").run()
    at.selectbox(key="audit_status").set_value("failed").run()
    assert len(rows_table(at)) == 0 and any("No row matches" in i.value for i in at.info)
    at.selectbox(key="audit_status").set_value("all").run()
    at.radio(key="audit_axis").set_value("psnr").run()
    assert_clean(at)

    # One row: its caption, then the hand-off to the Explain page.
    rid = table.sort_values("distance").iloc[-1]["id"]
    at.selectbox(key="audit_row").set_value(rid).run()
    shown = [float(m[1]) for c in at.caption if (m := DISTANCE.match(c.value))]
    assert shown == [pytest.approx(table.set_index("id").loc[rid]["distance"], abs=1e-6)]
    at.button(key="audit_open").click().run()
    assert_clean(at)
    assert not any(DISTANCE.match(c.value) for c in at.caption)  # left the Audit page
    explained = [float(m[1]) for c in at.caption if (m := EXPLAIN_DISTANCE.match(c.value))]
    assert explained == [pytest.approx(shown[0], abs=1.5e-6)]
    row = next(r for r in _csv("pairs.csv") if r["id"] == rid)
    texts = [e.value for e in (*at.caption, *at.markdown, *at.info)]
    assert any(row["b"].split("/")[-1] in t for t in texts), texts  # the row's files


def test_sample_triplets_agreement_and_open_on_triplet(reference):
    at = audit_page()
    at.radio(key="audit_source").set_value("sample_triplets").run()
    assert_clean(at)
    rows = _csv("triplets.csv")
    assert metric(at, "Rows") == "24"
    table = rows_table(at).set_index("id")
    scores = []
    for r in rows:
        d0, d1 = reference.distance(SAMPLE / r["ref"], [SAMPLE / r["p0"], SAMPLE / r["p1"]])
        g = float(r["judge"])
        assert table.loc[r["id"], "d0"] == pytest.approx(d0, abs=1e-6)
        scores.append((d0 < d1) * (1 - g) + (d1 < d0) * g + 0.5 * (d0 == d1))
    assert float(metric(at, "2AFC agreement with the judges")) == pytest.approx(
        np.mean(scores), abs=5e-4)
    at.selectbox(key="audit_agree").set_value("disagrees").run()
    shown = rows_table(at)
    assert (shown["agree"] == False).all()  # noqa: E712 - a pandas column
    assert len(shown) == sum((s < 0.5) for s, r in zip(scores, rows, strict=True)
                             if float(r["judge"]) != 0.5)
    rid = shown["id"].iloc[0]
    at.selectbox(key="audit_row").set_value(rid).run()
    at.button(key="audit_open").click().run()
    assert_clean(at)
    m = next(m for c in at.caption if (m := TRIPLET.match(c.value)))
    assert float(m[1]) == pytest.approx(table.loc[rid, "d0"], abs=1.5e-6)
    assert float(m[2]) == pytest.approx(table.loc[rid, "d1"], abs=1.5e-6)


@pytest.mark.slow  # ST-LPIPS and DISTS (VGG16) over the 24 triplets
def test_second_opinion_columns_on_the_sample_triplets():
    """With ST-LPIPS and DISTS chosen, the table holds their columns and the page states each
    metric's 2AFC agreement with the judges, recomputed here from the table's rows."""
    at = audit_page()
    at.radio(key="audit_source").set_value("sample_triplets").run()
    at.multiselect(key="audit_metrics").set_value(["stlpips", "dists"]).run()
    assert_clean(at)
    table = rows_table(at)
    judge = {r["id"]: float(r["judge"]) for r in _csv("triplets.csv")}
    shown = " ".join(m.value for m in at.markdown)
    for metric_name, label in (("stlpips", "ST-LPIPS"), ("dists", "DISTS")):
        m0, m1 = table[f"{metric_name}0"].to_numpy(), table[f"{metric_name}1"].to_numpy()
        g = np.array([judge[i] for i in table["id"]])
        afc = np.mean((m0 < m1) * (1 - g) + (m1 < m0) * g + 0.5 * (m0 == m1))
        assert f"LPIPS against {label}** (2AFC with the judges: {afc:.3f}" in shown
    ranks = [d.value for d in at.dataframe if "gap" in d.value.columns]
    assert len(ranks) == 2 and all(len(r) == 10 for r in ranks)


def test_uploaded_csv_and_zip():
    at = audit_page()
    at.radio(key="audit_source").set_value("upload").run()
    assert any("Upload a zip" in i.value for i in at.info) and not at.exception
    assert run_state(at, "rows", "audit").startswith("**Waiting for a zip of the images**")
    csv_text = "id,a,b,note\none,x/1.png,x/2.png,first\ntwo,x/1.png,x/gone.png,second\n"
    at.file_uploader(key="audit_upload_csv").set_value(("rows.csv", csv_text.encode(), "text/csv"))
    at.file_uploader(key="audit_upload_zip").set_value(
        ("imgs.zip", zip_bytes({"../evil.png": b"x"}), "application/zip"))
    at.run()
    assert not at.exception and len(at.error) == 1 and "unsafe path" in at.error[0].value
    at.file_uploader(key="audit_upload_zip").set_value(
        ("imgs.zip", zip_bytes({"x/1.png": png_bytes(3), "x/2.png": png_bytes(3, shift=0.3)}),
         "application/zip"))
    at.run()
    assert_clean(at)
    assert (metric(at, "Rows"), metric(at, "Scored"), metric(at, "Failed")) == ("2", "1", "1")
    table = rows_table(at)
    assert table["note"].tolist() == ["first", "second"]  # extra columns kept
    failed = table.set_index("id").loc["two"]
    assert failed["status"] == "failed" and "x/gone.png" in failed["error"]

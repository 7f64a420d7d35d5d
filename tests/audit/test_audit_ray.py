"""The Ray engine against the local one, row for row, on a local Ray instance this module
starts (2 CPUs, no dashboard) and stops. Ray is an optional extra: without it these tests
skip, except under CI, which installs it (requirements-dev.txt) and must run them."""

from __future__ import annotations

import os

import pytest
from audit_data import make_pairs, make_triplets

from lpips_explain import Explainer
from lpips_explain.audit.local import run_local
from lpips_explain.audit.settings import settings_for
from lpips_explain.audit.table import read_audit_input

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(300)]  # Ray start-up, actors


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def ray_instance():
    try:
        import ray
        import ray.data  # the "data" extra
    except ImportError:
        if _in_ci():
            pytest.fail("ray[data] is missing: CI installs it from requirements-dev.txt")
        pytest.skip("Ray is an optional extra: pip install 'lpips-explain[ray]'")
    # A private local instance: without address="local", ray.init() joins the last `ray start`
    # head on the machine (test_audit_ray_cluster.py's, when the two files run side by side on
    # two workers), and the two tests' actors then compete for one cluster's CPUs.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    return Explainer("alex", "0.1", "random", seed=0)


def _same_rows(a, b) -> None:
    """Same ids in the same order, same statuses and errors, numbers to 1e-6."""
    ra, rb = a.to_pylist(), b.to_pylist()
    assert [r["id"] for r in ra] == [r["id"] for r in rb]
    assert a.column_names == b.column_names
    for x, y in zip(ra, rb, strict=True):
        for k in x:
            if isinstance(x[k], float) and isinstance(y[k], float):
                assert x[k] == pytest.approx(y[k], abs=1e-6, nan_ok=True), (x["id"], k)
            else:
                assert x[k] == y[k], (x["id"], k)


def test_ray_engine_agrees_with_the_local_engine_row_for_row(ray_instance, explainer,
                                                             tmp_path):
    from lpips_explain.audit.ray_engine import run_ray

    data = make_pairs(tmp_path / "d", 60)
    table = read_audit_input(data.csv)
    settings = settings_for(explainer.model, size_policy="resize", max_pixels=None)
    local = run_local(table, tmp_path / "local", settings, model=explainer.model, workers=0)
    ray_res = run_ray(table, tmp_path / "ray", settings, model=explainer.model, batch_size=8)
    assert ray_res.engine == "ray" and ray_res.computed == len(table) == 66
    _same_rows(local.rows, ray_res.rows)
    failed = {r["id"]: r["error_type"] for r in ray_res.rows.to_pylist() if r["status"] != "ok"}
    assert failed == {k: v for k, v in data.expected_errors.items() if k != "mismatch"}
    # Ray wrote Parquet parts under DIR/parts/ray-*/, assembled like the local engine's.
    assert list((tmp_path / "ray" / "parts").glob("ray-*/*.parquet"))
    assert sorted(p.name for p in (tmp_path / "ray" / "thumbs").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "thumbs").iterdir())


def test_ray_finishes_an_interrupted_local_run_of_triplets(ray_instance, explainer, tmp_path):
    from lpips_explain.audit.ray_engine import run_ray

    data = make_triplets(tmp_path / "t", 40)
    table = read_audit_input(data.csv)
    settings = settings_for(explainer.model, size_policy="resize", max_pixels=None)
    full = run_local(table, tmp_path / "full", settings, model=explainer.model, workers=0)

    class Stop(Exception):
        pass

    def stop(_n: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_local(table, tmp_path / "mixed", settings, model=explainer.model, workers=0,
                  batch_size=4, part_rows=16, part_seconds=1e9, on_part=stop)
    rest = run_ray(table, tmp_path / "mixed", settings, model=explainer.model, batch_size=8)
    assert 16 <= rest.reused < len(table) and rest.computed == len(table) - rest.reused
    _same_rows(full.rows, rest.rows)

"""``--ray-address`` on an existing cluster: a Ray head with 4 logical CPUs that this module starts
as its own processes (``ray start --head``), the audit driver joining it by address. The rows
are split across the cluster's workers (scored by more than one worker process) and equal
the local engine's row for row."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit_data import make_pairs

from lpips_explain import Explainer
from lpips_explain.audit.local import run_local
from lpips_explain.audit.settings import settings_for
from lpips_explain.audit.table import read_audit_input

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(400)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        import ray
        import ray.data  # the "data" extra
    except ImportError:
        pytest.skip("Ray is an optional extra: pip install 'lpips-explain[ray]'")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already initialised in this process")
    exe = Path(sys.executable).with_name("ray")
    ray_cli = str(exe) if exe.exists() else shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the ray command is not installed")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    # Token authentication off for this private head and its driver alike (a token file in
    # ~/.ray would otherwise switch it on for one side only).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    # 4 logical CPUs on 2 cores: the two scoring actors take one each, and Ray Data's own
    # read and split tasks still find one free (with 2 an actor could be cancelled unstarted
    # while the machine was loaded).
    start = [ray_cli, "start", "--head", "--block", "--num-cpus", "4", "--num-gpus", "0",
             "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp),
             "--disable-usage-stats"]
    # --block keeps `ray start` in the foreground; its own session holds every process of
    # this head, so the whole head (and nothing else) is stopped through its process group.
    head = subprocess.Popen(start, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    old_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        _wait_for_port(port, head)
        yield f"127.0.0.1:{port}"
    finally:
        if old_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_mode
        _stop_head(head)


def _stop_head(head: subprocess.Popen) -> None:
    """Stop every process of the head's session. `ray start --block` takes about 33 s to
    exit after SIGTERM (measured here), so the group gets 5 s and is then killed: the head
    is this module's own, with its own temporary folder, and nothing of it is kept."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=30)


def _wait_for_port(port: int, head: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(3)  # the GCS listens before the raylet has registered
                return
        time.sleep(0.5)
    pytest.fail("the Ray head did not start in time")


def test_ray_address_splits_the_rows_across_the_clusters_workers(cluster, tmp_path):
    from lpips_explain.audit.ray_engine import run_ray

    ex = Explainer("alex", "0.1", "random", seed=0)
    data = make_pairs(tmp_path / "d", 40)
    table = read_audit_input(data.csv)
    settings = settings_for(ex.model, size_policy="resize", max_pixels=None)
    local = run_local(table, tmp_path / "local", settings, model=ex.model, workers=0)
    res = run_ray(table, tmp_path / "ray", settings, model=ex.model, address=cluster,
                  concurrency=2, batch_size=4)
    workers = res.workers or {}
    # Every pending row was scored by a worker, and by more than one worker process.
    assert sum(workers.values()) == res.computed == len(table)
    assert len(workers) >= 2, workers
    assert res.to_dict()["workers"] == workers
    a, b = local.rows.to_pylist(), res.rows.to_pylist()
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["status"] == y["status"]
        if x["status"] == "ok":
            assert y["distance"] == pytest.approx(x["distance"], abs=1e-6)
            assert y["ssim"] == pytest.approx(x["ssim"], abs=1e-6)
    assert "worker" not in res.rows.column_names

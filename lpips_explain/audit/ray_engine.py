"""The Ray audit engine (optional extra ``lpips-explain[ray]``): the same rows, scaled out.

Ray Data reads the pending rows (``from_items``), runs them through ``map_batches`` with
:class:`AuditActor` (a class: each actor builds the model once and checks that its weights
hash to the driver's), ``concurrency`` actors at a time, one GPU each when the cluster has
GPUs, and writes Parquet parts to ``DIR/parts/``. The per-row function is the local
engine's (decode, score, record), so the numbers are the same row for row; the parts
store assembles ``DIR/audit.parquet`` exactly as for the local engine, and a restart
resumes the same way. Without ``address`` a local Ray instance is started (and stopped
after the run); with one, the run joins that cluster, whose nodes must be able to read the
input paths and ``DIR`` (a shared file system).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lpips_explain.audit.columns import part_columns
from lpips_explain.audit.rows import decode_row, make_record, score_rows
from lpips_explain.audit.settings import AuditSettings, model_fingerprint
from lpips_explain.audit.store import EngineResult, arrow_schema, records_to_table, start_run
from lpips_explain.audit.table import AuditRow, AuditTable
from lpips_explain.core.cache import FeatureCache
from lpips_explain.core.model import LpipsNet
from lpips_explain.errors import LpipsExplainError
from lpips_explain.validation import Progress, integer, optional_integer

LABEL = "Auditing rows (Ray)"
#: The column of Ray's parts naming the worker (host:pid) that scored the row; the final
#: audit.parquet leaves it out, the engine's summary counts the rows per worker.
WORKER_COLUMN = "worker"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # lpips_explain/
# How long a run waits for its whole actor pool to start before scoring (then a clear error).
ACTOR_START_S = 600


class RayUnavailableError(LpipsExplainError):
    """Ray is not installed: the Ray engine is an optional extra."""

    exit_code = 2


def _ray() -> Any:
    try:
        import ray
        import ray.data  # needs the "data" extra
    except ImportError:
        raise RayUnavailableError(
            "The Ray engine needs Ray Data: pip install 'lpips-explain[ray]' (or "
            "pip install 'ray[data]'), or use --engine local.") from None
    return ray


class AuditActor:
    """A Ray Data actor: builds the model once, then decodes and scores batches of rows."""

    def __init__(self, kind: str, settings: dict, fingerprint: str) -> None:
        import torch

        self.kind = kind
        self.settings = AuditSettings(**settings)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net = self.settings.build().to(self.device)
        found = model_fingerprint(self.net)
        if found != fingerprint:
            raise RuntimeError(
                f"This Ray worker built a different model (weights hash {found}, the driver's "
                f"is {fingerprint}): give every node the same weights files.")
        # Ray's parts also say which worker process scored each row (WORKER_COLUMN).
        self.schema = arrow_schema([*part_columns(kind, self.net.layer_names,
                                                  self.settings.metrics),
                                    (WORKER_COLUMN, "string")])
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.metric_nets = {m: self.settings.build_metric(m).to(self.device)
                            for m in self.settings.metrics}
        self.cache = FeatureCache()  # per actor: references shared by rows encode once

    def __call__(self, batch: Any) -> Any:
        items = batch.to_pylist()
        rows = [AuditRow(it["id"], tuple(it["images"]), tuple(it["shown"]), it["judge"],
                         (), it["problem"]) for it in items]
        decoded = [decode_row(r, self.kind, self.settings, k) for k, r in enumerate(rows)]
        scores = score_rows(self.net, self.kind, decoded, batch_size=len(decoded),
                            cache=self.cache, metrics=self.metric_nets)
        records = [make_record(self.kind, r, d, scores.get(k), self.net.layer_names,
                               it["signature"], self.settings.metrics)
                   for k, (r, d, it) in enumerate(zip(rows, decoded, items, strict=True))]
        for rec in records:
            rec[WORKER_COLUMN] = self.worker
        return records_to_table(records, self.schema)


def _resources(ray: Any) -> tuple[float, float]:
    res = ray.cluster_resources()
    return float(res.get("CPU", 0)), float(res.get("GPU", 0))


def run_ray(table: AuditTable, out_dir: str | os.PathLike, settings: AuditSettings, *,
            model: LpipsNet | None = None, address: str | None = None,
            concurrency: int | None = None, batch_size: int = 16,
            progress: Progress | None = None) -> EngineResult:
    """Score every row of ``table`` not already finished in ``out_dir`` with Ray Data and
    assemble ``out_dir/audit.parquet``. Uses the Ray instance already initialised in this
    process if there is one, else connects to ``address``, else starts a local instance."""
    ray = _ray()
    concurrency = optional_integer(concurrency, "concurrency", minimum=1)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    t0 = time.perf_counter()
    _, store, todo, sigs = start_run(out_dir, table, settings, model, progress, LABEL)
    total = len(table.rows)
    started = False
    workers: dict[str, int] = {}
    if todo:
        if not ray.is_initialized():
            if address:
                # The driver's copy of lpips_explain goes with the job, so every node runs
                # the same code (the nodes need its dependencies: torch, torchvision, lpips).
                ray.init(address=address, runtime_env={
                    "py_modules": [str(PACKAGE_DIR)]})
            else:
                # A new local instance for this run: without an address, ray.init() would join
                # the last `ray start` head on this machine (another job's cluster).
                ray.init(address="local", include_dashboard=False)
            started = True
        try:
            cpus, gpus = _resources(ray)
            if concurrency is None:
                concurrency = max(1, int(gpus) if gpus else int(cpus))
            items = [{"id": table.rows[i].id, "images": list(table.rows[i].images),
                      "shown": list(table.rows[i].shown), "judge": table.rows[i].judge,
                      "problem": table.rows[i].problem, "signature": sigs[i]} for i in todo]
            # Start every actor of the pool before the first batch: otherwise the first one up
            # can score every row while the others still import torch, and the rows are not
            # split across the cluster's workers. A pool that cannot start says so in time.
            context = ray.data.DataContext.get_current()
            if context.wait_for_min_actors_s <= 0:
                context.wait_for_min_actors_s = ACTOR_START_S
            ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_size))
            ds = ds.map_batches(
                AuditActor, batch_size=batch_size, batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=concurrency),
                num_gpus=1 if gpus else None,
                fn_constructor_kwargs={"kind": table.kind, "settings": settings.to_dict(),
                                       "fingerprint": store.fingerprint["model"]})
            # Writing is light: it must not wait for a CPU that the actors hold, or the parts
            # (what a restart resumes from) would only be written at the end.
            written = store.dir / f"ray-{time.time_ns()}"
            ds.write_parquet(str(written), ray_remote_args={"num_cpus": 0})
            workers = _rows_per_worker(written)
        finally:
            if started:
                ray.shutdown()
    if progress:
        progress(total, total, LABEL)
    result = store.finish("ray", table, sigs, len(todo), t0)
    return dataclasses.replace(result, workers=workers if todo else None)


def _rows_per_worker(folder: Path) -> dict[str, int]:
    """Rows scored by each worker process (host:pid) in the parts this run wrote."""
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for path in sorted(folder.rglob("*.parquet")):
        counts.update(pq.read_table(path, columns=[WORKER_COLUMN]).column(0).to_pylist())
    return dict(sorted(counts.items()))

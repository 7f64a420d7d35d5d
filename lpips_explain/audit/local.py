"""The local audit engine (the default): decode in worker processes while the model scores.

Rows are decoded (images, PSNR, SSIM, thumbnails) by a torch DataLoader's worker processes
(``workers``; 0 decodes in this process) while this process scores what has arrived with the
CPUs left to it, in batches of rows of one image size on one model built once. Finished rows go to ``DIR/parts`` every ``part_rows`` rows (or
``part_seconds``), and once more when the run stops for any reason, so a restart with the
same command picks up where this one ended. This module never imports Ray.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from lpips_explain.audit.rows import Decoded, decode_row, make_record, score_rows
from lpips_explain.audit.settings import AuditSettings
from lpips_explain.audit.store import EngineResult, PartStore, start_run
from lpips_explain.audit.table import AuditRow, AuditTable
from lpips_explain.core.cache import FeatureCache
from lpips_explain.core.model import LpipsNet
from lpips_explain.validation import Progress, integer

LABEL = "Auditing rows"
# Threads decoding beside the scoring when no decoding process is used.
DECODE_THREADS = 1


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding processes by default: none on 1 or 2 CPUs, else half the CPUs this process
    may use (1 to 4). Decoding a row (images, PSNR, SSIM, thumbnails) costs about half of
    scoring it; on 2 CPUs a decoding process leaves the network one thread, and decoding
    inline with 2 scoring threads was 1.6x faster (29.3 against 18.3 pairs per second,
    benchmarks/bench_audit.py, quiet 2-core machine)."""
    cpus = available_cpus()
    return 0 if cpus <= 2 else max(1, min(4, cpus // 2))


def scoring_threads(workers: int) -> int:
    """Torch threads for scoring while ``workers`` processes decode: the CPUs left to it.

    More threads than free cores make every parallel region of the network wait for a
    thread that is not running (measured here: a 2-thread forward several times slower
    while another process kept one of the 2 cores busy)."""
    return max(1, min(torch.get_num_threads(), available_cpus() - workers))


class _Rows(Dataset):
    """The pending rows; item k is row k decoded (in a worker process)."""

    def __init__(self, rows: Sequence[AuditRow], positions: Sequence[int], kind: str,
                 settings: AuditSettings):
        self.rows, self.positions, self.kind, self.settings = rows, positions, kind, settings

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> Decoded:
        pos = self.positions[k]
        return decode_row(self.rows[pos], self.kind, self.settings, pos)


def _keep(item: Decoded) -> Decoded:
    return item


def _one_thread(_worker: int) -> None:
    # Decoding needs no intra-op threads; the CPUs are the scoring process's.
    torch.set_num_threads(1)


def shared_positions(table: AuditTable, positions: Sequence[int]) -> set[int]:
    """The positions (among ``positions``) whose first image (a pair's A, a triplet's
    reference) is the same file as another pending row's: those go through the feature
    cache; a reference used once is encoded with its row, never stored."""
    uses = Counter(table.rows[p].images[0] for p in positions if table.rows[p].images)
    return {p for p in positions if table.rows[p].images and uses[table.rows[p].images[0]] > 1}


def by_reference(table: AuditTable, positions: Sequence[int]) -> list[int]:
    """``positions`` with the rows of one reference file next to each other (first use
    first), so the rows sharing it are scored in the same batches."""
    first: dict[str, int] = {}
    for k, p in enumerate(positions):
        ref = table.rows[p].images[0] if table.rows[p].images else ""
        first.setdefault(ref, k)
    def rank(kp: tuple[int, int]) -> tuple[int, int]:
        k, p = kp
        ref = table.rows[p].images[0] if table.rows[p].images else ""
        return (first[ref], k)
    return [p for _, p in sorted(enumerate(positions), key=rank)]


def _decode_ahead(rows: _Rows, threads: int, ahead: int) -> Iterator[Decoded]:
    """Decoded rows in order, ``threads`` threads decoding up to ``ahead`` rows ahead of the
    consumer (Pillow and torch release the GIL: decoding overlaps the scoring)."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="audit-decode") as pool:
        pending: deque = deque()
        k = 0
        try:
            while k < len(rows) or pending:
                while k < len(rows) and len(pending) < ahead:
                    pending.append(pool.submit(rows.__getitem__, k))
                    k += 1
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def _take_batch(waiting: list[Decoded],
                batch_size: int) -> tuple[list[Decoded], list[Decoded]]:
    """A batch ready to score from the decoded rows waiting (``batch_size`` rows of one image
    size, or all of them once many sizes hoard images) and the rows left waiting."""
    size, count = Counter(d.size for d in waiting).most_common(1)[0]
    if count >= batch_size:
        return [d for d in waiting if d.size == size], [d for d in waiting if d.size != size]
    if len(waiting) >= 4 * batch_size:  # many sizes: do not hoard images
        return waiting, []
    return [], waiting


class _Parts:
    """Scored rows written to the store in parts: every ``part_rows`` rows or every
    ``part_seconds``, whichever comes first (``on_part(n)`` after the n-th part)."""

    def __init__(self, store: PartStore, part_rows: int, part_seconds: float,
                 on_part: Callable[[int], None] | None) -> None:
        self.store, self.part_rows, self.part_seconds = store, part_rows, part_seconds
        self.on_part = on_part
        self.records: list[dict[str, Any]] = []
        self.written = 0
        self.last_write = time.monotonic()

    def flush(self) -> None:
        """Write a part once it is full or old enough."""
        if self.records and (len(self.records) >= self.part_rows
                             or time.monotonic() - self.last_write >= self.part_seconds):
            self.keep()
            self.written += 1
            self.last_write = time.monotonic()
            if self.on_part is not None:
                self.on_part(self.written)

    def keep(self) -> None:
        """Write the rows held, if any (at the end: whatever stopped the run)."""
        if self.records:
            self.store.write(self.records)
            self.records.clear()


def _loader(dataset: _Rows, workers: int, batch_size: int) -> Iterable[Decoded]:
    """The rows decoded: in ``workers`` processes, or by a decoding thread beside the
    scoring (no process to start), or inline."""
    if workers:
        return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                          collate_fn=_keep, worker_init_fn=_one_thread, prefetch_factor=4)
    if DECODE_THREADS:
        return _decode_ahead(dataset, DECODE_THREADS, 2 * batch_size)
    return (dataset[k] for k in range(len(dataset)))


def run_local(table: AuditTable, out_dir: str | os.PathLike, settings: AuditSettings, *,
              model: LpipsNet | None = None, workers: int | None = None,
              batch_size: int = 16, part_rows: int = 64, part_seconds: float = 10.0,
              progress: Progress | None = None,
              on_part: Callable[[int], None] | None = None,
              cache: FeatureCache | None = None,
              metric_models: Mapping[str, torch.nn.Module] | None = None,
              scorer: LpipsNet | None = None) -> EngineResult:
    """Score every row of ``table`` not already finished in ``out_dir`` and assemble
    ``out_dir/audit.parquet``. ``model`` (built from ``settings`` when None) must be the
    network ``settings`` describe. ``on_part(n)`` is called after the n-th part is written.
    ``cache``: where rows' references are encoded (one reference shared by many rows runs
    the trunk once); None encodes every row. ``metric_models``: the networks of
    ``settings.metrics`` already built (e.g. an Explainer's); the others are built here.
    ``scorer``: the network that scores (an approximate mode's, e.g. int8), where it is
    not ``model`` itself; ``model`` stays the exact one the parts are keyed by."""
    workers = default_workers() if workers is None else integer(workers, "workers", minimum=0)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    part_rows = integer(part_rows, "part_rows", minimum=1)
    t0 = time.perf_counter()
    view = cache.view() if cache is not None else None  # this run's own hits and misses
    net, store, todo, sigs = start_run(out_dir, table, settings, model, progress, LABEL)
    given = dict(metric_models or {})
    metric_nets = {m: given[m] if m in given else settings.build_metric(m)
                   for m in settings.metrics} if todo else {}
    total = len(table.rows)
    done = total - len(todo)
    parts = _Parts(store, part_rows, part_seconds, on_part)
    waiting: list[Decoded] = []

    def score(items: list[Decoded]) -> None:
        nonlocal done
        scores = score_rows(scorer if scorer is not None else net, table.kind, items,
                            batch_size=batch_size, cache=view, shared=shared,
                            metrics=metric_nets)
        for d in items:
            parts.records.append(make_record(table.kind, table.rows[d.position], d,
                                             scores.get(d.position), net.layer_names,
                                             sigs[d.position], settings.metrics))
        done += len(items)
        if progress:
            progress(done, total, LABEL)

    threads = torch.get_num_threads()
    if workers:
        torch.set_num_threads(scoring_threads(workers))
    order = by_reference(table, todo)
    shared = shared_positions(table, todo) if view is not None else None
    loader = _loader(_Rows(table.rows, order, table.kind, settings), workers, batch_size)
    try:
        for item in loader:
            if not item.ok:
                score([item])
            else:
                waiting.append(item)
                batch, waiting = _take_batch(waiting, batch_size)
                if batch:
                    score(batch)
            parts.flush()
        if waiting:
            batch, waiting = waiting, []
            score(batch)
    finally:
        # Whatever stops the run (an error, Ctrl-C), rows already scored are kept.
        torch.set_num_threads(threads)
        parts.keep()
    return store.finish("local", table, sigs, len(todo), t0,
                        view.counts() if view is not None else None)

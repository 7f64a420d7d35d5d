"""Latency, throughput and peak memory of LPIPS per trunk, image size and mode, measured here.

For each (trunk, size, mode) :func:`profile` times, on random images of that size, the
modes of one size interleaved so that load from other jobs hits them alike:

* latency: one distance d(a, b) for one pair (both images through the trunk), median;
* throughput: candidates scored per second against one encoded reference, in batches of
  ``batch`` (median over ``repeats`` batches);
* peak memory: the largest rise of the process's resident memory (RSS, sampled every
  millisecond by a thread, after returning freed heap to the system) while one batch is
  scored; on CUDA, torch's peak allocated bytes instead (core/memory.py, PeakMemory).

Time to build a mode (int8 calibration and compilation) is reported apart (``build_s``) and
never mixed into the timings. Every row carries its mode and whether it is exact.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lpips_explain.core.memory import PeakMemory
from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.modes import Mode, mode_net
from lpips_explain.errors import InputError
from lpips_explain.validation import Progress, integer


@dataclass(frozen=True)
class ProfileRow:
    net: str
    size: int
    mode: Mode
    batch: int
    latency_ms: float  # one pair, median
    throughput: float  # candidate images per second against one reference
    batch_ms: float  # one batch of candidates, median
    peak_mb: float  # peak memory rise while scoring one batch (RSS; CUDA: allocated)
    build_s: float  # building the mode (0 for fp32 on the CPU)

    def to_dict(self) -> dict:
        return {"net": self.net, "size": self.size, "mode": self.mode.to_dict(),
                "precision": self.mode.precision, "device": self.mode.device,
                "exact": self.mode.exact, "batch": self.batch,
                "latency_ms": self.latency_ms, "throughput": self.throughput,
                "batch_ms": self.batch_ms, "peak_mb": self.peak_mb, "build_s": self.build_s}


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        info["load_average"] = round(os.getloadavg()[0], 2)
    except OSError:
        info["load_average"] = None
    # When, in UTC: a stored profile is read long after it was taken.
    info["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return info


def size_inversions(rows: list[dict]) -> list[dict]:
    """Where a profile's time does not grow with the image size: for each trunk and mode,
    every larger size timed no slower than the next smaller one, per pair (``latency_ms``)
    or per image of a batch (``batch_ms / batch``, what the latency chart draws); a sign
    of a busy machine, as the work grows with the pixels. Each: net, precision, what,
    small, large and their ms."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("net"), r.get("precision"), r.get("device")), []).append(r)
    timings = (("a pair", lambda r: float(r["latency_ms"])),
               ("an image in a batch", lambda r: float(r["batch_ms"]) / max(1, int(r["batch"]))))
    for (net, precision, _device), items in groups.items():
        items = sorted(items, key=lambda r: r["size"])
        for what, ms in timings:
            for small, large in itertools.pairwise(items):
                if "batch_ms" not in small and what != "a pair":
                    continue
                if ms(large) <= ms(small):
                    out.append({"net": net, "precision": precision, "what": what,
                                "small": small["size"], "small_ms": ms(small),
                                "large": large["size"], "large_ms": ms(large)})
    return out


def _median_s(fn: Callable[[], object], repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def profile_size(exact: LpipsNet, built: Sequence[tuple[LpipsNet, Mode, float]], size: int, *,
                 batch: int = 16, repeats: int = 5, seed: int = 0) -> list[ProfileRow]:
    """Time one trunk at one size in every mode of ``built`` ((network, mode, build_s) each).

    The modes run interleaved (each repeat runs every mode once, in alternating order), on
    the same random images, so that load from other jobs hits them alike.
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(1, 3, size, size, generator=g)
    b = torch.rand(1, 3, size, size, generator=g)
    cands = torch.rand(batch, 3, size, size, generator=g)
    pair_s: list[list[float]] = [[] for _ in built]
    batch_s: list[list[float]] = [[] for _ in built]
    with torch.no_grad():
        scorers = []
        for net, _, _ in built:
            net(a, b)  # warm-up (and, for compiled modes, any first-call work)
            scorers.append(ReferenceScorer(net, a))
            scorers[-1](cands)
        for r in range(repeats):
            order = range(len(built)) if r % 2 == 0 else reversed(range(len(built)))
            for k in order:
                net, mode, _ = built[k]
                pair_s[k].append(_median_s(lambda net=net: net(a, b), 1, mode.device))
                batch_s[k].append(_median_s(lambda k=k: scorers[k](cands), 1, mode.device))
        rows = []
        for k, (_, mode, build_s) in enumerate(built):
            with PeakMemory(mode.device) as mem:
                scorers[k](cands)
            per_batch = statistics.median(batch_s[k])
            rows.append(ProfileRow(exact.spec.name, size, mode, batch,
                                   1000 * statistics.median(pair_s[k]), batch / per_batch,
                                   1000 * per_batch, mem.peak / 2**20, build_s))
    return rows


def profile(nets: Sequence[LpipsNet], sizes: Sequence[int], precisions: Sequence[str], *,
            device: str = "cpu", batch: int = 16, repeats: int = 5,
            progress: Progress | None = None) -> list[ProfileRow]:
    """Profile every (trunk, size, mode); a mode that cannot run here raises before any work.

    ``nets`` are exact fp32 networks (:func:`~lpips_explain.core.model.build_lpips`). For each
    trunk the modes are built first (``build_s``), then every size is timed with the modes
    interleaved (:func:`profile_size`).
    """
    if not sizes:
        raise InputError("sizes must name at least one image side (32 px or more).")
    sizes = [integer(s, "sizes", minimum=32) for s in sizes]
    batch = integer(batch, "batch", minimum=1)
    repeats = integer(repeats, "repeats", minimum=1)
    from lpips_explain.core.modes import check_mode, resolve_device

    dev = resolve_device(device)
    precisions = list(dict.fromkeys(precisions))
    for p in precisions:
        check_mode(p, dev)  # every refusal before any work
    rows: list[ProfileRow] = []
    total = len(nets) * (len(precisions) + len(sizes))
    done = 0
    for exact in nets:
        built = []
        for p in precisions:
            if progress is not None:
                progress(done, total, f"{exact.spec.name}: building {p}")
            t0 = time.perf_counter()
            net, mode = mode_net(exact, p, dev)
            built.append((net, mode, time.perf_counter() - t0))
            done += 1
        for size in sorted(sizes):
            if progress is not None:
                progress(done, total, f"{exact.spec.name} {size}px")
            rows += profile_size(exact, built, size, batch=batch, repeats=repeats)
            done += 1
    if progress is not None:
        progress(total, total, "profile")
    return rows

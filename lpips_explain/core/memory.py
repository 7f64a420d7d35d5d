"""The process's memory, read one way by the code, the benchmarks and the tests.

* :func:`rss`: resident bytes now (``/proc/self/statm``); :func:`proc_bytes`: one figure
  of a ``/proc`` file (core/budget.py reads MemAvailable with it);
* :func:`reset_peak` and :func:`peak_rss`: the kernel's high-water mark of resident memory
  (VmHWM), set back to the resident size now and read later, so that the rise over a piece
  of work is ``peak_rss() - reset_peak()``; where Linux's VmHWM is missing,
  :func:`peak_rss` falls back to ``ru_maxrss``, which cannot be reset (and which Linux
  copies from the forking process at exec: read it in a process that started small);
* :class:`PeakMemory`: the peak rise over a block (``with PeakMemory() as m: ...; m.peak``):
  RSS sampled every millisecond by a thread, after handing freed heap back to the system;
  on CUDA, torch's peak allocated bytes instead (``lpips-explain profile`` reports it);
* :func:`trim_heap` and :func:`freed_memory_returned`: glibc asked to give freed memory
  back to the system (at once, or while tiles run).

Nothing here imports torch unless CUDA is measured, so a process that must stay small
(benchmarks/bench_large.py's parent) can read its children's figures with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["PeakMemory", "freed_memory_returned", "peak_rss", "proc_bytes", "reset_peak",
           "rss", "trim_heap"]


# -- reading the kernel's figures ---------------------------------------------------------
def rss() -> int:
    """Resident bytes of this process now (0 where ``/proc`` does not say)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def proc_bytes(path: str, key: str) -> int | None:
    """The ``key:   N kB`` line of a Linux ``/proc`` file, in bytes; None where it is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _vmhwm() -> int | None:
    """This process's resident high-water mark in bytes (Linux VmHWM), or None."""
    return proc_bytes("/proc/self/status", "VmHWM")


def reset_peak() -> int | None:
    """Set the high-water mark back to the resident size now (Linux: VmHWM := VmRSS) and
    return it; None where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _vmhwm()


def peak_rss() -> int:
    """This process's peak resident bytes: VmHWM (since the last :func:`reset_peak`), else
    ``ru_maxrss`` (since the process started)."""
    peak = _vmhwm()
    if peak:
        return peak
    import resource  # Unix only

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


# -- glibc's heap ---------------------------------------------------------------------------
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@functools.cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def trim_heap() -> None:
    """Give freed heap back to the system so that RSS measures live memory (glibc only)."""
    libc = _glibc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)


_ALLOC_LOCK = threading.Lock()
_ALLOC_USERS = [0]


@contextlib.contextmanager
def freed_memory_returned() -> Iterator[None]:
    """While tiles run, let glibc serve allocations of 1 MiB and more with mmap, so that a
    freed tile's tensors go back to the system instead of staying in the heap as
    fragments. Measured (alex, 2000 px, 150 MB budget, 36 MB estimated working set): peak
    RSS over the start 118 MB without, 56 MB with it. When the last tiled run ends the
    threshold is set to 32 MiB, glibc's own ceiling for its dynamic threshold, which long
    tensor work reaches anyway. Elsewhere than glibc nothing is changed."""
    libc = _glibc()
    if libc is not None:
        with _ALLOC_LOCK:
            _ALLOC_USERS[0] += 1
            libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    try:
        yield
    finally:
        if libc is not None:
            with _ALLOC_LOCK:
                _ALLOC_USERS[0] -= 1
                if _ALLOC_USERS[0] == 0:
                    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)


# -- the peak over a block --------------------------------------------------------------------
class PeakMemory:
    """Context manager: the peak rise of memory over the block, in bytes (``.peak``)."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.001):
        self.device, self.interval = device, interval_s
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        trim_heap()
        self._base = rss()
        self._top = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._top = max(self._top, rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak = max(0, torch.cuda.max_memory_allocated() - self._base)
            return
        self._top = max(self._top, rss())
        self._stop.set()
        self._thread.join()
        self.peak = max(0, self._top - self._base)

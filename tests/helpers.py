"""Helpers shared by tests that are not fixtures (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from lpips_explain.cli import main

T = TypeVar("T")


def run_concurrently(work: Callable[[int], T], n: int) -> list[T]:
    """Run ``work(0) ... work(n - 1)`` in ``n`` threads released together by a barrier
    (so their calls overlap), and return the results in index order. The first exception
    a thread raised is raised here, so a failure in a thread fails the test."""
    barrier = threading.Barrier(n)
    results: list[T | None] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``lpips-explain argv`` in-process: (exit code, stdout, stderr).

    argparse ends usage errors and --help with SystemExit; the code is taken from it. No run,
    whatever its outcome, may show a traceback.
    """
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return rc, out, err

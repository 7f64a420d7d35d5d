"""The engine's progress(done, total, label) calls drawn as a tqdm bar on a terminal's stderr
(for the CLI, and for a download the core starts itself)."""

from __future__ import annotations

import sys


class ProgressBar:
    """A tqdm progress bar on stderr fed by the engine's progress(done, total, label) calls;
    silent when disabled or when stderr is not a terminal. ``unit="B"`` counts bytes (scaled:
    kB, MB)."""

    def __init__(self, enabled: bool, *, unit: str = "it"):
        self.enabled = enabled and sys.stderr.isatty()
        self.unit = unit
        self.bar = None
        self.label = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or label != self.label:
            self.close()
            self.bar = tqdm(total=total, desc=label, file=sys.stderr, leave=False,
                            unit=self.unit, unit_scale=self.unit == "B")
            self.label = label
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""Which lin heads are in use: the official ones, or custom heads (from calibration or elsewhere).

Every result made with heads other than the official ones says so. Official means equal to
the file shipped in the ``lpips`` package for that trunk and version, wherever the copy
lives; "calibrated" means a ``calibration.json`` beside the file names the file's SHA-256
(what ``lpips-explain calibrate`` writes); anything else is "custom".
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lpips_explain.core.trunk_hash import file_sha256
from lpips_explain.core.trunks import get_trunk
from lpips_explain.core.weights import load_lin_heads
from lpips_explain.errors import WeightsError

LIN_ENV = "LPIPS_EXPLAIN_LIN_WEIGHTS"  # default lin-head file for the CLI and the app
CALIBRATION_JSON = "calibration.json"


@dataclass(frozen=True)
class LinInfo:
    """The lin-head file in use and what it is."""

    file: str
    official: bool
    kind: str  # "official", "calibrated" or "custom"
    sha256: str
    calibration: dict | None = None  # the provenance in the calibration.json beside the file

    @property
    def label(self) -> str:
        if self.official:
            return f"official lin heads ({self.file})"
        if self.kind == "calibrated" and self.calibration is not None:
            c = self.calibration
            return (f"calibrated (custom) lin heads {self.file}: init {c.get('init')}, "
                    f"data {str(c.get('data_hash', ''))[:12]}, {c.get('date', '')}")
        return f"custom lin heads {self.file} (not the official ones)"

    @property
    def notice_text(self) -> str:
        """What every result made with non-official heads says."""
        return (f"Lin heads: {self.label}. These distances are not those of the official "
                f"LPIPS metric.")

    def to_dict(self) -> dict:
        return {"file": self.file, "official": self.official, "kind": self.kind,
                "label": self.label, "sha256": self.sha256, "calibration": self.calibration}


def describe_lin_heads(net: str, version: str, file: str | os.PathLike,
                       heads: Sequence[torch.Tensor]) -> LinInfo:
    """Official if ``heads`` equal the official file's for (net, version), whatever the path;
    "calibrated" if a calibration.json beside ``file`` names its SHA-256; else "custom"."""
    path = Path(file)
    digest = file_sha256(path) if path.is_file() else ""
    try:
        official, _ = load_lin_heads(net, version, get_trunk(net).channels)
    except (ImportError, WeightsError):
        official = None
    same = official is not None and len(official) == len(heads) and all(
        torch.equal(o.reshape(-1), h.detach().cpu().to(torch.float32).reshape(-1))
        for o, h in zip(official, heads, strict=True))
    if same:
        return LinInfo(str(file), True, "official", digest)
    try:
        prov = json.loads((path.parent / CALIBRATION_JSON).read_text(encoding="utf-8"))
        prov = prov.get("provenance", {}) if isinstance(prov, dict) else {}
    except (OSError, ValueError):
        prov = {}
    if isinstance(prov, dict) and digest and prov.get("lin_sha256") == digest:
        return LinInfo(str(file), False, "calibrated", digest, prov)
    return LinInfo(str(file), False, "custom", digest)

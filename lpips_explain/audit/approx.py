"""How far an approximate audit (``--precision bf16`` or ``int8``) is from the exact one, on
its own rows: a seeded sample of the scored rows is decoded again and re-scored with the
exact float32 network, and the distances are compared.

The result goes into ``summary.json`` (``mode.error``), the CLI's summary lines and the
Audit page, beside the label "approximate".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lpips_explain.audit.columns import pick
from lpips_explain.audit.rows import decode_row, score_rows
from lpips_explain.audit.settings import AuditSettings
from lpips_explain.audit.table import AuditTable
from lpips_explain.core.model import LpipsNet

#: Rows re-scored exactly by default, and the seed that picks them.
SAMPLE_ROWS = 64
SAMPLE_SEED = 0


def sample_positions(ok: Sequence[bool], size: int = SAMPLE_ROWS,
                     seed: int = SAMPLE_SEED) -> list[int]:
    """A seeded sample of the scored rows' positions (all of them when fewer), sorted."""
    pool = [i for i, k in enumerate(ok) if k]
    if len(pool) <= size:
        return pool
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(pool, size=size, replace=False))


def measure_error(table: AuditTable, data: Mapping[str, Sequence[Any]],
                  settings: AuditSettings, exact: LpipsNet, *, size: int = SAMPLE_ROWS,
                  seed: int = SAMPLE_SEED, batch_size: int = 16) -> dict[str, Any]:
    """Re-score a seeded sample of ``data``'s scored rows with ``exact`` (fp32) and compare:
    the max and mean absolute error of the distances (triplets: d0 and d1), Spearman's rho
    of the approximate against the exact distances (triplets: margins), and for triplets
    the share of sampled rows whose verdict (p0, p1, tie) is the same."""
    ok = [s == "ok" for s in data["status"]]
    picks = sample_positions(ok, size, seed)
    decoded = [decode_row(table.rows[p], table.kind, settings, p, thumbs=False) for p in picks]
    scores = score_rows(exact, table.kind, decoded, batch_size=batch_size)
    picks = [p for p in picks if p in scores]
    out: dict[str, Any] = {"sample_rows": len(picks), "scored_rows": int(sum(ok)),
                           "seed": seed, "method": (
                               "a seeded sample of the scored rows decoded again and "
                               "re-scored with the exact float32 network")}
    if not picks:
        return {**out, "max_abs": None, "mean_abs": None, "spearman": None}
    if table.kind == "pairs":
        exact_d = np.array([float(np.sum(scores[p]["terms"])) for p in picks])
        approx_d = np.array([float(data["distance"][p]) for p in picks])
        err = np.abs(approx_d - exact_d)
        ranked = (approx_d, exact_d)
    else:
        e0 = np.array([float(np.sum(scores[p]["terms0"])) for p in picks])
        e1 = np.array([float(np.sum(scores[p]["terms1"])) for p in picks])
        a0 = np.array([float(data["d0"][p]) for p in picks])
        a1 = np.array([float(data["d1"][p]) for p in picks])
        err = np.abs(np.concatenate([a0 - e0, a1 - e1]))
        ranked = (a1 - a0, e1 - e0)
        same = [pick(float(x)) == pick(float(y)) for x, y in zip(*ranked, strict=True)]
        out["verdict_agreement"] = float(np.mean(same))
    out.update(max_abs=float(err.max()), mean_abs=float(err.mean()),
               spearman=_spearman(*ranked))
    return out


def error_sentence(error: Mapping[str, Any]) -> str:
    """The measured error of an approximate audit, in words (from ``mode.error``)."""
    if not error.get("sample_rows"):
        return "No scored row could be re-scored exactly to measure its error."
    rho = error.get("spearman")
    text = (f"Measured on {error['sample_rows']} of its {error['scored_rows']} scored rows "
            f"(seeded sample) re-scored exactly: max |error| {error['max_abs']:.2g}, mean "
            f"{error['mean_abs']:.2g}")
    if rho is not None:
        text += f", Spearman's rho with the exact ranking {rho:.4f}"
    if error.get("verdict_agreement") is not None:
        text += f", same verdict in {100 * error['verdict_agreement']:.0f}% of them"
    return text + "."


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if x.size < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return None
    rho = spearmanr(x, y).statistic
    return float(rho) if math.isfinite(rho) else None

"""The trunk run once over every judged triplet: the per-channel means the heads are fitted on.

LPIPS is linear in the head weights, so d0 = D0 @ w exactly once D0 (and D1) are kept; see
:mod:`~lpips_explain.analyses.calibration.fit` for the training that uses them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lpips_explain.core.model import LpipsNet
from lpips_explain.core.trunks import check_min_size
from lpips_explain.errors import InputError, LpipsExplainError
from lpips_explain.intake.judgments import (
    JudgmentRow,
    JudgmentSet,
    LoadedTriplet,
    Refusal,
    load_triplet,
    refusals_text,
)
from lpips_explain.validation import Progress, integer

FEATURE_BATCH = 16  # triplets per trunk pass while caching features

Cancel = Callable[[], bool]


class Cancelled(LpipsExplainError):
    """The caller asked to stop before there was anything to return."""

    exit_code = 130



@dataclass(frozen=True)
class JudgmentFeatures:
    """Per triplet and channel, the (mask-weighted) spatial means of squared differences of
    unit-normalised features, ref vs p0 (``d0``) and ref vs p1 (``d1``): d = D @ w exactly."""

    model_id: tuple
    net: str
    version: str
    layer_names: tuple[str, ...]
    channels: tuple[int, ...]
    rows: tuple[JudgmentRow, ...]  # the triplets used, in input order
    d0: Tensor  # N x sum(channels), float64
    d1: Tensor
    judges: Tensor  # N, float64, share of people who chose p1
    masked: tuple[bool, ...]
    refused: tuple[Refusal, ...]
    data_hash: str
    source: str
    size: int | None  # the common size images were resized to, if any

    @property
    def n_used(self) -> int:
        return len(self.rows)

    @property
    def n_refused(self) -> int:
        return len(self.refused)


def model_id(model: LpipsNet) -> tuple:
    """What the cached features depend on: trunk, its weights and the version's input scaling."""
    info = model.weights_info
    return (model.spec.name, model.version, info.spec, info.file, info.seed)


def _layer_weights(mask: Tensor | None, shape: tuple[int, int]) -> Tensor:
    """A triplet's weights at a layer's resolution: its mask averaged down, or uniform."""
    if mask is None:
        return torch.ones(1, 1, *shape)
    return F.adaptive_avg_pool2d(mask, shape)


def _encode_batch(model: LpipsNet, batch: list[LoadedTriplet]) -> tuple[Tensor, Tensor]:
    """D0, D1 (B x sum C, float64) for triplets of one size, in one trunk pass."""
    b = len(batch)
    x = torch.cat([torch.cat([t.ref for t in batch]), torch.cat([t.p0 for t in batch]),
                   torch.cat([t.p1 for t in batch])])
    d0s, d1s = [], []
    with torch.no_grad():
        for y in model.encode(x):
            y = y.double()
            yr, y0, y1 = y[:b], y[b: 2 * b], y[2 * b:]
            shape = (int(y.shape[-2]), int(y.shape[-1]))
            wts = torch.cat([_layer_weights(t.mask, shape) for t in batch]).double()
            norm = wts.sum(dim=(2, 3))  # B x 1
            d0s.append(((yr - y0) ** 2 * wts).sum(dim=(2, 3)) / norm)
            d1s.append(((yr - y1) ** 2 * wts).sum(dim=(2, 3)) / norm)
    return torch.cat(d0s, dim=1), torch.cat(d1s, dim=1)


def extract_features(model: LpipsNet, jset: JudgmentSet, *, size: int | None = None,
                     max_pixels: int | None = None, progress: Progress | None = None,
                     cancel: Cancel | None = None,
                     batch_size: int = FEATURE_BATCH) -> JudgmentFeatures:
    """Run the frozen trunk once over every judged triplet and keep what the heads need.

    Rows whose images cannot be used (unreadable, corrupt, sizes that differ, too small for
    the trunk, an empty mask) are refused with their reason, never raised.
    """
    if size is not None:
        integer(size, "size", minimum=1)
        check_min_size((size, size), model.spec.name, label="common size")
    rows = jset.rows
    refused = list(jset.refused)
    accepted: list[LoadedTriplet] = []
    d0: list[Tensor | None] = []
    d1: list[Tensor | None] = []
    buckets: dict[tuple[int, int], list[tuple[int, LoadedTriplet]]] = {}

    def flush(key: tuple[int, int]) -> None:
        items = buckets.pop(key)
        a, b = _encode_batch(model, [t for _, t in items])
        for k, (i, _) in enumerate(items):
            d0[i], d1[i] = a[k], b[k]

    for n, row in enumerate(rows):
        if cancel is not None and cancel():
            raise Cancelled("Stopped while computing the trunk features; nothing was fitted.")
        try:
            lt = load_triplet(jset, row, size=size, max_pixels=max_pixels)
            check_min_size(lt.size, model.spec.name, label="triplet")
        except InputError as exc:
            refused.append(Refusal(row.id, str(exc)))
        else:
            buckets.setdefault(lt.size, []).append((len(accepted), lt))
            accepted.append(lt)
            d0.append(None)
            d1.append(None)
            if len(buckets[lt.size]) >= batch_size:
                flush(lt.size)
        if progress is not None:
            progress(n + 1, len(rows), "Trunk features")
    for key in list(buckets):
        flush(key)
    if not accepted:
        raise InputError(f"No usable triplets in {jset.source}: all {len(refused)} refused.\n"
                         f"{refusals_text(refused)}")
    digest = hashlib.sha256(f"size={size}".encode())
    for t in accepted:
        digest.update(t.digest.encode())
    return JudgmentFeatures(
        model_id(model), model.spec.name, model.version, model.layer_names,
        model.spec.channels, tuple(t.row for t in accepted),
        torch.stack(d0), torch.stack(d1),  # type: ignore[arg-type]
        torch.tensor([t.row.judge for t in accepted], dtype=torch.float64),
        tuple(t.mask is not None for t in accepted), tuple(refused), digest.hexdigest(),
        jset.source, size)


"""What a calibration returns: the 2AFC score, per-epoch records, per-triplet verdicts and
the :class:`Calibration` itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.jsonable import SCHEMA as SCHEMA
from lpips_explain.analyses.jsonable import header
from lpips_explain.core.weights import WeightsInfo
from lpips_explain.intake.judgments import (
    Refusal,
)


def two_afc(d0: object, d1: object, judge: object) -> np.ndarray:
    """The official 2AFC score per triplet (lpips.score_2afc_dataset):
    (d0<d1)(1-g) + (d1<d0)g + 0.5[d0==d1], with g the share of people who chose p1."""
    d0, d1, g = (np.asarray(v, dtype=np.float64) for v in (d0, d1, judge))
    return (d0 < d1) * (1 - g) + (d1 < d0) * g + (d0 == d1) * 0.5


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


@dataclass(frozen=True)
class Scores:
    """2AFC agreement with the judges (and the ranking loss) on the train and held-out parts."""

    train_2afc: float | None
    val_2afc: float | None
    train_loss: float | None
    val_loss: float | None

    def to_dict(self) -> dict:
        return {"train_2afc": self.train_2afc, "val_2afc": self.val_2afc,
                "train_loss": self.train_loss, "val_loss": self.val_loss}


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: the training loss over its steps, then both parts scored with its heads."""

    epoch: int
    loss: float  # mean training loss over the epoch's batches, as the official trainer logs
    train_2afc: float | None
    val_2afc: float | None
    val_loss: float | None
    lr: float
    steps: int  # Adam steps in this epoch
    step: int = 0  # Adam steps of the heads so far, this epoch's included

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "loss": self.loss, "train_2afc": self.train_2afc,
                "val_2afc": self.val_2afc, "val_loss": self.val_loss, "lr": self.lr,
                "steps": self.steps, "step": self.step}


@dataclass(frozen=True)
class TripletVerdict:
    """One triplet's distances with the starting heads and with the calibrated heads."""

    id: str
    split: str  # "train" or "val"
    ref: str
    p0: str
    p1: str
    judge: float
    d0_before: float
    d1_before: float
    d0_after: float
    d1_after: float

    @staticmethod
    def _verdict(d0: float, d1: float) -> str:
        return "p0" if d0 < d1 else "p1" if d1 < d0 else "tie"

    @property
    def verdict_before(self) -> str:
        """Which candidate LPIPS finds closer to ref with the starting heads."""
        return self._verdict(self.d0_before, self.d1_before)

    @property
    def verdict_after(self) -> str:
        return self._verdict(self.d0_after, self.d1_after)

    @property
    def changed(self) -> bool:
        return self.verdict_before != self.verdict_after

    @property
    def agreement_before(self) -> float:
        return float(two_afc(self.d0_before, self.d1_before, self.judge))

    @property
    def agreement_after(self) -> float:
        return float(two_afc(self.d0_after, self.d1_after, self.judge))

    def to_dict(self) -> dict:
        return {"id": self.id, "split": self.split, "ref": self.ref, "p0": self.p0,
                "p1": self.p1, "judge": self.judge, "d0_before": self.d0_before,
                "d1_before": self.d1_before, "d0_after": self.d0_after,
                "d1_after": self.d1_after, "verdict_before": self.verdict_before,
                "verdict_after": self.verdict_after,
                "agreement_before": self.agreement_before,
                "agreement_after": self.agreement_after}


@dataclass(frozen=True)
class LayerChange:
    name: str
    channels: int
    mean_before: float
    mean_after: float
    sum_before: float
    sum_after: float
    sum_abs_change: float
    zero_before: int  # channels with weight exactly 0 (they can never contribute)
    zero_after: int

    def to_dict(self) -> dict:
        return {"name": self.name, "channels": self.channels, "mean_before": self.mean_before,
                "mean_after": self.mean_after, "sum_before": self.sum_before,
                "sum_after": self.sum_after, "sum_abs_change": self.sum_abs_change,
                "zero_before": self.zero_before, "zero_after": self.zero_after}


@dataclass(frozen=True)
class Calibration:
    """Heads fitted to judgments, how they score before and after, and how they were made."""

    net: str
    version: str
    layer_names: tuple[str, ...]
    heads_before: tuple[np.ndarray, ...]
    heads: tuple[np.ndarray, ...]  # the calibrated heads (the best epoch's)
    before: Scores
    after: Scores
    epochs: tuple[EpochRecord, ...]
    best_epoch: int  # 0: no epoch beat the starting heads on the held-out triplets
    stopped: str  # "completed", "early_stopping" or "cancelled"
    n_used: int
    n_refused: int
    n_train: int
    n_val: int
    refused: tuple[Refusal, ...]
    schedule: dict
    provenance: dict
    triplets: tuple[TripletVerdict, ...]
    backbone: WeightsInfo
    summary: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def state_dict(self) -> dict[str, Tensor]:
        """The heads in the official key layout: ``lin{i}.model.1.weight``, shape (1, C, 1, 1)."""
        return {f"lin{i}.model.1.weight":
                torch.from_numpy(np.ascontiguousarray(h, dtype=np.float32)).view(1, -1, 1, 1)
                for i, h in enumerate(self.heads)}

    @property
    def changed(self) -> list[TripletVerdict]:
        return [t for t in self.triplets if t.changed]

    @property
    def layer_changes(self) -> list[LayerChange]:
        out = []
        for name, b, a in zip(self.layer_names, self.heads_before, self.heads, strict=True):
            out.append(LayerChange(name, int(a.size), float(b.mean()), float(a.mean()),
                                   float(b.sum()), float(a.sum()), float(np.abs(a - b).sum()),
                                   int((b == 0).sum()), int((a == 0).sum())))
        return out

    def to_dict(self) -> dict:
        return {
            **header("calibration", self.net, self.version, self.backbone),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "epochs": [e.to_dict() for e in self.epochs],
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "n_used": self.n_used,
            "n_refused": self.n_refused,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "refused": [r.to_dict() for r in self.refused],
            "schedule": dict(self.schedule),
            "provenance": dict(self.provenance),
            "layers": [c.to_dict() for c in self.layer_changes],
            "changed": [t.to_dict() for t in self.changed],
            "summary": list(self.summary),
            "warnings": list(self.warnings),
        }


"""Fitting the lin heads to 2AFC judgments: the official recipe on trunk features cached once.

LPIPS is d = sum_l sum_c w_lc * mean_hw (y0 - y1)^2_lchw: linear in the head weights w. So
for every judged triplet the trunk runs once, and the per-channel spatial means of the
squared differences of unit-normalised features (ref vs p0, ref vs p1) are kept; then
d0 = D0 @ w exactly, and an epoch costs a matrix product instead of a trunk pass. A mask
(where the judges looked) turns the spatial mean into a weighted mean, per layer, with the
mask averaged down to the layer's resolution.

The recipe is the official one (richzhang/PerceptualSimilarity, lpips/trainer.py and
train.py): the lpips package's own ``BCERankingLoss`` (a ``Dist2LogitLayer`` on
(d0, d1, d0-d1, d0/(d1+eps), d1/(d0+eps)) against ``judge``), Adam with lr 1e-4 and betas
(0.5, 0.999), batches of 50, 5 epochs at the base rate then 5 with linear decay, heads
clamped >= 0 after every step. Only the heads are clamped: the official loop also clamps
SqueezeNet's own 1x1 trunk convs, which are frozen and left alone here. One departure: the
official lin layers apply dropout (p = 0.5) to every position of the squared differences
during training; on cached per-channel means that cannot be reproduced, so it is left out,
and the held-out split with early stopping guards against over-fitting instead.

That recipe was made for BAPPS's ~150,000 training triplets: 30,000 Adam steps. On a few
hundred triplets it is a hundred steps, too few to move the heads. So the default recipe
("auto") keeps the official loss, optimiser, batch size and schedule shape but chooses the
length and the rate from the set: about 2,000 steps (at least the official 10 epochs, at
most 300), the rate such that rate x steps equals the official recipe's on BAPPS (1e-4 x
30,000: on a set of BAPPS's size "auto" is the official recipe), the ranking net first
fitted to the starting heads (heads frozen), and the heads of the epoch with the lowest
held-out loss kept. ``recipe="official"`` gives the official recipe as it is.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpips_explain.analyses.common import Progress, check_int, two_afc
from lpips_explain.core.model import LpipsNet
from lpips_explain.core.trunks import check_min_size
from lpips_explain.core.weights import load_lin_heads
from lpips_explain.errors import InputError, LpipsExplainError, lookup
from lpips_explain.intake.judgments import (
    JudgmentRow,
    JudgmentSet,
    LoadedTriplet,
    Refusal,
    load_triplet,
    refusals_text,
)

SCHEMA = "lpips-explain/1"
INITS: dict[str, str] = {
    "released": "the official heads shipped with the lpips package for this trunk and version",
    "scratch": "random heads (torch's default 1x1-conv initialisation, seeded), as the "
               "official trainer starts",
}
# The official recipe (lpips/trainer.py, train.py).
OFFICIAL = {"epochs": 5, "decay_epochs": 5, "lr": 1e-4, "beta1": 0.5, "beta2": 0.999,
            "batch_size": 50}
DEFAULT_PATIENCE = 3  # epochs without improvement, with the official recipe
RECIPES: dict[str, str] = {
    "auto": "chosen from the set: about 2,000 Adam steps, the rate scaled so that rate x steps "
            "equals the official recipe's on BAPPS, the ranking net fitted first, the heads "
            "of the lowest held-out loss kept",
    "official": "the official recipe as published: 5 + 5 epochs at lr 1e-4, batch 50 (made for "
                "BAPPS's ~150,000 triplets), the heads of the best held-out 2AFC kept",
}
BAPPS_TRIPLETS = 150_000  # BAPPS's 2AFC training split, the set the official recipe was made for
# The official recipe's length on BAPPS, and its step budget: Adam moves a weight by about
# lr per step at most, so lr x steps bounds how far the heads can travel.
OFFICIAL_STEPS = (OFFICIAL["epochs"] + OFFICIAL["decay_epochs"]) \
    * math.ceil(BAPPS_TRIPLETS / OFFICIAL["batch_size"])
STEP_BUDGET = OFFICIAL["lr"] * OFFICIAL_STEPS  # 3.0
AUTO_STEPS = 2000  # measured by benchmarks/bench_calibration.py: enough to converge on ~500
AUTO_EPOCHS = (OFFICIAL["epochs"] + OFFICIAL["decay_epochs"], 300)  # at least, at most
AUTO_LR = (OFFICIAL["lr"], 1e-2)  # the rate stays within these
AUTO_PATIENCE_SHARE = 0.2  # auto: stop after a fifth of the epochs without improvement
WARMUP_STEPS = 200  # auto: full-batch steps fitting the ranking net to the starting heads
WARMUP_LR = 1e-3
SELECT: dict[str, str] = {
    "val_loss": "the lowest held-out ranking loss among epochs whose held-out 2AFC is at "
                "least the starting heads' (ties: the higher held-out 2AFC)",
    "val_2afc": "the highest held-out 2AFC (ties: the lower held-out loss)",
}
FEATURE_BATCH = 16  # triplets per trunk pass while caching features

OnEpoch = Callable[["EpochRecord"], None]
Cancel = Callable[[], bool]


class Cancelled(LpipsExplainError):
    """The caller asked to stop before there was anything to return."""

    exit_code = 130


# --- cached features -----------------------------------------------------------------------------


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
        check_int(size, "size", 1)
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


# --- scores ------------------------------------------------------------------------------------


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
    backbone: dict
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
            "schema": SCHEMA,
            "kind": "calibration",
            "net": self.net,
            "version": self.version,
            "backbone": self.backbone,
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


# --- training ----------------------------------------------------------------------------------


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices, fixed by the seed (sorted, disjoint, covering 0..n-1)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float) \
            or not 0.0 <= float(val_fraction) < 1.0:
        raise InputError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}.")
    n_val = round(float(val_fraction) * n)
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n - n_val < 1:
        raise InputError(f"{n} usable triplet(s) cannot be split into training and held-out "
                         f"parts (val_fraction {val_fraction}); add triplets or lower it.")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def n_train_for(n: int, val_fraction: float) -> int:
    """How many of ``n`` triplets :func:`split_indices` leaves for training."""
    train, _ = split_indices(n, val_fraction, 0)
    return len(train)


@dataclass(frozen=True)
class Schedule:
    """How the heads are trained: the recipe's settings for this set, with the ones given
    explicitly in their place (``given`` names those)."""

    recipe: str
    n_train: int
    epochs: int  # at the base rate
    decay_epochs: int  # then with the rate falling linearly (the official shape)
    lr: float
    batch_size: int
    patience: int | None  # epochs without improvement before stopping; None: never
    select: str  # which epoch's heads are kept: "val_loss" or "val_2afc" (SELECT)
    warmup_steps: int  # full-batch steps fitting the ranking net alone first (0: none)
    given: tuple[str, ...] = ()

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.decay_epochs

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def steps(self) -> int:
        """Adam steps of the heads if every epoch runs (early stopping may end sooner)."""
        return self.total_epochs * self.steps_per_epoch

    @property
    def budget(self) -> float:
        """lr x steps, decay included: about how far Adam can move one weight."""
        full = sum(lr_for_epoch(e, self.lr, self.epochs, self.decay_epochs)
                   for e in range(1, self.total_epochs + 1))
        return full * self.steps_per_epoch

    def describe(self) -> str:
        """One sentence: what will run, and where its numbers come from."""
        origin = ("the official recipe" if self.recipe == "official"
                  else f"chosen from {self.n_train} training triplets")
        if self.given:
            origin += f"; given: {', '.join(self.given)}"
        spe = self.steps_per_epoch
        stop = ("never stops early" if self.patience is None
                else f"stops after {self.patience} epoch{'s' if self.patience != 1 else ''} "
                     f"without improvement")
        warm = (f"the ranking net first fitted to the starting heads ({self.warmup_steps} "
                f"steps), then " if self.warmup_steps else "")
        return (f"Recipe {self.recipe} ({origin}): {warm}{self.epochs} + {self.decay_epochs} "
                f"epochs of {spe} step{'s' if spe != 1 else ''} ({self.steps} Adam steps, "
                f"batch {self.batch_size}) at lr {self.lr:.3g}, the last {self.decay_epochs} "
                f"decaying; keeps the heads of {SELECT[self.select].split(' (')[0]}; {stop}.")

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "n_train": self.n_train, "epochs": self.epochs,
                "decay_epochs": self.decay_epochs, "lr": self.lr,
                "batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch,
                "steps": self.steps, "budget": self.budget, "patience": self.patience,
                "select": self.select, "warmup_steps": self.warmup_steps,
                "given": list(self.given)}


def plan_schedule(n_train: int, recipe: str = "auto", *, epochs: int | None = None,
                  decay_epochs: int | None = None, lr: float | None = None,
                  batch_size: int | None = None, patience: int | None = None) -> Schedule:
    """The schedule for ``n_train`` training triplets: the recipe's, each setting given
    explicitly (not None) taking its place. ``patience`` 0: never stop early.

    "official": 5 + 5 epochs at lr 1e-4, batch 50, patience 3, keep the best held-out 2AFC.
    "auto": batch 50; E = AUTO_STEPS / steps per epoch epochs, within AUTO_EPOCHS, half at
    the base rate and half decaying (the official shape); lr = STEP_BUDGET / (E x steps per
    epoch), within AUTO_LR (so a BAPPS-sized set gets the official 10 epochs at 1e-4); the
    ranking net fitted first; keep the lowest held-out loss; patience a fifth of E. The rate
    follows the set, not a given epoch count: more epochs are more steps at the same rate.
    """
    lookup("calibration recipe", recipe, RECIPES)
    n_train = check_int(n_train, "n_train", 1)
    given = tuple(name for name, v in (("epochs", epochs), ("decay_epochs", decay_epochs),
                                       ("lr", lr), ("batch_size", batch_size),
                                       ("patience", patience)) if v is not None)
    batch = check_int(batch_size, "batch_size", 1) if batch_size is not None \
        else OFFICIAL["batch_size"]
    if recipe == "official":
        base, decay, rate = OFFICIAL["epochs"], OFFICIAL["decay_epochs"], OFFICIAL["lr"]
        select, warmup = "val_2afc", 0
    else:
        spe = math.ceil(n_train / batch)
        total = min(max(math.ceil(AUTO_STEPS / spe), AUTO_EPOCHS[0]), AUTO_EPOCHS[1])
        base, decay = total - total // 2, total // 2
        rate = min(max(STEP_BUDGET / (total * spe), AUTO_LR[0]), AUTO_LR[1])
        rate = float(f"{rate:.3g}")  # a rate a person can type back
        select, warmup = "val_loss", WARMUP_STEPS
    base = check_int(epochs, "epochs", 0) if epochs is not None else base
    decay = check_int(decay_epochs, "decay_epochs", 0) if decay_epochs is not None else decay
    if base + decay < 1:
        raise InputError("epochs + decay_epochs must be at least 1.")
    rate = _check_lr(lr) if lr is not None else rate
    wait: int | None
    if patience is not None:
        wait = check_int(patience, "patience", 0) or None
    elif recipe == "official":
        wait = DEFAULT_PATIENCE
    else:  # a share of the epochs that will run
        wait = max(DEFAULT_PATIENCE, math.ceil(AUTO_PATIENCE_SHARE * (base + decay)))
    return Schedule(recipe, n_train, base, decay, rate, batch, wait, select, warmup, given)


def _initial_heads(model: LpipsNet, init: str) -> list[Tensor]:
    if init == "released":
        heads, _ = load_lin_heads(model.spec.name, model.version, model.spec.channels)
        return heads
    # What the official trainer starts from: NetLinLayer's Conv2d(C, 1, 1, bias=False).
    return [nn.Conv2d(c, 1, 1, bias=False).weight.detach().reshape(-1).clone()
            for c in model.spec.channels]


def _rank_loss() -> nn.Module:
    import lpips  # the official loss: BCERankingLoss with its Dist2LogitLayer

    return lpips.BCERankingLoss()


def lr_for_epoch(epoch: int, lr: float, epochs: int, decay_epochs: int) -> float:
    """The official schedule: lr for epochs 1..epochs+1, then minus lr/decay_epochs after each
    later epoch (train.py calls update_learning_rate after every epoch past ``epochs``)."""
    if decay_epochs <= 0:
        return lr
    return lr * (1.0 - max(0, epoch - 1 - epochs) / decay_epochs)


def _check_lr(lr: object) -> float:
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) \
            or lr <= 0:
        raise InputError(f"lr must be a positive number, got {lr!r}.")
    return float(lr)


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class _HeadFit:
    """The heads (one flat non-negative vector), the official ranking loss and Adam."""

    def __init__(self, features: JudgmentFeatures, start: Tensor, train_idx: np.ndarray,
                 val_idx: np.ndarray, lr: float) -> None:
        self.features = features
        self.train_idx, self.val_idx = train_idx, val_idx
        self.tr, self.va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        self.rank = _rank_loss()  # drawn from the seeded RNG after the scratch heads
        self.w = nn.Parameter(start.clone())
        self.d0 = features.d0.to(torch.float32)
        self.d1 = features.d1.to(torch.float32)
        # The trainer hands judge*2-1 to the loss, which maps it back with (judge+1)/2.
        self.target = (features.judges.to(torch.float32) * 2.0 - 1.0).view(-1, 1, 1, 1)
        self.flipped = self._orient()
        self.optimizer = torch.optim.Adam([self.w, *self.rank.parameters()], lr=lr,
                                          betas=(OFFICIAL["beta1"], OFFICIAL["beta2"]))

    def _orient(self) -> bool:
        """Point the freshly initialised ranking net the right way round.

        Its small MLP can learn either orientation, and its random init picks one by chance:
        pointed the wrong way, training makes LPIPS prefer the *farther* candidate (the loss
        falls while the 2AFC agreement falls; measured in 3 of 9 seeds on a test set). So, on
        the training triplets with the starting heads, if the net's P(p1 chosen) rises when
        p1 gets farther, its last layer is negated (P -> 1 - P): same architecture and loss,
        an init that says "closer is more similar". Returns whether it was negated.
        """
        if self.lean(self.w) >= 0:
            return False
        with torch.no_grad():
            last = self.rank.net.model[-2]  # the last 1x1 conv, before the sigmoid
            last.weight.neg_()
            last.bias.neg_()
        return True

    def lean(self, w: Tensor) -> float:
        """How the ranking net points with heads ``w`` on the training triplets: the mean of
        (P(p1 chosen | d0, d1) - P(p1 chosen | d1, d0)) x sign(d0 - d1). Positive: the closer
        candidate is the likelier choice, as a distance means; negative: the farther one."""
        idx = self.tr
        with torch.no_grad():
            d0 = (self.d0[idx] @ w.detach().to(torch.float32)).view(-1, 1, 1, 1)
            d1 = (self.d1[idx] @ w.detach().to(torch.float32)).view(-1, 1, 1, 1)
            net = self.rank.net
            return float(((net(d0, d1) - net(d1, d0)) * torch.sign(d0 - d1)).mean())

    def warm_up(self, steps: int, step_done: Callable[[int], bool]) -> bool:
        """Fit the ranking net alone to the starting heads: full-batch Adam steps on the
        training triplets, heads frozen. Then the starting heads (epoch 0) are scored with a
        ranking net made for them, and compete fairly on held-out loss; and the heads' first
        steps follow the judgments, not a random mapping. Returns whether it was cancelled."""
        opt = torch.optim.Adam(self.rank.parameters(), lr=WARMUP_LR,
                               betas=(OFFICIAL["beta1"], OFFICIAL["beta2"]))
        w = self.w.detach()
        for k in range(steps):
            loss = self.loss(self.tr, w)
            opt.zero_grad()
            torch.mean(loss).backward()
            opt.step()
            if step_done(k + 1):
                return True
        return False

    def rank_state(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.rank.state_dict().items()}

    def loss(self, idx: Tensor, w: Tensor | None = None) -> Tensor:
        w = self.w if w is None else w
        return self.rank((self.d0[idx] @ w).view(-1, 1, 1, 1),
                         (self.d1[idx] @ w).view(-1, 1, 1, 1), self.target[idx])

    def evaluate(self, w: Tensor) -> tuple[Scores, Tensor, Tensor]:
        """Scores with heads ``w``; distances in float64 for every triplet."""
        wd = w.detach().double()
        d0, d1 = self.features.d0 @ wd, self.features.d1 @ wd
        agree = two_afc(d0.numpy(), d1.numpy(), self.features.judges.numpy())
        w32 = w.detach().to(torch.float32)
        with torch.no_grad():
            tl = float(self.loss(self.tr, w32)) if len(self.tr) else None
            vl = float(self.loss(self.va, w32)) if len(self.va) else None
        return (Scores(_mean(agree[self.train_idx]), _mean(agree[self.val_idx]), tl, vl),
                d0, d1)

    def epoch(self, lr: float, batch_size: int, order: torch.Generator,
              step_done: Callable[[int], bool]) -> tuple[list[float], bool]:
        """One pass over the training triplets in a seeded order; (batch losses, cancelled)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        perm = self.tr[torch.randperm(len(self.tr), generator=order)]
        losses: list[float] = []
        for k in range(0, len(perm), batch_size):
            loss = self.loss(perm[k: k + batch_size])
            self.optimizer.zero_grad()
            torch.mean(loss).backward()
            self.optimizer.step()
            with torch.no_grad():
                self.w.clamp_(min=0.0)  # the heads only: the trunk is not in the optimiser
            losses.append(float(loss.detach()))
            if step_done(len(losses)):
                return losses, True
        return losses, False


@contextmanager
def _one_thread() -> Iterator[None]:
    """Training works on tensors of a few thousand numbers: there OpenMP's fork and join cost
    more than they save (measured on the shared 2-core CPU: ~3 ms per step on one thread,
    30-150 ms on two with the other core busy). torch.set_num_threads sets this thread's
    OpenMP and MKL thread counts; the previous count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def calibrate(model: LpipsNet, features: JudgmentFeatures, *, init: str = "released",
              recipe: str = "auto", epochs: int | None = None,
              decay_epochs: int | None = None, lr: float | None = None,
              batch_size: int | None = None, val_fraction: float = 0.2,
              patience: int | None = None, seed: int = 0, progress: Progress | None = None,
              on_epoch: OnEpoch | None = None, cancel: Cancel | None = None) -> Calibration:
    """Fit the lin heads to the judgments in ``features`` (the trunk is never touched).

    ``recipe`` ("auto" or "official", see RECIPES and :func:`plan_schedule`) sets the
    schedule; ``epochs``, ``decay_epochs``, ``lr``, ``batch_size`` and ``patience`` given
    (not None) override its values (``patience`` 0: never stop early). After every epoch the
    held-out triplets are scored; the heads of the best epoch are kept (by the recipe's
    criterion, SELECT; epoch 0, the released heads, competes too), and training stops after
    ``patience`` epochs without improvement. ``cancel()`` returning True stops after the
    current step; the best heads so far are returned with ``stopped="cancelled"``.
    ``on_epoch`` gets epoch 0 (the starting heads, before any step of theirs) and then
    every epoch's record.
    """
    lookup("calibration init", init, INITS)
    lookup("calibration recipe", recipe, RECIPES)
    seed = check_int(seed, "seed", 0)
    if features.model_id != model_id(model):
        raise InputError("These cached features were computed with another trunk "
                         f"({features.model_id[:3]}) than this model's ({model_id(model)[:3]}); "
                         f"compute them again with this one.")
    n = features.n_used
    train_idx, val_idx = split_indices(n, val_fraction, seed)
    plan = plan_schedule(len(train_idx), recipe, epochs=epochs, decay_epochs=decay_epochs,
                         lr=lr, batch_size=batch_size, patience=patience)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        start = torch.cat(_initial_heads(model, init)).to(torch.float32)
        fit = _HeadFit(features, start, train_idx, val_idx, plan.lr)
    records: list[EpochRecord] = []
    stopped = "completed"
    total_epochs, spe = plan.total_epochs, plan.steps_per_epoch
    warmup = plan.warmup_steps if len(train_idx) else 0
    order = torch.Generator().manual_seed(seed)

    def step_done(step: int) -> bool:
        if progress is not None:
            progress(step, total_epochs * spe, "Training the heads")
        return cancel is not None and bool(cancel())

    def warm_done(step: int) -> bool:
        if progress is not None:
            progress(step, warmup, "Fitting the ranking net to the starting heads")
        return cancel is not None and bool(cancel())

    with _one_thread():
        cancelled = fit.warm_up(warmup, warm_done) if warmup else False
        before, d0_before, d1_before = fit.evaluate(fit.w)
        select = _select_key(plan.select, before.val_2afc)
        # Random heads (scratch) are no result: they compete only from the released heads.
        best_key = select(before) if init == "released" else (-math.inf,) * 3
        best_w, best_epoch, since_best = start.clone(), 0, 0
        best_rank = fit.rank_state()
        if on_epoch is not None:  # epoch 0: the starting heads, so live curves start there
            on_epoch(EpochRecord(0, before.train_loss or 0.0, before.train_2afc,
                                 before.val_2afc, before.val_loss, 0.0, 0))
        if cancelled:
            stopped = "cancelled"
        for epoch in range(1, total_epochs + 1):
            if cancelled:
                break
            lr_e = lr_for_epoch(epoch, plan.lr, plan.epochs, plan.decay_epochs)
            losses, cancelled = fit.epoch(lr_e, plan.batch_size, order,
                                          lambda k, e=epoch: step_done((e - 1) * spe + k))
            scores, _, _ = fit.evaluate(fit.w)
            rec = EpochRecord(epoch, float(np.mean(losses)), scores.train_2afc,
                              scores.val_2afc, scores.val_loss, lr_e, len(losses),
                              (epoch - 1) * spe + len(losses))
            records.append(rec)
            if on_epoch is not None:
                on_epoch(rec)
            key = select(scores)
            if len(val_idx) == 0 or key > best_key:
                best_key, best_w, best_epoch, since_best = key, fit.w.detach().clone(), epoch, 0
                best_rank = fit.rank_state()
            else:
                since_best += 1
            if cancelled:
                stopped = "cancelled"
                break
            if plan.patience is not None and len(val_idx) and since_best >= plan.patience \
                    and epoch < total_epochs:
                stopped = "early_stopping"
                break

    # The ranking net as it was at the kept epoch: "after" is that epoch's record, loss too.
    fit.rank.load_state_dict(best_rank)
    after, d0_after, d1_after = fit.evaluate(best_w)
    inverted = bool(len(train_idx)) and fit.lean(best_w) < 0
    g = features.judges
    split = np.full(n, "train", dtype=object)
    split[val_idx] = "val"
    verdicts = tuple(
        TripletVerdict(r.id, str(split[i]), r.ref, r.p0, r.p1, float(g[i]),
                       float(d0_before[i]), float(d1_before[i]), float(d0_after[i]),
                       float(d1_after[i]))
        for i, r in enumerate(features.rows))
    cuts = np.cumsum((0, *features.channels))
    heads_before = tuple(start[a:b].numpy().copy() for a, b in itertools.pairwise(cuts))
    heads_after = tuple(best_w[a:b].numpy().copy() for a, b in itertools.pairwise(cuts))
    info = model.weights_info
    schedule = {**plan.to_dict(), "betas": [OFFICIAL["beta1"], OFFICIAL["beta2"]],
                "val_fraction": float(val_fraction), "size": features.size,
                "loss": "lpips.BCERankingLoss (Dist2LogitLayer)",
                "clamp": "lin heads >= 0 after every step (trunk frozen, never clamped)",
                "dropout": "not applied (the official lin layers use dropout 0.5; see README)",
                "rank_net_negated_at_init": fit.flipped,
                "rank_net_inverted": inverted,
                "masked_triplets": int(sum(features.masked)),
                "description": plan.describe()}
    provenance = {"trunk": {"net": model.spec.name, "weights": info.spec, "file": info.file,
                            "seed": info.seed, "perceptual": info.perceptual},
                  "version": model.version, "init": init, "seed": seed,
                  "data_hash": features.data_hash, "data_source": features.source,
                  "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
                  "lpips_explain": _package_version("lpips-explain"),
                  "lpips": _package_version("lpips"), "torch": torch.__version__}
    result = Calibration(
        model.spec.name, model.version, model.layer_names, heads_before, heads_after, before,
        after, tuple(records), best_epoch, stopped, n, features.n_refused, len(train_idx),
        len(val_idx), features.refused, schedule, provenance, verdicts, info.to_dict())
    return _with_summary(result, features, plan)


def _select_key(select: str, floor: float | None) -> Callable[[Scores], tuple[float, ...]]:
    """Higher is better. "val_loss": first whether the held-out 2AFC reaches ``floor`` (the
    starting heads': the loss can also fall by fitting the ranking net, and heads that rank
    the held-out triplets worse than the start are not kept for a lower loss), then the lower
    held-out loss, then the higher held-out 2AFC. "val_2afc": the higher held-out 2AFC, then
    the lower held-out loss."""
    def key(s: Scores) -> tuple[float, ...]:
        if s.val_2afc is None or s.val_loss is None:
            return (-math.inf, -math.inf, -math.inf)
        if select == "val_loss":
            reaches = floor is None or s.val_2afc >= floor - 1e-12
            return (float(reaches), -s.val_loss, s.val_2afc)
        return (s.val_2afc, -s.val_loss, 0.0)

    lookup("selection rule", select, SELECT)
    return key


def wilson_interval(p: float | None, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95% Wilson score interval of an agreement share measured on n triplets (it stays
    meaningful at 0 and 1, where a standard error would claim no uncertainty)."""
    if p is None or n <= 0:
        return None
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _with_summary(cal: Calibration, features: JudgmentFeatures,
                  plan: Schedule) -> Calibration:
    lines = []
    warn = []
    lines.append(f"{cal.n_used} judged triplets used ({cal.n_train} for training, {cal.n_val} "
                 f"held out), {cal.n_refused} refused.")
    lines.append(plan.describe())
    if cal.n_val:
        lo, hi = wilson_interval(cal.after.val_2afc, cal.n_val)  # type: ignore[misc]
        lines.append(f"Held-out 2AFC agreement with the judges: {_fmt(cal.before.val_2afc)} "
                     f"with the starting heads ({cal.provenance['init']}), "
                     f"{_fmt(cal.after.val_2afc)} calibrated (approximate: the 95% interval "
                     f"for {cal.n_val} triplets is {lo:.3f} to {hi:.3f}).")
    lines.append(f"Training-set agreement: {_fmt(cal.before.train_2afc)} before, "
                 f"{_fmt(cal.after.train_2afc)} after.")
    if not cal.n_val:
        lines.append(f"No triplets were held out, so the heads of the last epoch "
                     f"({cal.best_epoch}) are kept and nothing measures over-fitting.")
    elif not cal.epochs:
        lines.append("Training was cancelled before the heads took a step: the starting "
                     "heads are kept.")
    elif cal.best_epoch == 0:
        better = ("a lower held-out loss" if plan.select == "val_loss"
                  else "a better held-out 2AFC score")
        lines.append(f"No epoch had {better} than the starting heads, so the starting heads "
                     f"are kept.")
    else:
        best = cal.epochs[cal.best_epoch - 1]
        why = (f"lowest held-out loss, {_fmt(best.val_loss)}" if plan.select == "val_loss"
               else f"best held-out 2AFC, {_fmt(best.val_2afc)}")
        lines.append(f"The heads of epoch {cal.best_epoch} of {len(cal.epochs)} run (after "
                     f"{best.step} step{'s' if best.step != 1 else ''}) are kept ({why}; held-out loss "
                     f"{_fmt(cal.before.val_loss)} with the starting heads); training "
                     + {"completed": "ran every scheduled epoch.",
                        "early_stopping": f"stopped early after {plan.patience} "
                                          f"epochs without improvement.",
                        "cancelled": "was cancelled."}[cal.stopped])
    val_changed = [t for t in cal.changed if t.split == "val"]
    if cal.n_val:
        better = sum(t.agreement_after > t.agreement_before for t in val_changed)
        worse = sum(t.agreement_after < t.agreement_before for t in val_changed)
        lines.append(f"The verdict changed on {len(val_changed)} of {cal.n_val} held-out "
                     f"triplets: {better} now agree more with the judges, {worse} less.")
    changes = cal.layer_changes
    top = max(changes, key=lambda c: c.sum_abs_change)
    moved = float(sum(c.sum_abs_change for c in changes))
    if moved > 0:
        lines.append(f"Largest change in layer {top.name}: mean weight {top.mean_before:.4g} "
                     f"-> {top.mean_after:.4g} (total |change| {top.sum_abs_change:.3g}).")
    elif cal.best_epoch > 0:
        warn.append("The kept heads equal the starting heads: training did not move them.")
    budget = sum(e.lr * e.steps for e in cal.epochs)  # what the steps run could move
    start = cal.before.train_2afc
    if start is not None and start < 0.5:
        warn.append(f"The starting heads disagree with these judgments more often than they "
                    f"agree (training 2AFC {start:.3f}): the ranking net can then fit the "
                    f"judgments by preferring the farther candidate, which lowers the loss "
                    f"without making LPIPS agree. Check that judge is the share preferring "
                    f"p1; if it is, these judges rank distortions unlike LPIPS, and heads "
                    f"fitted here need the held-out 2AFC, not the loss, to judge them.")
    if cal.schedule.get("rank_net_inverted") and cal.best_epoch > 0:
        warn.append("With the kept heads the ranking net prefers the farther candidate (an "
                    "inverted mapping): the loss fell without LPIPS agreeing more, so judge "
                    "these heads by their held-out 2AFC only (or try another seed or rate).")
    typical = float(np.median(np.concatenate(cal.heads_before))) if cal.heads_before else 0.0
    if cal.epochs and typical > 0 and budget < 0.1 * typical:
        spe = plan.steps_per_epoch
        steps = f"{spe} step{'s' if spe != 1 else ''}"
        advice = ("the default recipe (auto) chooses them from the set" if plan.recipe ==
                  "official" else "give more epochs or a larger lr, or leave them to the recipe")
        warn.append(f"With {steps} per epoch at lr {plan.lr:g}, Adam "
                    f"can move a weight by only about {budget:.2g} over {len(cal.epochs)} "
                    f"epochs, against a median starting weight of {typical:.2g}: small data "
                    f"sets need more steps or a larger lr than the official recipe, which "
                    f"was made for ~150k BAPPS triplets ({advice}).")
    if any(features.masked):
        lines.append(f"{sum(features.masked)} triplets carry a mask: their distances (and "
                     f"scores) are mask-weighted means.")
    if not cal.backbone.get("perceptual", True):
        warn.append("The trunk has random weights: these heads calibrate a structure demo, "
                    "not a perceptual metric.")
    if cal.n_val and cal.n_val < 100:
        warn.append(f"Only {cal.n_val} held-out triplets: the held-out score is coarse "
                    f"(steps of {1 / cal.n_val:.3f}).")
    return replace(cal, summary=tuple(lines), warnings=tuple(warn))

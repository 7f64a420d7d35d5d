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
import importlib.metadata
import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lpips_explain.analyses.calibration.features import Cancel, JudgmentFeatures, model_id
from lpips_explain.analyses.calibration.recipe import (
    OFFICIAL,
    RECIPES,
    SELECT,
    WARMUP_LR,
    Schedule,
    lr_for_epoch,
    plan_schedule,
    split_indices,
)
from lpips_explain.analyses.calibration.result import (
    Calibration,
    EpochRecord,
    Scores,
    TripletVerdict,
    _mean,
    two_afc,
)
from lpips_explain.analyses.calibration.summary import with_summary
from lpips_explain.core.model import LpipsNet
from lpips_explain.core.weights import load_lin_heads
from lpips_explain.errors import InputError, lookup
from lpips_explain.validation import Progress, integer

INITS: dict[str, str] = {
    "released": "the official heads shipped with the lpips package for this trunk and version",
    "scratch": "random heads (torch's default 1x1-conv initialisation, seeded), as the "
               "official trainer starts",
}
# The official recipe (lpips/trainer.py, train.py).

OnEpoch = Callable[["EpochRecord"], None]


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
    seed = integer(seed, "seed", minimum=0)
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
    with _one_thread():
        run = _train(fit, plan, start, init == "released", seed, progress, on_epoch, cancel)

    # The ranking net as it was at the kept epoch: "after" is that epoch's record, loss too.
    fit.rank.load_state_dict(run.best_rank)
    after, d0_after, d1_after = fit.evaluate(run.best_w)
    inverted = bool(len(train_idx)) and fit.lean(run.best_w) < 0
    g = features.judges
    split = np.full(n, "train", dtype=object)
    split[val_idx] = "val"
    verdicts = tuple(
        TripletVerdict(r.id, str(split[i]), r.ref, r.p0, r.p1, float(g[i]),
                       float(run.d0_before[i]), float(run.d1_before[i]), float(d0_after[i]),
                       float(d1_after[i]))
        for i, r in enumerate(features.rows))
    cuts = np.cumsum((0, *features.channels))
    heads_before = tuple(start[a:b].numpy().copy() for a, b in itertools.pairwise(cuts))
    heads_after = tuple(run.best_w[a:b].numpy().copy() for a, b in itertools.pairwise(cuts))
    schedule = {**plan.to_dict(), "betas": [OFFICIAL["beta1"], OFFICIAL["beta2"]],
                "val_fraction": float(val_fraction), "size": features.size,
                "loss": "lpips.BCERankingLoss (Dist2LogitLayer)",
                "clamp": "lin heads >= 0 after every step (trunk frozen, never clamped)",
                "dropout": "not applied (the official lin layers use dropout 0.5; see README)",
                "rank_net_negated_at_init": fit.flipped,
                "rank_net_inverted": inverted,
                "masked_triplets": int(sum(features.masked)),
                "description": plan.describe()}
    result = Calibration(
        model.spec.name, model.version, model.layer_names, heads_before, heads_after,
        run.before, after, tuple(run.records), run.best_epoch, run.stopped, n,
        features.n_refused, len(train_idx), len(val_idx), features.refused, schedule,
        _provenance(model, features, init, seed), verdicts, model.weights_info)
    return with_summary(result, features, plan)


@dataclass
class _Run:
    """What the training loop leaves: the records, why it stopped, the starting heads'
    scores and distances, and the kept epoch's heads and ranking net."""

    records: list[EpochRecord]
    stopped: str
    before: Scores
    d0_before: Tensor
    d1_before: Tensor
    best_w: Tensor
    best_epoch: int
    best_rank: dict[str, Tensor]


def _train(fit: _HeadFit, plan: Schedule, start: Tensor, released: bool, seed: int,
           progress: Progress | None, on_epoch: OnEpoch | None,
           cancel: Cancel | None) -> _Run:
    """The warm-up, then the epochs: each scored on both parts, the best kept (by the
    recipe's criterion), until the schedule ends, patience runs out or ``cancel()``."""
    records: list[EpochRecord] = []
    stopped = "completed"
    total_epochs, spe = plan.total_epochs, plan.steps_per_epoch
    n_val = len(fit.val_idx)
    warmup = plan.warmup_steps if len(fit.train_idx) else 0
    order = torch.Generator().manual_seed(seed)

    def step_done(step: int) -> bool:
        if progress is not None:
            progress(step, total_epochs * spe, "Training the heads")
        return cancel is not None and bool(cancel())

    def warm_done(step: int) -> bool:
        if progress is not None:
            progress(step, warmup, "Fitting the ranking net to the starting heads")
        return cancel is not None and bool(cancel())

    cancelled = fit.warm_up(warmup, warm_done) if warmup else False
    before, d0_before, d1_before = fit.evaluate(fit.w)
    select = _select_key(plan.select, before.val_2afc)
    # Random heads (scratch) are no result: they compete only from the released heads.
    best_key = select(before) if released else (-math.inf,) * 3
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
        if n_val == 0 or key > best_key:
            best_key, best_w, best_epoch, since_best = key, fit.w.detach().clone(), epoch, 0
            best_rank = fit.rank_state()
        else:
            since_best += 1
        if cancelled:
            stopped = "cancelled"
            break
        if plan.patience is not None and n_val and since_best >= plan.patience \
                and epoch < total_epochs:
            stopped = "early_stopping"
            break
    return _Run(records, stopped, before, d0_before, d1_before, best_w, best_epoch, best_rank)


def _provenance(model: LpipsNet, features: JudgmentFeatures, init: str, seed: int) -> dict:
    """Where the heads come from: trunk, version, start, seed, data, date and versions."""
    info = model.weights_info
    return {"trunk": {"net": model.spec.name, "weights": info.spec, "file": info.file,
                      "seed": info.seed, "perceptual": info.perceptual},
            "version": model.version, "init": init, "seed": seed,
            "data_hash": features.data_hash, "data_source": features.source,
            "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
            "lpips_explain": _package_version("lpips-explain"),
            "lpips": _package_version("lpips"), "torch": torch.__version__}


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


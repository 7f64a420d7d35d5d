"""The training recipe: the official one (lpips/trainer.py, train.py) and "auto", which
chooses length and rate from the set; :func:`plan_schedule` turns either into a :class:`Schedule`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lpips_explain.errors import InputError, lookup
from lpips_explain.validation import counted, integer, number

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


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices, fixed by the seed (sorted, disjoint, covering 0..n-1)."""
    if number(val_fraction, "val_fraction", minimum=0.0) >= 1.0:
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
                else f"stops after {counted(self.patience, 'epoch')} "
                     f"without improvement")
        warm = (f"the ranking net first fitted to the starting heads ({self.warmup_steps} "
                f"steps), then " if self.warmup_steps else "")
        return (f"Recipe {self.recipe} ({origin}): {warm}{self.epochs} + {self.decay_epochs} "
                f"epochs of {counted(spe, 'step')} ({self.steps} Adam steps, "
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
    n_train = integer(n_train, "n_train", minimum=1)
    given = tuple(name for name, v in (("epochs", epochs), ("decay_epochs", decay_epochs),
                                       ("lr", lr), ("batch_size", batch_size),
                                       ("patience", patience)) if v is not None)
    batch = integer(batch_size, "batch_size", minimum=1) if batch_size is not None \
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
    base = integer(epochs, "epochs", minimum=0) if epochs is not None else base
    decay = integer(decay_epochs, "decay_epochs", minimum=0) if decay_epochs is not None else decay
    if base + decay < 1:
        raise InputError("epochs + decay_epochs must be at least 1.")
    rate = _check_lr(lr) if lr is not None else rate
    wait: int | None
    if patience is not None:
        wait = integer(patience, "patience", minimum=0) or None
    elif recipe == "official":
        wait = DEFAULT_PATIENCE
    else:  # a share of the epochs that will run
        wait = max(DEFAULT_PATIENCE, math.ceil(AUTO_PATIENCE_SHARE * (base + decay)))
    return Schedule(recipe, n_train, base, decay, rate, batch, wait, select, warmup, given)



def lr_for_epoch(epoch: int, lr: float, epochs: int, decay_epochs: int) -> float:
    """The official schedule: lr for epochs 1..epochs+1, then minus lr/decay_epochs after each
    later epoch (train.py calls update_learning_rate after every epoch past ``epochs``)."""
    if decay_epochs <= 0:
        return lr
    return lr * (1.0 - max(0, epoch - 1 - epochs) / decay_epochs)


def _check_lr(lr: object) -> float:
    return number(lr, "lr", above=0.0)


"""The prose of a calibration: what ran, what it scored, and the warnings a reader needs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from lpips_explain.analyses.calibration.features import JudgmentFeatures
from lpips_explain.analyses.calibration.recipe import Schedule
from lpips_explain.analyses.calibration.result import Calibration
from lpips_explain.core.weights import RANDOM
from lpips_explain.validation import counted


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


def with_summary(cal: Calibration, features: JudgmentFeatures,
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
                     f"{counted(best.step, 'step')}) are kept ({why}; held-out loss "
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
        steps = counted(spe, "step")
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
    state = cal.backbone.state
    if state.code == RANDOM:
        warn.append(f"{state.subject}: these heads calibrate a structure demo, not a "
                    f"perceptual metric.")
    elif not state.perceptual:
        warn.append(f"{state.subject}: these heads are fitted to that file's features, not "
                    f"to the verified published trunk's.")
    if cal.n_val and cal.n_val < 100:
        warn.append(f"Only {cal.n_val} held-out triplets: the held-out score is coarse "
                    f"(steps of {1 / cal.n_val:.3f}).")
    return replace(cal, summary=tuple(lines), warnings=tuple(warn))

"""calibrate and domain-gap: fit the lin heads to 2AFC judgments; measure how far a domain is."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lpips_explain.analyses.calibration import (
    AUTO_EPOCHS,
    AUTO_STEPS,
    DEFAULT_PATIENCE,
    INITS,
    OFFICIAL,
    RECIPES,
    SELECT,
    Calibration,
    EpochRecord,
)
from lpips_explain.cli.common import (
    ProgressBar,
    add_command,
    add_model_options,
    add_resize_option,
    make_explainer,
)
from lpips_explain.errors import InputError
from lpips_explain.intake.judgments import refusals_text


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "calibrate", "fit the lin heads to 2AFC judgments; writes "
                                      "DIR/lin.pth and DIR/calibration.json")
    p.add_argument("judgments", help="a CSV with columns ref,p0,p1,judge[,mask] (paths relative "
                                     "to the CSV) or a BAPPS folder (ref/, p0/, p1/, judge/)")
    p.add_argument("--out", required=True, type=Path, help="folder for lin.pth and "
                                                           "calibration.json")
    g = p.add_argument_group("calibration (defaults: chosen from the data; --recipe official "
                             "for the published one)")
    g.add_argument("--init", default="released", choices=list(INITS),
                   help="released: start from the official heads (default); scratch: random "
                        "heads, as the official trainer")
    g.add_argument("--recipe", default="auto", choices=list(RECIPES),
                   help=f"auto (default): about {AUTO_STEPS} Adam steps ({AUTO_EPOCHS[0]} to "
                        f"{AUTO_EPOCHS[1]} epochs), the rate scaled so that rate x steps "
                        f"equals the official "
                        f"recipe's on BAPPS, the ranking net fitted first, the heads of the "
                        f"lowest held-out loss kept; official: {OFFICIAL['epochs']} + "
                        f"{OFFICIAL['decay_epochs']} epochs at lr {OFFICIAL['lr']:g}, batch "
                        f"{OFFICIAL['batch_size']}, the best held-out 2AFC kept (made for "
                        f"BAPPS's ~150k triplets). The flags below override the recipe")
    g.add_argument("--epochs", type=int, default=None,
                   help=f"epochs at the base rate (official: {OFFICIAL['epochs']}; auto: half "
                        f"of about {AUTO_STEPS} steps)")
    g.add_argument("--decay-epochs", type=int, default=None,
                   help=f"further epochs with the rate decaying linearly to 0 (official: "
                        f"{OFFICIAL['decay_epochs']}; auto: the other half)")
    g.add_argument("--lr", type=float, default=None,
                   help=f"Adam learning rate, betas 0.5, 0.999 (official: {OFFICIAL['lr']:g}; "
                        f"auto: from the set's size)")
    g.add_argument("--batch-size", type=int, default=None,
                   help=f"triplets per step (default {OFFICIAL['batch_size']})")
    g.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of triplets held out, fixed by --seed (default 0.2)")
    g.add_argument("--patience", type=int, default=None,
                   help=f"stop after this many epochs without improvement on the held-out "
                        f"triplets (official: {DEFAULT_PATIENCE}; auto: a fifth of the "
                        f"epochs; 0: never stop early)")
    add_resize_option(g)
    add_model_options(p)
    p.set_defaults(func=run_calibrate)


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def run_calibrate(args: argparse.Namespace) -> int:
    # Imported here, not at the top: plotly stays out of the commands that do not draw.
    from lpips_explain.output.calibration import calibration_json, write_calibration

    if args.lin_weights:
        raise InputError("calibrate starts from the released heads or from scratch (--init); "
                         "--lin-weights does not apply to it.")
    if args.patience is not None and args.patience < 0:
        raise InputError(f"--patience must be >= 0, got {args.patience}.")
    explainer = make_explainer(args)
    args.out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before the work
    bar = ProgressBar(not args.quiet)
    try:
        with _stop_on_ctrl_c() as stop:
            cal = explainer.calibrate(args.judgments, init=args.init, recipe=args.recipe,
                                      epochs=args.epochs, decay_epochs=args.decay_epochs,
                                      lr=args.lr, batch_size=args.batch_size,
                                      val_fraction=args.val_fraction,
                                      patience=args.patience, seed=args.seed,
                                      size=args.resize, progress=bar, cancel=stop)
    finally:
        bar.close()
    files = write_calibration(cal, args.out)
    if args.json:
        print(calibration_json(cal))
    else:
        _print_calibration(cal, files)
    for w in cal.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if cal.stopped == "cancelled":
        print(f"lpips-explain: interrupted after epoch {len(cal.epochs) - 1}; the best heads "
              f"so far (epoch {cal.best_epoch}) were written to {args.out}", file=sys.stderr)
        return 130
    return 0


@contextmanager
def _stop_on_ctrl_c() -> Iterator[Callable[[], bool]]:
    """While training: the first Ctrl-C asks it to stop after its current step (the best
    heads so far are written, exit 130); a second one aborts at once."""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals: main thread only
        yield asked.is_set
        return

    def handler(signum: int, frame: Any) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print("lpips-explain: stopping after the current step (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


CURVE_ROWS = 20  # epochs printed at most (every one is in calibration.json)


def shown_epochs(cal: Calibration, rows: int = CURVE_ROWS) -> list[EpochRecord]:
    """The epochs the printed curve shows: all of them when few; else evenly spaced ones,
    the kept one and the last (calibration.json has every epoch)."""
    epochs = list(cal.epochs)
    if len(epochs) <= rows:
        return epochs
    every = -(-len(epochs) // rows)
    keep = {e.epoch for e in epochs[every - 1::every]} | {cal.best_epoch, epochs[-1].epoch}
    return [e for e in epochs if e.epoch in keep]


def _print_calibration(cal: Calibration, files: dict[str, Path]) -> None:
    print(f"Judgments: {cal.n_used} used ({cal.n_train} training, {cal.n_val} held out), "
          f"{cal.n_refused} refused.")
    if cal.refused:
        print("Refused:")
        for line in refusals_text(cal.refused).splitlines():
            print(f"  {line}")
    print(f"\n{'':<10} {'train 2AFC':>11} {'held-out 2AFC':>14} {'held-out loss':>14}")
    for label, s in (("before", cal.before), ("after", cal.after)):
        print(f"{label:<10} {_f(s.train_2afc):>11} {_f(s.val_2afc):>14} "
              f"{_f(s.val_loss, '.4f'):>14}")
    shown = shown_epochs(cal)
    print(f"\nLearning curve ({len(shown)} of {len(cal.epochs)} epochs shown; all in "
          f"calibration.json; kept: {SELECT[cal.schedule['select']].split(' (')[0]}):")
    print(f"{'epoch':>5} {'step':>6} {'lr':>9} {'train loss':>10} {'held-out loss':>14} "
          f"{'train 2AFC':>11} {'held-out 2AFC':>14}")
    b = cal.before
    print(f"{0:>5} {0:>6} {'':>9} {_f(b.train_loss, '.4f'):>10} {_f(b.val_loss, '.4f'):>14} "
          f"{_f(b.train_2afc):>11} {_f(b.val_2afc):>14}"
          f"{'  <- kept' if cal.best_epoch == 0 else ''}")
    for e in shown:
        mark = "  <- kept" if e.epoch == cal.best_epoch else ""
        print(f"{e.epoch:>5} {e.step:>6} {e.lr:>9.2e} {e.loss:>10.4f} "
              f"{_f(e.val_loss, '.4f'):>14} {_f(e.train_2afc):>11} {_f(e.val_2afc):>14}{mark}")
    print()
    for line in cal.summary:
        print(line)
    print(f"\nwrote {files['heads']} and {files['json']}; use the heads with "
          f"--lin-weights {files['heads']}")

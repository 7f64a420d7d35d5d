"""Calibrate page helpers: judgments in (the synthetic sample or an upload), training with
live curves and cancel, the results (before/after, changed verdicts, weights, downloads, use
the heads in the app) and the domain gap between two uploaded image sets.

No maths here: numbers come from the engine's Calibration and DomainGap, figures from
lpips_explain.output.calibration.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

# The exception Streamlit raises in a running script to stop or rerun it (streamlit is pinned).
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from lpips_explain.analyses.calibration import (
    INITS,
    OFFICIAL,
    RECIPES,
    Calibration,
    Schedule,
    TripletVerdict,
    n_train_for,
    plan_schedule,
)
from lpips_explain.explainer import Explainer
from lpips_explain.intake.files import DiskTree, image_names
from lpips_explain.intake.judgments import JudgmentSet, read_judgments, read_judgments_archive
from lpips_explain.output import calibration as out
from lpips_explain.ui import keys
from lpips_explain.ui.controls import use_lin_heads
from lpips_explain.ui.inputs import ASSETS, ImageInput, Triplet
from lpips_explain.ui.resources import ProgressBar, digest, result_store
from lpips_explain.ui.runstate import RunState, wait_for_input
from lpips_explain.ui.state import persistent
from lpips_explain.ui.widgets import ICONS, chart, note

SAMPLE_DIR = ASSETS / "judgments"
SAMPLE_CSV = SAMPLE_DIR / "synthetic_judgments.csv"
SYNTHETIC = ("Bundled sample: 36 triplets of 64 px patches with SYNTHETIC judgments, made by "
             "a stated rule (assets/make_judgments.py: noise annoys the synthetic judges most, "
             "colour least), not by people. A demo of the workflow, not data about perception.")
SOURCES = {"sample": "bundled sample (synthetic judgments)", "upload": "upload CSV + zip"}
LRS = (None, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 5e-2)  # None: the recipe's
RECIPE_LABELS = {"auto": "from the data (default)", "official": "official (BAPPS)"}
FROM_RECIPE = "from the recipe"
LIVE_EVERY_S = 0.3  # the live curve is redrawn at most this often (and at the last epoch)
SIZES = {"as is": None, "64 px": 64, "128 px": 128, "256 px": 256}
HEADS_ROOT = Path(tempfile.gettempdir()) / "lpips-explain-heads"


def trunk_key(opts: Any) -> tuple:
    """What trunk features and calibrations depend on: the trunk and its weights and the
    version's input scaling, not the heads in use (nor the precision: exact fp32 always)."""
    return (opts.net, opts.version, opts.backbone, opts.seed)


# --- judgments in --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgmentsInput:
    """Where the judgments come from, and a key for everything read."""

    key: str
    label: str
    synthetic: bool
    zip_bytes: bytes | None = None
    csv_text: str | None = None

    def read(self) -> JudgmentSet:
        if self.zip_bytes is None:
            return read_judgments(SAMPLE_CSV)
        return read_judgments_archive(self.zip_bytes, csv_text=self.csv_text,
                                      label=self.label)


def judgments_input(run: RunState | None = None) -> JudgmentsInput:
    """The bundled synthetic sample, or an uploaded zip of images (with an optional CSV);
    ``run``: the page's run state, told when the page waits for uploads."""
    source = persistent(st.radio, "Judgments", list(SOURCES), key=keys.CAL_SOURCE,
                        default="sample", choices=SOURCES, format_func=SOURCES.__getitem__,
                        horizontal=True)
    if source == "sample":
        st.info(SYNTHETIC, icon=ICONS["info"])
        return JudgmentsInput(f"sample:{digest(SAMPLE_CSV.read_bytes())}",
                              "the bundled sample (synthetic judgments)", True)
    col_z, col_c = st.columns(2)
    up_zip = col_z.file_uploader(
        "Images (zip)", type=["zip"], key=keys.CAL_ZIP,
        help="A zip of the images the CSV names (paths relative to the CSV), or of a BAPPS "
             "folder (ref/, p0/, p1/, judge/), or holding its own judgments CSV. Read in "
             "memory: unsafe names and oversized members are refused.")
    up_csv = col_c.file_uploader(
        "Judgments CSV (ref,p0,p1,judge[,mask])", type=["csv"], key=keys.CAL_CSV,
        help="judge: the share of people who found p1 closer to ref, in [0, 1]; mask: an "
             "optional grey image of where they looked.")
    if up_zip is None:
        st.info("Upload a zip of images (and its CSV unless the zip holds one), or use the "
                "bundled sample.", icon=ICONS["upload"])
        wait_for_input(run, "Waiting for a zip of images")
        st.stop()
    data = bytes(up_zip.getvalue())
    text = None
    if up_csv is not None:
        try:
            text = bytes(up_csv.getvalue()).decode("utf-8-sig")
        except UnicodeDecodeError:
            st.error(f"{up_csv.name} is not UTF-8 text; save the CSV as UTF-8.",
                     icon=ICONS["error"])
            st.stop()
    key = digest(data + b"\0" + (text or "").encode())
    return JudgmentsInput(f"upload:{key}", up_zip.name, False, data, text)


def judgments_panel(jset: JudgmentSet) -> None:
    note(jset.summary())
    if jset.refused:
        with st.expander(f"{len(jset.refused)} rows refused (left out, the rest is used)",
                         icon=ICONS["warning"]):
            st.dataframe(pd.DataFrame([r.to_dict() for r in jset.refused]), hide_index=True,
                         key="cal_refused_table")


# --- training ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingParams:
    """The page's training settings; None: the recipe's value."""

    init: str
    recipe: str
    epochs: int | None
    decay_epochs: int | None
    lr: float | None
    batch_size: int | None
    val_fraction: float
    patience: int | None  # 0: never stop early
    size: int | None
    seed: int

    def kwargs(self) -> dict:
        return {"init": self.init, "recipe": self.recipe, "epochs": self.epochs,
                "decay_epochs": self.decay_epochs, "lr": self.lr,
                "batch_size": self.batch_size, "val_fraction": self.val_fraction,
                "patience": self.patience, "seed": self.seed}

    def schedule(self, n_used: int) -> Schedule:
        """What will run on ``n_used`` triplets (the engine plans it the same way)."""
        return plan_schedule(n_train_for(n_used, self.val_fraction), self.recipe,
                             epochs=self.epochs, decay_epochs=self.decay_epochs, lr=self.lr,
                             batch_size=self.batch_size, patience=self.patience)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def training_controls(seed: int) -> TrainingParams:
    """The recipe (chosen from the data by default, or the official one) and the settings
    that override it; an empty box keeps the recipe's value."""
    with st.expander("Training settings (defaults: chosen from the data)", expanded=False):
        c1, c2, c3, c4 = st.columns(4)
        recipe = persistent(c1.radio, "Recipe", list(RECIPES), key=keys.CAL_RECIPE,
                            default="auto", choices=RECIPES, format_func=RECIPE_LABELS.get,
                            help=" / ".join(f"{RECIPE_LABELS[k]}: {v}"
                                            for k, v in RECIPES.items()))
        init = persistent(c1.radio, "Start from", list(INITS), key=keys.CAL_INIT,
                          default="released", choices=INITS,
                          help=" / ".join(f"{k}: {v}" for k, v in INITS.items()))
        epochs = persistent(c2.number_input, "Epochs at the base rate", key=keys.CAL_EPOCHS,
                            default=None, min_value=0, max_value=5000, value=None, placeholder=FROM_RECIPE)
        decay = persistent(c2.number_input, "Epochs with linear decay", key=keys.CAL_DECAY,
                           default=None, min_value=0, max_value=5000, value=None, placeholder=FROM_RECIPE)
        lr = persistent(c3.select_slider, "Learning rate (Adam, betas 0.5, 0.999)", LRS,
                        key=keys.CAL_LR, default=None, choices=LRS,
                        format_func=lambda v: FROM_RECIPE if v is None else f"{v:g}")
        batch = persistent(c3.number_input, "Batch size", key=keys.CAL_BATCH, default=None,
                           min_value=1, max_value=1000,
                           value=None,
                           placeholder=f"{FROM_RECIPE} ({OFFICIAL['batch_size']})")
        val = float(persistent(c4.slider, "Held-out share", 0.0, 0.5, key=keys.CAL_VAL,
                               default=0.2, step=0.05,
                               help="Triplets never trained on; the split is fixed by the "
                                    "seed (sidebar)."))
        patience = persistent(c4.number_input, "Early stopping patience (0: never)",
                              key=keys.CAL_PATIENCE, default=None, min_value=0,
                              max_value=5000, value=None, placeholder=FROM_RECIPE)
        size_label = persistent(c1.selectbox, "Resize images to", list(SIZES),
                                key=keys.CAL_SIZE, default="as is", choices=SIZES,
                                help="The official trainer resizes BAPPS patches to 64 px.")
    return TrainingParams(init, recipe, _optional_int(epochs), _optional_int(decay),
                          None if lr is None else float(lr), _optional_int(batch), val,
                          _optional_int(patience), SIZES[size_label], int(seed))


STOP_WAIT_S = 60.0  # how long a rerun waits for an interrupted training to store its heads


def run_training(explainer: Explainer, features: Any, params: TrainingParams,
                 key: tuple) -> Calibration | None:
    """The stored calibration for ``key``, or a Train button; training shows live curves and
    a progress bar, and Cancel (or any other click) interrupts it."""
    store = result_store()
    plan = params.schedule(features.n_used)
    note(plan.describe())
    col_t, col_c, _ = st.columns([1.2, 1, 4])
    # Requests go through callbacks into session state: a click's own value lasts one script
    # run, and a run can be restarted before it reaches this point.
    # (the settings of this run apply: a click may come with changed settings).
    col_t.button("Train the heads", key=keys.CAL_TRAIN, type="primary",
                 icon=":material/model_training:", on_click=_request,
                 args=(keys.CAL_TRAIN_REQUEST, True))
    col_c.button("Cancel", key=keys.CAL_CANCEL, icon=":material/stop_circle:",
                 on_click=_request, args=(keys.CAL_CANCEL_REQUEST, True),
                 help="Stops a training in progress after its current step; the best heads "
                      "so far (by the recipe's held-out criterion) are kept, as the CLI and "
                      "the API keep them.")
    start = bool(st.session_state.pop(keys.CAL_TRAIN_REQUEST, False))
    cancel = bool(st.session_state.pop(keys.CAL_CANCEL_REQUEST, False))
    # A click during training starts this run while the interrupted one (another thread)
    # finishes its current step and stores the best heads so far: wait for those.
    running = st.session_state.get(keys.CAL_RUNNING)
    if running is not None and running[0] == key:
        with st.spinner("Stopping the training after its current step..."):
            running[1].wait(timeout=STOP_WAIT_S)
    done = store.get("calibration", key)
    if cancel:
        if done is not None and done.stopped == "cancelled":
            kept = ("the starting heads (epoch 0) were the best on the held-out triplets so "
                    "far and are kept" if done.best_epoch == 0 else f"the heads of epoch "
                    f"{done.best_epoch} (the best on the held-out triplets so far) are kept")
            st.warning(f"Training cancelled after epoch {len(done.epochs) - 1}; {kept}, shown "
                       f"below.", icon=ICONS["warning"])
        else:
            st.info("Nothing is being trained.", icon=ICONS["info"])
        return done
    if not start:
        if done is None:
            st.info("Press **Train the heads** to fit them to these judgments; the curves "
                    "appear as it trains.", icon=ICONS["info"])
        return done
    bar = ProgressBar("Training the heads:")
    live = st.empty()
    records: list[Any] = []
    # A click during training makes Streamlit interrupt this script at its next drawing call.
    # The interruption is held here instead: the engine is asked to stop after its current
    # step (``cancel``) and returns the best heads so far, which are stored; then the
    # interruption goes on and the page reruns with the click.
    held: list[BaseException] = []
    finished = threading.Event()
    st.session_state[keys.CAL_RUNNING] = (key, finished)

    def draw(fn: Callable[[], Any]) -> None:
        if held:
            return
        try:
            fn()
        except ScriptControlException as exc:
            held.append(exc)

    drawn = [0.0]

    def on_epoch(rec: Any) -> None:
        records.append(rec)
        now = time.monotonic()
        if now - drawn[0] < LIVE_EVERY_S and rec.epoch < plan.total_epochs:
            return  # hundreds of epochs of one step each: redraw a few times a second
        drawn[0] = now
        fig = out.curves_figure(records, select=plan.select)
        fig.update_layout(title=f"Live: epoch {rec.epoch} of {plan.total_epochs} "
                                f"(step {rec.step} of {plan.steps})")
        draw(lambda: live.plotly_chart(fig, theme=None))

    try:
        cal = explainer.calibrate(
            features, progress=lambda *a: draw(lambda: bar(*a)), on_epoch=on_epoch,
            cancel=lambda: bool(held), **params.kwargs())
        store.put("calibration", key, cal)
    finally:
        finished.set()
        draw(bar.clear)
    if held:
        raise held[0]
    live.empty()
    return cal


def _request(name: str, value: Any) -> None:
    """Button callback: remember the request in session state until a run acts on it."""
    st.session_state[name] = value


# --- results ---------------------------------------------------------------------------------------


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def results_panel(cal: Calibration) -> None:
    st.subheader("Before and after")
    c1, c2, c3, c4 = st.columns(4)
    delta = (None if cal.after.val_2afc is None or cal.before.val_2afc is None
             else f"{cal.after.val_2afc - cal.before.val_2afc:+.3f}")
    c1.metric("Held-out 2AFC", _f(cal.after.val_2afc), delta,
              help=f"Before: {_f(cal.before.val_2afc)} on {cal.n_val} held-out triplets.")
    c2.metric("Training 2AFC", _f(cal.after.train_2afc),
              None if cal.before.train_2afc is None or cal.after.train_2afc is None
              else f"{cal.after.train_2afc - cal.before.train_2afc:+.3f}")
    c3.metric("Triplets used", f"{cal.n_used}", help=f"{cal.n_refused} refused")
    c4.metric("Kept epoch", f"{cal.best_epoch} of {len(cal.epochs)}", help=cal.stopped)
    st.caption(f"held-out 2AFC before = {_f(cal.before.val_2afc)}, after = "
               f"{_f(cal.after.val_2afc)}")
    for line in cal.summary:
        st.markdown(f"- {line}")
    for w in cal.warnings:
        st.warning(w, icon=ICONS["warning"])
    chart(out.curves_figure(cal.epochs, cal.before, cal.best_epoch,
                            cal.schedule.get("select")), "cal_curves")


def weights_panel(cal: Calibration) -> None:
    st.subheader("Per-layer weight changes")
    chart(out.weights_figure(cal), "cal_weights")
    st.dataframe(pd.DataFrame([{
        "layer": c.name, "channels": c.channels, "mean before": c.mean_before,
        "mean after": c.mean_after, "sum |change|": c.sum_abs_change,
        "zero before": c.zero_before, "zero after": c.zero_after}
        for c in cal.layer_changes]), hide_index=True, key="cal_layers_table")


def _verdict_text(v: str) -> str:
    return {"p0": "p0 closer", "p1": "p1 closer", "tie": "tie"}[v]


def changed_panel(cal: Calibration, jset: JudgmentSet) -> None:
    """The triplets whose verdict changed, held-out first; one opens on the Triplet page."""
    st.subheader("Triplets whose verdict changed")
    changed = sorted(cal.changed, key=lambda t: (t.split != "val", t.id))
    if not changed:
        note(f"No triplet changed its verdict ({cal.n_used} checked).")
        return
    rows = [{"triplet": t.id, "split": "held out" if t.split == "val" else "training",
             "judge (share for p1)": t.judge, "before": _verdict_text(t.verdict_before),
             "after": _verdict_text(t.verdict_after),
             "agreement before": t.agreement_before, "agreement after": t.agreement_after}
            for t in changed]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="cal_changed_table")
    ids = [t.id for t in changed]
    pick = persistent(st.selectbox, "Triplet", ids, key=keys.CAL_CHANGED_PICK,
                      default=ids[0], choices=ids)
    chosen = next(t for t in changed if t.id == pick)
    cols = st.columns(3)
    for col, role in zip(cols, ("ref", "p0", "p1"), strict=True):
        col.image(jset.tree.read(getattr(chosen, role)), caption=f"{role}: "
                  f"{getattr(chosen, role)}", width=160)
    note(f"{chosen.id}: d(ref, p0) {chosen.d0_before:.4f} -> {chosen.d0_after:.4f}, "
         f"d(ref, p1) {chosen.d1_before:.4f} -> {chosen.d1_after:.4f}; the judges gave p1 "
         f"a share of {chosen.judge:g}. On the Triplet page p0 is A and p1 is B; use the "
         f"calibrated heads (below) to see the new verdict there.")
    st.button("Open on the Triplet page", key=keys.CAL_OPEN, icon=":material/balance:",
              on_click=_request, args=(keys.CAL_OPEN_REQUEST, chosen.id))
    if st.session_state.pop(keys.CAL_OPEN_REQUEST, None) == chosen.id:
        open_on_triplet_page(chosen, jset)


def open_on_triplet_page(verdict: TripletVerdict, jset: JudgmentSet) -> None:
    """Hand the triplet (REF = ref, A = p0, B = p1) to the Triplet page and go there."""
    images = [ImageInput(Path(name).name, jset.tree.read(name))
              for name in (verdict.ref, verdict.p0, verdict.p1)]
    triplet = Triplet(*images, "upload")
    st.session_state[keys.TRIPLET] = triplet
    st.session_state[keys.SAMPLE_TRIPLET] = keys.UPLOADED
    st.session_state[keys.KEEP_PREFIX + keys.SAMPLE_TRIPLET] = keys.UPLOADED
    st.switch_page("pages/1_Triplet.py")


def heads_dir(cal: Calibration) -> Path:
    """A folder on the server for these heads (named by their content)."""
    lin = out.lin_bytes(cal)
    return HEADS_ROOT / hashlib.sha256(lin).hexdigest()[:16]


def downloads_panel(cal: Calibration, explainer: Explainer) -> None:
    st.subheader("The heads")
    lin = out.lin_bytes(cal)
    c1, c2, c3 = st.columns(3)
    c1.download_button("lin.pth", lin, file_name=out.LIN_FILE, key=keys.CAL_DL_LIN,
                       icon=ICONS["download"], mime="application/octet-stream")
    c2.download_button("calibration.json", out.calibration_json(cal, lin),
                       file_name="calibration.json", key=keys.CAL_DL_JSON,
                       icon=ICONS["download"], mime="application/json")
    c3.download_button("both (zip)", out.calibration_zip(cal), file_name="calibration.zip",
                       key=keys.CAL_DL_ZIP, icon=ICONS["download"], mime="application/zip")
    note("lin.pth has the official key layout: lpips.LPIPS(model_path='lin.pth') and "
         "lpips-explain --lin-weights lin.pth both load it. Kept beside calibration.json it is "
         "labelled as calibrated wherever it is used.")
    folder = heads_dir(cal)
    in_use = Path(explainer.model.lin_file).parent.resolve() == folder.resolve()
    if in_use:
        st.success(f"These heads are in use on every page ({folder / out.LIN_FILE}).",
                   icon=":material/check_circle:")
        st.button("Back to the official heads", key=keys.CAL_OFFICIAL_HEADS,
                  on_click=use_lin_heads, args=("",))
    else:
        st.button("Use these heads in the app", key=keys.CAL_USE_HEADS, icon=":material/tune:",
                  on_click=_use_heads, args=(cal,),
                  help="Writes lin.pth and calibration.json on the server and selects them "
                       "under 'Lin heads' in the sidebar, for every page.")


def _use_heads(cal: Calibration) -> None:
    """Button callback (runs before the next script run, so the sidebar can follow)."""
    files = out.write_calibration(cal, heads_dir(cal))
    use_lin_heads(str(files["heads"]))


# --- domain gap ----------------------------------------------------------------------------------


def _sample_set(folder: str, half: int) -> list[tuple[str, bytes]]:
    """The sample's images in ``folder``, first (0) or second (1) half of the triplets."""
    tree = DiskTree(SAMPLE_DIR / folder)
    names = image_names(tree)
    names = names[: len(names) // 2] if half == 0 else names[len(names) // 2:]
    return [(f"{folder}/{n}", tree.read(n)) for n in names]


def gap_inputs(run: RunState | None = None) -> tuple[str, Any, Any]:
    """(key, set A, set B): two uploaded zips, or the sample's references against its p0s
    (``run`` is told when the page waits for the second zip)."""
    st.subheader("Domain gap")
    note("How far set B's images are from set A's in the trunk's unit-normalised features, "
         "layer by layer, with checks of sizes, colour and dynamic range.")
    col_a, col_b = st.columns(2)
    up_a = col_a.file_uploader("Set A (zip): the domain the metric knows", type=["zip"],
                               key=keys.GAP_ZIP_A)
    up_b = col_b.file_uploader("Set B (zip): the new domain", type=["zip"], key=keys.GAP_ZIP_B)
    if up_a is not None and up_b is not None:
        a, b = bytes(up_a.getvalue()), bytes(up_b.getvalue())
        return f"upload:{digest(a)}:{digest(b)}", a, b
    if up_a is not None or up_b is not None:
        st.info("Upload the other set too (or remove both to compare the bundled sample).",
                icon=ICONS["upload"])
        wait_for_input(run, "Waiting for the other image set")
        st.stop()
    note("Without uploads: the sample's first 18 reference patches (A, clean) against the "
         "p0 candidates of its other 18 triplets (B, distorted, other pictures).")
    return "sample", _sample_set("ref", 0), _sample_set("p0", 1)


def gap_panel(gap: Any) -> None:
    for line in gap.summary:
        st.markdown(f"- {line}")
    for w in gap.warnings:
        st.warning(w, icon=ICONS["warning"])
    chart(out.domain_gap_figure(gap), "gap_figure")
    st.dataframe(pd.DataFrame([{
        "rank": g.rank, "layer": g.name, "MMD²": g.mmd2, "p": g.p_value,
        "mean shift": g.mean_shift, "std shift": g.std_shift} for g in gap.layers]),
        hide_index=True, key="gap_layers_table")
    checks = gap.to_dict()["sets"]
    st.dataframe(pd.DataFrame([{
        "set": v["name"], "images": v["n_images"], "refused": v["n_refused"],
        "median size (h, w)": str(v["median_size"]),
        "side / 64 px": v["median_side_vs_heads_64px"],
        "side / 256 px": v["median_side_vs_trunk_256px"],
        "grayscale": v["grayscale_share"], "median dynamic range": v["median_dynamic_range"],
        "low range": v["low_range_share"]} for v in checks.values()]),
        hide_index=True, key="gap_checks_table")

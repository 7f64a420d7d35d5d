"""Calibration and domain-gap outputs: the head file, calibration.json, and their figures.

Writers return bytes or write files and return their paths; figure builders return plotly
figures. Neither touches streamlit.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from lpips_explain.core.heads import CALIBRATION_JSON
from lpips_explain.output.serialize import to_json

LIN_FILE = "lin.pth"


def lin_bytes(cal: Any) -> bytes:
    """The calibrated heads as a torch file in the official key layout
    (``lin{i}.model.1.weight``, shape (1, C, 1, 1)): ``lpips.LPIPS(model_path=...)`` and
    ``--lin-weights`` both load it."""
    buf = io.BytesIO()
    torch.save(cal.state_dict(), buf)
    return buf.getvalue()


def calibration_json(cal: Any, lin: bytes | None = None) -> str:
    """calibration.json: the result's keys, with the SHA-256 of its head file in provenance
    (that is how a head file is recognised as calibrated, and by which run)."""
    data = cal.to_dict()
    data["provenance"]["lin_sha256"] = hashlib.sha256(
        lin if lin is not None else lin_bytes(cal)).hexdigest()
    data["files"] = {"heads": LIN_FILE}
    return to_json(data)


def write_calibration(cal: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write ``lin.pth`` and ``calibration.json`` into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lin = lin_bytes(cal)
    (out / LIN_FILE).write_bytes(lin)
    (out / CALIBRATION_JSON).write_text(calibration_json(cal, lin), encoding="utf-8")
    return {"heads": out / LIN_FILE, "json": out / CALIBRATION_JSON}


def calibration_zip(cal: Any) -> bytes:
    """lin.pth and calibration.json in one zip: unpacked side by side, the heads are
    recognised as calibrated wherever they are loaded."""
    lin = lin_bytes(cal)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(LIN_FILE, lin)
        zf.writestr(CALIBRATION_JSON, calibration_json(cal, lin))
    return buf.getvalue()


# --- figures ------------------------------------------------------------------------------------


def curves_figure(epochs: Sequence[Any], before: Any | None = None,
                  kept: int | None = None, select: str | None = None) -> go.Figure:
    """The learning curve: the ranking loss on the training triplets (mean over each
    epoch's steps) and on the held-out ones (left), and the 2AFC agreement on both (right).
    Epoch 0 is the starting heads (from ``before``, or a record with epoch 0 among
    ``epochs``); ``kept`` marks the epoch whose heads are kept, chosen by ``select``
    ("val_loss" or "val_2afc", for the caption)."""
    fields = ("epoch", "loss", "val_loss", "train_2afc", "val_2afc")
    rows = [{f: getattr(e, f) for f in fields} | {"step": getattr(e, "step", None)}
            for e in epochs]
    if before is not None and not any(r["epoch"] == 0 for r in rows):
        rows.insert(0, {"epoch": 0, "loss": before.train_loss, "val_loss": before.val_loss,
                        "train_2afc": before.train_2afc, "val_2afc": before.val_2afc,
                        "step": 0})
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Ranking loss (BCE)", "2AFC agreement with the judges"))
    mode = "lines+markers" if len(rows) <= 60 else "lines"
    xs = [r["epoch"] for r in rows]
    steps = [r["step"] for r in rows]
    hover = "epoch %{x}<br>step %{customdata}<br>%{y:.4f}<extra>%{fullData.name}</extra>"
    series = ((1, "loss", "training loss (mean over the epoch)"),
              (1, "val_loss", "held-out loss (end of epoch)"),
              (2, "train_2afc", "training triplets"), (2, "val_2afc", "held-out triplets"))
    for col, key, label in series:
        ys = [r[key] for r in rows]
        if any(y is not None for y in ys):
            fig.add_trace(go.Scatter(x=xs, y=ys, mode=mode, name=label, customdata=steps,
                                     hovertemplate=hover), row=1, col=col)
    if kept is not None:
        for col in (1, 2):
            fig.add_vline(x=kept, line_dash="dot", line_color="#555", row=1, col=col)
    fig.update_xaxes(title_text="epoch (0: the starting heads)", row=1, col=2)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_yaxes(title_text="share of judges agreed with", range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=360, margin={"t": 50, "b": 40, "l": 50, "r": 20},
                      legend={"orientation": "h", "y": -0.3})
    caption = ("Left: the official ranking loss on the training triplets (falling as the heads "
               "and the small ranking net fit them) and on the held-out ones (rising again "
               "when they over-fit). Right: the share of judgments LPIPS agrees with (2AFC) on "
               "both; it moves in steps of 1/n, so on few held-out triplets the loss is the "
               "finer guide.")
    if kept is not None and rows:
        why = {"val_loss": ", the lowest held-out loss among epochs at least as good as the "
                           "start on held-out 2AFC",
               "val_2afc": ", the best held-out 2AFC"}.get(select or "", "")
        caption += f" The dotted line marks epoch {kept}, whose heads are kept{why}."
    fig.update_layout(meta={"caption": caption})
    return fig


def weights_figure(cal: Any) -> go.Figure:
    """Mean lin weight per layer, starting heads beside calibrated ones."""
    changes = cal.layer_changes
    names = [c.name for c in changes]
    fig = go.Figure([
        go.Bar(x=names, y=[c.mean_before for c in changes], name="starting heads"),
        go.Bar(x=names, y=[c.mean_after for c in changes], name="calibrated heads"),
    ])
    fig.update_layout(barmode="group", height=320, title="Mean lin weight per layer",
                      yaxis_title="mean weight", margin={"t": 50, "b": 40, "l": 50, "r": 20})
    top = max(changes, key=lambda c: c.sum_abs_change)
    fig.update_layout(meta={"caption": f"The largest change is in {top.name}: mean weight "
                                       f"{top.mean_before:.4g} -> {top.mean_after:.4g}."})
    return fig


def domain_gap_figure(gap: Any) -> go.Figure:
    """MMD^2 per layer (in the trunk's order), labelled with its permutation p-value."""
    by = {g.name: g for g in gap.layers}
    names = list(gap.layer_names)
    fig = go.Figure(go.Bar(x=names, y=[by[n].mmd2 for n in names],
                           text=[f"p={by[n].p_value:.3g}" for n in names],
                           textposition="outside"))
    fig.update_layout(height=320, title="Domain gap per layer: MMD² of per-image pooled "
                                        "features (p from permutations)",
                      yaxis_title="MMD²", margin={"t": 60, "b": 40, "l": 50, "r": 20})
    top = gap.layers[0]
    fig.update_layout(meta={"caption": (
        f"MMD² compares the two sets' per-image pooled, unit-normalised features in each "
        f"layer (each channel's mean and spread over positions; Gaussian kernel, "
        f"median-distance bandwidth); p is the share of "
        f"{gap.permutations} random relabellings with at least as large a value. Largest: "
        f"{top.name} (MMD² {top.mmd2:.3g}, p = {top.p_value:.3g}).")})
    return fig

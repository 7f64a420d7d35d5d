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
                  kept: int | None = None) -> go.Figure:
    """Training loss per epoch (left) and 2AFC agreement on the training and held-out
    triplets (right). Epoch 0 is the starting heads (from ``before``, or a record with
    epoch 0 among ``epochs``); ``kept`` marks the epoch whose heads are kept."""
    fields = ("epoch", "loss", "val_loss", "train_2afc", "val_2afc")
    rows = [{f: getattr(e, f) for f in fields} for e in epochs]
    if before is not None and not any(r["epoch"] == 0 for r in rows):
        rows.insert(0, {"epoch": 0, "loss": None, "val_loss": before.val_loss,
                        "train_2afc": before.train_2afc, "val_2afc": before.val_2afc})
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "Ranking loss (BCE)", "2AFC agreement with the judges"))
    xs = [r["epoch"] for r in rows]
    trained = [r for r in rows if r["epoch"] > 0]
    fig.add_trace(go.Scatter(x=[r["epoch"] for r in trained], y=[r["loss"] for r in trained],
                             mode="lines+markers", name="training loss (mean over the epoch)"),
                  row=1, col=1)
    if any(r["val_loss"] is not None for r in rows):
        fig.add_trace(go.Scatter(x=xs, y=[r["val_loss"] for r in rows], mode="lines+markers",
                                 name="held-out loss (end of epoch)"), row=1, col=1)
    for key, label in (("train_2afc", "training triplets"), ("val_2afc", "held-out triplets")):
        ys = [r[key] for r in rows]
        if any(y is not None for y in ys):
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label),
                          row=1, col=2)
    if kept is not None:
        fig.add_vline(x=kept, line_dash="dot", line_color="#555", row=1, col=2)
    fig.update_xaxes(title_text="epoch (0: the starting heads)", row=1, col=2)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_yaxes(title_text="share of judges agreed with", range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=360, margin={"t": 50, "b": 40, "l": 50, "r": 20},
                      legend={"orientation": "h", "y": -0.3})
    caption = ("Left: the official ranking loss, falling as the heads and the small ranking "
               "net fit the training judgments. Right: the share of judgments LPIPS agrees with "
               "(2AFC) on the training and the held-out triplets; a held-out curve that stops "
               "rising while the training curve climbs is over-fitting.")
    if kept is not None and rows:
        caption += f" The dotted line marks epoch {kept}, whose heads are kept."
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

"""Figures of a profile (``lpips-explain profile --json``): latency and memory against image size
per mode, and the fidelity of each approximate mode against exact fp32."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

_COLOURS = {"fp32": "#1f77b4", "bf16": "#ff7f0e", "fp16": "#9467bd", "int8": "#2ca02c"}


def _series(rows: Sequence[dict], field: str) -> dict[tuple[str, str, str], list[tuple]]:
    out: dict[tuple[str, str, str], list[tuple]] = {}
    for r in rows:
        key = (r["net"], r["precision"], r["device"])
        out.setdefault(key, []).append((r["size"], r[field], r["exact"]))
    return {k: sorted(v) for k, v in out.items()}


def _name(net: str, precision: str, device: str, exact: bool) -> str:
    where = "" if device == "cpu" else f" {device}"
    return f"{net} {precision}{where} ({'exact' if exact else 'approximate'})"


def _against_size(rows: Sequence[dict], field: str, title: str, y_title: str,
                  source: str) -> go.Figure:
    fig = go.Figure()
    for (net, precision, device), pts in _series(rows, field).items():
        exact = pts[0][2]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
            name=_name(net, precision, device, exact),
            line={"color": _COLOURS.get(precision), "dash": "solid" if exact else "dash"}))
    fig.update_layout(title=f"{title}<br><sup>{source}</sup>", xaxis_title="image side (px)",
                      yaxis_title=y_title, legend_title="trunk, mode", height=380,
                      margin={"t": 70, "b": 40})
    return fig


def latency_figure(rows: Sequence[dict], source: str = "") -> go.Figure:
    """Time per candidate image (one reference against a batch) against image size."""
    per_image = [{**r, "per_image_ms": r["batch_ms"] / max(1, r["batch"])} for r in rows]
    return _against_size(per_image, "per_image_ms",
                         "Latency per candidate (one reference vs a batch)",
                         "ms per image (median)", source)


def memory_figure(rows: Sequence[dict], source: str = "") -> go.Figure:
    """Peak memory rise while scoring one batch, against image size."""
    return _against_size(rows, "peak_mb", "Peak memory while scoring one batch",
                         "MB (peak rise of RSS; CUDA: allocated)", source)


def fidelity_figure(fidelity: Sequence[dict], source: str = "") -> go.Figure:
    """Spearman and 2AFC agreement of each approximate mode against exact fp32."""
    names = [f"{f['net']} {f['mode']['precision']}" for f in fidelity]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[f["spearman"] for f in fidelity], name="Spearman rho",
                         text=[f"{f['spearman']:.4f}" for f in fidelity],
                         textposition="outside"))
    fig.add_trace(go.Bar(x=names, y=[f["agreement_2afc"] for f in fidelity],
                         name="2AFC agreement",
                         text=[f"{f['agreement_2afc']:.4f}" for f in fidelity],
                         textposition="outside"))
    low = min([f["spearman"] for f in fidelity] + [f["agreement_2afc"] for f in fidelity]
              + [0.95])
    fig.update_layout(barmode="group", yaxis_range=[max(0.0, low - 0.02), 1.005],
                      title=f"Fidelity against exact fp32<br><sup>{source}</sup>",
                      yaxis_title="agreement with exact (1 = identical)", height=380,
                      margin={"t": 70, "b": 40})
    return fig

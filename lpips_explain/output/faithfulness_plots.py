"""Figures of the faithfulness checks: deletion curves against the random band, and rank
correlations under cascading randomisation (plotly figures, no streamlit)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def deletion_chart(f: Any) -> go.Figure:
    """d after replacing B's patches by the reference's in each map's order, every point a
    real distance, over the band of seeded random orders and the best repair order found."""
    band = f.random_order
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=band.area, y=band.high, mode="lines", line={"width": 0},
                             hoverinfo="skip", showlegend=False))
    fig.add_trace(go.Scatter(
        x=band.area, y=band.low, mode="lines", line={"width": 0}, fill="tonexty",
        fillcolor="rgba(120,120,120,0.25)",
        name=f"{band.aucs.size} random orders (range), AUC {band.auc:.3f} ± {band.spread:.3f}",
        hoverinfo="skip"))
    for i, c in enumerate(f.deletion):
        fig.add_trace(go.Scatter(
            x=c.area, y=c.distance, mode="lines+markers", marker={"size": 4},
            line={"color": PALETTE[i % len(PALETTE)]}, name=f"{c.label}: AUC {c.auc:.3f}",
            hovertemplate="%{x:.1%} of the area: d = %{y:.4f}<extra></extra>"))
    best = f.best_order
    fig.add_trace(go.Scatter(
        x=best.area, y=best.distance, mode="lines", line={"color": "#111", "dash": "dash"},
        name=f"best repair order found ({best.method.replace('_', ' ')}): AUC {best.auc:.3f}",
        hovertemplate="%{x:.1%} of the area: d = %{y:.4f}<extra></extra>"))
    fig.update_layout(
        title=f"Deletion: B's {f.patch} px patches replaced by the reference's, in each map's "
              f"order (lower and faster is better)",
        xaxis_title="fraction of the area replaced", yaxis_title="remaining LPIPS distance",
        height=460, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%")
    return fig


def randomisation_chart(f: Any, warn: float) -> go.Figure:
    """Spearman's rank correlation of each |map| with its intact-network self, per stage
    of cascading randomisation (top down, cumulative)."""
    fig = go.Figure()
    stages = ["intact", *f.stages]
    for i, m in enumerate(f.methods):
        rows = [r for r in f.randomisation if r.method == m]
        label = next(c.label for c in f.deletion if c.method == m)
        fig.add_trace(go.Scatter(
            x=stages, y=[1.0] + [r.spearman for r in rows], mode="lines+markers",
            line={"color": PALETTE[i % len(PALETTE)]}, name=label,
            hovertemplate="%{x}: Spearman %{y:.3f}<extra></extra>"))
    fig.add_hline(y=warn, line={"dash": "dot", "color": "#c00"},
                  annotation_text=f"warning above {warn} with everything random",
                  annotation_position="top right")
    fig.add_hline(y=0, line={"color": "#444", "width": 1})
    fig.update_layout(
        title="Cascading randomisation: rank correlation of |map| with the intact network's "
              "(should fall)",
        xaxis_title="random so far (top down, cumulative)", yaxis_title="Spearman correlation",
        height=440, legend={"orientation": "h", "y": -0.35})
    fig.update_yaxes(range=[-1.05, 1.05])
    return fig

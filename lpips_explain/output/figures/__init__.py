"""Interactive figures (plotly) for explanations.

Every builder returns a ``go.Figure`` and touches no global plotting state. Maps are drawn
with row 0 at the top, exactly as the image they explain. A figure's caption (which map,
which layer, which upsampling) is kept in ``fig.layout.meta["caption"]`` and shown once by
whoever displays the figure (the app under the chart, the HTML report as its figcaption).

The colours are :mod:`~lpips_explain.output.palette`'s; the image helpers (PNG, data URIs,
colourising a map over a grey photo) are :mod:`~lpips_explain.output.imaging`'s.

Sizes are written width x height everywhere.

Written in rooms: ``common`` (colour bars, captions, legends), ``maps`` (maps over images),
``attribution`` (attribution maps), ``charts`` (the numbers' charts).
"""

from __future__ import annotations

from lpips_explain.output.figures.attribution import (
    ATTRIBUTION_VIEWS,
    POOL_PERCENTILE,
    attribution_figure,
    attribution_settings_text,
    method_label,
    percentile_limit,
    pooled_attribution,
)
from lpips_explain.output.figures.charts import (
    layer_waterfall,
    repair_curve,
    sensitivity_bars,
    sensitivity_rows,
    sweep_figure,
    triplet_margin_chart,
)
from lpips_explain.output.figures.common import caption_of
from lpips_explain.output.figures.maps import (
    CHANNEL_VIEWS,
    channel_grid,
    comparison_figure,
    heatmap_overlay,
    maps_side_by_side,
    margin_map,
    margin_map_figure,
    spatial_map_figure,
)

__all__ = [
    "ATTRIBUTION_VIEWS",
    "CHANNEL_VIEWS",
    "POOL_PERCENTILE",
    "attribution_figure",
    "attribution_settings_text",
    "caption_of",
    "channel_grid",
    "comparison_figure",
    "heatmap_overlay",
    "layer_waterfall",
    "maps_side_by_side",
    "margin_map",
    "margin_map_figure",
    "method_label",
    "percentile_limit",
    "pooled_attribution",
    "repair_curve",
    "sensitivity_bars",
    "sensitivity_rows",
    "spatial_map_figure",
    "sweep_figure",
    "triplet_margin_chart",
]

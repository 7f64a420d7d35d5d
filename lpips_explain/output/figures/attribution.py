"""Attribution maps as figures: method labels, settings in words, the map in its view
(signed, magnitude, positive), pooled for display."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from lpips_explain.analyses.attribution.result import Attribution
from lpips_explain.errors import lookup
from lpips_explain.output.figures.maps import heatmap_overlay

ATTRIBUTION_VIEWS: dict[str, str] = {
    "signed": "signed (red raises the distance, blue lowers it)",
    "magnitude": "magnitude (how much each pixel matters, either way)",
    "positive": "positive part (only what raises the distance)",
}


def method_label(method: str) -> str:
    """A method's name for people ("Layer Grad-CAM"), from the attribution registry."""
    from lpips_explain.analyses.attribution import METHODS

    spec = METHODS.get(method)
    return spec.label if spec is not None else method.replace("_", " ").capitalize()


def attribution_settings_text(method: str, params: dict) -> str:
    """What a method did, in words (its raw parameters stay in the JSON): e.g. "16 points
    along the path from the reference, added until the sum was within 1% of the distance"."""
    p = params or {}
    if method == "integrated_gradients" and "steps" in p:
        text = f"{p['steps']} points along the straight path from the reference"
        if p.get("adaptive") and p.get("target_gap") is not None:
            tried = p.get("steps_tried") or []
            text += (f", doubled ({', '.join(str(t) for t in tried)}) until the map's sum was "
                     f"within {100 * float(p['target_gap']):g}% of the distance"
                     if len(tried) > 1 else
                     f", enough for the map's sum to be within "
                     f"{100 * float(p['target_gap']):g}% of the distance")
        return text
    if method == "occlusion" and "window" in p:
        n = p.get("windows")
        return (f"windows of {p['window']} x {p['window']} px moved by {p.get('stride', '?')} px"
                + (f" ({n} windows)" if n else "") + ", each replaced by the reference's pixels")
    if method == "smoothgrad" and "samples" in p:
        return (f"gradients averaged over {p['samples']} noisy copies (noise standard "
                f"deviation {p.get('stdev', '?')})")
    if method == "layer_gradcam" and "layer" in p:
        res = p.get("layer_resolution")
        return (f"layer {p['layer']}" + (f" at {res[1]} x {res[0]}" if res else "")
                + ", upsampled bilinearly")
    # Any other method: its settings as "name value" pairs, with spaces for underscores.
    return ", ".join(f"{str(k).replace('_', ' ')} {v}" for k, v in p.items()
                     if not isinstance(v, (list, dict)))


def attribution_figure(attr: Attribution, image_uint8: np.ndarray, *, view: str = "signed",
                       name: str | None = None, opacity: float = 0.8,
                       display_width: int | None = None, zmax: float | None = None,
                       max_side: int | None = None, title: bool = True,
                       pool: int | None = None) -> go.Figure:
    """An attribution map over the attributed image, with completeness and vanishing notices.

    ``pool``: draw the map summed over ``pool`` x ``pool`` px blocks, in percent of the
    distance (signed) or of the total magnitude, on a colour scale that stops at the 99th
    percentile of the blocks in either view (:func:`pooled_attribution`): per-pixel
    gradients are a speckle a person cannot read; the exact per-pixel values stay in the JSON.

    ``name`` is how the attributed image is called on screen (default: its role, A or B);
    ``zmax`` shares one colour scale between maps shown side by side.
    """
    lookup("attribution view", view, ATTRIBUTION_VIEWS)
    heat = np.asarray(getattr(attr, view), dtype=np.float64)
    pooled_text = ""
    bar_title = "attribution"
    if pool is not None and pool > 1:
        heat, pooled_text, bar_title = pooled_attribution(attr, view, pool)
        if zmax is None:  # both views on a percentile: a few blocks cannot wash out the rest
            zmax = percentile_limit(heat)
    heading = f"{method_label(str(attr.method))} attribution, {view}"
    if attr.completeness_gap is not None:
        rel = attr.relative_gap
        heading += (f"<br><sub>sum {attr.total:.4f} vs distance {attr.distance:.4f}: "
                    f"completeness gap {attr.completeness_gap:.2e}"
                    f"{'' if rel is None else f' ({100 * rel:.2f}%)'}</sub>")
    target = name or attr.target.upper()
    params = attr.params or {}
    ptxt = attribution_settings_text(str(attr.method), params)
    what = (f"the regions of {target} as seen by layer {params.get('layer', '')}, "
            f"upsampled bilinearly to the image" if attr.method == "layer_gradcam" else
            f"{target}'s pixels, at image resolution, no upsampling")
    caption = (f"Map: {ATTRIBUTION_VIEWS[view]} attribution to the distance of {what} "
               f"({method_label(str(attr.method))}{f'; {ptxt}' if ptxt else ''})."
               + (f" {pooled_text}" if pooled_text else
                  f"{' Colour scale clipped at the 99.5th percentile of |value|.' if view == 'signed' and zmax is None else ''}"
                  f"{' One colour scale shared with the other map.' if zmax is not None else ''}"))
    notes = [str(n) for n in attr.notes]
    if view != "signed":  # the sign note explains negative values, which this view has none of
        notes = [n for n in notes if not n.startswith("Positive values")]
    if notes:
        caption += " " + " ".join(notes)
    fig = heatmap_overlay(image_uint8, heat, title=heading if title else None, caption=caption,
                          symmetric=view == "signed", colorbar_title=bar_title,
                          opacity=opacity, zmax=zmax, display_width=display_width,
                          max_side=max_side)
    if attr.vanishing:
        fig.add_annotation(
            text=("Gradients vanish here: LPIPS is quadratic in the feature difference, so at "
                  "(near-)identical images the map is (nearly) blank."),
            showarrow=False, xref="paper", yref="paper", x=0.5, y=1.0, yanchor="bottom",
            bgcolor="#fff3cd", bordercolor="#c9a227", font={"size": 12})
    return fig


POOL_PERCENTILE = 99.0


def pooled_attribution(attr: Attribution, view: str, pool: int) -> tuple[np.ndarray, str, str]:
    """(the map summed over ``pool`` x ``pool`` px blocks and spread back over each block's
    pixels, the sentence saying so, the colour bar's title). Each block's sum in percent of
    the distance (the signed view of a method whose sum is the distance: integrated
    gradients) or of the map's total magnitude (every other case)."""
    z = np.nan_to_num(np.asarray(getattr(attr, view), dtype=np.float64))
    h, w = z.shape
    rows, cols = -(-h // pool), -(-w // pool)
    padded = np.zeros((rows * pool, cols * pool))
    padded[:h, :w] = z
    blocks = padded.reshape(rows, pool, cols, pool).sum(axis=(1, 3))
    exact = (view == "signed" and getattr(attr, "completeness", None) == "exact"
             and float(getattr(attr, "distance", 0.0) or 0.0) > 0)
    total = float(attr.distance) if exact else float(np.abs(z).sum())
    blocks = 100.0 * blocks / total if total > 1e-30 else blocks
    full = np.repeat(np.repeat(blocks, pool, axis=0), pool, axis=1)[:h, :w]
    of = ("of the distance" if exact else "of the map's total magnitude")
    text = (f"Shown summed over {pool}x{pool} px blocks, each block in percent {of}; colour "
            f"scale to the {POOL_PERCENTILE:g}th percentile of the blocks (the exact "
            f"per-pixel map is in the JSON).")
    return full, text, f"% per {pool} px block"


def percentile_limit(heat: np.ndarray, q: float = POOL_PERCENTILE) -> float:
    """The colour scale's top for a map: the ``q``th percentile of |value| (its maximum when
    that is 0; 1 for an all-zero map)."""
    a = np.abs(np.asarray(heat, dtype=np.float64))
    a = a[np.isfinite(a)]
    if not a.size:
        return 1.0
    top = float(np.percentile(a, q))
    return top if top > 0 else (float(a.max()) or 1.0)

"""Plain-language sentences built only from the computed numbers of an explanation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .decompose import Decomposition

THRESHOLDS: tuple[float, float, float] = (0.1, 0.3, 0.6)
CATEGORIES: tuple[str, str, str, str] = ("very similar", "similar", "different", "very different")


def category(distance: float, thresholds: Sequence[float] = THRESHOLDS) -> str:
    """The similarity category of a distance (defaults: <0.1, <0.3, <0.6, else)."""
    for limit, name in zip(thresholds, CATEGORIES, strict=False):
        if distance < limit:
            return name
    return CATEGORIES[-1]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if abs(x) >= 0.01 or x == 0 else f"{100 * x:.2f}%"


def describe_layers(dec: Decomposition) -> list[str]:
    if dec.distance <= 0:
        return ["Every layer agrees exactly: the distance is 0."]
    top = max(dec.layers, key=lambda lay: lay.distance)
    out = [f"The largest share, {_pct(top.share)}, comes from {top.name} (layer {top.index + 1} "
           f"of {len(dec.layers)}), a level of the network that responds to {top.level}."]
    half = len(dec.layers) // 2
    early = sum(lay.share for lay in dec.layers[:half])
    late = sum(lay.share for lay in dec.layers[half:])
    out.append(f"Early layers ({dec.layers[0].name}-{dec.layers[half - 1].name}) give "
               f"{_pct(early)} of the distance, deeper layers give {_pct(late)}.")
    top_ch = top.top_channels[0] if top.top_channels else None
    if top_ch is not None:
        out.append(f"In {top.name}, channel {top_ch.index} alone carries {_pct(top_ch.share)} of "
                   f"the layer (lin weight {top_ch.weight:.3g}); {top.zero_weight_channels.size} "
                   f"of its {top.weights.size} channels have weight 0 and can never contribute.")
    return out


def summarize(dec: Decomposition, *, attribution: Any = None, sensitivity: Any = None,
              repair: Any = None, perceptual: bool = True, resized: bool = False,
              warnings: Sequence[str] = (),
              thresholds: Sequence[float] = THRESHOLDS) -> list[str]:
    """Sentences for people, each one derived from a number in the explanation."""
    t = thresholds
    out = [f"LPIPS ({dec.net}, v{dec.version}) distance is {dec.distance:.4f}: "
           f"{category(dec.distance, t)} (scale: <{t[0]} very similar, <{t[1]} similar, "
           f"<{t[2]} different, above that very different)."]
    if not perceptual:
        out.append("Warning: the trunk has random weights, so this is not a perceptual judgement.")
    out += describe_layers(dec)
    if repair is not None and dec.distance > 0:
        out.append(repair.headline)
        if repair.non_monotonic:
            out.append("Repairing more area sometimes raised the distance (the curve is not "
                       "monotonic): LPIPS is not additive over regions.")
    if sensitivity is not None and sensitivity.most_sensitive is not None:
        item = max(sensitivity.items, key=lambda i: abs(i.change))
        direction = "raises" if item.change >= 0 else "lowers"
        out.append(f"Of the perturbations tried on B, {item.label.lower()} ({item.strength:g} "
                   f"{item.unit}) moves the distance most: it {direction} it by "
                   f"{abs(item.change):.4f} to {item.distance:.4f}.")
        geo = [g for g in sensitivity.geometric if g.change > 0]
        if geo:
            worst = max(geo, key=lambda g: g.change)
            out.append(f"Geometric sensitivity: a {worst.strength:g} {worst.unit} {worst.label.lower()} "
                       f"of B adds {worst.change:.4f}, though a person would barely notice it.")
    if attribution is not None:
        if attribution.vanishing:
            out.append("Gradient-based maps are blank here because gradients vanish: LPIPS is "
                       "quadratic in the feature difference, so at (near-)identical images every "
                       "gradient is (nearly) zero.")
        elif attribution.relative_gap is not None:
            out.append(f"{attribution.method.replace('_', ' ').capitalize()} accounts for "
                       f"{attribution.total:.4f} of the {attribution.distance:.4f} distance "
                       f"(completeness gap {_pct(attribution.relative_gap)}).")
    if resized:
        out.append("The inputs had different sizes and were aligned first (see warnings); "
                   "resampling itself changes LPIPS.")
    if warnings and any("identical" in w for w in warnings):
        out.append("The two images are pixel-identical.")
    return out

"""Plain-language sentences built only from the computed numbers of an explanation."""

from __future__ import annotations

from typing import Any

from lpips_explain.analyses.pair.categories import NAMES as CATEGORIES
from lpips_explain.analyses.pair.categories import Category, categorize
from lpips_explain.analyses.pair.regions import change_kind, repair_sentence, where
from lpips_explain.core.decompose import Decomposition
from lpips_explain.validation import pct

__all__ = ["CATEGORIES", "Category", "categorize", "describe_equivalents", "describe_image",
           "describe_layers", "describe_sensitivity", "perturbation_words", "summarize"]


def describe_layers(dec: Decomposition) -> list[str]:
    if dec.distance <= 0:
        return ["Every layer agrees exactly: the distance is 0."]
    top = max(dec.layers, key=lambda lay: lay.distance)
    out = [f"The largest share, {pct(top.share)}, comes from {top.name} (layer {top.index + 1} "
           f"of {len(dec.layers)})."]
    half = len(dec.layers) // 2
    early = sum(lay.share for lay in dec.layers[:half])
    late = sum(lay.share for lay in dec.layers[half:])
    out.append(f"Early layers ({dec.layers[0].name}-{dec.layers[half - 1].name}) give "
               f"{pct(early)} of the distance, deeper layers give {pct(late)}.")
    top_ch = top.top_channels[0] if top.top_channels else None
    if top_ch is not None:
        out.append(f"In {top.name}, channel {top_ch.index} alone carries {pct(top_ch.share)} of "
                   f"the layer (lin weight {top_ch.weight:.3g}); {top.zero_weight_channels.size} "
                   f"of its {top.weights.size} channels have weight 0 and can never contribute.")
    return out


def describe_equivalents(items: Any, reference: str = "A", explained: str = "B") -> list[str]:
    """What the distortion equivalents say: the distortions of the reference that are as far
    from it as the explained image (each with its evaluated distance), then those that no
    strength tried takes that far. Nothing for no equivalents (identical images)."""
    items = list(items or ())
    if not items:
        return []
    target = items[0].target
    reached = [e for e in items if e.reached]
    missed = [e for e in items if not e.reached]
    out = []
    if reached:
        named = [f"{e.phrase} (d = {e.distance:.4f})" for e in reached]
        listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
        out.append(f"In LPIPS distance, {explained} (d = {target:.4f}) is about as far from "
                   f"{reference} as {reference} itself after {listed}.")
    if missed:
        listed = "; ".join(f"{e.text} (d = {e.distance:.4f} at the strongest)" for e in missed)
        out.append(f"Not as far at any strength tried: {listed}." if reached else
                   f"No distortion tried takes {reference} as far from itself as {explained} "
                   f"is (d = {target:.4f}): {listed}.")
    return out


def summarize(dec: Decomposition, *, attribution: Any = None, sensitivity: Any = None,
              repair: Any = None, perceptual: bool = True, aligned: str | None = None,
              identical: bool = False, explained: str = "B",
              category: Category | None = None,
              trunk_warning: str | None = None, equivalents: Any = None,
              reference: str = "A", images: tuple[Any, Any] | None = None) -> list[str]:
    """Sentences for people, each one derived from a number in the explanation.

    ``aligned`` is the size policy applied when the inputs differed in size (else None),
    ``identical`` whether the compared tensors are pixel-identical, ``explained`` the name
    of the explained image (perturbed and repaired): "B", or "A" with roles swapped.
    ``category`` is the distance's category with its source (default: from the shipped
    table, none for a trunk that is not ``perceptual``); ``trunk_warning`` says why the
    trunk is not perceptual (default: random weights). ``equivalents``: the distortion
    equivalents of the reference, named ``reference`` (analyses.pair.equivalents).
    ``images``: (reference, explained) tensors, for the sentences about the image (where the
    distance is, what kind of change: analyses.pair.regions). Layer and channel facts are
    not here: the layer and channel panels state them (:func:`describe_layers`).
    """
    if category is None:
        category = categorize(dec.distance, dec.net, dec.version, perceptual=perceptual)
    head = f"LPIPS ({dec.net}, v{dec.version}) distance is {dec.distance:.4f}"
    # A category only with its stated source; none where no table exists for the trunk.
    out = [f"{head}: {category.reading} (limits {', '.join(f'{x:.3g}' for x in category.limits)})."
           if category.name and category.limits else f"{head}."]
    if not perceptual:
        out.append(f"Warning: {trunk_warning}" if trunk_warning else
                   "Warning: the trunk has random weights, so this is not a perceptual judgement.")
    if identical:
        out.append("The two images are pixel-identical (after alignment).")
    if images is not None and dec.distance > 0:
        out += describe_image(dec, *images, reference=reference, explained=explained)
    out += describe_equivalents(equivalents, reference, explained)
    if repair is not None and dec.distance > 0:
        said = repair_sentence(repair, explained, reference)
        out.append(said or repair.headline)
        if repair.non_monotonic:
            out.append("Repairing more area sometimes raised the distance (the curve is not "
                       "monotonic): LPIPS is not additive over regions.")
    if sensitivity is not None:
        out += describe_sensitivity(sensitivity, explained)
    if attribution is not None:
        out += describe_attribution(attribution)
        out += describe_deletion(attribution, warn_only=True)
    if aligned == "resize":
        out.append("The inputs had different sizes and were resized (antialiased) to a common "
                   "size first; resampling itself changes LPIPS (see the warnings).")
    elif aligned == "crop":
        out.append("The inputs had different sizes and were centre-cropped to a common size "
                   "first; content outside the crop is not compared (see the warnings).")
    return out


def describe_image(dec: Decomposition, reference_image: Any, explained_image: Any, *,
                   reference: str = "A", explained: str = "B") -> list[str]:
    """Where the distance is (a named region and its exact share of the summed map) and what
    kind of change it is (analyses.pair.regions' stated rule). Computed once per
    decomposition and pair of image objects (the page asks for it several times a run)."""
    # Keyed by the images' ids; the entry holds the images, so no other object can take
    # those ids while it is there.
    key = ("describe_image", id(reference_image), id(explained_image), reference, explained)
    _, sentences = dec.memo(key, lambda: (
        (reference_image, explained_image),
        tuple(_describe_image(dec, reference_image, explained_image, reference, explained))))
    return list(sentences)


def _describe_image(dec: Decomposition, reference_image: Any, explained_image: Any,
                    reference: str, explained: str) -> list[str]:
    out = []
    found = where(dec.spatial_map(None, "bilinear"))
    if found is not None:
        out.append(found.sentence)
    out.append(change_kind(reference_image, explained_image, dec, reference_name=reference,
                           explained_name=explained).sentence)
    return out


def perturbation_words(name: str, strength: float) -> str:
    """A perturbation at a strength in words, without ids or unit codes: "a blur of 1 px",
    "a rotation by 5°", "JPEG compression at quality 30"."""
    s = float(strength)
    if name == "brightness":
        return f"{'brightening' if s >= 1 else 'darkening'} by {abs(s - 1):.0%}"
    if name == "contrast":
        return f"contrast {'raised' if s >= 1 else 'lowered'} to {s:.0%}"
    if name == "saturation":
        return f"colour saturation {'raised' if s >= 1 else 'lowered'} to {s:.0%}"
    if name == "scale":
        return f"{'enlarging' if s >= 1 else 'shrinking'} by {abs(s - 1):.0%}"
    phrases = {"gamma": "a gamma of {s:g}", "hue": "a hue shift of {deg:g}°",
               "gaussian_blur": "a blur of {s:g} px", "gaussian_noise":
               "noise of {s:g} (on a 0-1 scale)", "jpeg": "JPEG compression at quality {s:g}",
               "rotation": "a rotation by {s:g}° (anticlockwise)",
               "translation": "a shift of {s:g} px right and down"}
    if name in phrases:
        return phrases[name].format(s=s, deg=round(360 * s, 1))
    return f"{name.replace('_', ' ')} at {s:g}"


def describe_sensitivity(sens: Any, explained: str = "B") -> list[str]:
    """What moves the distance most (:attr:`Sensitivity.largest`, the one answer every page
    gives), in words."""
    item = sens.largest
    if item is None:
        return []
    direction = "raises" if item.change >= 0 else "lowers"
    out = [f"Of the changes tried on {explained}, "
           f"{perturbation_words(item.transform, item.strength)} moves the distance most: it "
           f"{direction} it from {sens.base_distance:.4f} to {item.distance:.4f}."]
    geo = [g for g in sens.geometric if g.change > 1e-9]
    if geo:
        worst = max(geo, key=lambda g: g.change)
        # Compare like with like: the smallest strength of the same transform.
        small = min((g for g in sens.geometric if g.transform == worst.transform),
                    key=lambda g: g.strength)
        out.append(f"Geometric sensitivity: applied to {explained}, "
                   f"{perturbation_words(worst.transform, worst.strength)} changes the distance "
                   f"from {sens.base_distance:.4f} to {worst.distance:.4f}"
                   + (f"; even {perturbation_words(small.transform, small.strength)} changes "
                      f"it by {small.change:+.4f}." if small is not worst else "."))
    return out


def describe_deletion(attr: Any, *, warn_only: bool = False) -> list[str]:
    """The per-pair deletion check of an attribution map (``attr.deletion``) in one sentence:
    whether the map's order of patches lowers the distance faster than random orders.
    ``warn_only``: say something only when it does not."""
    check = getattr(attr, "deletion", None)
    if check is None or check.base_distance <= 0 or (warn_only and check.better_than_random):
        return []
    target, ref = attr.target.upper(), attr.reference.upper()
    grid = (f"replacing {target}'s patches ({check.grid[0]}x{check.grid[1]} of {check.patch} "
            f"px) by {ref}'s in the map's order")
    band = (f"{check.random_aucs.size} random orders: {check.random_auc:.3f} ± "
            f"{check.random_spread:.3f}, lowest {check.random_min:.3f}; lower is better")
    if check.better_than_random:
        return [f"Deletion check: {grid} gives an AUC of {check.auc:.3f}, below every random "
                f"order ({band})."]
    return [f"On this pair the {attr.label} map ranks regions no better than random: {grid} "
            f"gives a deletion AUC of {check.auc:.3f}, and {check.beaten_by} of "
            f"{check.random_aucs.size} random orders did as well or better ({band})."]


def describe_attribution(attr: Any) -> list[str]:
    """The attribution's sentence: why a map is blank, or how far its sum accounts for d."""
    if attr.vanishing:
        # The identical-images note, with the distance and the tolerance it was judged by.
        return [attr.notes[0]]
    if attr.blank:
        return [f"The {attr.label} map is blank. {attr.blank_cause}"]
    if attr.completeness == "exact" and attr.relative_gap is not None:
        out = (f"{attr.label} accounts for {attr.total:.4f} of the {attr.distance:.4f} distance "
               f"(completeness gap {100 * attr.relative_gap:.2f}%)")
        conv = attr.convergence
        if conv is not None and conv.settled is not None and len(conv.steps_tried) > 1:
            n0, n1 = conv.steps_tried[-2], conv.steps_tried[-1]
            change = 100 * (conv.map_changes[-1] or 0.0)
            if conv.settled:
                out += (f"; its map changed {change:.1f}% between {n0} and {n1} integration "
                        f"points (tolerance {100 * conv.map_tolerance:.0f}%)")
            else:
                out += (f", but its map had not settled: it still changed {change:.1f}% "
                        f"between {n0} and {n1} integration points (tolerance "
                        f"{100 * conv.map_tolerance:.0f}%), so read it as approximate")
        return [out + "."]
    if attr.completeness == "first_order" and attr.sum_ratio is not None:
        return [f"{attr.label}, a first-order approximation, sums to {attr.total:.4f} against "
                f"the {attr.distance:.4f} distance (ratio {attr.sum_ratio:.2f})."]
    return []

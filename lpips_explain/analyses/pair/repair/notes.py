"""The words of a repair: its headline and its notes (the orders tried, the patch grid, the
curve's monotonicity, negative single-patch gains)."""

from __future__ import annotations

import numpy as np

from lpips_explain.analyses.pair.repair.result import RANKED_BY, RepairOrder
from lpips_explain.validation import pct


def halving(best: RepairOrder, base: float) -> tuple[int | None, float | None]:
    """The fewest patches of ``best`` (and their area) that bring the distance to half."""
    hit = np.flatnonzero(best.distances <= base / 2)
    if not hit.size:
        return None, None
    return int(best.steps[hit[0]]), float(best.areas[hit[0]])


def headline(identical: bool, base: float, best: RepairOrder, half_k: int | None,
             half_area: float | None, n: int, patch: int) -> str:
    """The first sentence: how much of the area, in the best order, halves the distance."""
    if identical:
        return "A and B are identical: there is no distance to locate."
    if half_area is None:
        # Only possible when d is at float-noise level: even A itself does not score below d/2.
        return (f"The distance ({base:.3g}) is too small to locate: no repair of B "
                "scores below half of it.")
    return (f"Repairing {pct(half_area)} of the area ({half_k} of {n} patches of {patch} px, "
            f"ranked by {RANKED_BY.get(best.name, best.name)}) halves the distance; another "
            f"order may need less.")


def orders_note(tried: list[RepairOrder], identical: bool, goal: float | None, strict: bool,
                target: float) -> list[str]:
    """How many patches each order tried needed to reach the goal (when more than one ran)."""
    if len(tried) <= 1 or identical:
        return []
    parts = [f"{o.name.replace('_', ' ')}: "
             + (f"{o.goal_steps} patches" if o.goal_steps is not None else "never")
             for o in tried]
    what = "halve the distance" if goal is None else (
        f"bring the distance {'below' if strict else 'to'} {target:.4g}")
    return [f"Orders tried (patches needed to {what}): " + "; ".join(parts) + "."]


def curve_notes(best: RepairOrder, size: tuple[int, int], patch: int, n: int, base: float,
                rises: list[int], identical: bool) -> list[str]:
    """Notes on the patch grid and on the monotonicity of the shown curve."""
    h, w = size
    steps, dist, area = best.steps, best.distances, best.areas
    notes: list[str] = []
    if h % patch or w % patch:
        notes.append(f"The {h}x{w} image is not a multiple of {patch} px: the last row or "
                     "column of patches is smaller; areas count real pixels.")
    checked = ("every step" if len(steps) == n + 1 else
               f"the {len(steps)} evaluated steps of {n + 1}")
    if rises:
        j = rises[0]
        i = int(np.argmin(dist[:j]))
        notes.append(
            f"The repair curve is not monotonic: with {pct(area[j])} of the area repaired "
            f"({steps[j]} patches) the distance is {dist[j]:.4g}, above the {dist[i]:.4g} "
            f"already reached at {pct(area[i])} ({steps[i]} patches); checked at {checked}. "
            "Pasting A's patches into B can create seams that add distance.")
    elif len(steps) != n + 1 and not identical:
        notes.append(f"Monotonicity was checked at {checked} only: the curve may rise "
                     "between them.")
    return notes


def gain_note(gains: np.ndarray, base: float, identical: bool) -> list[str]:
    """How many patches have a negative single-patch gain (beyond float noise on ``base``)."""
    tol = 1e-6 * max(base, 0.0) + 1e-9
    negative = int((gains < -tol).sum())
    if negative and not identical:
        return [f"{negative} of {gains.size} patches have a negative gain: replacing one of "
                "them alone by A's raises the distance."]
    return []

"""What an attribution run returns: the typed runner result and the public :class:`Attribution`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from torch import Tensor

# At or below this distance the two images count as identical for LPIPS: every gradient is
# then 0 by maths (the distance is quadratic in the feature difference). ``vanishing`` is
# true only there; a blank map at a larger distance states its own cause.
VANISHING_DISTANCE = 1e-10

# "exact": the map adds up to the distance (integrated gradients, gap reported);
# "first_order": a tangent estimate whose sum approximates it; "none": the sum means nothing.
Completeness = Literal["exact", "first_order", "none"]


@dataclass(frozen=True)
class Convergence:
    """How adaptive integrated gradients chose its rule size: every size tried and why it stopped.

    ``gaps[i]`` is the relative completeness gap |sum - d| / d with ``steps_tried[i]`` points
    (None when d is 0); ``map_changes[i]`` the relative L1 change of the per-channel map from
    the previous size, sum|m_i - m_(i-1)| / sum|m_i| (None for the first). The run stops at
    the first size where the gap is at most ``target_gap`` AND the change at most
    ``map_tolerance``. ``settled`` is None when a single size ran (no change measurable).
    """

    steps_tried: tuple[int, ...]
    gaps: tuple[float | None, ...]
    map_changes: tuple[float | None, ...]
    target_gap: float
    map_tolerance: float
    gap_met: bool
    settled: bool | None

    def to_dict(self) -> dict:
        return {
            "steps_tried": list(self.steps_tried),
            "gaps": list(self.gaps),
            "map_changes": list(self.map_changes),
            "target_gap": self.target_gap,
            "map_tolerance": self.map_tolerance,
            "gap_met": self.gap_met,
            "settled": self.settled,
        }


@dataclass(frozen=True)
class DeletionCheck:
    """Is the map's ranking of regions better than chance on this pair? A cheap deletion test.

    The explained image is cut into a coarse ``grid`` of ``patch`` px patches; they are
    replaced by the reference's in the order of the map's patch sums (largest first), and in
    ``random_aucs.size`` seeded random orders, every point a real distance. ``auc`` is the area
    under d / d(reference, explained) against the repaired area (lower: the distance falls
    faster). ``better_than_random`` only when the map's AUC is below every random order's,
    the rule of the full faithfulness check (analyses/checks/faithfulness.py).
    """

    patch: int
    grid: tuple[int, int]
    base_distance: float
    auc: float
    random_aucs: np.ndarray = field(repr=False)
    area: np.ndarray = field(repr=False)  # the map order's curve: repaired area ...
    distance: np.ndarray = field(repr=False)  # ... and the distance left there
    seed: int = 0
    seconds: float = 0.0
    evaluations: int = 0  # trunk passes spent (one per curve point, B's included)

    @property
    def random_auc(self) -> float:
        return float(self.random_aucs.mean())

    @property
    def random_spread(self) -> float:
        return float(self.random_aucs.std())

    @property
    def random_min(self) -> float:
        return float(self.random_aucs.min())

    @property
    def beaten_by(self) -> int:
        """How many random orders did as well as the map or better (AUC at most the map's)."""
        return int((self.random_aucs <= self.auc).sum())

    @property
    def better_than_random(self) -> bool:
        return self.base_distance > 0 and self.auc < self.random_min

    def to_dict(self) -> dict:
        return {
            "auc": self.auc,
            "random_auc": self.random_auc,
            "random_spread": self.random_spread,
            "random_min": self.random_min,
            "random_orders": int(self.random_aucs.size),
            "random_aucs": [float(x) for x in self.random_aucs],
            "beaten_by": self.beaten_by,
            "better_than_random": self.better_than_random,
            "patch": self.patch,
            "grid": list(self.grid),
            "seed": self.seed,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
            "curve": [{"area": float(s), "distance": float(d)}
                      for s, d in zip(self.area, self.distance, strict=True)],
        }


@dataclass(frozen=True)
class MethodResult:
    """What a method's runner hands back to :func:`attribute` (no string-keyed dicts).

    Exactly one of ``per_channel`` (1 x 3 x H x W pixel attributions, channel-resolved) and
    ``signed`` (H x W, for methods that do not separate colour channels) is set.
    ``blank_cause`` says why the map would be all zero, should it be (checked by the caller).
    """

    per_channel: Tensor | None = None
    signed: Tensor | None = None
    distance: float | None = None  # d(ref, x) when the runner computed it already
    params: dict = field(default_factory=dict)  # parameters actually used (resolved)
    notes: tuple[str, ...] = ()
    blank_cause: str | None = None
    sign_note: str | None = None  # overrides the method's default sign note
    convergence_delta: float | None = None
    convergence: Convergence | None = None


@dataclass(frozen=True)
class Attribution:
    """An attribution map of d(reference, explained) and the numbers that qualify it.

    Roles are given by the caller and recorded here: ``target`` names the explained image
    (whose pixels are attributed), ``reference`` the image it is compared with. Nothing
    re-derives them.

    ``per_channel`` is 3 x H x W where the method separates colour channels, and ``None``
    where it does not: ``occlusion`` (its windows span all three channels) and
    ``layer_gradcam`` (it attributes a layer, not pixels). For those, ``signed`` holds the
    map itself and ``magnitude`` is ``|signed|``; for the others, ``signed`` is the channel
    sum and ``magnitude`` the sum of ``|per_channel|``. ``total`` is the sum of ``signed``.

    ``vanishing`` is true only when the distance is at most :data:`VANISHING_DISTANCE`
    (identical images for LPIPS). ``blank`` is true when the map is all zero; a blank map
    that does not vanish carries its cause in ``blank_cause``.
    """

    method: str
    params: dict
    target: str  # the explained image's role name ("b"; "a" with roles swapped; triplets "a"/"b")
    per_channel: np.ndarray | None
    signed: np.ndarray
    magnitude: np.ndarray
    positive: np.ndarray
    total: float
    distance: float
    completeness_gap: float | None  # |total - distance| for exact methods (integrated gradients)
    relative_gap: float | None  # completeness_gap / distance (None when distance vanishes)
    vanishing: bool
    notes: tuple[str, ...]
    seconds: float
    convergence_delta: float | None = None  # Captum's own delta (integrated gradients only)
    steps_tried: tuple[int, ...] = ()  # rule sizes evaluated (integrated gradients)
    reference: str = "a"  # the reference's role name
    label: str = ""  # the method's name for people
    completeness: Completeness = "none"
    sum_ratio: float | None = None  # total / distance where the sum compares (exact, first order)
    blank: bool = False
    blank_cause: str | None = None
    sign_note: str = ""
    convergence: Convergence | None = None
    # The map's ranking of regions against random orders on this pair (explanations only).
    deletion: DeletionCheck | None = None

    def to_dict(self) -> dict:
        comparable = self.completeness != "none"
        return {
            "method": self.method,
            "label": self.label,
            "params": dict(self.params),
            "target": self.target,
            "reference": self.reference,
            # Only a sum that compares with the distance is reported as "sum": exactly
            # (integrated gradients) or as a first-order approximation (see "completeness").
            "sum": self.total if comparable else None,
            "map_total": self.total,
            "distance": self.distance,
            "completeness": self.completeness,
            "sum_ratio": self.sum_ratio,
            "completeness_gap": self.completeness_gap,
            "relative_gap": self.relative_gap,
            "convergence_delta": self.convergence_delta,
            "convergence": None if self.convergence is None else self.convergence.to_dict(),
            "vanishing": self.vanishing,
            "vanishing_tolerance": VANISHING_DISTANCE,
            "blank": self.blank,
            "blank_cause": self.blank_cause,
            "sign_note": self.sign_note,
            "notes": list(self.notes),
            "seconds": self.seconds,
            "deletion": None if self.deletion is None else self.deletion.to_dict(),
        }

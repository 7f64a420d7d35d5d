"""One fixed distance scale per trunk and version, with familiar distortions marked on it.

A distance on its own is a number with nothing to read it by, and a scale that ends at a
multiple of the pair's own distance puts every pair at the same place. The scale here is the
same for every pair of a trunk and version: from 0 to a fixed ``top``, the category limits
(:mod:`~lpips_explain.analyses.pair.categories`) as its segments, and markers of familiar
distortions at their distances ("JPEG q10", "blur 2 px"): each marker is the median, over the
bundled originals (assets/originals), of the distance between an original and that original
distorted at that fixed strength (the perturbation registry's own functions, seed 0). They
are computed with the verified published trunk by ``scripts/make_anchors.py`` and shipped in
``distance_anchors.json`` beside ``category_limits.json``; the per-image distances are kept
so a test can recompute one. ``top`` is the larger of 1.5 x the highest category limit and
1.15 x the farthest marker, rounded up to two significant digits.

A trunk that is not the verified published one (random, an unverified file) or a trunk and
version with no entry gets no anchor: there is nothing to read its distance against, and
the product says so instead of drawing a scale that pretends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpips_explain.analyses.pair import tables

TABLE_FILE = Path(__file__).with_name("distance_anchors.json")


@dataclass(frozen=True)
class Marker:
    """A familiar distortion at a fixed strength: a perturbation of the registry."""

    perturbation: str  # its name in perturbations.PERTURBATIONS
    strength: float
    label: str  # short, for the scale: "JPEG q10"
    words: str  # in a sentence: "JPEG compression at quality 10"


# Chosen to spread over the scale from "barely there" to "obvious" for a person.
MARKERS: tuple[Marker, ...] = (
    Marker("translation", 1.0, "shift 1 px", "a shift of 1 px"),
    Marker("jpeg", 30.0, "JPEG q30", "JPEG compression at quality 30"),
    Marker("gaussian_blur", 1.0, "blur 1 px", "a Gaussian blur of 1 px"),
    Marker("jpeg", 10.0, "JPEG q10", "JPEG compression at quality 10"),
    Marker("gaussian_blur", 2.0, "blur 2 px", "a Gaussian blur of 2 px"),
    Marker("gaussian_noise", 0.1, "noise 0.1", "Gaussian noise of σ 0.1"),
)


@dataclass(frozen=True)
class AnchorMark:
    label: str
    words: str
    distance: float  # the median over the bundled originals


@dataclass(frozen=True)
class Anchor:
    """The fixed scale of one trunk and version: 0..``top``, the category limits, markers."""

    net: str
    version: str
    top: float
    limits: tuple[float, ...]
    marks: tuple[AnchorMark, ...]
    images: int  # how many originals each marker's median is over
    source: str

    def position(self, distance: float) -> float:
        """Where ``distance`` falls on the scale, 0..1 (clamped at the top)."""
        return min(1.0, max(0.0, distance / self.top))

    def nearest(self, distance: float) -> AnchorMark | None:
        """The marker whose distance is closest to ``distance`` (None without markers)."""
        return min(self.marks, key=lambda m: abs(m.distance - distance), default=None)

    def to_dict(self) -> dict:
        return {"top": self.top, "limits": list(self.limits),
                "markers": [{"label": m.label, "distance": m.distance} for m in self.marks],
                "images": self.images, "source": self.source}


def load_table() -> dict:
    """The shipped table: {"method": ..., "tables": {"alex/0.1": {"top", "markers"...}}}."""
    return tables.read(str(TABLE_FILE))


def anchor_for(net: str, version: str, *, perceptual: bool,
               limits: tuple[float, ...] | None = None) -> Anchor | None:
    """The fixed scale of ``net`` ``version`` (None: not the verified published trunk, or no
    entry). ``limits``: the category limits to draw (default: none)."""
    if not perceptual:
        return None
    entry = load_table().get("tables", {}).get(tables.key(net, version))
    if not entry:
        return None
    marks = tuple(AnchorMark(m["label"], m["words"], float(m["distance"]))
                  for m in entry.get("markers", ()))
    return Anchor(net, version, float(entry["top"]), tuple(limits or ()), marks,
                  int(entry.get("images", 0)), str(entry.get("source", TABLE_FILE.name)))


def no_anchor_reason(perceptual: bool, net: str, version: str) -> str:
    """Why a distance has no anchor, in one short clause."""
    if not perceptual:
        return ("this trunk is not the verified published one, so its distances have no "
                "reference points: compare pairs only with each other")
    return f"no fixed scale has been computed for {net} v{version}"


def nice_top(limits: tuple[float, ...], marker_distances: list[float]) -> float:
    """The scale's fixed top: the larger of 1.5 x the highest limit and 1.15 x the farthest
    marker, rounded up to two significant digits."""
    from lpips_explain.analyses.pair.map_scale import nice_limit

    return nice_limit(max([1.5 * max(limits, default=0.0), 1.15 * max(marker_distances,
                                                                        default=0.0), 1e-6]))


def anchor_of(net: str, version: str, backbone: Any, heads: Any = None,
              limits: tuple[float, ...] | None = None) -> tuple[Anchor | None, str | None]:
    """(the fixed scale, None) for a result of the verified published trunk with the official
    lin heads (the only case the markers were measured for), else (None, why not)."""
    official = heads is None or bool(getattr(heads, "official", True))
    perceptual = bool(getattr(backbone, "perceptual", False)) and official
    anchor = anchor_for(net, version, perceptual=perceptual, limits=limits)
    if anchor is not None:
        return anchor, None
    if not official:
        return None, ("custom lin heads: the reference points were measured with the "
                      "official ones")
    return None, no_anchor_reason(perceptual, net, version)

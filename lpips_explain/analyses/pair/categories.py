"""Similarity categories with a stated source, or none at all.

A category ("very similar" ... "very different") is only a reading of a distance against
limits, and limits differ by trunk and version. The limits here are percentiles of the
distances LPIPS gives over the bundled distortions (every sample pair of assets/ and every
perturbation of the registry applied to the bundled originals), computed for one trunk and
version with the published ImageNet trunk (verified by its file's SHA-256 or its
tensors' content digest) by ``scripts/make_categories.py`` and shipped in
``category_limits.json``. Where no such table exists, or the trunk is not the verified
published one (random, or a file whose hash and content digest both differ), there is no
category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lpips_explain.analyses.pair import tables
from lpips_explain.core.model import LpipsNet, ReferenceScorer

TABLE_FILE = Path(__file__).with_name("category_limits.json")
NAMES: tuple[str, str, str, str] = ("very similar", "similar", "different", "very different")
PERCENTILES: tuple[float, float, float] = (25.0, 50.0, 75.0)


@dataclass(frozen=True)
class Category:
    """A distance's category (None when there is no stated source) and where it comes from."""

    name: str | None
    source: str
    limits: tuple[float, ...] | None = None
    pairs: int | None = None  # how many distorted pairs the limits were computed over
    percentiles: tuple[float, ...] = PERCENTILES

    @property
    def placement(self) -> str | None:
        """Where the distance falls among the pairs the limits come from, e.g. "between the
        25th and 50th percentiles of this trunk's distances over 139 distorted versions of
        the bundled images" (None without a category)."""
        if self.name is None or self.limits is None:
            return None
        i = NAMES.index(self.name)
        pct = [f"{p:g}th" for p in self.percentiles]
        where = (f"below the {pct[0]} percentile" if i == 0 else
                 f"above the {pct[-1]} percentile" if i == len(self.limits) else
                 f"between the {pct[i - 1]} and {pct[i]} percentiles")
        of = f"{self.pairs} distorted versions" if self.pairs else "distorted versions"
        return f"{where} of this trunk's distances over {of} of the bundled images"

    @property
    def reading(self) -> str | None:
        """The category in one short clause: its name and :attr:`placement`."""
        return None if self.placement is None else f"{self.name}: {self.placement}"

    def to_dict(self) -> dict:
        return {"category": self.name, "category_source": self.source,
                "category_limits": list(self.limits) if self.limits is not None else None}


def category_text(category: str | None) -> str:
    """A category's name as the reports print it, or why there is none."""
    return category if category else "no category (not the published trunk)"


def load_table() -> dict:
    """The shipped table: {"method": ..., "tables": {"alex/0.1": {"limits", ...}}}."""
    return tables.read(str(TABLE_FILE))


key = tables.key


def categorize(distance: float, net: str, version: str, *, perceptual: bool,
               reason: str | None = None) -> Category:
    """The category of ``distance`` for this trunk and version, with its source.

    ``perceptual`` is whether the trunk is the verified published one; ``reason`` why not.
    """
    if not perceptual:
        why = f" ({reason})" if reason else ""
        return Category(None, f"No category: not a perceptual metric as published{why}; "
                              f"category limits are only stated for the published ImageNet "
                              f"trunk (verified by file or content digest) with the official "
                              f"lin heads.")
    entry = load_table().get("tables", {}).get(key(net, version))
    if not entry:
        return Category(None, f"No category: no table of limits has been computed for {net} "
                              f"v{version} (scripts/make_categories.py computes one where the "
                              f"published ImageNet weights are available).")
    limits = tuple(float(x) for x in entry["limits"])
    pcts = "/".join(f"{p:g}" for p in entry.get("percentiles", PERCENTILES))
    source = (f"limits {', '.join(f'{x:.3g}' for x in limits)} are the {pcts}th percentiles of "
              f"the distance over {entry.get('pairs', '?')} distorted versions of the bundled "
              f"images for {net} v{version} ({entry.get('source', 'category_limits.json')})")
    name = next((n for lim, n in zip(limits, NAMES, strict=False) if distance < lim), NAMES[-1])
    pairs = entry.get("pairs")
    return Category(name, source, limits, int(pairs) if isinstance(pairs, int) else None,
                    tuple(float(p) for p in entry.get("percentiles", PERCENTILES)))


def distances(net: LpipsNet, pairs: Sequence[tuple[Tensor, Tensor]],
              batch_size: int = 16) -> np.ndarray:
    """d(reference, distorted) for each pair (1 x 3 x H x W tensors in [0, 1])."""
    out = []
    with torch.no_grad():
        for ref, x in pairs:
            out.append(float(ReferenceScorer(net, ref).score_batches(x, batch_size)[0]))
    return np.array(out, dtype=np.float64)


def table_entry(net: LpipsNet, pairs: Sequence[tuple[Tensor, Tensor]], *,
                percentiles: Sequence[float] = PERCENTILES, source: str = "") -> dict:
    """One row of the table: the percentiles of d over ``pairs`` as category limits."""
    d = distances(net, pairs)
    limits = np.percentile(d, list(percentiles))
    info = net.weights_info
    return {"limits": [float(x) for x in limits], "percentiles": [float(p) for p in percentiles],
            "pairs": len(d), "min": float(d.min()), "max": float(d.max()),
            "trunk_sha256": getattr(info, "sha256", None),
            "trunk_content_digest": getattr(info, "content_digest", None),
            "verified_by": getattr(info, "verified_by", None), "source": source}

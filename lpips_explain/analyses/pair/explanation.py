"""The result of explaining one pair: parts computed on one prepared pair, joined with a summary."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from lpips_explain.analyses.attribution import Attribution
from lpips_explain.analyses.jsonable import SCHEMA as SCHEMA
from lpips_explain.analyses.jsonable import header
from lpips_explain.analyses.pair.equivalents import Equivalent
from lpips_explain.analyses.pair.repair import Repair
from lpips_explain.analyses.pair.second_opinions import SecondOpinions, with_sentences
from lpips_explain.analyses.pair.sensitivity import Sensitivity
from lpips_explain.analyses.pair.summary import Category, categorize, summarize
from lpips_explain.core.decompose import Decomposition
from lpips_explain.core.heads import LinInfo
from lpips_explain.core.modes import EXACT, Mode
from lpips_explain.core.weights import WeightsInfo
from lpips_explain.errors import InputError
from lpips_explain.intake.prepared import PreparedInputs
from lpips_explain.notices import RANDOM_TRUNK_TEXT

RANDOM_TRUNK_WARNING = RANDOM_TRUNK_TEXT  # kept for callers; match notices by code instead


@dataclass(frozen=True)
class Explanation:
    """Everything lpips-explain knows about one pair; ``to_dict`` is the JSON contract."""

    decomposition: Decomposition
    inputs: PreparedInputs
    backbone: WeightsInfo
    lin_file: str
    attribution: Attribution | None = None
    sensitivity: Sensitivity | None = None
    repair: Repair | None = None
    summary: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    timings_ms: dict = field(default_factory=dict)
    swapped: bool = False  # True: B is the reference and A is the explained image
    lin_heads: LinInfo | None = None  # official or custom (calibrated) heads
    mode: Mode = EXACT  # precision and device of the forward passes (core.modes)
    # Distortions of the reference as far from it as the explained image (None: not computed;
    # empty: the images are identical).
    equivalents: tuple[Equivalent, ...] | None = None
    # LPIPS beside ST-LPIPS, DISTS, SSIM and PSNR (None: not asked; analyses.pair.second_opinions)
    second_opinions: SecondOpinions | None = None

    @property
    def distance(self) -> float:
        return self.decomposition.distance

    @property
    def category_info(self) -> Category:
        """The distance's category with its source, or no category and why not."""
        return category_of(self.distance, self.decomposition.net, self.decomposition.version,
                           self.backbone, self.lin_heads)

    @property
    def category(self) -> str | None:
        """"very similar" ... "very different" from a stated source, or None (see
        ``category_info.source`` for why)."""
        return self.category_info.name

    @property
    def a(self) -> torch.Tensor:
        return self.inputs.tensors[0]

    @property
    def b(self) -> torch.Tensor:
        return self.inputs.tensors[1]

    # Roles: which image is the reference and which one is explained (perturbed, repaired,
    # attributed). B is explained unless the roles were swapped. Nothing else re-derives this.
    @property
    def reference_name(self) -> str:
        return "B" if self.swapped else "A"

    @property
    def explained_name(self) -> str:
        return "A" if self.swapped else "B"

    @property
    def reference(self) -> torch.Tensor:
        return self.b if self.swapped else self.a

    @property
    def explained(self) -> torch.Tensor:
        return self.a if self.swapped else self.b

    def to_dict(self) -> dict:
        d = self.decomposition
        attr = (self.attribution.to_dict() if self.attribution is not None else
                {"method": None, "sum": None, "distance": None, "completeness_gap": None})
        sens = self.sensitivity
        rep = self.repair
        out = {
            **header("explanation", d.net, d.version, self.backbone),
            "distance": d.distance,
            "category": self.category,
            "category_source": self.category_info.source,
            "category_limits": (list(self.category_info.limits)
                                if self.category_info.limits is not None else None),
            "lin_weights": self.lin_file,
            "lin_heads": self.lin_heads.to_dict() if self.lin_heads is not None else None,
            "explained": self.explained_name.lower(),
            "reference": self.reference_name.lower(),
            "inputs": {
                "a": self.inputs.describe(0),
                "b": self.inputs.describe(1),
                "size": list(d.size),
                "policy": self.inputs.align.policy,
                "alignment": self.inputs.align.to_dict(),
            },
            "layers": [lay.to_dict() for lay in d.layers],
            "tiling": d.tiling,  # None: untiled; else how it was tiled (core/tiling.py)
            "attribution": attr,
            "sensitivity": sens.rows() if sens is not None else [],
            "sweeps": [s.to_dict() for s in sens.sweeps] if sens is not None else [],
            "most_sensitive": sens.most_sensitive if sens is not None else None,
            "repair": rep.to_dict() if rep is not None else {"patch": None, "curve": []},
            "equivalents": [e.to_dict() for e in self.equivalents or ()],
            "summary": list(self.summary),
            "warnings": list(self.warnings),
            "timings_ms": dict(self.timings_ms),
            "mode": self.mode.to_dict(),
        }
        if self.second_opinions is not None:  # only when asked (the key is absent otherwise)
            out["second_opinions"] = self.second_opinions.to_list()
        if sens is not None and sens.geometric_second is not None:
            # the geometric rows' ST-LPIPS column: its trunk, or why it is missing
            out["geometric_stlpips"] = {**sens.geometric_second.to_dict(),
                                        "sentence": sens.geometric_comparison(
                                            self.explained_name)}
        return out


def category_of(distance: float, net: str, version: str, backbone: WeightsInfo,
                lin_heads: LinInfo | None) -> Category:
    """The category for the published trunk with the official heads; none otherwise."""
    if lin_heads is not None and not lin_heads.official:
        return categorize(distance, net, version, perceptual=False,
                          reason=f"{lin_heads.label}; the limits belong to the official heads")
    return categorize(distance, net, version, perceptual=backbone.perceptual,
                      reason=backbone.reason)


def summary_of(expl: Explanation) -> list[str]:
    align = expl.inputs.align
    lines = summarize(expl.decomposition, attribution=expl.attribution,
                     sensitivity=expl.sensitivity, repair=expl.repair,
                     equivalents=expl.equivalents, reference=expl.reference_name,
                     perceptual=expl.backbone.perceptual,
                     aligned=align.policy if any(align.changed) else None,
                     identical=bool(torch.equal(expl.reference, expl.explained)),
                     explained=expl.explained_name, category=expl.category_info,
                     images=(expl.reference, expl.explained),
                     trunk_warning=(None if expl.backbone.spec == "random"
                                    else expl.backbone.warning))
    if expl.second_opinions is not None:
        lines = [*lines, *expl.second_opinions.sentences]
    if not expl.mode.exact:  # every approximate number says so (core.modes)
        lines = [*lines, f"All distances here are {expl.mode.label}; attribution is exact fp32."]
    return lines


def swap_activations(dec: Decomposition) -> Decomposition:
    """With roles swapped the breakdown is computed as (B, A): put A's activations back
    under ``activation_a`` so the field names keep meaning image A and image B."""
    layers = tuple(replace(lay, top_channels=tuple(
        replace(c, activation_a=c.activation_b, activation_b=c.activation_a)
        for c in lay.top_channels)) for lay in dec.layers)
    return replace(dec, layers=layers)




def explains(expl: Explanation, inputs: PreparedInputs, swapped: bool) -> bool:
    """Whether ``expl`` was computed on ``inputs`` (or bit-identical images) in these roles."""
    return expl.swapped == swapped and (expl.inputs is inputs or (
        len(expl.inputs.tensors) == len(inputs.tensors) and all(
            torch.equal(x, y) for x, y in zip(expl.inputs.tensors, inputs.tensors,
                                              strict=True))))


def join_parts(base: Explanation, *parts: Explanation) -> Explanation:
    """One explanation from parts computed separately on the same prepared pair and roles.

    The app caches the attribution, the sensitivity and the repair apart, so that changing
    one option recomputes one part; this puts them together again (and rebuilds the summary
    from all of them). Each part's non-empty attribution, sensitivity, repair,
    equivalents and second opinions replace the base's; a part's notices the base lacks (the
    repair's fitted patch size) are added after the base's, each once. Parts of another pair
    or other roles are refused.
    """
    fields: dict = {}
    timings = dict(base.timings_ms)
    for part in parts:
        if not explains(part, base.inputs, base.swapped):
            raise InputError("Parts of one explanation must come from the same images "
                             "and the same roles.")
        for name in ("attribution", "sensitivity", "repair", "equivalents", "second_opinions"):
            if getattr(part, name) is not None:
                fields[name] = getattr(part, name)
                if name in part.timings_ms:
                    timings[name] = part.timings_ms[name]
    opinions = fields.get("second_opinions", base.second_opinions)
    sens = fields.get("sensitivity", base.sensitivity)
    if opinions is not None and sens is not None:  # the shift sentence cites the sensitivity
        fields["second_opinions"] = with_sentences(opinions.opinions, sens,
                                                   base.explained_name)
    warnings = tuple(dict.fromkeys([*base.warnings, *(w for p in parts for w in p.warnings)]))
    expl = replace(base, **fields, timings_ms=timings, warnings=warnings)
    return replace(expl, summary=tuple(summary_of(expl)))

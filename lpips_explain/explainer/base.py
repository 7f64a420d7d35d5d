"""The Explainer's base: LPIPS built once; images loaded and aligned, the memory budget,
distances and exact breakdowns, and the mode label every result carries."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from lpips_explain import notices
from lpips_explain.core import budget, tiling
from lpips_explain.core.cache import FeatureCache, shared_cache
from lpips_explain.core.decompose import Decomposition, decompose_encoded
from lpips_explain.core.geometry import geometry_of
from lpips_explain.core.model import LpipsNet, ReferenceScorer, build_lpips
from lpips_explain.core.modes import EXACT, Mode, mode_net
from lpips_explain.core.trunks import check_min_size
from lpips_explain.core.weights import WeightsInfo
from lpips_explain.errors import InputError, lookup
from lpips_explain.intake import align as _align
from lpips_explain.intake import images
from lpips_explain.intake.images import LoadedImage
from lpips_explain.intake.prepared import PreparedInputs, anomalies
from lpips_explain.notices import Notice
from lpips_explain.validation import integer


class Timer:
    """Milliseconds per named part of an explanation (its ``timings_ms``)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.ms[name] = round((time.perf_counter() - t0) * 1000, 1)
        return out


class ExplainerBase:
    """LPIPS built once: intake, the memory budget, distances and breakdowns, mode labels."""

    def __init__(self, net: str = "alex", version: str = "0.1",
                 backbone_weights: str | os.PathLike | None = None, seed: int = 0, *,
                 size_policy: str = "resize", lin_weights: str | os.PathLike | None = None,
                 max_pixels: int | None = None, progress: bool = False,
                 precision: str = "fp32", device: str = "cpu",
                 max_memory: int | str | None = None,
                 feature_cache: FeatureCache | str | None = "shared"):
        lookup("size policy", size_policy, {p: p for p in _align.SIZE_POLICIES})
        seed = integer(seed, "seed", minimum=0, maximum=2**63 - 1)
        self.model: LpipsNet = build_lpips(net, version, backbone_weights, seed,
                                           lin_weights=lin_weights, progress=progress)
        # Forward passes (distances, breakdowns, sweeps, repairs) run on self.fast in the chosen
        # mode; fp32 on the CPU is self.model itself. Gradients always use self.model (exact).
        self.fast: LpipsNet
        self.mode: Mode
        self.fast, self.mode = mode_net(self.model, precision, device)
        self.size_policy = size_policy
        self.max_pixels = max_pixels
        self.seed = seed
        # Memory budget in bytes for one comparison's tensors (core/budget.py); large pairs
        # are computed exactly in tiles, what cannot fit is refused before any work. Without
        # one named (here or $LPIPS_EXPLAIN_MAX_MEMORY), max_memory is the ceiling (half the
        # memory available) and the tileable routes are planned within budget.default_budget.
        named = (budget.named_max_memory() if max_memory is None
                 else budget.parse_bytes(max_memory))
        self.memory_named = named is not None
        self.max_memory = named if named is not None else budget.default_max_memory()
        # Encoded references (core/cache.py): "shared" is the process-wide cache, None none.
        self.feature_cache: FeatureCache | None = (
            shared_cache() if isinstance(feature_cache, str) and feature_cache == "shared"
            else feature_cache)
        if not (self.feature_cache is None or isinstance(self.feature_cache, FeatureCache)):
            raise InputError(f"feature_cache must be 'shared', None or a FeatureCache, got "
                             f"{feature_cache!r}.")
        self._lock = threading.Lock()
        # DISTS and ST-LPIPS networks (second opinions), built on first use and shared by
        # every thread (the app shares one Explainer between sessions).
        self._backbone_setting = backbone_weights
        self._metric_models: dict[tuple[str, str], Any] = {}
        self._metric_lock = threading.Lock()

    # -- properties ---------------------------------------------------------------
    @property
    def net(self) -> str:
        return self.model.spec.name

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def weights_info(self) -> WeightsInfo:
        return self.model.weights_info

    @property
    def perceptual(self) -> bool:
        return self.weights_info.perceptual

    # -- intake -------------------------------------------------------------------
    def load(self, image: Any, *, value_range: str | None = None,
             label: str = "image") -> LoadedImage:
        """Decode and check one image (any accepted source), including the trunk's minimum size."""
        # The cap (env LPIPS_EXPLAIN_MAX_PIXELS unless given) is read outside the try: a bad
        # setting is a setup error, not something wrong with the image being loaded.
        cap = self.max_pixels if self.max_pixels is not None else images.max_pixels_from_env()
        try:
            im = images.load_image(image, value_range=value_range, max_pixels=cap)
            check_min_size(im.size, self.net, label=f"image {label} ({im.name})")
        except InputError as exc:
            # Name which input was refused: with three uploads "the file is empty" is not
            # enough. The same instance is re-raised, so its class and fields are kept.
            if f"image {label.lower()}" not in str(exc).lower():
                name = _source_name(image)
                exc.args = (f"Image {label}{f' ({name})' if name else ''}: {exc}",)
            raise
        return im

    def prepare(self, *sources: Any, value_range: str | None = None,
                labels: Sequence[str] | None = None,
                size_policy: str | None = None) -> PreparedInputs:
        """Load several images and bring them to one size following the size policy."""
        labels = list(labels or "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(sources)])
        if len(labels) != len(sources):
            raise InputError(f"{len(sources)} images but {len(labels)} labels.")
        loaded = [self.load(s, value_range=value_range, label=lab)
                  for s, lab in zip(sources, labels, strict=True)]
        tensors, align = _align.align_images(loaded, size_policy or self.size_policy, labels)
        check_min_size(align.size, self.net, label="the aligned images")
        warnings = [Notice(notices.IMAGE, f"{lab}: {w}")
                    for im, lab in zip(loaded, labels, strict=True) for w in im.warnings]
        warnings += [Notice(notices.ALIGNMENT, n) for n in align.notes]
        warnings += anomalies(tensors, labels)
        if not self.perceptual:
            warnings.insert(0, notices.random_trunk(self.weights_info.warning))
        if not self.model.lin_info.official:
            warnings.insert(0, Notice(notices.CUSTOM_HEADS, self.model.lin_info.notice_text))
        return PreparedInputs(tuple(loaded), tuple(tensors), align, tuple(warnings))

    def scorer(self, reference: torch.Tensor) -> ReferenceScorer:
        """f_ref(x) = d(reference, x), with the reference encoded once (or found in the
        feature cache: bit-identical input and the same model key)."""
        if self.feature_cache is None:
            return ReferenceScorer(self.fast, reference)
        return ReferenceScorer(self.fast, reference,
                               encoded=self.feature_cache.encode(self.fast, reference))

    # -- distance -----------------------------------------------------------------
    def distance(self, a: Any, b: Any, *, value_range: str | None = None) -> float | list[float]:
        """LPIPS d(a, b); with a list as ``b``, one distance per candidate (a encoded once)."""
        if isinstance(b, (list, tuple)):
            if not b:
                return []
            prep = self.prepare(a, *b, value_range=value_range,
                                labels=["reference"] + [f"candidate {i}" for i in range(len(b))])
            return self._distances(prep.tensors[0], prep.tensors[1:])
        prep = self.prepare(a, b, value_range=value_range)
        ta, tb = prep.tensors[0], prep.tensors[1]
        return self._distances(ta, [tb])[0]

    def decompose(self, a: Any, b: Any, *, top_k: int = 5,
                  value_range: str | None = None) -> Decomposition:
        """The exact layer / channel / spatial breakdown of d(a, b).

        Pairs whose untiled estimate exceeds the memory budget are computed in tiles
        (``Decomposition.tiling`` says how; maps are block means, ``display_factor``).
        """
        prep = self.prepare(a, b, value_range=value_range)
        return self._decompose(prep.tensors[0], prep.tensors[1], top_k)

    # -- memory ---------------------------------------------------------------------
    def tile_budget(self, size: tuple[int, int], *, explanation: bool = False) -> int:
        """The budget the distance and its breakdown of a pair of ``size`` are planned in:
        ``max_memory`` when one was named, else budget.default_budget (the image pair plus a
        per-trunk allowance, at most ``max_memory``). ``explanation``: the breakdown of an
        explanation, whose other parts (sweeps, repairs, gradients) run whole images within
        ``max_memory`` anyway: without a budget named it is planned within that ceiling too
        (untiled up to it: exact maps at layer resolution and one pass instead of two)."""
        if self.memory_named or explanation:
            return self.max_memory
        return budget.default_budget(self.net, size, self.max_memory)

    def memory_plan(self, size: tuple[int, int], *, kind: str = "decompose",
                    top_k: int = 5, explanation: bool = False) -> budget.MemoryPlan:
        """How a pair of images of ``size`` (height, width) will run within
        :meth:`tile_budget`: untiled, or in tiles (with the estimate of each). Raises
        MemoryBudgetError when even the smallest tiles cannot fit. ``kind``: "distance" or
        "decompose"; ``top_k``: channels whose maps are kept (0: none); ``explanation``:
        an explanation's breakdown (see :meth:`tile_budget`)."""
        limit = self.tile_budget(size, explanation=explanation)
        if kind == "distance":  # distances are scored against the encoded reference
            return budget.plan_memory(self.model, size, limit, kind="score")
        maps = 1 + 3 * max(0, int(top_k))  # block maps per layer
        return budget.plan_memory(self.model, size, limit, kind=kind, maps=maps)

    def _distances(self, ref: torch.Tensor, candidates: Sequence[torch.Tensor]) -> list[float]:
        """d(ref, c) for each candidate: bit-identical ones are exactly 0; large pairs tiled;
        the rest scored in batches against the reference encoded once (feature cache)."""
        out: list[float | None] = [0.0 if torch.equal(ref, c) else None for c in candidates]
        todo = [i for i, v in enumerate(out) if v is None]
        if not todo:
            return [float(v) for v in out]  # type: ignore[arg-type]
        plan = self.memory_plan(tuple(ref.shape[-2:]), kind="distance")
        if plan.tiled:
            for i in todo:
                out[i] = tiling.tiled_distance(self.model, ref, candidates[i], plan)
        else:
            scores = self.scorer(ref).score_batches(torch.cat([candidates[i] for i in todo]),
                                                    batch_size=self._score_batch(plan.size)
                                                    ).tolist()
            for i, d in zip(todo, scores, strict=True):
                out[i] = d
        return [float(v) for v in out]  # type: ignore[arg-type]

    def _score_batch(self, size: tuple[int, int], kind: str = "score") -> int:
        """The largest batch (up to budget.SCORE_BATCH) of whole images that ``kind``
        ("score": repair and equivalents; "sweep": the sensitivity, with PSNR and SSIM) runs
        within the memory budget (1 when none does: the caller checked that one fits).
        Smaller batches give the same distances; they only take longer."""
        batch = budget.SCORE_BATCH
        geom = geometry_of(self.model)
        while batch > 1 and budget.untiled_bytes(geom, *size, kind, batch) > self.max_memory:
            batch //= 2
        return batch

    def _check_parts_fit(self, size: tuple[int, int], attribution: str | None,
                         sensitivity: bool, repair: bool,
                         attribution_params: dict | None = None) -> None:
        """Refuse, before any work, explanation parts that run whole images in batches
        (they cannot be tiled) when even one image at a time exceeds the memory budget (the
        sensitivity and the repair then run in the largest batches that fit:
        :meth:`_score_batch`)."""
        if attribution is not None:
            batch = int((attribution_params or {}).get("internal_batch_size",
                                                        budget.GRADIENT_BATCH))
            budget.check_fits(self.model, size, self.max_memory, "gradient", max(1, batch),
                              "Attribution")
        for wanted, kind, what in ((sensitivity, "sweep", "Sensitivity"),
                                   (repair, "score", "Repair")):
            if wanted:
                budget.check_fits(self.model, size, self.max_memory, kind, 1, what)

    def _decompose(self, ta: torch.Tensor, tb: torch.Tensor, top_k: int,
                   scorer: ReferenceScorer | None = None, *,
                   channel_maps: bool = True, explanation: bool = False) -> Decomposition:
        """decompose_encoded(ta, tb), or the tiled decomposition when it cannot fit untiled
        (``channel_maps=False``: without the top channels' maps, one pass over the tiles;
        ``explanation``: planned as an explanation's breakdown, :meth:`tile_budget`)."""
        plan = self.memory_plan(tuple(ta.shape[-2:]), kind="decompose",
                                top_k=top_k if channel_maps else 0, explanation=explanation)
        if plan.tiled:
            return tiling.tiled_decomposition(self.model, ta, tb, plan, top_k,
                                              channel_maps=channel_maps)
        scorer = scorer if scorer is not None else self.scorer(ta)
        return decompose_encoded(self.fast, scorer.ref, tb, top_k)[0]


    def _equivalents_batch(self, size: tuple[int, int]) -> int:
        """How many whole images the distortion equivalents score at once; 0 (they are left
        out, and the warnings say so) where even one at a time exceeds the memory budget."""
        batch = self._score_batch(size)
        if budget.untiled_bytes(geometry_of(self.model), *size, "score", batch) > self.max_memory:
            return 0
        return batch


    def with_mode(self, result: Any, *, parts: str | None = None,
                  exact_parts: str = "") -> Any:
        """The result labelled with the mode its forward passes ran in (and a notice if
        approximate); attribution maps are always exact fp32.

        ``parts``: which parts ran in this mode when not all did (tiled runs use the exact
        network); ``""`` when none did, and the result is labelled exact fp32 on the CPU.
        """
        mode = self.mode if parts != "" else EXACT
        warnings = tuple(result.warnings)
        if not mode.exact:
            text = mode.notice if parts is None else mode.notice_for(parts, exact_parts)
            warnings = (Notice(notices.APPROXIMATE, text), *warnings)
        return replace(result, mode=mode, warnings=warnings)


def _source_name(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    name = getattr(source, "name", None)
    return os.path.basename(name) if isinstance(name, str) else None

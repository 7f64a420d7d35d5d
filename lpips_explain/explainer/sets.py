"""Many images at once: the audit (its top rows explained through the pair explanations),
2AFC judgments and the calibration of the lin heads, and the domain gap between two sets."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lpips_explain.errors import lookup
from lpips_explain.explainer.pair import PairExplanations
from lpips_explain.validation import Progress, integer, optional_integer

if TYPE_CHECKING:  # imported at run time only where used (Captum, scikit-image, ...)
    from lpips_explain.analyses.calibration import Calibration, JudgmentFeatures
    from lpips_explain.analyses.calibration.domain_gap import DomainGap
    from lpips_explain.audit.run import AuditResult


class ManyImages(PairExplanations):
    """Work over many images: audits, calibration of the lin heads, domain gaps."""

    def audit(self, source: Any, out_dir: str | os.PathLike, *, engine: str = "local",
              ray_address: str | None = None, explain_top: int = 3, workers: int | None = None,
              batch_size: int = 16, concurrency: int | None = None, top: int = 10,
              explain_options: dict | None = None,
              progress: Progress | None = None,
              metrics: Sequence[str] | None = None) -> AuditResult:
        """Audit many pairs or judged triplets: a CSV (``a,b[,id,...]`` or
        ``ref,p0,p1,judge[,id,...]``) or a folder with ``a/`` and ``b/``.

        Writes ``out_dir/audit.parquet`` (one row per input row), ``summary.json``,
        ``audit.html`` and, for the top ``explain_top`` rows of each finding, a full
        explanation under ``explained/<row>/`` (``explain_options`` go to ``explain`` or
        ``explain_triplet``, e.g. ``{"steps": 8}``). A restart with the same arguments
        resumes: finished rows and explanations are not computed again. ``metrics``: the
        optional metric columns, ``stlpips`` and/or ``dists`` (the networks of
        :meth:`metric_model`, as :meth:`second_opinions` uses them; default none).
        """
        from lpips_explain.audit.run import run_audit
        from lpips_explain.audit.settings import AuditSettings

        wanted = AuditSettings(self.net, metrics=tuple(metrics or ())).metrics
        stlpips = "vgg" if self.net == "vgg" else "alex"
        models = {m: self.metric_model(m, stlpips if m == "stlpips" else "vgg")
                  for m in wanted}

        opts = dict(explain_options or {})

        def explain_row(kind: str, images: tuple[str, ...]) -> Any:
            return (self.explain if kind == "pairs" else self.explain_triplet)(*images, **opts)

        return run_audit(source, out_dir, model=self.model, size_policy=self.size_policy,
                         max_pixels=self.max_pixels, cache=self.feature_cache,
                         engine=engine,  # type: ignore[arg-type]
                         ray_address=ray_address, workers=workers, batch_size=batch_size,
                         concurrency=concurrency, top=top, explain_row=explain_row,
                         explain_top=explain_top, explain_options=opts, progress=progress,
                         metrics=wanted, metric_models=models,
                         scorer=None if self.mode.exact else self.fast, mode=self.mode)

    # -- calibration and domain gap -----------------------------------------------------
    def judgment_features(self, judgments: Any, *, size: int | None = None,
                          progress: Progress | None = None,
                          cancel: Callable[[], bool] | None = None) -> JudgmentFeatures:
        """Read 2AFC judgments (a CSV, a BAPPS folder or a read JudgmentSet) and run the frozen
        trunk over every triplet once; bad rows are refused with their reason, never raised."""
        from lpips_explain.analyses.calibration import extract_features
        from lpips_explain.intake.judgments import read_judgments

        return extract_features(self.model, read_judgments(judgments), size=size,
                                max_pixels=self.max_pixels, progress=progress, cancel=cancel)

    def calibrate(self, judgments: Any, *, init: str = "released", recipe: str = "auto",
                  epochs: int | None = None, decay_epochs: int | None = None,
                  lr: float | None = None, batch_size: int | None = None,
                  val_fraction: float = 0.2, patience: int | None = None, seed: int = 0,
                  size: int | None = None, progress: Progress | None = None,
                  on_epoch: Callable[[Any], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> Calibration:
        """Fit the lin heads to 2AFC judgments with the official loss and optimiser, trunk
        frozen.

        ``judgments``: a CSV (``ref,p0,p1,judge[,mask]``), a BAPPS folder, a JudgmentSet, or
        the JudgmentFeatures of :meth:`judgment_features` (the cached trunk pass). ``init``
        "released" starts from the official heads, "scratch" from random ones. ``recipe``
        "auto" chooses the schedule from the set's size, "official" is the published one
        (5 + 5 epochs at lr 1e-4, batch 50); ``epochs``, ``decay_epochs``, ``lr``,
        ``batch_size`` and ``patience`` (0: never stop early) override it when given. The
        result's ``state_dict()`` is in the official layout (``lin{i}.model.1.weight``).
        """
        from lpips_explain.analyses.calibration import (
            INITS,
            RECIPES,
            JudgmentFeatures,
            calibrate,
        )

        lookup("calibration init", init, INITS)  # an unknown name fails before any work
        lookup("calibration recipe", recipe, RECIPES)
        if not isinstance(judgments, JudgmentFeatures):
            judgments = self.judgment_features(judgments, size=size, progress=progress,
                                               cancel=cancel)
        return calibrate(self.model, judgments, init=init, recipe=recipe, epochs=epochs,
                         decay_epochs=decay_epochs, lr=lr, batch_size=batch_size,
                         val_fraction=val_fraction, patience=patience, seed=seed,
                         progress=progress, on_epoch=on_epoch, cancel=cancel)

    def domain_gap(self, set_a: Any, set_b: Any, *, permutations: int = 1000, seed: int = 0,
                   size: int | None = None, judgments: Any = None,
                   progress: Progress | None = None) -> DomainGap:
        """How far image set B is from set A in the trunk's unit-normalised features, per
        layer (mean/std shift, MMD with a permutation p-value), plus checks of the data.

        Each set: a folder (recursive), a zip archive (bytes or path), or a list of images.
        ``judgments`` (optional: a CSV, BAPPS folder, JudgmentSet or JudgmentFeatures) is
        counted for the "judgments available" check.
        """
        from lpips_explain.analyses.calibration import JudgmentFeatures
        from lpips_explain.analyses.calibration.domain_gap import domain_gap, encode_set
        from lpips_explain.intake.files import collect_images
        from lpips_explain.intake.judgments import read_judgments

        integer(permutations, "permutations", minimum=0)
        optional_integer(size, "size", minimum=1)
        n_judgments = None
        if isinstance(judgments, JudgmentFeatures):
            n_judgments = judgments.n_used
        elif judgments is not None:
            n_judgments = len(read_judgments(judgments).rows)
        stats = []
        for source, label in ((set_a, "A"), (set_b, "B")):
            name, items, skipped = collect_images(source, label)
            shown = label if name == label else f"{label} ({name})"
            stats.append(encode_set(self.model, shown, items, size=size,
                                    max_pixels=self.max_pixels, skipped=skipped,
                                    progress=progress))
        return domain_gap(self.model, stats[0], stats[1], permutations=permutations, seed=seed,
                          size=size, n_judgments=n_judgments)

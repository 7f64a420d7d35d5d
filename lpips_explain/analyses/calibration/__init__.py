"""Calibrating the lin heads to human 2AFC judgments, and measuring the gap between domains.

Layout: ``features`` (the trunk run once per triplet, :func:`extract_features`), ``recipe``
(the official and "auto" training schedules, :func:`plan_schedule`), ``fit`` (the training
loop, :func:`calibrate`), ``result`` (the result types and the 2AFC score), ``summary`` (the
prose of a result) and ``domain_gap`` (how far a set's features are from another's; the
module keeps its name: its main function is ``domain_gap.domain_gap``).
"""

from lpips_explain.analyses.calibration.domain_gap import (
    DEFAULT_PERMUTATIONS,
    DomainGap,
    encode_set,
)
from lpips_explain.analyses.calibration.features import (
    FEATURE_BATCH,
    Cancel,
    Cancelled,
    JudgmentFeatures,
    extract_features,
    model_id,
)
from lpips_explain.analyses.calibration.fit import INITS, OnEpoch, calibrate
from lpips_explain.analyses.calibration.recipe import (
    AUTO_EPOCHS,
    AUTO_LR,
    AUTO_PATIENCE_SHARE,
    AUTO_STEPS,
    BAPPS_TRIPLETS,
    DEFAULT_PATIENCE,
    OFFICIAL,
    OFFICIAL_STEPS,
    RECIPES,
    SELECT,
    STEP_BUDGET,
    WARMUP_LR,
    WARMUP_STEPS,
    Schedule,
    lr_for_epoch,
    n_train_for,
    plan_schedule,
    split_indices,
)
from lpips_explain.analyses.calibration.result import (
    SCHEMA,
    Calibration,
    EpochRecord,
    LayerChange,
    Scores,
    TripletVerdict,
    two_afc,
)
from lpips_explain.analyses.calibration.summary import wilson_interval

__all__ = [
    "AUTO_EPOCHS", "AUTO_LR", "AUTO_PATIENCE_SHARE", "AUTO_STEPS", "BAPPS_TRIPLETS",
    "DEFAULT_PATIENCE", "DEFAULT_PERMUTATIONS", "FEATURE_BATCH", "INITS", "OFFICIAL",
    "OFFICIAL_STEPS", "RECIPES", "SCHEMA", "SELECT", "STEP_BUDGET", "WARMUP_LR", "WARMUP_STEPS",
    "Calibration", "Cancel", "Cancelled", "DomainGap", "EpochRecord", "JudgmentFeatures",
    "LayerChange", "OnEpoch", "Schedule", "Scores", "TripletVerdict", "calibrate",
    "encode_set", "extract_features", "lr_for_epoch", "model_id", "n_train_for",
    "plan_schedule", "split_indices", "two_afc", "wilson_interval",
]

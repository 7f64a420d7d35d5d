"""Checks of the explanation and of the modes: are the maps faithful to the distance
(``faithfulness``), how far the fast bf16/int8 modes are from the exact one (``mode_error``),
and the self-checks of the network and of the inputs (``diagnostics``).
"""

from lpips_explain.analyses.checks.diagnostics import Check, input_report, self_checks
from lpips_explain.analyses.checks.faithfulness import (
    DEFAULT_METHODS,
    RANDOMISATION_WARN,
    Faithfulness,
    deletion_check,
    faithfulness,
)
from lpips_explain.analyses.checks.mode_error import (
    TARGETS,
    Fidelity,
    FidelitySet,
    fidelity_set,
    measure_fidelity,
)

__all__ = [
    "DEFAULT_METHODS", "RANDOMISATION_WARN", "TARGETS", "Check", "Faithfulness", "Fidelity",
    "FidelitySet", "deletion_check", "faithfulness", "fidelity_set", "input_report",
    "measure_fidelity", "self_checks",
]

"""Checks of the explanation and of the modes: are the maps faithful to the distance
(``faithfulness``), how far the fast bf16/int8 modes are from the exact one (``mode_error``),
and the self-checks of the network and of the inputs (``diagnostics``).

The module ``faithfulness`` keeps its name (its main function is ``faithfulness.faithfulness``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpips_explain import lazy

if TYPE_CHECKING:
    from lpips_explain.analyses.checks.diagnostics import Check, input_report, self_checks
    from lpips_explain.analyses.checks.faithfulness import (
        DEFAULT_METHODS,
        RANDOMISATION_WARN,
        Faithfulness,
        deletion_check,
    )
    from lpips_explain.analyses.checks.mode_error import (
        TARGETS,
        Fidelity,
        FidelitySet,
        fidelity_set,
        measure_fidelity,
    )

# Each name and the module that defines it, imported on first use: importing one module of
# the package (say quality, for the audit) does not load the others and what they import.
_WHERE = {
    "Check": "diagnostics",
    "DEFAULT_METHODS": "faithfulness",
    "Faithfulness": "faithfulness",
    "Fidelity": "mode_error",
    "FidelitySet": "mode_error",
    "RANDOMISATION_WARN": "faithfulness",
    "TARGETS": "mode_error",
    "deletion_check": "faithfulness",
    "fidelity_set": "mode_error",
    "input_report": "diagnostics",
    "measure_fidelity": "mode_error",
    "self_checks": "diagnostics",
}
__all__ = [
    "DEFAULT_METHODS",
    "RANDOMISATION_WARN",
    "TARGETS",
    "Check",
    "Faithfulness",
    "Fidelity",
    "FidelitySet",
    "deletion_check",
    "fidelity_set",
    "input_report",
    "measure_fidelity",
    "self_checks",
]


__getattr__, __dir__ = lazy.exports(__name__, _WHERE)

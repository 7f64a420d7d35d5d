"""Public names that load on first use (PEP 562), for the packages whose names would
otherwise pull heavy imports (torch, Captum, scipy, plotly) into light commands.

A package lists where each name lives and hands the two hooks to Python::

    _WHERE = {"repair_curve": "figures", "Explainer": "lpips_explain.explainer"}
    __all__ = sorted(_WHERE)
    __getattr__, __dir__ = lazy.exports(__name__, _WHERE)

A module given without a dot is taken relative to the package. A name is imported once and
then kept in the package's namespace, so later lookups cost nothing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exports"]


def exports(package: str, where: Mapping[str, str]
            ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` (its ``__name__``), whose public
    names are the keys of ``where`` and load from the module each maps to."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        full = module if "." in module else f"{package}.{module}"
        value = getattr(importlib.import_module(full), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__

"""The one family of errors lpips-explain raises for things a user can fix.

Every refusal is a subclass of :class:`LpipsExplainError`. Input problems are
:class:`InputError` (the CLI exits 2), missing or wrong weights are
:class:`WeightsError` (the CLI exits 3), and a computation that failed on valid
inputs (a non-finite attribution) is :class:`ComputationError` (the CLI exits 1).
Messages say what was wrong and what to do; the UI and the CLI show them as they
are, never with a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LpipsExplainError(Exception):
    """Base class of every error meant for a person to read and act on."""

    exit_code = 1


class InputError(LpipsExplainError, ValueError):
    """An input (image, option, array) that cannot be used as given."""

    exit_code = 2


class EmptyInputError(InputError):
    """The file or buffer holds no bytes at all."""


class NotAnImageError(InputError):
    """The bytes are not in any image format Pillow can read."""


class CorruptImageError(InputError):
    """The file looks like an image but is truncated or damaged."""


class ImageTooLargeError(InputError):
    """The image has more pixels than the configured cap allows."""


class ImageTooSmallError(InputError):
    """The image is smaller than the chosen trunk can process."""


class SizeMismatchError(InputError):
    """The two images differ in size and the size policy is ``error``."""


class MemoryBudgetError(InputError):
    """The computation cannot fit the memory budget: refused before any work.

    ``estimate`` and ``budget`` are in bytes; the message says what to do.
    """

    def __init__(self, message: str, *, estimate: int | None = None, budget: int | None = None):
        super().__init__(message)
        self.estimate = estimate
        self.budget = budget


class ValueRangeError(InputError):
    """An array or tensor holds values outside its stated range, NaN or Inf."""


class UnknownOptionError(InputError):
    """A name that is not in the registry it was looked up in."""

    def __init__(self, kind: str, name: object, choices: Iterable[str]):
        choices = list(choices)
        close = difflib.get_close_matches(str(name), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"Unknown {kind} {name!r}.{hint} Choose one of: {', '.join(choices)}."
        )
        self.kind = kind
        self.name = name
        self.choices = choices


class ArchiveError(InputError):
    """A weights archive or checkpoint that is not what it claims: a wrong digest, a
    truncated or damaged file, a foreign checkpoint, or a pickle that would run code.
    Nothing is installed from it (the CLI exits 2)."""


class ComputationError(LpipsExplainError):
    """A computation that failed on valid inputs (e.g. an attribution came out NaN or Inf).

    Not the user's input and not the weights: the CLI exits 1, as for any failure of the
    tool itself, and the message says so.
    """

    exit_code = 1


class WeightsError(LpipsExplainError):
    """Network weights that are missing, unreadable or of the wrong shape."""

    exit_code = 3


class WeightsUnavailableError(WeightsError):
    """The trunk weights are not cached and cannot be downloaded."""


class WeightsMismatchError(WeightsError):
    """A weights file does not fit the architecture it was loaded into."""


def lookup(kind: str, name: str, registry: dict) -> object:
    """Return ``registry[name]`` or raise :class:`UnknownOptionError` with a hint."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise UnknownOptionError(kind, name, registry.keys()) from None

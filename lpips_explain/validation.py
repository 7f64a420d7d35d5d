"""One rule for checking the options a caller passes: integers, numbers, choices, and the
progress callback type, plus the one way a share is written as a percentage.

The rule, everywhere (API, CLI, app, audit):

- an integer is any ``numbers.Integral`` (``int``, ``np.int64``...) but never a ``bool``;
- a number is any ``numbers.Real`` (integers included) but never a ``bool``, and must be
  finite unless the caller says otherwise;
- bounds are inclusive unless stated (``above=`` is a strict lower bound);
- a refusal is an :class:`~lpips_explain.errors.InputError` (exit 2) naming the option,
  what it must be and what it got.

Every check returns the plain Python value (``int`` or ``float``), so nothing downstream
sees a numpy scalar or a bool.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable

from .errors import InputError, UnknownOptionError

__all__ = ["Progress", "agreeing", "choice", "counted", "integer", "number", "optional_integer",
           "pct"]

#: A progress callback: ``progress(done, total, label)``; the engine calls it as work is
#: done, the CLI draws a bar with it and the app a progress widget.
Progress = Callable[[int, int, str], None]


def _bounds(minimum: float | None, maximum: float | None, above: float | None) -> str:
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    return " and ".join(parts)


def integer(value: object, what: str, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) within the bounds.

    >>> integer(np.int64(16), "steps", minimum=2)   # doctest: +SKIP
    16
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        bound = _bounds(minimum, maximum, None)
        raise InputError(f"{what} must be an integer{' ' + bound if bound else ''}, "
                         f"got {value!r}.")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise InputError(f"{what} must be an integer {_bounds(minimum, maximum, None)}, "
                         f"got {v}.")
    return v


def optional_integer(value: object, what: str, *, minimum: int | None = None,
                     maximum: int | None = None) -> int | None:
    """``None`` stays ``None``; anything else goes through :func:`integer`."""
    return None if value is None else integer(value, what, minimum=minimum, maximum=maximum)


def number(value: object, what: str, *, minimum: float | None = None,
           maximum: float | None = None, above: float | None = None,
           finite: bool = True) -> float:
    """``value`` as a ``float`` if it is a real number (not a bool) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number, got {value!r}.")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise InputError(f"{what} must be a finite number, got {v}.")
    if ((minimum is not None and v < minimum) or (maximum is not None and v > maximum)
            or (above is not None and v <= above)):
        raise InputError(f"{what} must be {_bounds(minimum, maximum, above)}, got {v:g}.")
    return v


def choice(value: object, what: str, options: Iterable[str]) -> str:
    """``value`` if it is one of ``options`` (a str); otherwise an
    :class:`~lpips_explain.errors.UnknownOptionError` listing them, with a close match."""
    options = list(options)
    if not isinstance(value, str) or value not in options:
        raise UnknownOptionError(what, value, options)
    return value


def pct(x: float) -> str:
    """A share as a whole percentage, never rounding a non-zero share to 0%
    (0.004 -> "0.4%", 0.25 -> "25%", 0 -> "0%")."""
    if x == 0 or abs(x) >= 0.01:
        return f"{x:.0%}"
    return f"{100 * x:.2g}%"


def agreeing(n: object, one: str, many: str) -> str:
    """The word that agrees in number with the count ``n``: ``one`` for 1, else ``many``
    ("lies"/"lie", "has"/"have", "column"/"columns")."""
    return one if n == 1 else many


def counted(n: object, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number that agrees with it: "1 row", "3 rows", "0 rows"
    (``plural`` where adding an s does not make it)."""
    return f"{n} {agreeing(n, noun, plural or noun + 's')}"

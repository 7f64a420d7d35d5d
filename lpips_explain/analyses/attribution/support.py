"""Helpers the attribution runners share: the run context, progress counting, parameter checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.errors import InputError, lookup
from lpips_explain.validation import Progress, integer, number


@dataclass(frozen=True)
class RunContext:
    """Everything a runner needs: the scorer f(x) = d(reference, x) and the two images."""

    scorer: ReferenceScorer  # on a private copy of the network for methods that use hooks
    x: Tensor  # the explained image, 1 x 3 x H x W, on the network's device
    base: Tensor  # the reference, same shape
    params: dict  # the method's defaults overridden by the caller's, plus "steps" and "seed"
    progress: Progress | None
    batch: int  # how many images go through the trunk at once
    label: str  # the method's name for people (progress labels)

    def done(self) -> None:
        """Single-pass methods report completion once."""
        if self.progress is not None:
            self.progress(1, 1, self.label)


class Counted:
    """Wraps the scorer so that Captum's forward calls report progress.

    Counts the examples of each forward; gradient methods count only forwards with grad
    enabled, so Captum's extra no-grad evaluations (convergence delta) are not counted.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], progress: Progress | None,
                 total: int, label: str, *, grad_only: bool, skip_first: bool = False,
                 done: int = 0):
        self.fn = fn
        self.progress = progress
        self.total = total
        self.label = label
        self.grad_only = grad_only
        self.skip = skip_first
        self.done = done
        self.last: int | None = None

    def __call__(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        if self.skip:
            self.skip = False
        elif not self.grad_only or torch.is_grad_enabled():
            self.done += int(x.shape[0])
            self.report(min(self.done, self.total))
        return out

    def report(self, done: int) -> None:
        if self.progress is not None and done != self.last:
            self.last = done
            self.progress(done, self.total, self.label)

    def finish(self) -> None:
        self.report(self.total)


def int_param(params: dict, key: str, low: int, high: int | None = None) -> int:
    """``params[key]`` as an integer in [low, high] (the rule of :mod:`lpips_explain.validation`)."""
    return integer(params[key], key, minimum=low, maximum=high)


def float_param(params: dict, key: str, low: float, *, inclusive: bool = False) -> float:
    """``params[key]`` as a finite number above ``low`` (or at least ``low`` if inclusive)."""
    if inclusive:
        return number(params[key], key, minimum=low)
    return number(params[key], key, above=low)


def layer_index(net: LpipsNet, layer: object) -> int:
    """A trunk tap by name or index (default: the last one)."""
    names = net.spec.layer_names
    if layer is None:
        return len(names) - 1
    if isinstance(layer, int | np.integer) and not isinstance(layer, bool):
        if not -len(names) <= int(layer) < len(names):
            raise InputError(f"Layer index {layer} out of range: the {net.spec.label} trunk "
                             f"has {len(names)} taps ({', '.join(names)}).")
        return int(layer) % len(names)
    return names.index(lookup("layer", layer, {n: n for n in names}))  # type: ignore[arg-type]


def to_np(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).contiguous().numpy()


def private_copy(net: LpipsNet) -> LpipsNet:
    """A deep copy for hook users: hooks on it can never see another thread's forward."""
    twin = copy.deepcopy(net)
    for module in twin.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # a hooked output must not be overwritten in place
    return twin


def share(x: float) -> str:
    """A fraction as a percentage that never rounds a non-zero value to 0%."""
    if x == 0 or abs(x) >= 0.01:
        return f"{x:.1%}" if abs(x) < 0.1 else f"{x:.0%}"
    return f"{100 * x:.2g}%"

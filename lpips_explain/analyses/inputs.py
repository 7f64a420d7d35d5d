"""What every analysis checks first: the image pair it is given and the scorer it may reuse."""

from __future__ import annotations

import torch
from torch import Tensor

from lpips_explain.core.model import LpipsNet, ReferenceScorer
from lpips_explain.core.trunks import check_min_size
from lpips_explain.errors import InputError
from lpips_explain.intake.tensors import check_tensor, check_tensor_pair

__all__ = ["check_image", "check_pair", "scorer_for"]


def check_image(x: object, what: str) -> Tensor:
    return check_tensor(x, f"image {what}")


def check_pair(net: LpipsNet, a: object, b: object,
               names: tuple[str, str] = ("A", "B")) -> tuple[Tensor, Tensor]:
    """Two image tensors of one size, big enough for ``net``'s trunk, on A's device and dtype."""
    a, b = check_tensor_pair(a, b, names)
    check_min_size((int(a.shape[-2]), int(a.shape[-1])), net.spec.name, label="image size")
    return a, b.to(device=a.device, dtype=a.dtype)


def scorer_for(net: LpipsNet, a: Tensor, scorer: ReferenceScorer | None) -> ReferenceScorer:
    if scorer is None:
        return ReferenceScorer(net, a)
    if scorer.net is not net:
        raise InputError("The scorer was built on a different network; pass scorer=None "
                         "or one built with ReferenceScorer(net, a).")
    ref = scorer.reference
    if ref.shape != a.shape or not torch.equal(ref, a.to(device=ref.device, dtype=ref.dtype)):
        raise InputError("The scorer was built for a different reference image than A; pass "
                         "scorer=None or one built with ReferenceScorer(net, a).")
    return scorer

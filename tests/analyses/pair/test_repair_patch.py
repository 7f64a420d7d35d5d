"""The repair's patch size when none is named: 32 px, fitted to images it does not suit, and
said so; a named size is kept or refused with the size that would fit."""

from __future__ import annotations

import pytest
import torch

from lpips_explain import Explainer, notices
from lpips_explain.analyses.pair.repair import (
    DEFAULT_PATCH,
    MAX_PATCHES,
    patch_count,
    resolve_patch,
)
from lpips_explain.errors import InputError


def brute_force_count(size: tuple[int, int], patch: int) -> int:
    """Patches of a grid laid over the image, edge patches included (the oracle)."""
    h, w = size
    return len(range(0, h, patch)) * len(range(0, w, patch))


@pytest.mark.parametrize("size", [(400, 600), (1024, 1024), (1280, 1920), (3000, 4000),
                                  (720, 5000)])
def test_the_default_is_32_or_the_smallest_size_within_the_limit(size):
    patch, note = resolve_patch(None, size)
    assert patch_count(size, patch) == brute_force_count(size, patch) <= MAX_PATCHES
    if brute_force_count(size, DEFAULT_PATCH) <= MAX_PATCHES:
        assert (patch, note) == (DEFAULT_PATCH, None)
    else:
        # The smallest size that keeps within the limit: one pixel less does not.
        assert patch > DEFAULT_PATCH
        assert brute_force_count(size, patch - 1) > MAX_PATCHES
        n = brute_force_count(size, DEFAULT_PATCH)
        assert note is not None and f"{patch} px" in note and str(n) in note
        assert f"{size[1]}x{size[0]} px" in note


def test_a_1920x1280_photograph_gets_50_px_patches():
    # 32 px: 40 x 60 = 2400 patches; 50 px: 26 x 39 = 1014; 49 px: 27 x 40 = 1080.
    assert resolve_patch(None, (1280, 1920))[0] == 50


def test_images_smaller_than_the_default_take_their_shorter_side():
    patch, note = resolve_patch(None, (24, 28))
    assert patch == 24 and note is not None and "24 px" in note


def test_a_named_size_is_kept_or_refused_with_the_size_that_fits():
    assert resolve_patch(16, (256, 256)) == (16, None)
    with pytest.raises(InputError, match=r"2400 patches.*at least 50 px"):
        resolve_patch(32, (1280, 1920))
    with pytest.raises(InputError, match="between 1 and 24"):
        resolve_patch(32, (24, 28))
    assert resolve_patch(50, (1280, 1920)) == (50, None)


def test_explain_and_triplet_use_the_fitted_size_and_say_so():
    ex = Explainer("vgg", "0.1", "random", seed=0)  # vgg takes images from 16 px
    g = torch.Generator().manual_seed(0)
    ref, a, b = (torch.rand(1, 3, 24, 28, generator=g) for _ in range(3))
    expl = ex.explain(ref, b, attribution=None, sensitivity=False, equivalents=False,
                      value_range="[0,1]")
    assert expl.repair.patch == 24 and expl.repair.grid == (1, 2)
    said = [w for w in expl.warnings if getattr(w, "code", None) == notices.PATCH]
    assert len(said) == 1 and "24 px" in said[0]
    assert str(said[0]) in expl.to_dict()["warnings"]
    tri = ex.explain_triplet(ref, a, b, attribution=None, value_range="[0,1]")
    assert tri.flip.patch == 24
    assert any(getattr(w, "code", None) == notices.PATCH for w in tri.warnings)
    # The app computes the repair as a part of its own: joined to the breakdown, its notice
    # is kept, and the notices both carry appear once.
    prep = ex.prepare(ref, b, value_range="[0,1]")
    parts = {name: ex.explain_prepared(prep, attribution=None, steps=None, sensitivity=False,
                                       repair=name == "repair", patch=None, top_k=5,
                                       progress=None, equivalents=False)
             for name in ("breakdown", "repair")}
    joined = ex.combine(parts["breakdown"], parts["repair"])
    assert not any(getattr(w, "code", None) == notices.PATCH
                   for w in parts["breakdown"].warnings)
    codes = [getattr(w, "code", None) for w in joined.warnings]
    assert codes.count(notices.PATCH) == 1 and len(set(joined.warnings)) == len(joined.warnings)
    assert set(parts["breakdown"].warnings) < set(joined.warnings)
    faith = ex.faithfulness(ref, b, methods=["saliency"], randomisation=False,
                            value_range="[0,1]")
    assert faith.patch == 24
    assert any(getattr(w, "code", None) == notices.PATCH for w in faith.warnings)
    # A named size is the caller's: refused, not changed.
    with pytest.raises(InputError, match="between 1 and 24"):
        ex.explain(ref, b, attribution=None, sensitivity=False, equivalents=False,
                   value_range="[0,1]", patch=32)

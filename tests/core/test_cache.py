"""The feature cache: content- and model-keyed, byte-bounded LRU, exact hits, thread-safe."""

from __future__ import annotations

import pytest
import torch
from conftest import smooth_image
from helpers import run_concurrently

from lpips_explain import Explainer
from lpips_explain.core.cache import (
    FeatureCache,
    content_key,
    model_key,
    shared_cache,
    tensor_bytes,
    weights_fingerprint,
)
from lpips_explain.core.model import ReferenceScorer, build_lpips
from lpips_explain.errors import InputError


@pytest.fixture(scope="module")
def net():
    return build_lpips("alex", "0.1", "random", seed=0, progress=False)


def _img(seed: int, size: int = 48) -> torch.Tensor:
    return smooth_image(size, size, seed)


def _nbytes(feats) -> int:
    return sum(t.numel() * t.element_size() for t in feats)


def test_hit_returns_the_same_features_and_identical_scores(net):
    cache = FeatureCache("50MB")
    a, b = _img(1), _img(2)
    first = cache.encode(net, a)
    again = cache.encode(net, a.clone())  # same content, another tensor object
    assert all(x is y for x, y in zip(first, again, strict=True))
    with torch.no_grad():
        fresh = net.encode(a)
    assert all(torch.equal(x, y) for x, y in zip(first, fresh, strict=True))
    plain = ReferenceScorer(net, a)(b)
    cached = ReferenceScorer(net, a, encoded=cache.encode(net, a))(b)
    assert torch.equal(plain, cached)
    s = cache.stats()
    assert (s.hits, s.misses, s.entries) == (2, 1, 1)
    assert s.bytes == _nbytes(first) == tensor_bytes(first)
    assert s.hit_rate == pytest.approx(2 / 3)


def test_a_changed_pixel_misses(net):
    cache = FeatureCache("50MB")
    a = _img(3)
    b = a.clone()
    b[0, 1, 7, 9] += 1 / 255
    assert content_key(a) != content_key(b)
    assert content_key(a) == content_key(a.clone())
    cache.encode(net, a)
    cache.encode(net, b)
    assert (cache.stats().hits, cache.stats().misses, len(cache)) == (0, 2, 2)
    c = a.to(torch.float64)  # same values, another dtype: another key
    assert content_key(c) != content_key(a)


def test_eviction_keeps_the_byte_budget_least_recently_used_first(net):
    feats = {i: cache_free_encode(net, _img(10 + i)) for i in range(4)}
    size = _nbytes(feats[0])
    assert all(_nbytes(f) == size for f in feats.values())
    cache = FeatureCache(int(2.5 * size))  # room for two entries
    cache.put("k0", feats[0])
    cache.put("k1", feats[1])
    assert cache.get("k0") is not None  # k0 is now the most recent
    cache.put("k2", feats[2])  # evicts k1, the least recently used
    assert cache.get("k1") is None and cache.get("k0") is not None
    cache.put("k3", feats[3])  # evicts k2
    s = cache.stats()
    assert s.bytes == 2 * size <= s.max_bytes and s.entries == 2 and s.evictions == 2
    assert cache.get("k2") is None and cache.get("k3") is not None
    # an entry larger than the whole budget is not stored (and evicts nothing)
    tiny = FeatureCache(size // 2)
    assert tiny.put("big", feats[0]) is False
    assert tiny.stats().too_large == 1 and len(tiny) == 0
    # replacing a key does not count its old bytes twice
    cache.put("k3", feats[3])
    assert cache.stats().bytes == 2 * size


def cache_free_encode(net, x):
    with torch.no_grad():
        return net.encode(x)


def test_bytes_are_counted_from_storages():
    base = torch.zeros(1000)
    views = [base[:10], base[500:]]  # two views of one 4000-byte storage
    assert tensor_bytes(views) == 4000
    assert tensor_bytes([torch.zeros(10), torch.zeros(10, dtype=torch.float64)]) == 120


def test_model_key_separates_networks_and_shares_equal_ones(net):
    same = build_lpips("alex", "0.1", "random", seed=0, progress=False)
    other_seed = build_lpips("alex", "0.1", "random", seed=1, progress=False)
    other_version = build_lpips("alex", "0.0", "random", seed=0, progress=False)
    assert model_key(same) == model_key(net)
    assert model_key(other_seed) != model_key(net)
    assert model_key(other_version) != model_key(net)
    # a weight changed in place changes the fingerprint (the memo checks tensor versions)
    before = weights_fingerprint(same)
    with torch.no_grad():
        same.features[0].weight[0, 0, 0, 0] += 1.0
    assert weights_fingerprint(same) != before
    assert model_key(same) != model_key(net)


def test_explainers_share_the_cache_and_results_do_not_change(monkeypatch):
    cache = FeatureCache("50MB")
    e1 = Explainer("alex", "0.1", "random", feature_cache=cache)
    e2 = Explainer("alex", "0.1", "random", feature_cache=cache)
    plain = Explainer("alex", "0.1", "random", feature_cache=None)
    ref, cands = _img(20), [_img(21), _img(22), _img(23)]
    want = plain.distance(ref, cands, value_range="[0,1]")
    assert e1.distance(ref, cands, value_range="[0,1]") == want
    assert e2.distance(ref, cands[::-1], value_range="[0,1]") == want[::-1]
    s = cache.stats()
    assert (s.misses, s.hits) == (1, 1)  # the second Explainer found the reference
    assert e1.decompose(ref, cands[0], value_range="[0,1]").distance == pytest.approx(
        want[0], rel=1e-6)
    assert cache.stats().hits == 2


def test_concurrent_use_gives_identical_results_and_computes_each_key_once(net):
    cache = FeatureCache("100MB")
    refs = [_img(30 + i) for i in range(3)]
    cand = _img(40)
    want = [float(ReferenceScorer(net, r)(cand)[0]) for r in refs]
    calls = []

    class Counting(torch.nn.Module):  # the same network, encode calls counted
        def __init__(self):
            super().__init__()
            self.inner = net
            self.spec, self.version = net.spec, net.version
            self.weights_info, self.lin_file = net.weights_info, net.lin_file

        def encode(self, x):
            calls.append(content_key(x))
            return self.inner.encode(x)

    counting = Counting()
    def work(i: int) -> float:
        r = refs[i % 3]
        feats = cache.encode(counting, r)
        return float(ReferenceScorer(net, r, encoded=feats)(cand)[0])

    results = run_concurrently(work, 12)
    assert all(results[i] == want[i % 3] for i in range(12))
    assert len(calls) == 3 and len(set(calls)) == 3  # each reference encoded once
    s = cache.stats()
    assert s.misses == 3 and s.hits == 9 and s.entries == 3


def test_budget_settings():
    assert FeatureCache("0").stats().max_bytes == 0
    assert FeatureCache("1.5MB").max_bytes == 1_500_000
    with pytest.raises(InputError):
        FeatureCache("plenty")
    assert shared_cache() is shared_cache()
    with pytest.raises(InputError, match="feature_cache"):
        Explainer("alex", "0.1", "random", feature_cache="private")

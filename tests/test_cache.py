"""KV cache policies on their own: what they keep and how much they hold."""

from __future__ import annotations

import pytest
import torch

from streamvggt.cache import BudgetCache, CachePolicy, FullCache, WindowCache, parse_policy


def frame_kv(index: int, tokens: int = 3, batch: int = 1, heads: int = 2, dim: int = 4) -> torch.Tensor:
    """Keys whose every entry is the frame index, so stored frames can be read back."""
    return torch.full((batch, heads, tokens, dim), float(index))


def test_parse_policy():
    assert parse_policy("full") == CachePolicy()
    assert parse_policy("window:8") == CachePolicy("window", frames=8)
    assert parse_policy(" Budget:4096 ") == CachePolicy("budget", tokens=4096)
    assert str(parse_policy("window:8")) == "window:8"
    for bad in ("window", "window:0", "budget:-1", "lru:3", "window:x"):
        with pytest.raises(ValueError, match="unknown cache policy"):
            parse_policy(bad)


def test_full_cache_returns_everything_in_order_and_grows_geometrically():
    cache = FullCache()
    capacities = []
    for t in range(9):
        k, _ = cache.update(frame_kv(t), frame_kv(t))
        capacities.append(cache.k.shape[2])
    assert k[0, 0, :, 0].tolist() == [float(t) for t in range(9) for _ in range(3)]
    assert capacities == [3, 6, 12, 12, 24, 24, 24, 24, 48]


def test_window_cache_keeps_anchor_and_latest_frames():
    cache = WindowCache(frame_tokens=3, frames=3)
    for t in range(10):
        k, v = cache.update(frame_kv(t), frame_kv(t))
    kept = sorted(set(k[0, 0, :, 0].tolist()))
    assert kept == [0.0, 7.0, 8.0, 9.0]
    assert k.shape[2] == 4 * 3 and torch.equal(k, v)
    assert cache.nbytes == 2 * 4 * 3 * 2 * 4 * 4


def test_budget_cache_pins_anchor_and_respects_budget():
    torch.manual_seed(0)
    cache = BudgetCache(frame_tokens=3, budget=10)
    anchor = torch.randn(1, 2, 3, 4)
    cache.update(anchor, anchor)
    for _ in range(20):
        k, _ = cache.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
        assert k.shape[2] <= 10
        assert torch.equal(k[:, :, :3], anchor)


def test_budget_cache_evicts_most_redundant_keys():
    cache = BudgetCache(frame_tokens=1, budget=4)
    direction = torch.tensor([1.0, 0.0, 0.0, 0.0])
    distinct = [torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 0.0])]
    keys = [torch.tensor([0.0, 0.0, 0.0, 1.0]), distinct[0], direction * 2 + 0.1, distinct[1]]
    for key in keys:
        cache.update(key.view(1, 1, 1, 4), key.view(1, 1, 1, 4))
    new = torch.tensor([-1.0, -1.0, -1.0, -1.0]).view(1, 1, 1, 4)
    k, _ = cache.update(new, new)
    stored = {tuple(row.tolist()) for row in k[0, 0]}
    # The mean of the evictable keys points along the sum of them; the key most aligned with it is evicted.
    evictable = torch.stack(keys[1:])
    evicted = keys[1:][int(torch.nn.functional.cosine_similarity(evictable, evictable.mean(0, keepdim=True)).argmax())]
    assert tuple(evicted.tolist()) not in stored
    assert tuple(new.flatten().tolist()) in stored and len(stored) == 4


def test_budget_smaller_than_two_frames_is_rejected():
    with pytest.raises(ValueError, match="cannot hold"):
        BudgetCache(frame_tokens=5, budget=9)

"""KV cache policies on their own: what they keep and how much they hold."""

from __future__ import annotations

import pytest
import torch

from streamvggt.streaming.cache import (
    BudgetCache,
    CachePolicy,
    FullCache,
    Int8Store,
    PlainStore,
    WindowCache,
    parse_policy,
)


def frame_kv(index: int, tokens: int = 3, batch: int = 1, heads: int = 2, dim: int = 4) -> torch.Tensor:
    """Keys whose every entry is the frame index, so stored frames can be read back."""
    return torch.full((batch, heads, tokens, dim), float(index))


def test_parse_policy():
    assert parse_policy("full") == CachePolicy()
    assert parse_policy("window:8") == CachePolicy("window", frames=8)
    assert parse_policy(" Budget:4096 ") == CachePolicy("budget", tokens=4096)
    assert str(parse_policy("window:8")) == "window:8"
    for bad in ("window", "budget:-1", "lru:3", "window:x"):
        with pytest.raises(ValueError, match="unknown cache policy"):
            parse_policy(bad)


def test_a_zero_size_bound_names_the_count_not_an_unknown_policy():
    with pytest.raises(ValueError, match=r"^cache policy 'window:0': K must be at least 1 frame$"):
        parse_policy("window:0")
    with pytest.raises(ValueError, match=r"^cache policy 'budget:0\+int8': N must be at least 1 token$"):
        parse_policy("budget:0+int8")


def test_full_cache_returns_everything_in_order_and_grows_geometrically():
    cache = FullCache(PlainStore())
    capacities = []
    for t in range(9):
        k, _ = cache.update(frame_kv(t), frame_kv(t))
        capacities.append(cache.store.capacity)
    assert k[0, 0, :, 0].tolist() == [float(t) for t in range(9) for _ in range(3)]
    assert capacities == [3, 6, 12, 12, 24, 24, 24, 24, 48]


def test_window_cache_keeps_anchor_and_latest_frames():
    cache = WindowCache(PlainStore(), frame_tokens=3, frames=3)
    for t in range(10):
        k, v = cache.update(frame_kv(t), frame_kv(t))
    kept = sorted(set(k[0, 0, :, 0].tolist()))
    assert kept == [0.0, 7.0, 8.0, 9.0]
    assert k.shape[2] == 4 * 3 and torch.equal(k, v)
    assert cache.nbytes == 2 * 4 * 3 * 2 * 4 * 4


def test_budget_cache_pins_anchor_and_respects_budget():
    torch.manual_seed(0)
    cache = BudgetCache(PlainStore(), frame_tokens=3, budget=10)
    anchor = torch.randn(1, 2, 3, 4)
    cache.update(anchor, anchor)
    for _ in range(20):
        k, _ = cache.update(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4))
        assert k.shape[2] <= 10
        assert torch.equal(k[:, :, :3], anchor)


def test_budget_cache_evicts_most_redundant_keys():
    cache = BudgetCache(PlainStore(), frame_tokens=1, budget=4)
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
        BudgetCache(PlainStore(), frame_tokens=5, budget=9)


def test_parse_policy_with_int8():
    assert parse_policy("int8") == CachePolicy(int8=True)
    assert parse_policy("full+int8") == CachePolicy(int8=True)
    assert parse_policy("window:4+int8") == CachePolicy("window", frames=4, int8=True)
    assert str(parse_policy("budget:64+int8")) == "budget:64+int8"
    with pytest.raises(ValueError, match="unknown cache policy"):
        parse_policy("int8+int8")


def test_int8_store_round_trips_within_quantization_error():
    torch.manual_seed(0)
    cache = FullCache(Int8Store())
    keys = [torch.randn(2, 3, 5, 8) * (1 + t) for t in range(4)]  # growing range forces key rescaling
    values = [torch.randn(2, 3, 5, 8) for _ in range(4)]
    for k, v in zip(keys, values, strict=True):
        k_all, v_all = cache.update(k, v)
    k_ref, v_ref = torch.cat(keys, dim=2), torch.cat(values, dim=2)
    # Per-channel key step is max|k|/127 over all frames; per-token value step is max|v| of that token / 127.
    key_step = k_ref.abs().amax(dim=2, keepdim=True) / 127
    assert ((k_all - k_ref).abs() <= key_step + 1e-6).all()
    value_step = v_ref.abs().amax(dim=-1, keepdim=True) / 127
    assert ((v_all - v_ref).abs() <= value_step / 2 + 1e-6).all()
    assert k_all.dtype == torch.float32


def test_int8_store_is_about_four_times_smaller_than_fp32():
    plain, quantized = FullCache(PlainStore()), FullCache(Int8Store())
    k = torch.randn(1, 4, 64, 32)
    plain.update(k, k)
    quantized.update(k, k)
    assert plain.nbytes / quantized.nbytes > 3.5


def test_int8_budget_cache_scatters_into_quantized_slots():
    torch.manual_seed(0)
    cache = BudgetCache(Int8Store(), frame_tokens=2, budget=6)
    for _ in range(6):
        k_all, v_all = cache.update(torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4))
    assert k_all.shape == (1, 2, 6, 4) and torch.isfinite(v_all).all()


def slot_of(k_all: torch.Tensor, key: torch.Tensor) -> int:
    """The slot of head 0 whose stored key [d] is nearest to ``key``."""
    return int((k_all[0, 0] - key).abs().sum(-1).argmin())


@pytest.mark.parametrize("store", [PlainStore, Int8Store])
def test_budget_cache_breaks_eviction_ties_by_slot_and_fills_evicted_slots_in_order(store: type) -> None:
    """Equal keys score equally (int8 codes make that common), and which of them goes must not be up to the order
    a topk kernel returns equal scores in: a compiled and an eager step would then keep different tokens. Ties go
    to the lower slot, and the new tokens fill the evicted slots in slot order."""
    cache = BudgetCache(store(), frame_tokens=2, budget=8)
    # The anchor holds every channel's largest magnitude, so int8 scales never grow: equal keys keep equal codes.
    anchor = torch.tensor([[10.0, 10.0, -10.0, 10.0], [-10.0, 10.0, 10.0, -10.0]])
    redundant = torch.tensor([1.0, 1.0, 1.0, 1.0])  # nearest the evictable keys' mean direction
    others = [torch.tensor([1.0, -1.0, 0.0, 0.0]), torch.tensor([-1.0, 1.0, 0.0, 0.0]), torch.tensor([0, 0, 1.0, -1])]
    slots = [others[0], redundant, others[1], redundant, redundant, others[2]]  # slots 2..7: ties at 3, 5 and 6
    for frame in [anchor, *torch.stack(slots).split(2)]:
        cache.update(frame[None, None], frame[None, None])
    new = torch.tensor([[-5.0, 0.0, 0.0, 0.0], [0.0, -5.0, 0.0, 0.0]])
    k_all, _ = cache.update(new[None, None], new[None, None])
    assert (slot_of(k_all, new[0]), slot_of(k_all, new[1]), slot_of(k_all, redundant)) == (3, 5, 6)


def test_budget_cache_ranks_scores_closer_than_float32_resolves() -> None:
    """Redundancy scores 1e-8 apart round to the same float32 (seen in a stream: two keys 1.6e-8 apart whose order a
    compiled step reversed). Here the evictable keys' mean points along x, and the key with the smaller y is the
    more redundant: cos = 1/sqrt(1 + y^2), 1 - 5e-9 against 1 - 2e-8, both 1.0 in float32."""
    cache = BudgetCache(PlainStore(), frame_tokens=1, budget=5)
    keys = [[0.0, 1.0], [1.0, 2e-4], [1.0, 1e-4], [1.0, -2e-4], [1.0, -1e-4]]  # anchor, then slots 1..4
    for key in keys:
        cache.update(torch.tensor(key).view(1, 1, 1, 2), torch.tensor(key).view(1, 1, 1, 2))
    new = torch.tensor([-1.0, 0.0])
    k_all, _ = cache.update(new.view(1, 1, 1, 2), new.view(1, 1, 1, 2))
    assert slot_of(k_all, new) == 2  # slots 2 and 4 tie exactly (mirror images): the lower goes

"""The stream's cache container: one object holding the trunk's and the camera head's layer caches, and the
per-layer protocol attention reads (update, key mask)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from streamvggt.layers import Attention, KVCacheLayer
from streamvggt.streaming.cache import BudgetCache, FullCache, Int8Store, StreamCache, WindowCache

FRAME_TOKENS = 3
SHAPE = (1, 2, FRAME_TOKENS, 4)  # [B, heads, tokens, d]


def opened(policy: str, trunk_layers: int = 2, iterations: int = 3, blocks: int = 2) -> StreamCache:
    cache = StreamCache(policy)
    cache.open(frame_tokens=FRAME_TOKENS, trunk_layers=trunk_layers, camera_iterations=iterations, camera_blocks=blocks)
    return cache


def camera_kv(value: float) -> Tensor:
    return torch.full((1, 2, 1, 4), value)


def test_open_makes_one_trunk_layer_per_global_block_and_one_camera_layer_per_iteration_and_block():
    cache = opened("window:2", trunk_layers=4, iterations=3, blocks=2)
    assert len(cache.trunk) == 4 and [len(row) for row in cache.camera] == [2, 2, 2]
    layers = cache.layers()
    assert len(layers) == 4 + 6 and len({id(layer) for layer in layers}) == 10  # no layer shared
    assert all(isinstance(layer, WindowCache) for layer in layers)
    assert [layer.frame_tokens for layer in layers] == [FRAME_TOKENS] * 4 + [1] * 6


def test_a_token_budget_becomes_the_same_number_of_camera_frames():
    cache = opened(f"budget:{4 * FRAME_TOKENS}+int8")
    trunk, camera = cache.trunk[0], cache.camera[0][0]
    assert isinstance(trunk, BudgetCache) and trunk.budget == 4 * FRAME_TOKENS
    assert isinstance(camera, BudgetCache) and camera.budget == 4 and isinstance(camera.store, Int8Store)
    assert opened(f"budget:{2 * FRAME_TOKENS}").camera[0][0].budget == 2
    assert opened("budget:7").camera_policy(frame_tokens=5).tokens == 2  # never below the anchor plus one frame


def test_update_addresses_a_trunk_layer_by_index_and_a_camera_layer_by_iteration_and_block():
    cache = opened("full")
    cache.update(1, torch.ones(SHAPE), torch.ones(SHAPE))
    k, _ = cache.update((2, 1), camera_kv(7.0), camera_kv(7.0))
    assert [layer.length for layer in cache.trunk] == [0, FRAME_TOKENS]
    assert [[layer.length for layer in row] for row in cache.camera] == [[0, 0], [0, 0], [0, 1]]
    assert k.shape == (1, 2, 1, 4) and torch.equal(k, camera_kv(7.0))


def test_bytes_held_are_every_layers_storage():
    cache = opened("full")
    assert cache.nbytes == 0
    cache.update(0, torch.ones(SHAPE), torch.ones(SHAPE))
    cache.update((0, 0), camera_kv(1.0), camera_kv(1.0))
    assert cache.nbytes == 2 * 4 * (FRAME_TOKENS * 2 * 4) + 2 * 4 * (2 * 4)
    assert cache.nbytes == sum(layer.nbytes for layer in cache.layers())


def test_reset_forgets_every_layer_and_open_starts_empty():
    cache = opened("full")
    cache.update(0, torch.ones(SHAPE), torch.ones(SHAPE))
    cache.reset()
    assert cache.layers() == [] and cache.nbytes == 0 and not cache.static
    cache.open(frame_tokens=FRAME_TOKENS, trunk_layers=2, camera_iterations=1, camera_blocks=1)
    assert all(layer.length == 0 for layer in cache.layers())


def test_reset_slot_reaches_every_layer_and_marks_the_container_split():
    cache = opened("window:2", trunk_layers=1, iterations=2, blocks=1)
    batch = (2, *SHAPE[1:])
    cache.update(0, torch.ones(batch), torch.ones(batch))
    for iteration in range(2):
        cache.update((iteration, 0), torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))
    assert not cache.split
    cache.reset_slot(1)
    assert cache.split
    assert all(layer.slot_lengths is not None and layer.slot_lengths[1] == 0 for layer in cache.layers())


@pytest.mark.parametrize("policy", ["window:2", "window:2+int8", f"budget:{3 * FRAME_TOKENS}+int8"])
def test_a_bounded_container_turns_static_once_every_layer_is_full(policy: str):
    cache = opened(policy, trunk_layers=1, iterations=1, blocks=1)
    assert cache.bounded
    statics = []
    for t in range(5):
        cache.update(0, torch.randn(SHAPE), torch.randn(SHAPE))
        cache.update((0, 0), camera_kv(float(t)), camera_kv(float(t)))
        statics.append(cache.static)
    # The trunk fills at its third frame (anchor + 2, or 3 frames of budget); the camera layer (2 frames of
    # budget, or a ring of 2 after the anchor) by then too.
    assert statics == [False, False, True, True, True]


def test_the_full_container_is_never_static():
    cache = opened("full", trunk_layers=1, iterations=1, blocks=1)
    assert not cache.bounded
    for _ in range(4):
        cache.update(0, torch.randn(SHAPE), torch.randn(SHAPE))
        cache.update((0, 0), camera_kv(1.0), camera_kv(1.0))
    assert not cache.static


def test_tensors_are_every_tensor_the_layers_keep_between_steps():
    cache = opened("window:1+int8", trunk_layers=1, iterations=1, blocks=1)
    for t in range(3):
        cache.update(0, torch.randn(SHAPE), torch.randn(SHAPE))
        cache.update((0, 0), camera_kv(float(t)), camera_kv(float(t)))
    trunk = cache.trunk[0]
    store = trunk.store
    expected = [store.k, store.v, store.k_scale, store.v_scale, trunk._ring]
    found = cache.tensors()
    assert len(found) == 2 * len(expected)  # the trunk's, then the camera layer's
    assert all(a is b for a, b in zip(found, expected, strict=False))
    assert sum(t.numel() * t.element_size() for t in found if t.ndim) == cache.nbytes


def test_the_compiled_steps_unconditional_key_rescale_leaves_the_cache_as_eager_leaves_it(monkeypatch):
    """A compiled step rescales stored int8 keys at every write (it cannot ask the device whether a scale grew);
    eager steps only when one grew. Both must leave the same codes: a ratio of 1 keeps an int8 code."""
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randn(SHAPE, generator=generator) * (1.5 if t in (2, 5) else 1.0) for t in range(8)]
    eager = FullCache(Int8Store())
    for k in frames:
        eager.update(k, k)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    always = FullCache(Int8Store())
    for k in frames:
        always.update(k, k)
    for ours, theirs in zip(always.tensors(), eager.tensors(), strict=True):
        assert torch.equal(ours, theirs)


class MaskingCache:
    """A layer cache holding two past keys, whose key mask hides the first from batch element 0 only."""

    def __init__(self, past_k: Tensor, past_v: Tensor) -> None:
        self.past_k, self.past_v = past_k, past_v
        self.key_mask: Tensor | None = None

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        k_all, v_all = torch.cat((self.past_k, k), dim=2), torch.cat((self.past_v, v), dim=2)
        mask = torch.ones(k.shape[0], 1, 1, k_all.shape[2], dtype=torch.bool)
        mask[0, ..., 0] = False
        self.key_mask = mask
        return k_all, v_all


def test_attention_reads_the_key_mask_of_the_cache_protocol():
    torch.manual_seed(0)
    attention = Attention(8, 2).eval()
    x = torch.randn(2, 1, 8)  # two batch elements, one token each
    past_k, past_v = torch.randn(2, 2, 2, 4), torch.randn(2, 2, 2, 4)
    cache: KVCacheLayer = MaskingCache(past_k, past_v)
    with torch.no_grad():
        out = attention(x, frame_tokens=1, kv_cache=cache)
        q, k, v = attention.heads(x)
        k_all, v_all = torch.cat((past_k, k), dim=2), torch.cat((past_v, v), dim=2)
        expected = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=cache.key_mask)
        unmasked = F.scaled_dot_product_attention(q, k_all, v_all)
    torch.testing.assert_close(out, attention.merge(expected), rtol=0, atol=0)
    assert not torch.allclose(out[0], attention.merge(unmasked)[0])  # element 0 did not see its first key
    torch.testing.assert_close(out[1], attention.merge(unmasked)[1], rtol=0, atol=0)

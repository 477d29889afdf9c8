"""Per-slot reset: one element of a batched stream starts a new stream while the others go on, for every policy.

The reference for an element is a batch of one that sees that element's stream alone, from a fresh cache.
"""

from __future__ import annotations

import pytest
import torch

from streamvggt.streaming.cache import PlainStore, parse_policy
from tests.helpers import assert_close
from tests.reconstruct_helpers import tiny_model

HEADS, DIM, FRAME_TOKENS = 2, 4, 3
# Budget of 3 frames: eviction starts at the 4th frame of a stream, and streams below run longer.
POLICIES = ["full", "window:2", f"budget:{3 * FRAME_TOKENS}"]
ALL_POLICIES = POLICIES + [f"{policy}+int8" for policy in POLICIES]


def random_frames(count: int, seed: int, batch: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, HEADS, FRAME_TOKENS, DIM)
    # Growing key magnitudes make the int8 key scale rise, so stored keys are rescaled along the way.
    return [
        (torch.randn(shape, generator=generator) * (1 + 0.2 * t), torch.randn(shape, generator=generator))
        for t in range(count)
    ]


def element_view(k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, row: int) -> tuple:
    """The keys and values element ``row`` attends to, in slot order."""
    keep = slice(None) if mask is None else mask[row, 0, 0]
    return k[row, :, keep], v[row, :, keep]


@pytest.mark.parametrize("spec", ALL_POLICIES)
def test_reset_slot_gives_the_element_exactly_a_fresh_cache_and_leaves_the_other_alone(spec):
    """Each element is reset once, at a different step, and streams past the window and the budget after it."""
    policy = parse_policy(spec)
    batched = policy.new_layer(FRAME_TOKENS)
    streams = [random_frames(12, seed=s) for s in range(4)]
    resets = {3: 0, 5: 1}  # step -> element reset before it
    starts, alone = [0, 0], [policy.new_layer(FRAME_TOKENS), policy.new_layer(FRAME_TOKENS)]
    current = [0, 1]
    for t in range(12):
        if t in resets:
            row = resets[t]
            batched.reset_slot(row)
            starts[row], alone[row], current[row] = t, policy.new_layer(FRAME_TOKENS), current[row] + 2
        frames = [streams[current[row]][t - starts[row]] for row in (0, 1)]
        k, v = batched.update(torch.cat([f[0] for f in frames]), torch.cat([f[1] for f in frames]))
        for row in (0, 1):
            expected = alone[row].update(*frames[row])
            actual = element_view(k, v, batched.key_mask, row)
            assert torch.equal(actual[0], expected[0][0]), f"{spec} step {t} element {row} keys"
            assert torch.equal(actual[1], expected[1][0]), f"{spec} step {t} element {row} values"


def test_reset_slot_before_any_frame_changes_nothing():
    cache = parse_policy("full").new_layer(FRAME_TOKENS)
    cache.reset_slot(1)
    ((k, v),) = random_frames(1, seed=0, batch=2)
    keys, _ = cache.update(k, v)
    assert cache.slot_lengths is None and cache.key_mask is None
    assert torch.equal(keys, k)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("spec", ["full", "window:2", "budget:36"])
def test_session_with_a_reused_slot_matches_each_stream_alone(model, spec):
    check_reused_slot(model, spec)


@pytest.mark.parametrize("spec", ["full", "window:2", "budget:36"])
def test_storage_no_element_wrote_is_zeroed_before_streams_diverge(model, spec, monkeypatch):
    """Storage is allocated uninitialised; here it holds NaN (garbage can), which masked attention must never see."""
    allocate = PlainStore.allocate

    def poisoned(store: PlainStore, like: torch.Tensor, capacity: int, keep: int) -> None:
        allocate(store, like, capacity, keep)
        store.k[:, :, keep:], store.v[:, :, keep:] = float("nan"), float("nan")

    monkeypatch.setattr(PlainStore, "allocate", poisoned)
    check_reused_slot(model, spec)


def check_reused_slot(model, spec: str) -> None:
    """Element 1 runs a 3-frame stream, then a 5-frame one in the same slot; element 0 runs 8 frames throughout."""
    generator = torch.Generator().manual_seed(0)
    long, short, following = (torch.rand(n, 3, 28, 28, generator=generator) for n in (8, 3, 5))

    def alone(frames: torch.Tensor) -> list:
        session = model.stream(batch_size=1, cache=spec)
        return [session.step(frames[t : t + 1]) for t in range(len(frames))]

    expected_long, expected_short, expected_next = alone(long), alone(short), alone(following)
    session = model.stream(batch_size=2, cache=spec)
    for t in range(8):
        if t == 3:
            session.reset_slot(1)
        other, expected_other = (short[t], expected_short[t]) if t < 3 else (following[t - 3], expected_next[t - 3])
        out = session.step(torch.stack((long[t], other)))
        for key in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
            assert_close(out[key][0], expected_long[t][key][0], f"{spec} frame {t} {key} element 0")
            assert_close(out[key][1], expected_other[key][0], f"{spec} frame {t} {key} element 1")
    assert session.slot_frames == [8, 5]


def test_session_refuses_to_reset_a_slot_outside_its_batch_or_with_query_points(model):
    with pytest.raises(ValueError, match="slot 2 is not in this session's batch of 2"):
        model.stream(batch_size=2).reset_slot(2)
    tracking = model.stream(batch_size=1, query_points=torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="query points cannot reset one slot"):
        tracking.reset_slot(0)

"""Streaming sessions: exact against the offline causal forward, batched, and bounded in memory."""

from __future__ import annotations

import pytest
import torch

from streamvggt import ModelConfig, StreamVGGT
from tests.helpers import assert_close, tiny_model

FRAME_KEYS = ("pose_enc", "pose_enc_iters", "depth", "depth_conf", "world_points", "world_points_conf")


def stream_all(model: StreamVGGT, images: torch.Tensor, cache: str = "full") -> list[dict[str, torch.Tensor]]:
    session = model.stream(batch_size=images.shape[0], cache=cache)
    return [session.step(images[:, t]) for t in range(images.shape[1])]


def frame_of(out: dict[str, torch.Tensor], key: str, t: int) -> torch.Tensor:
    return out[key][:, :, t] if key == "pose_enc_iters" else out[key][:, t]


@pytest.fixture(scope="module")
def causal_model(parity_weights) -> StreamVGGT:
    return tiny_model(parity_weights, causal=True)


def test_stream_matches_reference_causal_forward(causal_model, parity):
    steps = stream_all(causal_model, parity["input.images"])
    for t, out in enumerate(steps):
        for key in FRAME_KEYS:
            assert_close(
                out[key],
                frame_of(parity, f"causal.{key}", t)
                if key != "pose_enc_iters"
                else parity["causal.pose_enc_iters"][:, :, t],
                f"frame {t} {key}",
            )


def test_stream_fixes_reference_camera_cache_bug(causal_model, parity):
    """The reference's own stream path drifts from its training semantics (1.7e-2); ours does not."""
    steps = stream_all(causal_model, parity["input.images"])
    ours = torch.stack([s["pose_enc"] for s in steps], dim=1)
    assert (ours - parity["causal.pose_enc"]).abs().max() < 1e-5
    assert (parity["refstream.pose_enc"] - parity["causal.pose_enc"]).abs().max() > 1e-2


@pytest.mark.parametrize("batch_size", [1, 2])
def test_stream_matches_offline_causal_forward_for_batches(causal_model, parity, batch_size):
    images = parity["input.images"]
    if batch_size == 2:
        images = torch.cat((images, images.flip(-1)))
    with torch.no_grad():
        offline = causal_model(images)
    for t, out in enumerate(stream_all(causal_model, images)):
        for key in FRAME_KEYS:
            assert_close(out[key], frame_of(offline, key, t), f"B={batch_size} frame {t} {key}")


def test_bounded_policies_are_exact_until_they_evict(causal_model, parity):
    images = parity["input.images"]  # 5 frames of 40 tokens
    full = stream_all(causal_model, images)
    window = stream_all(causal_model, images, "window:2")  # anchor + 2 frames: exact for frames 0..2
    budget = stream_all(causal_model, images, "budget:120")  # 3 frames of tokens: exact for frames 0..2
    for bounded in (window, budget):
        for t in range(3):
            assert_close(bounded[t]["depth"], full[t]["depth"], f"frame {t}")
        assert not torch.allclose(bounded[4]["depth"], full[4]["depth"], atol=1e-6)


def test_int8_cache_stays_close_to_full_cache_at_a_quarter_of_the_memory(causal_model, parity):
    images = parity["input.images"]
    exact = causal_model.stream()
    quantized = causal_model.stream(cache="int8")
    for t in range(images.shape[1]):
        reference, approx = exact.step(images[:, t]), quantized.step(images[:, t])
        assert ((approx["depth"] - reference["depth"]).abs() / reference["depth"]).max() < 1e-4
        assert (approx["pose_enc"] - reference["pose_enc"]).abs().max() < 1e-2
    assert quantized.cache_bytes < 0.3 * exact.cache_bytes


def test_frame_size_change_is_a_clear_error(causal_model):
    session = causal_model.stream()
    session.step(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match="differs from the stream's 28x28"):
        session.step(torch.rand(1, 3, 28, 42))


def test_wrong_batch_size_is_a_clear_error(causal_model):
    with pytest.raises(ValueError, match="batches of 2"):
        causal_model.stream(batch_size=2).step(torch.rand(1, 3, 28, 28))


def test_reset_starts_a_new_stream(causal_model, parity):
    session = causal_model.stream()
    first = session.step(parity["input.images"][:, 0])
    session.step(parity["input.images"][:, 1])
    session.reset()
    assert session.num_frames == 0 and session.cache_bytes == 0
    again = session.step(parity["input.images"][:, 0])
    assert_close(again["depth"], first["depth"], "first frame after reset")


def shallow_model(seed: int = 0) -> StreamVGGT:
    """A 4-layer tiny model for long streams."""
    config = ModelConfig.preset("tiny")
    config.depth = 4
    config.dpt_head.intermediate_layer_idx = [0, 1, 2, 3]
    torch.manual_seed(seed)
    return StreamVGGT(config).eval()


@pytest.mark.parametrize("policy", ["window:8", "budget:60"])
def test_bounded_cache_stops_growing_over_300_frames(policy):
    model = shallow_model()
    session = model.stream(cache=policy)
    sizes = []
    for _ in range(300):
        session.step(torch.rand(1, 3, 28, 28))
        sizes.append(session.cache_bytes)
    assert sizes[-1] == sizes[20], f"cache grew from {sizes[20]} to {sizes[-1]} bytes"
    full = model.stream(cache="full")
    for _ in range(40):
        full.step(torch.rand(1, 3, 28, 28))
    assert full.cache_bytes > sizes[-1]


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_thousand_frame_stream_with_bounded_policy_does_not_grow_memory():
    model = shallow_model()
    session = model.stream(cache="window:4")
    frame = torch.rand(1, 3, 28, 28)
    for _ in range(100):
        session.step(frame)
    cache_at_100, rss_at_100 = session.cache_bytes, _resident_bytes()
    for _ in range(900):
        session.step(frame)
    assert session.num_frames == 1000
    assert session.cache_bytes == cache_at_100
    # A full cache would add 900 frames x 4 layers x 9 tokens x 32 ch x 2 (k, v) x 4 B = 8.3 MB; allow 4 MB of noise.
    assert _resident_bytes() - rss_at_100 < 4 * 2**20

"""A stream saved after some frames and restored in a new session goes on exactly as if never interrupted."""

from __future__ import annotations

import pytest
import torch

from streamvggt.io.run_state import RunStateStore, StateError
from streamvggt.streaming.session import StreamSession
from tests.helpers import tiny_model

POLICIES = ["full", "window:2", "budget:100", "full+int8", "window:2+int8", "budget:100+int8"]
OUTPUT_KEYS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")
TRACK_KEYS = ("track", "track_vis", "track_conf")
FRAMES = 5
SPLIT = 3  # frames before the save


@pytest.fixture(scope="module")
def model(parity_weights):
    return tiny_model(parity_weights, causal=True)


def frames_of(parity, batch: int) -> list[torch.Tensor]:
    images = parity["input.images"][0]  # [S, 3, H, W]
    if batch == 1:
        return [image[None] for image in images]
    return [torch.stack((image, image.flip(-1))) for image in images]


def queries_of(parity, batch: int) -> torch.Tensor:
    queries = parity["input.query_points"]
    return queries if batch == 1 else torch.cat((queries, queries.flip(1)))


def assert_same_outputs(expected, actual, keys) -> None:
    for key in keys:
        want, got = getattr(expected, key), getattr(actual, key)
        assert torch.equal(want, got), f"{key} differs after restore: max {(want - got).abs().max().item()}"


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("policy", POLICIES)
def test_restored_session_gives_the_uninterrupted_outputs(model, parity, tmp_path, policy, batch):
    frames = frames_of(parity, batch)
    whole = StreamSession(model, batch, policy)
    expected = [whole.step(frame) for frame in frames]
    first = StreamSession(model, batch, policy)
    for frame in frames[:SPLIT]:
        first.step(frame)
    first.save_state(tmp_path / "state")
    # the saved session may go on (a run saves and continues): its state must not depend on later steps
    first.step(frames[SPLIT])
    restored = StreamSession.restore(model, tmp_path / "state")
    assert restored.num_frames == SPLIT and str(restored.policy) == policy
    for frame, want in zip(frames[SPLIT:], expected[SPLIT:], strict=True):
        assert_same_outputs(want, restored.step(frame), OUTPUT_KEYS)


@pytest.mark.parametrize("batch", [1, 2])
def test_restored_session_follows_query_points(model, parity, tmp_path, batch):
    frames, queries = frames_of(parity, batch), queries_of(parity, batch)
    whole = StreamSession(model, batch, "window:2", query_points=queries)
    expected = [whole.step(frame) for frame in frames]
    first = StreamSession(model, batch, "window:2", query_points=queries)
    for frame in frames[:SPLIT]:
        first.step(frame)
    first.save_state(tmp_path / "state")
    restored = StreamSession.restore(model, tmp_path / "state")
    for frame, want in zip(frames[SPLIT:], expected[SPLIT:], strict=True):
        assert_same_outputs(want, restored.step(frame), OUTPUT_KEYS + TRACK_KEYS)


def test_restored_batched_session_keeps_each_slots_stream(model, parity, tmp_path):
    """After reset_slot the elements' streams have different lengths: per-slot lengths and rings survive."""
    frames = frames_of(parity, 2)
    for policy in ("window:2", "budget:100+int8"):
        whole = StreamSession(model, 2, policy)
        first = StreamSession(model, 2, policy)
        for session in (whole, first):
            session.step(frames[0])
            session.step(frames[1])
            session.reset_slot(1)
            session.step(frames[2])
        first.save_state(tmp_path / policy)
        restored = StreamSession.restore(model, tmp_path / policy)
        for frame in frames[3:]:
            assert_same_outputs(whole.step(frame), restored.step(frame), OUTPUT_KEYS)


def test_bounded_state_stays_bounded(model, parity, tmp_path):
    """Only valid slots are saved: a window's state stops growing once its ring is full, the full cache's grows."""
    frames = frames_of(parity, 1)
    sizes = {}
    for policy in ("window:1", "full"):
        session = StreamSession(model, 1, policy)
        sizes[policy] = []
        for frame in frames:
            session.step(frame)
            _, tensors = session.state_dict()
            sizes[policy].append(sum(t.numel() * t.element_size() for t in tensors.values()))
    assert sizes["window:1"][2:] == [sizes["window:1"][1]] * (FRAMES - 2)
    assert all(b > a for a, b in zip(sizes["full"], sizes["full"][1:], strict=False))


def test_a_restored_session_builds_its_own_compiled_step(model, parity, tmp_path):
    """A compiled step holds the old cache's tensors: the restored session must not reuse one."""
    frames = frames_of(parity, 1)
    first = StreamSession(model, 1, "window:2")
    for frame in frames[:SPLIT]:
        first.step(frame)
    first.save_state(tmp_path / "state")
    restored = StreamSession.restore(model, tmp_path / "state", compile=True)
    assert restored._compiled is None and restored.compile is True


def test_a_damaged_session_state_is_refused(model, parity, tmp_path):
    session = StreamSession(model, 1, "full")
    session.step(frames_of(parity, 1)[0])
    folder = session.save_state(tmp_path / "state")
    target = folder / "session.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(StateError, match="damaged"):
        StreamSession.restore(model, tmp_path / "state")
    with pytest.raises(StateError, match="no saved session"):
        StreamSession.restore(model, tmp_path / "nothing")
    assert RunStateStore(tmp_path / "nothing").load() is None


def test_a_state_of_another_policy_is_refused(model, parity):
    session = StreamSession(model, 1, "window:2")
    session.step(frames_of(parity, 1)[0])
    meta, tensors = session.state_dict()
    with pytest.raises(ValueError, match="window:2"):
        StreamSession(model, 1, "full").load_state_dict(meta, tensors)

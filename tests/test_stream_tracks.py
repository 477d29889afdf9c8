"""Streaming point tracks: causal, fixed once emitted, batched, bounded in memory."""

from __future__ import annotations

import itertools

import pytest
import torch

from streamvggt import StreamVGGT
from streamvggt.model.heads.tracker import Tracker
from streamvggt.streaming.tracks import DEFAULT_WINDOW, StreamingTracker
from tests.helpers import TRACK_ATOL, assert_close, tiny_model

TRACK_KEYS = ("track", "track_vis", "track_conf")


def stream_tracks(model: StreamVGGT, images: torch.Tensor, queries: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    session = model.stream(batch_size=images.shape[0], query_points=queries)
    return [session.step(images[:, t]) for t in range(images.shape[1])]


def flipped(images: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clip mirrored left-right, with the queries mirrored to the same scene points."""
    mirrored = queries.clone()
    mirrored[..., 0] = images.shape[-1] - 1 - queries[..., 0]
    return images.flip(-1), mirrored


@pytest.fixture(scope="module")
def causal_model(parity_weights) -> StreamVGGT:
    return tiny_model(parity_weights, causal=True)


@pytest.fixture(scope="module")
def five_frames(causal_model, parity) -> list[dict[str, torch.Tensor]]:
    return stream_tracks(causal_model, parity["input.images"], parity["input.query_points"])


def test_a_frames_track_does_not_change_when_later_frames_arrive(causal_model, parity, five_frames):
    three = stream_tracks(causal_model, parity["input.images"][:, :3], parity["input.query_points"])
    for t in range(3):
        for key in TRACK_KEYS:
            assert torch.equal(three[t][key], five_frames[t][key]), f"frame {t} {key}"


def test_tracks_use_only_frames_seen_so_far(causal_model, parity, five_frames):
    images = parity["input.images"].clone()
    images[:, 4] = images[:, 4].flip(-1)
    changed = stream_tracks(causal_model, images, parity["input.query_points"])
    for t in range(4):
        for key in TRACK_KEYS:
            assert torch.equal(changed[t][key], five_frames[t][key]), f"frame {t} {key}"
    assert not torch.allclose(changed[4]["track"], five_frames[4]["track"]), "frame 4 must see its own image"


def test_first_frame_track_is_the_query_points_as_offline(causal_model, parity, five_frames):
    queries = parity["input.query_points"]
    assert torch.equal(five_frames[0]["track"], queries)
    with torch.no_grad():
        offline = causal_model(parity["input.images"][:, :1], queries)
    for key in ("track_vis", "track_conf"):
        assert_close(five_frames[0][key], offline[key][:, 0], key)


def test_second_frame_equals_the_offline_head_on_the_two_frame_clip(causal_model, parity, five_frames):
    """On frames 0 and 1 the methods coincide: no window yet, frame 1 starts at frame 0's track = the queries."""
    with torch.no_grad():
        offline = causal_model(parity["input.images"][:, :2], parity["input.query_points"])
    assert_close(five_frames[1]["track"], offline["track"][:, 1], "track", atol=TRACK_ATOL)
    for key in ("track_vis", "track_conf"):
        assert_close(five_frames[1][key], offline[key][:, 1], key)


def test_batch_of_two_gives_each_element_its_own_result(causal_model, parity):
    """Element 1 is the mirrored clip; each element must equal its own B=1 stream.

    Compared with oneDNN off: its convolutions round differently per batch size (3e-8 in the track feature maps),
    and the fixture's random-weight tracker is not contractive (offline, 8 refinement iterations turn a 1e-4 px
    change of the queries into 0.1 px), so a stream, which starts each frame's refinement from the last frame's
    track, amplifies that tens of times per frame. Without oneDNN B=1 and B=2 agree to the last bits, and any
    mixing of elements would show.
    """
    images, queries = parity["input.images"], parity["input.query_points"]
    mirror_images, mirror_queries = flipped(images, queries)
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):  # None: leave TF32 alone (it warns)
        batch = stream_tracks(causal_model, torch.cat((images, mirror_images)), torch.cat((queries, mirror_queries)))
        alone = [
            stream_tracks(causal_model, images, queries),
            stream_tracks(causal_model, mirror_images, mirror_queries),
        ]
    for t in range(images.shape[1]):
        for element, own in enumerate(alone):
            for key in TRACK_KEYS:
                assert_close(batch[t][key][element], own[t][key][0], f"frame {t} batch[{element}] {key}")
    assert not torch.allclose(batch[4]["track"][0], batch[4]["track"][1])


def test_outputs_have_frame_shapes_and_probabilities(five_frames, parity):
    batch, count = parity["input.query_points"].shape[:2]
    for out in five_frames:
        assert out["track"].shape == (batch, count, 2) and out["track"].dtype == torch.float32
        assert torch.isfinite(out["track"]).all()
        for key in ("track_vis", "track_conf"):
            assert out[key].shape == (batch, count)
            assert ((out[key] >= 0) & (out[key] <= 1)).all(), key


def test_tracker_memory_stops_growing_once_the_window_is_full(causal_model):
    torch.manual_seed(0)
    queries = torch.tensor([[[3.0, 5.0], [20.0, 14.0], [27.0, 27.0]]])
    session = causal_model.stream(cache="window:2", query_points=queries)
    sizes = []
    for _ in range(20):
        session.step(torch.rand(1, 3, 28, 28))
        sizes.append(session.cache_bytes)
    # The trunk's window cache is allocated whole at frame 0; only the tracker fills up, one frame per step.
    assert all(a < b for a, b in itertools.pairwise(sizes[: DEFAULT_WINDOW + 1]))
    assert sizes[-1] == sizes[DEFAULT_WINDOW], f"cache grew from {sizes[DEFAULT_WINDOW]} to {sizes[-1]} bytes"


def test_window_length_sets_the_context(causal_model, parity):
    """Frames 0 and 1 have no window frames yet, so every window length agrees there and differs later."""
    images, queries = parity["input.images"], parity["input.query_points"]
    with torch.no_grad():
        tokens = causal_model.aggregator(images, causal_model.head_layers)
    runs = []
    for window in (0, 2):
        tracker = StreamingTracker(causal_model, queries, window=window)
        runs.append([tracker.step({k: t[:, s : s + 1] for k, t in tokens.items()}, (70, 98)) for s in range(5)])
    none, two = runs
    for t in range(2):
        assert torch.equal(none[t]["track"], two[t]["track"]), f"frame {t}"
    assert not torch.allclose(none[4]["track"], two[4]["track"])


def test_tracker_initial_coords_at_the_queries_reproduce_the_default():
    torch.manual_seed(0)
    tracker = Tracker(latent_dim=16, hidden_size=32, depth=2, stride=2, corr_levels=3, corr_radius=2).eval()
    queries = torch.rand(2, 5, 2) * 20
    fmaps = torch.randn(2, 3, 16, 12, 14)
    with torch.no_grad():
        default = tracker(queries, fmaps, iters=2)
        explicit = tracker(queries, fmaps, iters=2, initial_coords=queries[:, None].repeat(1, 3, 1, 1))
        start = torch.stack((queries, queries + 1, queries + 2), dim=1)
        pinned = tracker(queries, fmaps, iters=2, initial_coords=start, pinned_frames=2)
    for a, b in zip(default[0], explicit[0], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(pinned[0][-1][:, 1], queries + 1), "a pinned frame keeps its initial coordinates"
    with pytest.raises(ValueError, match="initial_coords must be"):
        tracker(queries, fmaps, iters=1, initial_coords=torch.zeros(2, 2, 5, 2))
    with pytest.raises(ValueError, match="pinned_frames"):
        tracker(queries, fmaps, iters=1, pinned_frames=4)


def test_invalid_window_is_a_clear_error(causal_model, parity):
    with pytest.raises(ValueError, match="window must be >= 0"):
        StreamingTracker(causal_model, parity["input.query_points"], window=-1)

"""Predictions: the typed output of the offline forward and of a streaming step, readable by the reference's keys."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from streamvggt import StreamVGGT
from streamvggt.model.predictions import Predictions
from tests.helpers import tiny_model

DENSE_KEYS = ["pose_enc", "pose_enc_iters", "depth", "depth_conf", "world_points", "world_points_conf"]
TRACK_KEYS = ["track", "track_vis", "track_conf"]


def made_up(batch: int = 2, frames: int = 3, height: int = 4, width: int = 5, tracks: int | None = None) -> Predictions:
    """Predictions whose every element is distinct, so that a wrong slice shows."""
    shapes = {
        "pose_enc": (batch, frames, 9),
        "pose_enc_iters": (4, batch, frames, 9),
        "depth": (batch, frames, height, width, 1),
        "depth_conf": (batch, frames, height, width),
        "world_points": (batch, frames, height, width, 3),
        "world_points_conf": (batch, frames, height, width),
    }
    if tracks is not None:
        shapes.update(track=(batch, frames, tracks, 2), track_vis=(batch, frames, tracks))
    return Predictions(**{name: torch.randn(shape) for name, shape in shapes.items()})


@pytest.fixture(scope="module")
def causal_model(parity_weights) -> StreamVGGT:
    return tiny_model(parity_weights, causal=True)


def test_fields_read_by_the_reference_key_names():
    out = made_up()
    assert all(out[name] is getattr(out, name) for name in DENSE_KEYS)
    assert list(out.keys()) == DENSE_KEYS
    assert list(out) == DENSE_KEYS
    assert len(out) == 6
    assert [value for _, value in out.items()] == out.values()


def test_unset_track_fields_are_absent_keys():
    out = made_up(tracks=7)
    assert "track" in out and "track_vis" in out
    assert "track_conf" not in out
    assert out.get("track_conf") is None
    assert out.get("track") is out.track
    with pytest.raises(KeyError, match="track_conf"):
        out["track_conf"]
    with pytest.raises(KeyError, match="extrinsic"):
        out["extrinsic"]


def test_to_dict_is_a_plain_dict_of_the_set_fields():
    out = made_up(tracks=7)
    plain = out.to_dict()
    assert type(plain) is dict
    assert list(plain) == [*DENSE_KEYS, "track", "track_vis"]
    assert all(plain[name] is getattr(out, name) for name in plain)
    assert dict(out).keys() == plain.keys()


def test_frame_drops_the_frame_axis_of_every_field():
    out = made_up(tracks=7)
    second = out.frame(1)
    assert torch.equal(second.pose_enc, out.pose_enc[:, 1])
    assert torch.equal(second.pose_enc_iters, out.pose_enc_iters[:, :, 1])
    assert torch.equal(second.depth, out.depth[:, 1])
    assert torch.equal(second.world_points_conf, out.world_points_conf[:, 1])
    assert torch.equal(second.track, out.track[:, 1])
    assert torch.equal(second.track_vis, out.track_vis[:, 1])
    assert second.track_conf is None
    assert second.pose_enc.shape == (2, 9) and second.pose_enc_iters.shape == (4, 2, 9)


def test_repr_shows_shapes_not_values():
    assert repr(made_up(batch=1, frames=2).frame(0)) == (
        "Predictions(pose_enc=[1, 9], pose_enc_iters=[4, 1, 9], depth=[1, 4, 5, 1], depth_conf=[1, 4, 5], "
        "world_points=[1, 4, 5, 3], world_points_conf=[1, 4, 5])"
    )


def test_predictions_are_immutable():
    out = made_up()
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.depth = torch.zeros(1)


def test_offline_forward_returns_predictions_with_tracks_for_queries(causal_model, parity):
    with torch.no_grad():
        out = causal_model(parity["input.images"][:, :2], parity["input.query_points"])
    assert isinstance(out, Predictions)
    assert list(out) == DENSE_KEYS + TRACK_KEYS
    assert out.pose_enc.shape == (1, 2, 9)
    assert out.track.shape == (1, 2, 6, 2) and out.track_conf.shape == (1, 2, 6)


def test_stream_step_returns_one_frames_predictions(causal_model, parity):
    session = causal_model.stream(query_points=parity["input.query_points"])
    out = session.step(parity["input.images"][:, 0])
    assert isinstance(out, Predictions)
    assert list(out) == DENSE_KEYS + TRACK_KEYS
    assert out.depth.shape == (1, 70, 98, 1) and out.pose_enc_iters.shape == (4, 1, 9)
    assert out.track.shape == (1, 6, 2) and out.track_vis.shape == (1, 6)

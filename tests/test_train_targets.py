"""Training targets: quaternions and the pose encoding, normalised ground truth, query points, track targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamvggt.train.data.synthetic import SyntheticDataset
from streamvggt.train.targets import GroundTruth, ground_truth, sample_query_points, track_targets


def test_pose_encoding_of_the_targets_is_translation_quaternion_fov_h_fov_w() -> None:
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    extrinsics = torch.eye(4).expand(1, 2, 4, 4).clone()  # view 1: turned 90 degrees about z and moved
    extrinsics[0, 1, :3, :3] = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    extrinsics[0, 1, :3, 3] = torch.tensor([1.0, 2.0, 2.0])
    intrinsics = torch.tensor([[50.0, 0.0, 40.0], [0.0, 30.0, 20.0], [0.0, 0.0, 1.0]]).expand(1, 2, 3, 3)
    batch = {
        "depth": torch.full((1, 2, 40, 80), 3.0),
        "valid_mask": torch.ones(1, 2, 40, 80, dtype=torch.bool),
        "intrinsics": intrinsics,
        "extrinsics": extrinsics,
    }
    gt = ground_truth(batch, "first_view")
    scale = float(gt.scale[0])  # mean distance of view 0's points, which all lie on the plane z = 3
    assert 3.0 < scale < 3.0 * math.sqrt(1 + (40 / 50) ** 2 + (20 / 30) ** 2)
    half = math.sqrt(0.5)
    fov = [2 * math.atan(20 / 30), 2 * math.atan(40 / 50)]  # (H/2) / fy first, then (W/2) / fx
    assert torch.allclose(gt.pose_encoding[0, 0], torch.tensor([0.0, 0, 0, 0, 0, 0, 1, *fov]), atol=1e-6)
    expected = [1 / scale, 2 / scale, 2 / scale, 0.0, 0.0, half, half, *fov]  # xyzw, translation at the scale
    assert torch.allclose(gt.pose_encoding[0, 1], torch.tensor(expected), atol=1e-6)


@pytest.fixture(scope="module")
def clip() -> dict:
    dataset = SyntheticDataset(num_views=3, num_scenes=2, frames_per_scene=8, color_jitter=False, supersample=1)
    item = dataset.clip(5, (42, 28), np.random.default_rng(1))
    return {k: v[None] if isinstance(v, torch.Tensor) else [v] for k, v in item.items()}


@pytest.mark.parametrize("normalization", ["clip", "first_view"])
def test_ground_truth_is_normalised_to_a_mean_distance_of_one(clip: dict, normalization: str) -> None:
    gt = ground_truth(clip, normalization)
    distance = gt.points.norm(dim=-1)
    region = gt.valid if normalization == "clip" else gt.valid[:, :1]
    part = distance if normalization == "clip" else distance[:, :1]
    assert float(part[region].mean()) == pytest.approx(1.0, rel=1e-4)
    # View 0 is the world: identity rotation and zero translation, and its points are its camera points.
    assert torch.allclose(gt.pose_encoding[0, 0, :7], torch.tensor([0.0, 0, 0, 0, 0, 0, 1]), atol=1e-5)
    assert torch.allclose(gt.points[0, 0, ..., 2], gt.depth[0, 0], atol=1e-5)
    # Depth scales with the translation: depths and translations stay consistent.
    assert torch.allclose(gt.depth * gt.scale, clip["depth"], rtol=1e-5)


def test_query_points_are_valid_pixels_and_reproducible() -> None:
    valid = torch.zeros(2, 4, 5, dtype=torch.bool)
    valid[0, 1, 2] = valid[0, 3, 4] = True  # two valid pixels in the first sample, none in the second
    points = sample_query_points(valid, 6, torch.Generator().manual_seed(0))
    assert points.shape == (2, 6, 2)
    assert {tuple(p) for p in points[0].tolist()} <= {(2.0, 1.0), (4.0, 3.0)}  # (x, y)
    assert ((points[1] >= 0) & (points[1] < torch.tensor([5.0, 4.0]))).all()  # any pixel when none is valid
    assert torch.equal(points, sample_query_points(valid, 6, torch.Generator().manual_seed(0)))


def test_track_targets_follow_a_translated_camera_and_detect_occlusion() -> None:
    # Two 5x5 views of a wall at depth 2; the second camera moved so that points shift 1 px right.
    depth = torch.full((1, 2, 5, 5), 2.0)
    intrinsics = torch.tensor([[10.0, 0, 2], [0, 10.0, 2], [0, 0, 1]]).expand(1, 2, 3, 3)
    extrinsics = torch.eye(4).repeat(1, 2, 1, 1)
    extrinsics[0, 1, 0, 3] = 0.2  # camera-from-world translation: x_cam = x_world + 0.2 -> u += 10 * 0.2 / 2
    points = torch.zeros(1, 2, 5, 5, 3)
    ys, xs = torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij")
    points[0, 0] = torch.stack(((xs - 2) / 10 * 2, (ys - 2) / 10 * 2, depth[0, 0]), dim=-1)
    gt = GroundTruth(torch.zeros(1, 2, 9), depth, points, torch.ones(1, 2, 5, 5, dtype=torch.bool), torch.ones(1))
    queries = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])
    tracks, visible = track_targets(gt, intrinsics, extrinsics, queries)
    assert torch.allclose(tracks[0, 0], queries[0])
    assert torch.allclose(tracks[0, 1], torch.tensor([[2.0, 2.0], [5.0, 0.0]]))
    assert visible.tolist() == [[[1.0, 1.0], [1.0, 0.0]]]  # the second point leaves the 5-pixel-wide image
    occluded = gt.depth.clone()
    occluded[0, 1, 2, 2] = 1.0  # something nearer covers where the first point lands
    gt.depth = occluded
    _, visible = track_targets(gt, intrinsics, extrinsics, queries)
    assert visible[0, 1, 0] == 0.0


def test_track_targets_on_rendered_views_land_on_equal_depths(clip: dict) -> None:
    gt = ground_truth(clip)
    queries = sample_query_points(clip["valid_mask"][:, 0], 32, torch.Generator().manual_seed(0))
    tracks, visible = track_targets(gt, clip["intrinsics"], clip["extrinsics"], queries)
    assert torch.allclose(tracks[0, 0], queries[0], atol=1e-3) and visible[0, 0].all()
    assert visible[0, 1:].mean() > 0.5  # consecutive frames of a smooth camera path overlap

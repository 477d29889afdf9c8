"""Each loss term on a case small enough to compute by hand, and the two criteria on perfect and scaled inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamvggt.train.config import LossSection
from streamvggt.train.criteria import DistillationLoss, SupervisedLoss
from streamvggt.train.data.synthetic import SyntheticDataset
from streamvggt.train.losses import (
    align_quaternion_sign,
    camera_loss,
    confidence_weighted_l1,
    fit_scale_shift,
    gradient_loss,
    huber,
    mean_norm,
    normal_loss,
    point_normals,
    track_loss,
)
from streamvggt.train.targets import ground_truth

IDENTITY_POSE = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def close(actual: torch.Tensor | float, expected: float, tol: float = 1e-6) -> None:
    assert float(actual) == pytest.approx(expected, abs=tol)


# ----------------------------------------------------------------------------------------------------- camera


def test_huber_is_quadratic_over_delta_inside_and_linear_outside() -> None:
    # 0.05 <= delta: 0.5 * 0.05^2 / 0.1 = 0.0125; 0.3 > delta: 0.3 - 0.05 = 0.25
    close(huber(torch.tensor([0.05, -0.3]), torch.zeros(2), delta=0.1), (0.0125 + 0.25) / 2)


def test_quaternion_target_takes_the_sign_nearest_the_prediction() -> None:
    pred = torch.tensor([0.0, 0.0, 0.1, 0.9])
    target = torch.tensor([0.0, 0.0, -0.1, -0.9])  # the same rotation, other sign
    assert torch.equal(align_quaternion_sign(pred, target), -target)
    assert torch.equal(align_quaternion_sign(pred, -target), -target)


def test_camera_loss_weights_translation_rotation_and_fov() -> None:
    target = torch.tensor(IDENTITY_POSE).view(1, 1, 9)
    pred = target.clone()
    pred[..., 0] = 0.2  # translation: huber = 0.2 - 0.05 = 0.15 on one of three entries -> 0.05
    pred[..., 3:7] = -target[..., 3:7]  # the same rotation: no loss
    pred[..., 7:] += 0.05  # fov: 0.5 * 0.05^2 / 0.1 = 0.0125 on both entries, weight 0.5
    close(camera_loss(pred[None], target, delta=0.1, components=(1.0, 1.0, 0.5)), 0.05 + 0.5 * 0.0125)


def test_camera_loss_supervises_earlier_iterations_with_gamma() -> None:
    target = torch.tensor(IDENTITY_POSE).view(1, 1, 9)
    early, late = target.clone(), target.clone()
    early[..., 0] = 0.35  # translation term 0.3 / 3 = 0.1
    late[..., 0] = 0.65  # 0.6 / 3 = 0.2
    iterations = torch.stack((early, late))
    close(camera_loss(iterations, target), 0.2)  # only the last
    # gamma 0.5: weights 0.5 and 1, normalised to 1/3 and 2/3
    close(camera_loss(iterations, target, gamma=0.5), 0.1 / 3 + 0.2 * 2 / 3)


# ------------------------------------------------------------------------------------------------------ dense


def test_confidence_weighted_l1_with_log_regulariser() -> None:
    pred = torch.tensor([[1.0], [2.0]])
    target = torch.zeros(2, 1)
    conf = torch.tensor([1.0, math.e])
    mask = torch.tensor([True, True])
    # mean(1*1, e*2) - 0.1 * mean(log 1, log e)
    close(confidence_weighted_l1(pred, target, conf, mask, alpha=0.1), (1 + 2 * math.e) / 2 - 0.1 / 2)
    close(confidence_weighted_l1(pred, target, conf, torch.tensor([True, False]), alpha=0.1), 1.0)


def test_confidence_weighted_l1_averages_channels() -> None:
    pred = torch.tensor([[1.0, 2.0, 3.0]])
    close(confidence_weighted_l1(pred, torch.zeros(1, 3), torch.ones(1), torch.ones(1, dtype=torch.bool), 0.1), 2.0)


def test_gradient_loss_compares_forward_differences_of_valid_pairs() -> None:
    target = torch.tensor([[[0.0, 1.0, 2.0]]])  # [N=1, H=1, W=3]
    pred = 2 * target  # differences 2, 2 against 1, 1: |1| per pair; no vertical pairs
    mask = torch.ones(1, 1, 3, dtype=torch.bool)
    close(gradient_loss(pred, target, mask), 0.5 * 1.0)
    pred_bad = pred.clone()
    pred_bad[0, 0, 2] = 100.0  # only the pair (1, 2) sees it, and pixel 2 is invalid: ignored, not averaged in
    mask[0, 0, 2] = False
    close(gradient_loss(pred_bad, target, mask), 0.5 * 1.0)


def plane(height: int, width: int) -> torch.Tensor:
    """Points (x, y, 1) on the plane z = 1: [1, H, W, 3]."""
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    return torch.stack((xs, ys, torch.ones_like(xs)), dim=-1)[None]


def test_point_normals_of_a_plane_and_their_validity() -> None:
    mask = torch.ones(1, 3, 3, dtype=torch.bool)
    normals, valid = point_normals(plane(3, 3), mask)
    assert normals.shape == (1, 1, 1, 4, 3)
    # up - centre = (0, -1, 0), left - centre = (-1, 0, 0): their cross product is (0, 0, -1); all four agree.
    assert torch.allclose(normals, torch.tensor([0.0, 0.0, -1.0]).expand(1, 1, 1, 4, 3))
    assert valid.all()
    mask[0, 0, 1] = False  # the "up" neighbour: the two normals using it are invalid
    _, valid = point_normals(plane(3, 3), mask)
    assert valid[0, 0, 0].tolist() == [False, True, True, False]


def test_normal_loss_is_zero_for_parallel_and_one_for_perpendicular_surfaces() -> None:
    target = plane(3, 3)
    mask = torch.ones(1, 3, 3, dtype=torch.bool)
    close(normal_loss(2 * target + 1, target, mask), 0.0)  # scaled and shifted: same normals
    standing = target[..., [0, 2, 1]]  # (x, 1, y): a plane y = 1, normal along y
    close(normal_loss(standing, target, mask), 1.0)  # only stride 1 has interior pixels in a 3x3 map


def test_normal_loss_ignores_degenerate_target_normals() -> None:
    target = torch.zeros(1, 3, 3, 3)  # all points equal: no normal anywhere
    mask = torch.ones(1, 3, 3, dtype=torch.bool)
    close(normal_loss(plane(3, 3), target, mask), 0.0)


def test_mean_norm_over_valid_entries_per_sample() -> None:
    values = torch.tensor([[[3.0, 4.0, 0.0], [30.0, 40.0, 0.0]], [[0.0, 0.0, 2.0], [0.0, 0.0, 4.0]]])
    mask = torch.tensor([[True, False], [False, False]])  # the second sample has no valid entry: all are used
    assert torch.allclose(mean_norm(values, mask), torch.tensor([5.0, 3.0]))


def test_fit_scale_shift_recovers_an_affine_map_and_refuses_a_mirror() -> None:
    pred = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 4, 1)
    target = 2 * pred + 3
    target[0, 3] = 100.0  # an outlier outside the mask
    mask = torch.tensor([[True, True, True, False]])
    scale, shift = fit_scale_shift(pred, target, mask)
    close(scale, 2.0, 1e-5)
    close(shift[0, 0], 3.0, 1e-5)
    scale, _ = fit_scale_shift(pred, -pred, torch.ones(1, 4, dtype=torch.bool), min_scale=1e-3)
    close(scale, 1e-3)
    assert not scale.requires_grad


def test_track_loss_confidence_weighted_distance_and_probability_bce() -> None:
    target = torch.zeros(1, 1, 1, 2)
    pred = torch.tensor([3.0, 4.0]).view(1, 1, 1, 2)  # 5 px away
    vis_pred, vis_target = torch.full((1, 1, 1), 0.5), torch.ones(1, 1, 1)
    # no confidence: 5 + BCE(0.5, 1) = 5 + ln 2
    close(track_loss(pred, target, vis_pred, vis_target, None), 5 + math.log(2), 1e-5)
    # confidence 0.5: 0.5 * 5 - 0.2 * log 0.5 + ln 2
    conf = torch.full((1, 1, 1), 0.5)
    close(track_loss(pred, target, vis_pred, vis_target, conf, alpha=0.2), 2.5 + 0.2 * math.log(2) + math.log(2), 1e-5)


# --------------------------------------------------------------------------------------------------- criteria


def outputs(depth: torch.Tensor, points: torch.Tensor, pose: torch.Tensor) -> dict:
    """A model output dict with confidences of 1 (log conf = 0)."""
    return {
        "pose_enc": pose,
        "pose_enc_iters": pose[None],
        "depth": depth[..., None],
        "depth_conf": torch.ones_like(depth),
        "world_points": points,
        "world_points_conf": torch.ones_like(depth),
    }


@pytest.fixture(scope="module")
def clip() -> dict:
    dataset = SyntheticDataset(num_views=3, num_scenes=1, frames_per_scene=6, color_jitter=False, supersample=1)
    item = dataset.clip(0, (28, 28), np.random.default_rng(0))
    return {k: v[None] if isinstance(v, torch.Tensor) else [v] for k, v in item.items()}


def test_distillation_loss_is_zero_for_the_teacher_and_blind_to_a_global_scale(clip: dict) -> None:
    gt = ground_truth(clip)
    teacher = outputs(gt.depth, gt.points, gt.pose_encoding)
    criterion = DistillationLoss(LossSection(kind="distill", query_points=0))
    total, terms = criterion(teacher, teacher, clip)
    close(total, 0.0, 1e-5)
    scaled = outputs(3 * gt.depth, 3 * gt.points, gt.pose_encoding)
    _, terms = criterion(scaled, teacher, clip)
    close(terms["depth"], 0.0, 1e-5)
    close(terms["points"], 0.0, 1e-5)
    noisy = outputs(gt.depth + 0.1 * torch.rand_like(gt.depth), gt.points, gt.pose_encoding)
    _, terms = criterion(noisy, teacher, clip)
    assert float(terms["depth"]) > 0.01


def test_supervised_loss_is_zero_for_the_ground_truth_and_grows_with_errors(clip: dict) -> None:
    gt = ground_truth(clip)
    criterion = SupervisedLoss(LossSection(kind="gt", query_points=0))
    total, terms = criterion(outputs(gt.depth, gt.points, gt.pose_encoding), clip)
    assert set(terms) == {"camera", "depth", "points"}
    close(total, 0.0, 1e-5)
    wrong_scale = outputs(2 * gt.depth, 2 * gt.points, gt.pose_encoding)  # GT is at a fixed scale: no alignment
    _, terms = criterion(wrong_scale, clip)
    assert float(terms["depth"]) > 0.1 and float(terms["points"]) > 0.1
    # A camera-to-world encoding (the reference finetune's convention) is wrong for views that moved.
    c2w = torch.linalg.inv(clip["extrinsics"])
    c2w_pose = ground_truth({**clip, "extrinsics": c2w}).pose_encoding
    _, terms = criterion(outputs(gt.depth, gt.points, c2w_pose), clip)
    assert float(terms["camera"]) > 1e-3


def test_supervised_track_term_is_zero_for_tracks_from_the_geometry(clip: dict) -> None:
    from streamvggt.train.targets import sample_query_points, track_targets

    gt = ground_truth(clip)
    queries = sample_query_points(clip["valid_mask"][:, 0], 8, torch.Generator().manual_seed(0))
    tracks, visible = track_targets(gt, clip["intrinsics"], clip["extrinsics"], queries)
    pred = outputs(gt.depth, gt.points, gt.pose_encoding)
    pred.update(track=tracks, track_vis=visible, track_conf=torch.ones_like(visible))
    criterion = SupervisedLoss(LossSection(kind="gt", query_points=8, track=1.0))
    _, terms = criterion(pred, {**clip, "query_points": queries})
    close(terms["track"], 0.0, 1e-4)
    _, terms = criterion(pred, {**clip, "query_points": queries, "static": torch.tensor([False])})
    close(terms["track"], 0.0)  # a moving scene gets no track targets
    pred["track"] = tracks + 1.0
    _, terms = criterion(pred, {**clip, "query_points": queries})
    close(terms["track"], math.sqrt(2), 1e-3)

"""Metric functions: hand-computable cases, invariances, and a cross-check against evo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamvggt.evaluate.metrics import (
    depth_metrics,
    pose_auc,
    recon_metrics,
    relative_pose_errors,
    trajectory_errors,
)
from streamvggt.geometry import invert_pose, quat_to_mat


def random_depth(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 10.0, size=(3, 8, 10))


def test_depth_single_pixel_by_hand():
    m = depth_metrics(np.array([[[2.0]]]), np.array([[[1.0]]]), align="none")
    assert m["abs_rel"] == pytest.approx(1.0) and m["sq_rel"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(1.0) and m["log_rmse"] == pytest.approx(math.log(2))
    assert (m["delta_1.25"], m["delta_1.25^2"], m["delta_1.25^3"]) == (0.0, 0.0, 0.0)
    close = depth_metrics(np.array([[[1.2]]]), np.array([[[1.0]]]), align="none")
    assert close["delta_1.25"] == 1.0 and close["abs_rel"] == pytest.approx(0.2)


def test_perfect_depth_scores_perfectly_under_every_alignment():
    gt = random_depth()
    for align in ("median", "scale", "scale&shift", "none"):
        m = depth_metrics(gt, gt, align=align)
        assert m["abs_rel"] == pytest.approx(0, abs=1e-9) and m["delta_1.25"] == 1.0, align


def test_scaled_depth_is_perfect_under_scale_and_median_only():
    gt = random_depth()
    assert depth_metrics(3.7 * gt, gt, align="scale")["abs_rel"] == pytest.approx(0, abs=1e-9)
    assert depth_metrics(3.7 * gt, gt, align="median")["abs_rel"] == pytest.approx(0, abs=1e-9)
    assert depth_metrics(3.7 * gt, gt, align="none")["abs_rel"] == pytest.approx(2.7)


def test_shifted_depth_is_perfect_under_scale_and_shift():
    gt = random_depth()
    pred = 0.5 * gt - 0.3
    assert depth_metrics(pred, gt, align="scale&shift")["abs_rel"] == pytest.approx(0, abs=1e-6)
    assert depth_metrics(pred, gt, align="scale")["abs_rel"] > 0.01


def test_valid_pixels_come_from_ground_truth_only():
    gt = random_depth()
    gt[0, 0, :4] = 0  # invalid ground truth
    gt[1, 0, 0] = np.inf
    gt[2, 1, :2] = 20.0  # beyond max_depth
    pred = gt.copy()
    pred[0, 0, :4] = 123.0  # wrong where gt is invalid: must not count
    mask = np.ones_like(gt, dtype=bool)
    mask[2, 2, 0] = False
    m = depth_metrics(pred, gt, align="none", max_depth=15.0, mask=mask)
    assert m["valid_pixels"] == gt.size - 4 - 1 - 2 - 1
    assert m["abs_rel"] == pytest.approx(0, abs=1e-12)


def test_post_clip_caps_the_prediction():
    gt = np.full((1, 2, 2), 50.0)
    m = depth_metrics(np.full((1, 2, 2), 100.0), gt, align="none", post_clip_max=70.0)
    assert m["abs_rel"] == pytest.approx(0.4)


def test_depth_rejects_bad_input():
    with pytest.raises(ValueError, match="must both be"):
        depth_metrics(np.ones((2, 3, 4)), np.ones((2, 3, 5)), align="none")
    with pytest.raises(ValueError, match="no valid"):
        depth_metrics(np.ones((1, 2, 2)), np.zeros((1, 2, 2)), align="none")
    with pytest.raises(ValueError, match="unknown depth alignment"):
        depth_metrics(np.ones((1, 2, 2)), np.ones((1, 2, 2)), align="affine")


def random_w2c(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    rot = quat_to_mat(torch.randn(n, 4, generator=gen, dtype=torch.float64))
    trans = torch.randn(n, 3, 1, generator=gen, dtype=torch.float64)
    return torch.cat((rot, trans), dim=-1)


def to_4x4(pose: torch.Tensor) -> torch.Tensor:
    bottom = torch.tensor([0, 0, 0, 1.0], dtype=pose.dtype).expand(*pose.shape[:-2], 1, 4)
    return torch.cat((pose, bottom), dim=-2)


def test_relative_pose_errors_are_gauge_invariant():
    gt = to_4x4(random_w2c(5))
    gauge = to_4x4(random_w2c(1, seed=3))[0]
    gauge[:3, 3] *= 2
    pred = gt @ gauge  # the same cameras in another world frame
    rra, rta = relative_pose_errors(pred, gt)
    assert rra.shape == (10,) and np.allclose(rra, 0, atol=1e-5) and np.allclose(rta, 0, atol=1e-5)
    assert pose_auc(rra, rta) == pytest.approx(1.0)


def test_relative_rotation_error_by_hand():
    gt = to_4x4(torch.eye(3, 4, dtype=torch.float64).expand(2, 3, 4).clone())
    gt[1, 0, 3] = 1.0  # second camera translated along x
    pred = gt.clone()
    angle = math.radians(10)
    pred[1, :3, :3] = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    rra, rta = relative_pose_errors(pred, gt)
    assert rra[0] == pytest.approx(10.0) and rta[0] == pytest.approx(10.0, abs=1e-6)


def test_pose_auc_by_hand():
    assert pose_auc(np.zeros(4), np.zeros(4)) == pytest.approx(1.0)
    assert pose_auc(np.full(4, 45.0), np.zeros(4)) == pytest.approx(0.0)
    assert pose_auc(np.array([15.0]), np.array([0.0])) == pytest.approx(0.5)
    assert pose_auc(np.array([0.0, 40.0]), np.array([0.0, 0.0])) == pytest.approx(0.5)


def test_trajectory_errors_match_evo():
    from evo.core import metrics, trajectory

    gen = np.random.default_rng(0)
    gt_c2w = to_4x4(invert_pose(random_w2c(12, seed=1))).numpy()
    sim = to_4x4(random_w2c(1, seed=5))[0].numpy()
    pred = np.einsum("ij,njk->nik", sim, gt_c2w)
    pred[:, :3, 3] = 0.4 * pred[:, :3, 3] + gen.normal(scale=0.02, size=(12, 3))
    ours = trajectory_errors(pred, gt_c2w, align="sim3")

    ref = trajectory.PosePath3D(poses_se3=list(gt_c2w))
    est = trajectory.PosePath3D(poses_se3=list(pred))
    est.align(ref, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    assert ours["ate"] == pytest.approx(ape.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)
    rpe_t = metrics.RPE(metrics.PoseRelation.translation_part, delta=1, all_pairs=False)
    rpe_t.process_data((ref, est))
    assert ours["rpe_trans"] == pytest.approx(rpe_t.get_statistic(metrics.StatisticsType.rmse), rel=1e-6)
    rpe_r = metrics.RPE(metrics.PoseRelation.rotation_angle_deg, delta=1, all_pairs=False)
    rpe_r.process_data((ref, est))
    assert ours["rpe_rot_deg"] == pytest.approx(rpe_r.get_statistic(metrics.StatisticsType.mean), rel=1e-6)


def test_trajectory_of_a_scaled_copy_is_perfect_under_sim3():
    gt = to_4x4(invert_pose(random_w2c(6)))
    pred = gt.clone()
    pred[:, :3, 3] *= 0.25
    errors = trajectory_errors(pred, gt)
    assert errors["ate"] == pytest.approx(0, abs=1e-9) and errors["rpe_trans"] == pytest.approx(0, abs=1e-9)
    assert trajectory_errors(pred, gt, align="none")["ate"] > 0.1


def test_recon_metrics_by_hand():
    gt = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    pred = gt + np.array([0.1, 0, 0])
    m = recon_metrics(pred, gt)
    assert m["acc"] == pytest.approx(0.1) and m["comp"] == pytest.approx(0.1) and m["acc_med"] == pytest.approx(0.1)
    normals = np.tile([0.0, 0, 1], (3, 1))
    tilted = np.tile([0.0, math.sin(0.5), math.cos(0.5)], (3, 1))
    m = recon_metrics(pred, gt, tilted, normals)
    assert m["nc"] == pytest.approx(math.cos(0.5)) and m["nc1_med"] == pytest.approx(math.cos(0.5))


def test_recon_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        recon_metrics(np.zeros((0, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="both clouds"):
        recon_metrics(np.zeros((2, 3)), np.zeros((2, 3)), pred_normals=np.zeros((2, 3)))

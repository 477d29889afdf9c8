"""Metric functions: hand-computable cases, invariances, and a cross-check against evo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from streamvggt.evaluate.metrics import (
    evaluate_depth,
    l1_scale,
    pose_auc,
    recon_metrics,
    relative_pose_errors,
    trajectory_errors,
)
from streamvggt.geometry import homogeneous_pose, invert_pose, quat_to_mat


def random_depth(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 10.0, size=(3, 8, 10))


def test_depth_single_pixel_by_hand():
    m = evaluate_depth(np.array([[[2.0]]]), np.array([[[1.0]]]), align="none").metrics
    assert m["abs_rel"] == pytest.approx(1.0) and m["sq_rel"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(1.0) and m["log_rmse"] == pytest.approx(math.log(2))
    assert (m["delta_1.25"], m["delta_1.25^2"], m["delta_1.25^3"]) == (0.0, 0.0, 0.0)
    close = evaluate_depth(np.array([[[1.2]]]), np.array([[[1.0]]]), align="none").metrics
    assert close["delta_1.25"] == 1.0 and close["abs_rel"] == pytest.approx(0.2)


def test_perfect_depth_scores_perfectly_under_every_alignment():
    gt = random_depth()
    for align in ("median", "scale", "scale&shift", "none"):
        m = evaluate_depth(gt, gt, align=align).metrics
        assert m["abs_rel"] == pytest.approx(0, abs=1e-9) and m["delta_1.25"] == 1.0, align


def test_scaled_depth_is_perfect_under_scale_and_median_only():
    gt = random_depth()
    assert evaluate_depth(3.7 * gt, gt, align="scale").metrics["abs_rel"] == pytest.approx(0, abs=1e-9)
    assert evaluate_depth(3.7 * gt, gt, align="median").metrics["abs_rel"] == pytest.approx(0, abs=1e-9)
    assert evaluate_depth(3.7 * gt, gt, align="none").metrics["abs_rel"] == pytest.approx(2.7)


def test_shifted_depth_is_perfect_under_scale_and_shift():
    gt = random_depth()
    pred = 0.5 * gt - 0.3
    assert evaluate_depth(pred, gt, align="scale&shift").metrics["abs_rel"] == pytest.approx(0, abs=1e-6)
    assert evaluate_depth(pred, gt, align="scale").metrics["abs_rel"] > 0.01


def test_valid_pixels_come_from_ground_truth_only():
    gt = random_depth()
    gt[0, 0, :4] = 0  # invalid ground truth
    gt[1, 0, 0] = np.inf
    gt[2, 1, :2] = 20.0  # beyond max_depth
    pred = gt.copy()
    pred[0, 0, :4] = 123.0  # wrong where gt is invalid: must not count
    mask = np.ones_like(gt, dtype=bool)
    mask[2, 2, 0] = False
    m = evaluate_depth(pred, gt, align="none", max_depth=15.0, mask=mask).metrics
    assert m["valid_pixels"] == gt.size - 4 - 1 - 2 - 1
    assert m["abs_rel"] == pytest.approx(0, abs=1e-12)


def test_a_non_finite_prediction_on_a_valid_pixel_is_an_error_not_a_dropped_pixel():
    gt = random_depth()
    gt[0, 0, 0] = 0  # invalid ground truth: the prediction there does not matter
    pred = gt.copy()
    pred[0, 0, 0] = np.nan
    assert evaluate_depth(pred, gt, align="median").metrics["valid_pixels"] == gt.size - 1
    pred[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="not finite at 1 pixels where the ground truth is valid"):
        evaluate_depth(pred, gt, align="median")


def test_the_aligned_prediction_returned_is_the_one_scored():
    gt = random_depth()
    pred = gt * np.random.default_rng(1).uniform(1.5, 2.5, gt.shape)  # needs a scale, and is noisy
    gt[0, :2] = 0
    scored = evaluate_depth(pred, gt, align="scale", post_clip_max=8.0)
    assert scored.valid.sum() == scored.metrics["valid_pixels"] == gt.size - 2 * gt.shape[2]
    assert scored.aligned.max() == 8.0  # post-clipped
    p, g = scored.aligned[scored.valid], gt[scored.valid]
    assert scored.metrics["abs_rel"] == pytest.approx(np.mean(np.abs(p - g) / g), rel=1e-12)


def test_a_zero_prediction_costs_a_finite_log_error_as_in_the_reference():
    # The reference clamps the prediction to 1e-5 for the log and ratio metrics only.
    m = evaluate_depth(np.zeros((1, 1, 1)), np.ones((1, 1, 1)), align="none").metrics
    assert m["abs_rel"] == 1.0 and m["rmse"] == 1.0 and m["log_rmse"] == pytest.approx(-math.log(1e-5))


def test_l1_scale_is_the_reference_irls():
    # L1 optimum: the median of g / p = (5, 5, 10) weighted by p = (1, 2, 10), i.e. 10; from mean(g) / mean(p) = 8.85
    # the reference's ten iterations with weights 1 / (|r| + 1e-8) end within 1e-5 of it (9.999991). Weights
    # capped at 1e3 (a clamp of |r| at 1e-3 inside the loop) would stop at 9.99997.
    pred = torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64)
    gt = torch.tensor([5.0, 10.0, 100.0], dtype=torch.float64)
    assert float(l1_scale(pred, gt)) == pytest.approx(9.999991, abs=1e-6)
    # The scale found is clamped to >= 1e-3 once, after the iterations.
    assert float(l1_scale(torch.tensor([1e6], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))) == 1e-3


def test_post_clip_caps_the_prediction():
    gt = np.full((1, 2, 2), 50.0)
    m = evaluate_depth(np.full((1, 2, 2), 100.0), gt, align="none", post_clip_max=70.0).metrics
    assert m["abs_rel"] == pytest.approx(0.4)


def test_depth_rejects_bad_input():
    with pytest.raises(ValueError, match="must both be"):
        evaluate_depth(np.ones((2, 3, 4)), np.ones((2, 3, 5)), align="none")
    with pytest.raises(ValueError, match="no valid"):
        evaluate_depth(np.ones((1, 2, 2)), np.zeros((1, 2, 2)), align="none")
    with pytest.raises(ValueError, match="unknown depth alignment"):
        evaluate_depth(np.ones((1, 2, 2)), np.ones((1, 2, 2)), align="affine")


def random_w2c(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    rot = quat_to_mat(torch.randn(n, 4, generator=gen, dtype=torch.float64))
    trans = torch.randn(n, 3, 1, generator=gen, dtype=torch.float64)
    return torch.cat((rot, trans), dim=-1)


def test_relative_pose_errors_are_gauge_invariant():
    gt = homogeneous_pose(random_w2c(5))
    gauge = homogeneous_pose(random_w2c(1, seed=3))[0]
    gauge[:3, 3] *= 2
    pred = gt @ gauge  # the same cameras in another world frame
    rra, rta = relative_pose_errors(pred, gt)
    assert rra.shape == (10,) and np.allclose(rra, 0, atol=1e-5) and np.allclose(rta, 0, atol=1e-5)
    assert pose_auc(rra, rta) == pytest.approx(1.0)


def test_relative_rotation_error_by_hand():
    gt = homogeneous_pose(torch.eye(3, 4, dtype=torch.float64).expand(2, 3, 4).clone())
    gt[1, 0, 3] = 1.0  # second camera translated along x
    pred = gt.clone()
    angle = math.radians(10)
    pred[1, :3, :3] = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    rra, rta = relative_pose_errors(pred, gt)
    assert rra[0] == pytest.approx(10.0) and rta[0] == pytest.approx(10.0, abs=1e-6)


def test_relative_pose_is_camera_i_from_camera_j_as_the_reference_code():
    # Camera 0 at the world origin; the true camera 1 is turned 90 degrees about y and has t = (1, 0, 0), the
    # predicted one has the same t but no rotation. E_i E_j^-1 (StreamVGGT's and VGGT's test_co3d.py) compares
    # camera 1's centre seen from camera 0: -R^T t = (0, 0, -1) against (-1, 0, 0), 90 degrees apart. (E_i^-1 E_j
    # would compare the two t = (1, 0, 0) and find no translation error.)
    gt = homogeneous_pose(torch.eye(3, 4, dtype=torch.float64).expand(2, 3, 4).clone())
    gt[1, 0, 3] = 1.0
    pred = gt.clone()
    gt[1, :3, :3] = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    rra, rta = relative_pose_errors(pred, gt)
    assert rra[0] == pytest.approx(90.0) and rta[0] == pytest.approx(90.0)


def test_pose_auc_by_hand():
    assert pose_auc(np.zeros(4), np.zeros(4)) == pytest.approx(1.0)
    assert pose_auc(np.full(4, 45.0), np.zeros(4)) == pytest.approx(0.0)
    assert pose_auc(np.array([15.0]), np.array([0.0])) == pytest.approx(0.5)
    assert pose_auc(np.array([0.0, 40.0]), np.array([0.0, 0.0])) == pytest.approx(0.5)


def test_trajectory_errors_match_evo():
    from evo.core import metrics, trajectory

    gen = np.random.default_rng(0)
    gt_c2w = homogeneous_pose(invert_pose(random_w2c(12, seed=1))).numpy()
    sim = homogeneous_pose(random_w2c(1, seed=5))[0].numpy()
    pred = np.einsum("ij,njk->nik", sim, gt_c2w)
    pred[:, :3, 3] = 0.4 * pred[:, :3, 3] + gen.normal(scale=0.02, size=(12, 3))
    pred[:, :3, :3] = pred[:, :3, :3] @ Rotation.from_rotvec(gen.normal(scale=0.03, size=(12, 3))).as_matrix()
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
    # MonST3R / CUT3R (dust3r/utils/vo_eval.py) report evo's rmse for all three.
    rmse, mean = (rpe_r.get_statistic(s) for s in (metrics.StatisticsType.rmse, metrics.StatisticsType.mean))
    assert rmse > 1.01 * mean > 0.1  # rotation noise of varying size: rmse and mean differ
    assert ours["rpe_rot_deg"] == pytest.approx(rmse, rel=1e-6)


def test_trajectory_of_a_scaled_copy_is_perfect_under_sim3():
    gt = homogeneous_pose(invert_pose(random_w2c(6)))
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

"""Metrics written out by hand from their definitions (numpy, scipy's rotations, evo), independent of
``streamvggt.evaluate.metrics``, for tests that check the numbers a command or protocol reports."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.spatial.transform import Rotation


def lower_median(values: np.ndarray) -> float:
    """The lower of the two middle values for an even count, as torch.median (the reference's median)."""
    return float(np.sort(np.ravel(values))[(np.size(values) - 1) // 2])


def weiszfeld_scale(pred: np.ndarray, gt: np.ndarray) -> float:
    """The reference's video-depth scale: mean ratio, ten reweighted least-squares steps, floored at 1e-3.

    Written with torch float64 sums in the reference's order of operations: once a residual nears 0 its weight
    (1 / (|r| + 1e-8)) dominates, so the iteration amplifies the last bit of a sum, and numpy's pairwise sums end
    on a different scale (0.1 % apart on the demo's depth)."""
    p = torch.from_numpy(np.ravel(pred).astype(np.float64))
    g = torch.from_numpy(np.ravel(gt).astype(np.float64))
    scale = g.mean() / p.mean()
    for _ in range(10):
        weights = 1.0 / ((scale * p - g).abs() + 1e-8)
        scale = (weights * p * g).sum() / (weights * p * p).sum()
    return max(float(scale), 1e-3)


def depth_errors(aligned: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Abs Rel, RMSE and δ < 1.25 of an aligned prediction on valid ground-truth pixels (1-D or any shape)."""
    p, g = np.ravel(aligned).astype(np.float64), np.ravel(gt).astype(np.float64)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "delta_1.25": float(np.mean(ratio < 1.25)),
        "valid_pixels": g.size,
    }


def pixel_weighted(rows: list[dict[str, float]], key: str) -> float:
    return sum(row[key] * row["valid_pixels"] for row in rows) / sum(row["valid_pixels"] for row in rows)


def pair_angles(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RRA and RTA in degrees over all pairs i < j of the relative poses E_i E_j^-1 (CO3D protocol)."""
    rra, rta = [], []
    for i, j in itertools.combinations(range(len(gt_w2c)), 2):
        (rot_p, t_p), (rot_g, t_g) = (_relative(e[i], e[j]) for e in (pred_w2c, gt_w2c))
        rra.append(np.degrees(Rotation.from_matrix(rot_p.T @ rot_g).magnitude()))
        with np.errstate(invalid="ignore"):  # a camera pair without translation has no direction: NaN
            cos = t_p @ t_g / (np.linalg.norm(t_p) * np.linalg.norm(t_g))
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        rta.append(min(angle, 180 - angle))
    return np.array(rra), np.array(rta)


def _relative(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rotation = first[:3, :3] @ second[:3, :3].T
    return rotation, first[:3, 3] - rotation @ second[:3, 3]


def auc(rra: np.ndarray, rta: np.ndarray, max_threshold: int = 30) -> float:
    """Mean over thresholds t = 1..max_threshold degrees of the share of pairs with max(RRA, RTA) < t."""
    error = np.maximum(rra, rta)
    return float(np.mean([(error < t).mean() for t in range(1, max_threshold + 1)]))


def evo_ate(pred_c2w: np.ndarray, gt_c2w: np.ndarray) -> float:
    """evo's APE rmse of the camera centres after a Sim(3) alignment (MonST3R's / CUT3R's ATE)."""
    from evo.core import metrics, trajectory

    ref = trajectory.PosePath3D(poses_se3=list(gt_c2w))
    est = trajectory.PosePath3D(poses_se3=list(pred_c2w))
    est.align(ref, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    return float(ape.get_statistic(metrics.StatisticsType.rmse))


def homogeneous(poses: np.ndarray) -> np.ndarray:
    """[N, 3, 4] or [N, 4, 4] poses as [N, 4, 4] float64."""
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3, :] = np.asarray(poses, dtype=np.float64)[:, :3, :]
    return out


def sim3_trajectory_errors(pred_c2w: np.ndarray, gt_c2w: np.ndarray) -> dict[str, float]:
    """ATE and consecutive-frame RPE (translation, rotation in degrees) as RMSEs after Umeyama's Sim(3) alignment
    of the camera centres, written out for trajectories evo refuses: with collinear true centres the rotation
    about their line is free, but every optimal alignment gives the same ATE, and RPE only sees the scale."""
    src, dst = pred_c2w[:, :3, 3], gt_c2w[:, :3, 3]
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    u, d, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / np.mean((src_c**2).sum(1))
    aligned = pred_c2w.copy()
    aligned[:, :3, :3] = rotation @ pred_c2w[:, :3, :3]
    aligned[:, :3, 3] = scale * src @ rotation.T + dst.mean(0) - scale * rotation @ src.mean(0)
    ate = np.sqrt(np.mean(((aligned[:, :3, 3] - dst) ** 2).sum(1)))
    errors = [
        np.linalg.inv(np.linalg.inv(gt_c2w[i]) @ gt_c2w[i + 1]) @ (np.linalg.inv(aligned[i]) @ aligned[i + 1])
        for i in range(len(gt_c2w) - 1)
    ]
    trans = np.sqrt(np.mean([(e[:3, 3] ** 2).sum() for e in errors]))
    rot = np.sqrt(np.mean([np.degrees(Rotation.from_matrix(e[:3, :3]).magnitude()) ** 2 for e in errors]))
    return {"ate": float(ate), "rpe_trans": float(trans), "rpe_rot_deg": float(rot)}


def cloud_errors(pred: np.ndarray, gt: np.ndarray, neighbours: int = 30) -> dict[str, float]:
    """Accuracy and completeness (nearest-neighbour distances, mean and median) and normal consistency |n . n'| of
    two clouds [N, 3] and [M, 3]; normals from the smallest principal axis of each point's ``neighbours`` nearest
    points (Open3D's estimate_normals)."""
    from scipy.spatial import cKDTree

    def normals(points: np.ndarray) -> np.ndarray:
        _, index = cKDTree(points).query(points, k=min(neighbours, len(points)))
        return np.stack([np.linalg.svd(points[i] - points[i].mean(0))[2][-1] for i in index])

    acc, to_gt = cKDTree(gt).query(pred)
    comp, to_pred = cKDTree(pred).query(gt)
    n_pred, n_gt = normals(pred), normals(gt)
    nc1 = np.abs((n_pred * n_gt[to_gt]).sum(1))
    nc2 = np.abs((n_gt * n_pred[to_pred]).sum(1))
    return {
        "acc": float(acc.mean()),
        "acc_med": float(np.median(acc)),
        "comp": float(comp.mean()),
        "comp_med": float(np.median(comp)),
        "nc1": float(nc1.mean()),
        "nc2": float(nc2.mean()),
        "nc": float((nc1.mean() + nc2.mean()) / 2),
    }

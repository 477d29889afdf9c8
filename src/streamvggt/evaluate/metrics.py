"""Metric functions of the field's protocols: depth, camera pose, trajectory and reconstruction.

Inputs may be numpy arrays or torch tensors; everything is computed in float64 and returned as Python floats.
Camera conventions follow :mod:`streamvggt.geometry`: extrinsics are camera-from-world (w2c), OpenCV axes.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from streamvggt.geometry import invert_pose, umeyama

DEPTH_ALIGNMENTS = ("median", "scale", "scale&shift", "none")
_EPS = 1e-8


def _f64(x: np.ndarray | Tensor) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach().cpu()).to(torch.float64)


# ------------------------------------------------------------------------------------------------------- depth


def depth_metrics(
    pred: np.ndarray | Tensor,
    gt: np.ndarray | Tensor,
    align: str,
    max_depth: float | None = None,
    post_clip_max: float | None = None,
    mask: np.ndarray | Tensor | None = None,
) -> dict[str, float]:
    """Depth errors of ``pred`` against ``gt`` (both [N, H, W], one sequence of N frames).

    Valid pixels: gt > 0, finite, below ``max_depth`` when given, and inside ``mask`` when given; the mask is
    always taken from the ground truth, never from the prediction. ``align``: ``median`` (per-frame median
    ratio), ``scale`` (one L1 scale for the sequence, IRLS as the reference), ``scale&shift`` (one L1 scale and
    shift for the sequence), or ``none``. ``post_clip_max`` clips the aligned prediction (Sintel: 70).
    Returns abs_rel, sq_rel, rmse, log_rmse, delta_1.25, delta_1.25^2, delta_1.25^3 and valid_pixels.
    """
    pred, gt = _f64(pred), _f64(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred and gt must both be [N, H, W], got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if align not in DEPTH_ALIGNMENTS:
        raise ValueError(f"unknown depth alignment '{align}': choose one of {', '.join(DEPTH_ALIGNMENTS)}")
    valid = torch.isfinite(gt) & (gt > 0) & torch.isfinite(pred)
    if max_depth is not None:
        valid &= gt < max_depth
    if mask is not None:
        mask_t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask.cpu()).bool()
        if mask_t.shape != gt.shape:
            raise ValueError(f"mask must be [N, H, W] like gt, got {tuple(mask_t.shape)}")
        valid &= mask_t
    if not bool(valid.any()):
        raise ValueError("no valid ground-truth pixels (gt > 0, finite, below max_depth, inside the mask)")

    aligned = align_depth(pred, gt, valid, align)
    if post_clip_max is not None:
        aligned = aligned.clamp(max=post_clip_max)
    p, g = aligned[valid].clamp_min(_EPS), gt[valid]
    ratio = torch.maximum(p / g, g / p)
    return {
        "abs_rel": float(((p - g).abs() / g).mean()),
        "sq_rel": float(((p - g) ** 2 / g).mean()),
        "rmse": float(((p - g) ** 2).mean().sqrt()),
        "log_rmse": float(((p.log() - g.log()) ** 2).mean().sqrt()),
        "delta_1.25": float((ratio < 1.25).double().mean()),
        "delta_1.25^2": float((ratio < 1.25**2).double().mean()),
        "delta_1.25^3": float((ratio < 1.25**3).double().mean()),
        "valid_pixels": int(valid.sum()),
    }


def align_depth(pred: Tensor, gt: Tensor, valid: Tensor, align: str) -> Tensor:
    """``pred`` [N, H, W] aligned to ``gt`` as :func:`depth_metrics` does, fitted on the ``valid`` pixels (float64
    tensors); the protocols use it to draw the error maps that the metrics score."""
    if align == "none":
        return pred
    if align == "median":
        out = pred.clone()
        for i in range(pred.shape[0]):
            if valid[i].any():
                out[i] = pred[i] * gt[i][valid[i]].median() / pred[i][valid[i]].median().clamp_min(_EPS)
        return out
    p, g = pred[valid], gt[valid]
    if align == "scale":
        return pred * l1_scale(p, g)
    scale, shift = l1_scale_shift(p, g)
    return pred * scale + shift


def l1_scale(pred: Tensor, gt: Tensor, iterations: int = 10) -> Tensor:
    """argmin_s sum |s p - g| by iteratively reweighted least squares (Weiszfeld), from s = mean(g)/mean(p)."""
    scale = gt.mean() / pred.mean().clamp_min(_EPS)
    for _ in range(iterations):
        weights = 1.0 / (scale * pred - gt).abs().clamp_min(1e-3)
        scale = (weights * pred * gt).sum() / (weights * pred * pred).sum().clamp_min(_EPS)
    return scale


def l1_scale_shift(pred: Tensor, gt: Tensor, iterations: int = 50) -> tuple[Tensor, Tensor]:
    """argmin_{s,t} sum |s p + t - g| by IRLS, from the least-squares fit (deterministic, unlike Adam)."""
    design = torch.stack((pred, torch.ones_like(pred)), dim=-1)
    weights = torch.ones_like(pred)
    for _ in range(iterations):
        w_design = design * weights[:, None]
        solution = torch.linalg.solve(design.T @ w_design, w_design.T @ gt)
        weights = 1.0 / (design @ solution - gt).abs().clamp_min(1e-3)
    return solution[0], solution[1]


# -------------------------------------------------------------------------------------------------------- pose


def _as_4x4(pose: Tensor) -> Tensor:
    if pose.shape[-2:] == (4, 4):
        return pose
    if pose.shape[-2:] != (3, 4):
        raise ValueError(f"poses must be [N, 3, 4] or [N, 4, 4], got {tuple(pose.shape)}")
    bottom = torch.zeros((*pose.shape[:-2], 1, 4), dtype=pose.dtype)
    bottom[..., 0, 3] = 1
    return torch.cat((pose, bottom), dim=-2)


def _rotation_angle_deg(rot: Tensor) -> Tensor:
    cos = ((rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def relative_pose_errors(pred_w2c: np.ndarray | Tensor, gt_w2c: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (RRA) and translation-direction (RTA) errors in degrees over all frame pairs (CO3D protocol).

    For each pair i < j the relative pose E_i E_j^-1 is compared: RRA is the angle of the rotation between the
    predicted and true relative rotations; RTA the angle between the relative translations, as min(θ, 180 - θ)
    because the direction's sign is ambiguous up to scale conventions. Inputs [N, 3, 4] or [N, 4, 4], N >= 2.
    """
    pred, gt = _as_4x4(_f64(pred_w2c)), _as_4x4(_f64(gt_w2c))
    if pred.shape != gt.shape or pred.shape[0] < 2:
        raise ValueError(f"need matching poses for at least 2 frames, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    pairs = list(itertools.combinations(range(pred.shape[0]), 2))
    i, j = (torch.tensor(idx) for idx in zip(*pairs, strict=True))
    rel_pred = pred[i] @ invert_pose(pred[j])
    rel_gt = gt[i] @ invert_pose(gt[j])
    rra = _rotation_angle_deg(rel_pred[:, :3, :3].transpose(-1, -2) @ rel_gt[:, :3, :3])
    t_pred, t_gt = rel_pred[:, :3, 3], rel_gt[:, :3, 3]
    cos = (t_pred * t_gt).sum(-1) / (t_pred.norm(dim=-1) * t_gt.norm(dim=-1)).clamp_min(_EPS)
    angle = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    rta = torch.minimum(angle, 180 - angle)
    return rra.numpy(), rta.numpy()


def pose_auc(rra_deg: np.ndarray | Tensor, rta_deg: np.ndarray | Tensor, max_threshold: int = 30) -> float:
    """Area under the accuracy curve of max(RRA, RTA) for thresholds 1..max_threshold degrees, in [0, 1]."""
    error = np.maximum(np.asarray(rra_deg, dtype=np.float64), np.asarray(rta_deg, dtype=np.float64))
    if error.size == 0:
        raise ValueError("no pose errors given")
    histogram, _ = np.histogram(error, bins=np.arange(max_threshold + 1))
    return float(np.mean(np.cumsum(histogram) / error.size))


def trajectory_errors(
    pred_c2w: np.ndarray | Tensor, gt_c2w: np.ndarray | Tensor, align: str = "sim3"
) -> dict[str, float]:
    """ATE (RMSE of camera centres after alignment) and RPE over consecutive frames, as evo computes them.

    Inputs are camera-to-world poses [N, 3, 4] or [N, 4, 4]. ``align``: ``sim3`` (Umeyama with scale, for
    scale-free predictions), ``se3`` or ``none``. RPE compares relative motions between frames i and i+1:
    ``rpe_trans`` is the RMSE of the translation error, ``rpe_rot_deg`` the mean rotation error in degrees.
    """
    pred, gt = _as_4x4(_f64(pred_c2w)), _as_4x4(_f64(gt_c2w))
    if pred.shape != gt.shape or pred.shape[0] < 3:
        raise ValueError(f"need matching trajectories of at least 3 poses, got {tuple(pred.shape)}, {tuple(gt.shape)}")
    if align not in ("sim3", "se3", "none"):
        raise ValueError(f"unknown trajectory alignment '{align}': choose sim3, se3 or none")
    if align != "none":
        scale, rot, trans = umeyama(pred[:, :3, 3], gt[:, :3, 3], with_scale=align == "sim3")
        aligned = pred.clone()
        aligned[:, :3, :3] = rot @ pred[:, :3, :3]
        aligned[:, :3, 3] = scale * pred[:, :3, 3] @ rot.T + trans
        pred = aligned
    ate = float(((pred[:, :3, 3] - gt[:, :3, 3]) ** 2).sum(-1).mean().sqrt())
    rel_pred = invert_pose(pred[:-1]) @ pred[1:]
    rel_gt = invert_pose(gt[:-1]) @ gt[1:]
    error = invert_pose(rel_gt) @ rel_pred
    rpe_trans = float((error[:, :3, 3] ** 2).sum(-1).mean().sqrt())
    rpe_rot = float(_rotation_angle_deg(error[:, :3, :3]).mean())
    return {"ate": ate, "rpe_trans": rpe_trans, "rpe_rot_deg": rpe_rot}


# ------------------------------------------------------------------------------------------------ reconstruction


def recon_metrics(
    pred_points: np.ndarray | Tensor,
    gt_points: np.ndarray | Tensor,
    pred_normals: np.ndarray | Tensor | None = None,
    gt_normals: np.ndarray | Tensor | None = None,
) -> dict[str, float]:
    """Accuracy (pred -> GT nearest-neighbour distance), completeness (GT -> pred), and with normals the normal
    consistency |n . n'| at those neighbour pairs (nc1 pred->GT, nc2 GT->pred, nc their mean); means and medians.

    Points [N, 3] and [M, 3]; nearest neighbours by KD-tree (scipy).
    """
    from scipy.spatial import cKDTree

    pred, gt = _f64(pred_points).numpy(), _f64(gt_points).numpy()
    for name, pts in (("pred_points", pred), ("gt_points", gt)):
        if pts.ndim != 2 or pts.shape[-1] != 3 or pts.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty [N, 3] array, got {pts.shape}")
    if (pred_normals is None) != (gt_normals is None):
        raise ValueError("give normals for both clouds or for neither")
    dist_acc, idx_acc = cKDTree(gt).query(pred)
    dist_comp, idx_comp = cKDTree(pred).query(gt)
    out = {
        "acc": float(dist_acc.mean()),
        "acc_med": float(np.median(dist_acc)),
        "comp": float(dist_comp.mean()),
        "comp_med": float(np.median(dist_comp)),
    }
    if pred_normals is not None:
        n_pred, n_gt = _f64(pred_normals).numpy(), _f64(gt_normals).numpy()
        if n_pred.shape != pred.shape or n_gt.shape != gt.shape:
            raise ValueError("normals must have the shapes of their points")
        nc1 = np.abs((n_pred * n_gt[idx_acc]).sum(-1))
        nc2 = np.abs((n_gt * n_pred[idx_comp]).sum(-1))
        out |= {
            "nc1": float(nc1.mean()),
            "nc1_med": float(np.median(nc1)),
            "nc2": float(nc2.mean()),
            "nc2_med": float(np.median(nc2)),
            "nc": float((nc1.mean() + nc2.mean()) / 2),
            "nc_med": float((np.median(nc1) + np.median(nc2)) / 2),
        }
    return out


__all__ = [
    "depth_metrics",
    "l1_scale",
    "l1_scale_shift",
    "pose_auc",
    "recon_metrics",
    "relative_pose_errors",
    "trajectory_errors",
]

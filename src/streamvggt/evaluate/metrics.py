"""Metric functions of the field's protocols: depth, camera pose, trajectory and reconstruction.

Inputs may be numpy arrays or torch tensors; everything is computed in float64 and returned as Python floats.
Camera conventions follow :mod:`streamvggt.geometry`: extrinsics are camera-from-world (w2c), OpenCV axes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamvggt.evaluate.options import DEPTH_ALIGNMENTS, DEPTH_FITS
from streamvggt.geometry import homogeneous_pose, invert_pose, umeyama

# The reference's ``absolute_value_scaling2`` (src/eval/video_depth/tools.py) as its video-depth eval calls it.
REFERENCE_FIT_LR = 1e-4
REFERENCE_FIT_MAX_STEPS = 1000
REFERENCE_FIT_TOLERANCE = 1e-6  # stop once the summed L1 loss changes by less than this between steps
_EPS = 1e-8
# The reference clamps the aligned prediction to this before the log and ratio metrics (not before Abs Rel, Sq Rel
# and RMSE), so a prediction of 0 costs a large but finite log error.
_LOG_FLOOR = 1e-5


def as_f64(x: np.ndarray | Tensor) -> Tensor:
    """``x`` as a float64 CPU tensor (numpy arrays and tensors alike)."""
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach().cpu()).to(torch.float64)


# ------------------------------------------------------------------------------------------------------- depth


@dataclass(frozen=True)
class DepthEvaluation:
    """What :func:`evaluate_depth` scored: the metrics, and the prediction and pixels they were computed on."""

    metrics: dict[str, float]
    aligned: np.ndarray  # [N, H, W] float64: the prediction after alignment and post-clipping
    valid: np.ndarray  # [N, H, W] bool: the scored pixels (from the ground truth alone)


def evaluate_depth(
    pred: np.ndarray | Tensor,
    gt: np.ndarray | Tensor,
    align: str,
    max_depth: float | None = None,
    post_clip_max: float | None = None,
    mask: np.ndarray | Tensor | None = None,
    fit: str = "exact",
) -> DepthEvaluation:
    """Depth errors of ``pred`` against ``gt`` (both [N, H, W], one sequence of N frames, metres).

    Valid pixels come from the ground truth alone: gt > 0, finite, below ``max_depth`` when given, and inside
    ``mask`` when given. A non-finite prediction on a valid pixel raises ValueError: dropping those pixels would
    score the model on the pixels it chose (the "GT filtered by the prediction" bug of the reference's
    reconstruction protocol), and a NaN depth is a model failure to report, not to hide. ``align``: ``median``
    (per-frame median ratio), ``scale`` (one L1 scale for the sequence, the reference's IRLS), ``scale&shift``
    (one L1 scale and shift for the sequence), or ``none``. ``fit`` chooses the ``scale&shift`` solver:
    ``exact`` (the L1 optimum, :func:`l1_scale_shift`) or ``reference`` (the reference's Adam loop,
    :func:`reference_scale_shift`, which reproduces its published tables). ``post_clip_max`` clips the aligned
    prediction (Sintel: 70). Metrics: abs_rel, sq_rel, rmse, log_rmse, delta_1.25, delta_1.25^2, delta_1.25^3,
    valid_pixels.
    """
    pred, gt = as_f64(pred), as_f64(gt)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"pred and gt must both be [N, H, W], got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if align not in DEPTH_ALIGNMENTS:
        raise ValueError(f"unknown depth alignment '{align}': choose one of {', '.join(DEPTH_ALIGNMENTS)}")
    if fit not in DEPTH_FITS:
        raise ValueError(f"unknown scale&shift fit '{fit}': choose one of {', '.join(DEPTH_FITS)}")
    valid = depth_validity(gt, max_depth)
    if mask is not None:
        mask_t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask.cpu()).bool()
        if mask_t.shape != gt.shape:
            raise ValueError(f"mask must be [N, H, W] like gt, got {tuple(mask_t.shape)}")
        valid &= mask_t
    if not bool(valid.any()):
        raise ValueError("no valid ground-truth pixels (gt > 0, finite, below max_depth, inside the mask)")
    bad = int((valid & ~torch.isfinite(pred)).sum())
    if bad:
        raise ValueError(f"the predicted depth is not finite at {bad} pixels where the ground truth is valid")

    aligned = align_depth(pred, gt, valid, align, fit)
    if post_clip_max is not None:
        aligned = aligned.clamp(max=post_clip_max)
    p, g = aligned[valid], gt[valid]
    p_log = p.clamp_min(_LOG_FLOOR)
    ratio = torch.maximum(p_log / g, g / p_log)
    metrics = {
        "abs_rel": float(((p - g).abs() / g).mean()),
        "sq_rel": float(((p - g) ** 2 / g).mean()),
        "rmse": float(((p - g) ** 2).mean().sqrt()),
        "log_rmse": float(((p_log.log() - g.log()) ** 2).mean().sqrt()),
        "delta_1.25": float((ratio < 1.25).double().mean()),
        "delta_1.25^2": float((ratio < 1.25**2).double().mean()),
        "delta_1.25^3": float((ratio < 1.25**3).double().mean()),
        "valid_pixels": int(valid.sum()),
    }
    return DepthEvaluation(metrics, aligned.numpy(), valid.numpy())


def depth_validity(gt: Tensor, max_depth: float | None = None) -> Tensor:
    """The ground truth's valid pixels (same shape, bool): finite, > 0 and below ``max_depth`` when given."""
    valid = torch.isfinite(gt) & (gt > 0)
    return valid & (gt < max_depth) if max_depth is not None else valid


def align_depth(pred: Tensor, gt: Tensor, valid: Tensor, align: str, fit: str = "exact") -> Tensor:
    """``pred`` [N, H, W] aligned to ``gt`` as :func:`evaluate_depth` does, fitted on the ``valid`` pixels (float64
    tensors); ``fit`` picks the ``scale&shift`` solver (see :data:`DEPTH_FITS`)."""
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
    scale, shift = reference_scale_shift(p, g) if fit == "reference" else l1_scale_shift(p, g)
    return pred * scale + shift


def l1_scale(pred: Tensor, gt: Tensor, iterations: int = 10) -> Tensor:
    """argmin_s sum |s p - g| by iteratively reweighted least squares (Weiszfeld), as the reference's video-depth
    ``align_with_scale``: s starts at mean(g) / mean(p), each iteration weighs the pixels by 1 / (|s p - g| + 1e-8)
    and solves the weighted least squares; the final s (not each iterate) is clamped to >= 1e-3."""
    scale = gt.mean() / pred.mean().clamp_min(_EPS)
    for _ in range(iterations):
        weights = 1.0 / ((scale * pred - gt).abs() + _EPS)
        scale = (weights * pred * gt).sum() / (weights * pred * pred).sum().clamp_min(_EPS)
    return scale.clamp_min(1e-3)


def l1_scale_shift(pred: Tensor, gt: Tensor, iterations: int = 50) -> tuple[Tensor, Tensor]:
    """argmin_{s,t} sum |s p + t - g| (1-D float64 tensors; 0-d results), deterministic, unlike the reference's
    Adam.

    IRLS from the least-squares fit lands near the optimum but not on it (its weights are floored at 1e-3, so it
    solves a smoothed problem: about 1 % off in Sq Rel on a small sequence). The optimum is then polished on the
    scale alone: for a fixed s the best t is the median of g - s p, and the cost left, c(s) = min_t sum |s p + t -
    g|, is convex in s (a convex function minimised over t), so a golden-section search on c pins s down to about
    1e-12 of its size."""
    design = torch.stack((pred, torch.ones_like(pred)), dim=-1)
    weights = torch.ones_like(pred)
    for _ in range(iterations):
        w_design = design * weights[:, None]
        solution = torch.linalg.solve(design.T @ w_design, w_design.T @ gt)
        weights = 1.0 / (design @ solution - gt).abs().clamp_min(1e-3)
    scale = _minimise_convex(lambda s: _best_shift_cost(pred, gt, s), float(solution[0]))
    return torch.tensor(scale, dtype=pred.dtype), (gt - scale * pred).median()


def _best_shift_cost(pred: Tensor, gt: Tensor, scale: float) -> float:
    residual = gt - scale * pred
    return float((residual - residual.median()).abs().sum())


def _minimise_convex(cost: Callable[[float], float], start: float, relative_tolerance: float = 1e-12) -> float:
    """A minimiser of the convex ``cost`` near ``start``: the bracket grows (doubling) until the cost rises on
    both sides, then shrinks by golden sections."""
    width = max(abs(start), 1.0) * 1e-3
    low, high = start - width, start + width
    while cost(low) < cost(start):
        low, width = low - 2 * width, 2 * width
    width = max(abs(start), 1.0) * 1e-3
    while cost(high) < cost(start):
        high, width = high + 2 * width, 2 * width
    ratio = (5**0.5 - 1) / 2
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    cost_left, cost_right = cost(left), cost(right)
    while high - low > relative_tolerance * max(abs(start), 1.0):
        if cost_left <= cost_right:
            high, right, cost_right = right, left, cost_left
            left = high - ratio * (high - low)
            cost_left = cost(left)
        else:
            low, left, cost_left = left, right, cost_right
            right = low + ratio * (high - low)
            cost_right = cost(right)
    return (low + high) / 2


def reference_scale_shift(
    pred: Tensor,
    gt: Tensor,
    lr: float = REFERENCE_FIT_LR,
    max_steps: int = REFERENCE_FIT_MAX_STEPS,
    tolerance: float = REFERENCE_FIT_TOLERANCE,
) -> tuple[Tensor, Tensor]:
    """The scale and shift of the reference's video-depth ``scale&shift`` (``absolute_value_scaling2``): Adam
    (torch defaults besides ``lr``) on sum |s p + t - g| over all the given pixels of the sequence at once, from
    s = median(g) / median(p) (torch's lower median) and t = 0.

    Each step evaluates the loss, steps, then stops when the loss moved by less than ``tolerance`` since the
    previous step's loss, so the returned parameters are those after the last step. With lr 1e-4 Adam moves each
    parameter by about 1e-4 per step, so s and t travel at most about 0.1 in the 1,000 steps: far from the L1
    optimum when the prediction needs a large shift, which is what the published tables measured. ``pred`` and
    ``gt`` are 1-D float64 tensors (the valid pixels); returns 0-d tensors. Float64 throughout, where the reference
    ran in its inputs' dtype (float32 for Sintel).
    """
    scale = (gt.median() / pred.median().clamp_min(_EPS)).reshape(1)
    shift = torch.zeros(1, dtype=pred.dtype)
    optimizer = torch.optim.Adam([scale, shift], lr=lr)
    residual, sign = torch.empty_like(pred), torch.empty_like(pred)
    previous_loss = None
    for _ in range(max_steps):
        # The loss and its gradient (sign(r) · (p, 1), what autograd gives for |r|) in place rather than by
        # autograd: the fit makes up to 1,000 passes over every valid pixel (speed: benchmarks/README.md).
        torch.mul(pred, scale, out=residual).add_(shift).sub_(gt)
        torch.sign(residual, out=sign)
        loss = float(residual.abs_().sum())
        scale.grad, shift.grad = torch.dot(sign, pred).reshape(1), sign.sum().reshape(1)
        optimizer.step()
        if previous_loss is not None and abs(previous_loss - loss) < tolerance:
            break
        previous_loss = loss
    return scale[0], shift[0]


# -------------------------------------------------------------------------------------------------------- pose


def _rotation_angle_deg(rot: Tensor) -> Tensor:
    cos = ((rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def relative_pose_errors(pred_w2c: np.ndarray | Tensor, gt_w2c: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (RRA) and translation-direction (RTA) errors in degrees over all frame pairs (CO3D protocol).

    For each pair i < j the relative pose E_i E_j^-1 (camera i from camera j) is compared, as the reference code
    computes it (``se3_to_relative_pose_error`` in StreamVGGT's ``src/eval/pose_evaluation/test_co3d.py`` and
    VGGT's ``evaluation/test_co3d.py``: ``gt_se3[i1] @ closed_form_inverse_se3(gt_se3[i2])``): RRA is the angle of
    the rotation between the predicted and true relative rotations (the reference's quaternion formula gives the
    same angle); RTA the angle between the relative translations (camera j's centre seen from camera i), as
    min(θ, 180 - θ) because the direction's sign is ambiguous. Inputs [N, 3, 4] or [N, 4, 4], N >= 2.
    """
    pred, gt = homogeneous_pose(as_f64(pred_w2c)), homogeneous_pose(as_f64(gt_w2c))
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
    """ATE and RPE over consecutive frames, as MonST3R's / CUT3R's ``eval_metrics`` (``dust3r/utils/vo_eval.py``)
    reports them with evo: the ``rmse`` statistic of each, after aligning the prediction to the ground truth.

    Inputs are camera-to-world poses [N, 3, 4] or [N, 4, 4]. ``align``: ``sim3`` (Umeyama with scale, for
    scale-free predictions; the reference's ``align=True, correct_scale=True``), ``se3`` or ``none``. ``ate``: the
    RMSE of the camera centres' distances. RPE compares the relative motions between frames i and i+1 (evo's
    ``delta=1`` frame): ``rpe_trans`` is the RMSE of the translation error's length and ``rpe_rot_deg`` the RMSE of
    the rotation error's angle in degrees.
    """
    pred, gt = homogeneous_pose(as_f64(pred_c2w)), homogeneous_pose(as_f64(gt_c2w))
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
    rpe_rot = float((_rotation_angle_deg(error[:, :3, :3]) ** 2).mean().sqrt())
    return {"ate": ate, "rpe_trans": rpe_trans, "rpe_rot_deg": rpe_rot}


def aligned_camera_centres(pred_w2c: np.ndarray | Tensor, gt_w2c: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Camera centres [S, 3] of the prediction after the Sim(3) (Umeyama) alignment of the trajectory metrics, and
    of the ground truth, from camera-from-world poses [S, 3, 4] or [S, 4, 4]; unaligned below 3 cameras."""
    pred = invert_pose(homogeneous_pose(as_f64(pred_w2c)))[:, :3, 3]
    gt = invert_pose(homogeneous_pose(as_f64(gt_w2c)))[:, :3, 3]
    if len(pred) < 3:
        return pred.numpy(), gt.numpy()
    scale, rot, trans = umeyama(pred, gt)
    return (scale * pred @ rot.T + trans).numpy(), gt.numpy()


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

    pred, gt = as_f64(pred_points).numpy(), as_f64(gt_points).numpy()
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
        n_pred, n_gt = as_f64(pred_normals).numpy(), as_f64(gt_normals).numpy()
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
    "DEPTH_FITS",
    "DepthEvaluation",
    "aligned_camera_centres",
    "as_f64",
    "depth_validity",
    "evaluate_depth",
    "l1_scale",
    "l1_scale_shift",
    "pose_auc",
    "recon_metrics",
    "reference_scale_shift",
    "relative_pose_errors",
    "trajectory_errors",
]

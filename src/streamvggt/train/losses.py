"""Loss terms, each a plain function of tensors (the criteria in ``criteria.py`` combine them).

Where these differ from the reference's ``DistillLoss`` (``src/dust3r/losses.py``), the docstring says so and
why; the differences fix the defects listed in SPEC section 7 (item 10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-6


def huber(pred: Tensor, target: Tensor, delta: float) -> Tensor:
    """Mean of ``0.5 e^2 / delta`` where |e| <= delta, else ``|e| - 0.5 delta`` (the reference's Huber: the usual
    one divided by delta, i.e. smooth L1 with beta = delta)."""
    return F.smooth_l1_loss(pred, target, beta=delta)


def align_quaternion_sign(pred: Tensor, target: Tensor) -> Tensor:
    """``target`` quaternions [..., 4] with the sign (q and -q are one rotation) closest to ``pred``.

    Differs from the reference, which compares raw quaternions: a prediction near -q would be pushed through
    zero to reach q. The sign is not differentiable and is detached.
    """
    sign = torch.where((pred * target).sum(-1, keepdim=True) < 0, -1.0, 1.0).detach()
    return target * sign


def camera_loss(
    pred_iterations: Tensor,
    target: Tensor,
    delta: float = 0.1,
    components: Sequence[float] = (1.0, 1.0, 0.5),
    gamma: float | None = None,
) -> Tensor:
    """Huber loss between pose encodings, per component group.

    pred_iterations: [I, B, S, 9], the camera head's estimate after each refinement iteration.
    target: [B, S, 9]. components: weights of translation [:3], quaternion [3:7] and field of view [7:].
    gamma: None compares only the last iteration (the reference); otherwise iteration i gets gamma^(I-1-i),
    normalised to sum to 1 (VGGT's deep supervision of the refinement).
    """
    count = pred_iterations.shape[0]
    if gamma is None:
        weights = [0.0] * (count - 1) + [1.0]
    else:
        raw = [gamma ** (count - 1 - i) for i in range(count)]
        weights = [w / sum(raw) for w in raw]
    w_t, w_q, w_f = components
    total = pred_iterations.new_zeros(())
    for pred, weight in zip(pred_iterations, weights, strict=True):
        if weight == 0:
            continue
        quaternion = align_quaternion_sign(pred[..., 3:7], target[..., 3:7])
        term = (
            w_t * huber(pred[..., :3], target[..., :3], delta)
            + w_q * huber(pred[..., 3:7], quaternion, delta)
            + w_f * huber(pred[..., 7:], target[..., 7:], delta)
        )
        total = total + weight * term
    return total


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` (same shape) holds; 0 (still differentiable) when nothing does."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def confidence_weighted_l1(pred: Tensor, target: Tensor, conf: Tensor, mask: Tensor, alpha: float) -> Tensor:
    """``mean(conf * |pred - target|) - alpha * mean(log conf)`` over valid pixels (and channels).

    pred, target: [..., C]; conf, mask: [...]. The confidence learns where the regression is reliable; the log
    term stops it from shrinking everywhere.
    """
    error = (pred - target).abs().mean(-1)
    conf = conf.clamp(min=_EPS)
    return masked_mean(conf * error, mask) - alpha * masked_mean(torch.log(conf), mask)


def gradient_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """L1 between forward differences of ``pred`` and ``target`` [N, H, W] along x and y, averaged over pixel
    pairs that are both valid, then over the two directions.

    Differs from the reference, which multiplies by the mask but averages over every pair (diluting the loss
    by the invalid fraction) and trims both directions to [H-1, W-1].
    """
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    mask_x = mask[..., :, 1:] & mask[..., :, :-1]
    mask_y = mask[..., 1:, :] & mask[..., :-1, :]
    return 0.5 * (masked_mean(dx.abs(), mask_x) + masked_mean(dy.abs(), mask_y))


def point_normals(points: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Surface normals of a point map from its four neighbour pairs.

    points: [N, H, W, 3]; mask: [N, H, W]. Returns unit normals [N, H-2, W-2, 4, 3] (up x left, left x down,
    down x right, right x up around each interior pixel) and their validity [N, H-2, W-2, 4]: all three points
    valid. Border pixels have no normals, where the reference zero-pads and so builds normals from fake points.
    """
    centre = points[:, 1:-1, 1:-1]
    up, down = points[:, :-2, 1:-1] - centre, points[:, 2:, 1:-1] - centre
    left, right = points[:, 1:-1, :-2] - centre, points[:, 1:-1, 2:] - centre
    pairs = ((up, left), (left, down), (down, right), (right, up))
    normals = torch.stack([torch.linalg.cross(a, b, dim=-1) for a, b in pairs], dim=-2)
    m_c, m_up, m_down = mask[:, 1:-1, 1:-1], mask[:, :-2, 1:-1], mask[:, 2:, 1:-1]
    m_left, m_right = mask[:, 1:-1, :-2], mask[:, 1:-1, 2:]
    valid = torch.stack(
        [m_c & m_up & m_left, m_c & m_left & m_down, m_c & m_down & m_right, m_c & m_right & m_up], dim=-1
    )
    return F.normalize(normals, dim=-1, eps=_EPS), valid


def normal_loss(pred: Tensor, target: Tensor, mask: Tensor, scales: int = 3) -> Tensor:
    """``1 - cos`` between normals of ``pred`` and ``target`` point maps [N, H, W, 3], at strides 1, 2, 4, ...

    Averaged over normals whose three points are valid and whose target normal is not degenerate (the reference
    computes the validity but ignores it), then over the scales that still have interior pixels.
    """
    terms = []
    for scale in range(scales):
        step = 2**scale
        p, t, m = pred[:, ::step, ::step], target[:, ::step, ::step], mask[:, ::step, ::step]
        if p.shape[1] < 3 or p.shape[2] < 3:
            break
        n_pred, valid = point_normals(p, m)
        n_target, _ = point_normals(t, m)
        valid = valid & (n_target.norm(dim=-1) > 0.5)  # unit length unless the cross product vanished
        terms.append(masked_mean(1 - (n_pred * n_target).sum(-1), valid))
    return torch.stack(terms).mean() if terms else pred.sum() * 0


def mean_norm(values: Tensor, mask: Tensor) -> Tensor:
    """Per sample: mean Euclidean norm of values [B, ..., C] over valid mask [B, ...] entries -> [B].

    A sample without valid entries uses all of them, so that its scale stays defined.
    """
    batch = values.shape[0]
    norms = values.norm(dim=-1).reshape(batch, -1)
    flat = mask.reshape(batch, -1)
    flat = flat | ~flat.any(dim=1, keepdim=True)
    return ((norms * flat).sum(1) / flat.sum(1)).clamp(min=_EPS)


def fit_scale_shift(pred: Tensor, target: Tensor, mask: Tensor, min_scale: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Least-squares ``s * pred + t ~ target`` per sample over valid entries: scalar s, per-channel t.

    pred, target: [B, M, C]; mask: [B, M]. Returns scale [B] and shift [B, C], detached.
    Differs from the reference, whose fit runs over the whole batch and every pixel (valid or not), keeps its
    gradient, and can return a negative scale that mirrors the prediction: here the fit is per sample, masked,
    detached (the loss moves the prediction, not the fit) and the scale is at least ``min_scale``.
    """
    with torch.no_grad():
        weight = mask.to(pred.dtype)[..., None]
        weight = torch.where(weight.sum(1, keepdim=True) > 0, weight, torch.ones_like(weight))
        count = weight.sum(1)  # [B, 1]
        mean_p = (pred * weight).sum(1) / count
        mean_t = (target * weight).sum(1) / count
        centred_p = (pred - mean_p[:, None]) * weight
        centred_t = target - mean_t[:, None]
        numerator = (centred_p * centred_t).sum((1, 2))
        denominator = (centred_p * centred_p).sum((1, 2)).clamp(min=_EPS)
        scale = (numerator / denominator).clamp(min=min_scale)
        shift = mean_t - scale[:, None] * mean_p
    return scale, shift


def track_loss(
    pred_tracks: Tensor,
    target_tracks: Tensor,
    pred_visibility: Tensor,
    target_visibility: Tensor,
    conf: Tensor | None,
    alpha: float = 0.2,
) -> Tensor:
    """Tracks: ``mean(conf * |dy|) - alpha * mean(log conf) + BCE(pred_vis, target_vis)``.

    pred_tracks, target_tracks: [B, S, N, 2] pixels; visibilities: [B, S, N] probabilities; conf: [B, S, N] in
    (0, 1] or None (weight 1). Differs from the reference in two places: the model's visibility is already a
    probability, so the cross-entropy takes probabilities (the reference applies BCE-with-logits to it, a second
    sigmoid); and the confidence has the same -log regulariser as the depth terms (the reference defines the
    weight alpha = 0.2 but never uses it, so conf -> 0 minimises its loss).
    """
    distance = (pred_tracks - target_tracks).norm(dim=-1)
    if conf is None:
        position = distance.mean()
    else:
        conf = conf.clamp(min=_EPS)
        position = (conf * distance).mean() - alpha * torch.log(conf).mean()
    # Written out rather than F.binary_cross_entropy, which raises on NaN: a diverged run must reach the loop's
    # non-finite check, which names the step.
    p, t = pred_visibility.clamp(_EPS, 1 - _EPS), target_visibility.clamp(0, 1)
    visibility = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    return position + visibility

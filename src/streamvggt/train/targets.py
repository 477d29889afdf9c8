"""Training targets built from a batch: ground-truth geometry in the model's conventions, query points, tracks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamvggt.geometry import extri_intri_to_pose_encoding, unproject_depth

NORMALIZATIONS = ("clip", "first_view")


@dataclass
class GroundTruth:
    """Targets of a batch at a common scale: distances divided by ``scale`` so the mean point distance is 1.

    pose_encoding [B, S, 9]; depth [B, S, H, W]; points [B, S, H, W, 3] in the first camera's frame;
    valid [B, S, H, W]; scale [B] (metres, or the dataset's units, per unit).
    """

    pose_encoding: Tensor
    depth: Tensor
    points: Tensor
    valid: Tensor
    scale: Tensor


def ground_truth(batch: dict, normalization: str = "clip") -> GroundTruth:
    """The batch's depth, intrinsics and extrinsics (camera-from-world, world = first view) as targets.

    normalization: the views whose valid points set the scale. ``clip``: all (VGGT's convention; the model sees
    every frame). ``first_view``: only view 0, which is all a causal model has seen when it predicts frame 0, so
    the scale never depends on the future; a sample whose first view has no valid depth falls back to ``clip``.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got '{normalization}'")
    depth, intrinsics, extrinsics = batch["depth"].float(), batch["intrinsics"].float(), batch["extrinsics"].float()
    valid = batch["valid_mask"]
    points = unproject_depth(depth, extrinsics, intrinsics)  # [B, S, H, W, 3] in the first camera's frame
    distance = points.norm(dim=-1)
    batch_size = depth.shape[0]
    clip_mask = valid.reshape(batch_size, -1)
    scale = _masked_mean(distance.reshape(batch_size, -1), clip_mask)
    if normalization == "first_view":
        first_mask = valid[:, 0].reshape(batch_size, -1)
        first = _masked_mean(distance[:, 0].reshape(batch_size, -1), first_mask)
        scale = torch.where(first_mask.any(1), first, scale)
    scale = torch.where(clip_mask.any(1), scale, torch.ones_like(scale)).clamp(min=1e-6)
    scaled = extrinsics.clone()
    scaled[..., :3, 3] = extrinsics[..., :3, 3] / scale[:, None, None]
    size = (depth.shape[-2], depth.shape[-1])
    return GroundTruth(
        pose_encoding=extri_intri_to_pose_encoding(scaled, intrinsics, size),
        depth=depth / scale[:, None, None, None],
        points=points / scale[:, None, None, None, None],
        valid=valid,
        scale=scale,
    )


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1)


def sample_query_points(valid: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` pixel centres (x, y) per sample drawn uniformly from the valid pixels of valid [B, H, W].

    Without replacement when there are enough valid pixels. A sample with no valid pixel draws from all pixels
    (the reference returns all-zero points then). ``generator`` is a CPU generator: the draw is reproducible.
    Returns [B, count, 2] float on ``valid``'s device.
    """
    batch, height, width = valid.shape
    flat = valid.reshape(batch, -1).cpu()
    out = torch.empty(batch, count, dtype=torch.long)
    for b in range(batch):
        candidates = flat[b].nonzero().squeeze(1)
        if len(candidates) == 0:
            candidates = torch.arange(height * width)
        if len(candidates) >= count:
            chosen = torch.randperm(len(candidates), generator=generator)[:count]
        else:
            chosen = torch.randint(len(candidates), (count,), generator=generator)
        out[b] = candidates[chosen]
    points = torch.stack((out % width, out // width), dim=-1).float()
    return points.to(valid.device)


def track_targets(
    gt: GroundTruth, intrinsics: Tensor, extrinsics: Tensor, queries: Tensor, tolerance: float = 0.05
) -> tuple[Tensor, Tensor]:
    """Where the scene points under ``queries`` (pixels of view 0) appear in every view of a rigid scene.

    intrinsics [B, S, 3, 3]; extrinsics [B, S, 4, 4] (camera-from-world, world = view 0, unscaled);
    queries [B, N, 2] at pixel centres. Returns tracks [B, S, N, 2] (pixels, also outside the image) and
    visibility [B, S, N] in {0, 1}: in front of the camera, inside the image, and not occluded (the view's own
    depth at the nearest pixel agrees with the point's depth within ``tolerance``, relatively).
    """
    batch, views, height, width = gt.depth.shape
    cols = queries[..., 0].round().long().clamp(0, width - 1)
    rows = queries[..., 1].round().long().clamp(0, height - 1)
    index = torch.arange(batch, device=queries.device)[:, None]
    world = gt.points[index, 0, rows, cols] * gt.scale[:, None, None]  # [B, N, 3], unscaled
    rotation, translation = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    cam = torch.einsum("bsij,bnj->bsni", rotation, world) + translation[:, :, None]  # [B, S, N, 3]
    z = cam[..., 2]
    safe_z = torch.where(z.abs() > 1e-6, z, torch.full_like(z, 1e-6))
    fx, fy = intrinsics[..., 0, 0, None], intrinsics[..., 1, 1, None]
    cx, cy = intrinsics[..., 0, 2, None], intrinsics[..., 1, 2, None]
    tracks = torch.stack((fx * cam[..., 0] / safe_z + cx, fy * cam[..., 1] / safe_z + cy), dim=-1)
    col = tracks[..., 0].round().long()
    row = tracks[..., 1].round().long()
    inside = (z > 1e-6) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row = col.clamp(0, width - 1), row.clamp(0, height - 1)
    b_index = torch.arange(batch, device=queries.device)[:, None, None]
    s_index = torch.arange(views, device=queries.device)[None, :, None]
    seen_depth = gt.depth[b_index, s_index, row, col] * gt.scale[:, None, None]
    seen_valid = gt.valid[b_index, s_index, row, col]
    unoccluded = seen_valid & ((seen_depth - z).abs() <= tolerance * z.abs())
    return tracks, (inside & unoccluded).float()

"""The two training objectives: distillation from a full-attention teacher, and ground-truth supervision.

Both return ``(total, terms)``: the scalar to minimise and the weighted terms (which sum to it) for logging.
Model outputs follow ``StreamVGGT.forward``: pose_enc_iters [I, B, S, 9], depth [B, S, H, W, 1], depth_conf
[B, S, H, W], world_points [B, S, H, W, 3], world_points_conf, and with queries track [B, S, N, 2], track_vis,
track_conf [B, S, N].
"""

from __future__ import annotations

import torch
from torch import Tensor

from streamvggt.train.config import LossSection
from streamvggt.train.losses import (
    camera_loss,
    confidence_weighted_l1,
    fit_scale_shift,
    gradient_loss,
    mean_norm,
    normal_loss,
    track_loss,
)
from streamvggt.train.targets import ground_truth, track_targets


class Criterion:
    """Shared weighting; subclasses compute the unweighted terms."""

    def __init__(self, section: LossSection) -> None:
        self.section = section
        self.weights = {
            "camera": section.camera,
            "depth": section.depth,
            "points": section.points,
            "track": section.track,
        }

    @property
    def uses_tracks(self) -> bool:
        return self.section.query_points > 0 and self.section.track > 0

    def combine(self, terms: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        weighted = {name: self.weights[name] * value for name, value in terms.items()}
        return torch.stack(list(weighted.values())).sum(), weighted

    def camera(self, pred: dict, target: Tensor) -> Tensor:
        s = self.section
        return camera_loss(pred["pose_enc_iters"], target, s.huber_delta, s.camera_components, s.iteration_gamma)


def _valid_or_all(mask: Tensor) -> Tensor:
    """The valid mask [B, S, H, W], with all pixels of a sample that has none (as the reference does)."""
    empty = ~mask.flatten(1).any(1)
    return mask | empty[:, None, None, None]


class DistillationLoss(Criterion):
    """Match the teacher's cameras, depth, points and tracks (the reference's ``DistillLoss``, weights 20, 20,
    10 and 0.05 x 10 by default).

    Dense terms: each of student and teacher is divided by its own mean distance over the clip's valid pixels,
    the student is aligned to the teacher by a per-sample scale and shift, and the residual is confidence-weighted
    L1 (student confidence) plus a structure term (depth: image gradients; points: normals at 3 scales).
    Differs from the reference: normalisation is per clip, not per view, so the student must keep the relative
    scale of its frames consistent (per-view normalisation throws that away); and the alignment is per sample,
    masked and detached (see ``fit_scale_shift``). Only the GT valid mask comes from the data, as in the reference.
    """

    def __call__(self, pred: dict, teacher: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        mask = _valid_or_all(batch["valid_mask"])
        terms = {
            "camera": self.camera(pred, teacher["pose_enc"].float()),
            "depth": self._dense(pred["depth"], teacher["depth"], pred["depth_conf"], mask),
            "points": self._dense(pred["world_points"], teacher["world_points"], pred["world_points_conf"], mask),
        }
        if self.uses_tracks and "track" in pred:
            terms["track"] = track_loss(
                pred["track"],
                teacher["track"].float(),
                pred["track_vis"],
                teacher["track_vis"].float(),
                pred.get("track_conf"),
                self.section.track_conf_alpha,
            )
        return self.combine(terms)

    def _dense(self, pred: Tensor, target: Tensor, conf: Tensor, mask: Tensor) -> Tensor:
        """pred, target: [B, S, H, W, C]; conf, mask: [B, S, H, W]."""
        batch, views, height, width, channels = pred.shape
        target = target.float()
        pred = pred / mean_norm(pred, mask)[:, None, None, None, None]
        target = target / mean_norm(target, mask)[:, None, None, None, None]
        flat = (pred.reshape(batch, -1, channels), target.reshape(batch, -1, channels), mask.reshape(batch, -1))
        scale, shift = fit_scale_shift(*flat)
        aligned = pred * scale[:, None, None, None, None] + shift[:, None, None, None, :]
        main = confidence_weighted_l1(aligned, target, conf, mask, self.section.conf_alpha)
        flat_mask = mask.reshape(batch * views, height, width)
        if channels == 1:
            structure = gradient_loss(
                aligned.reshape(batch * views, height, width), target.reshape(batch * views, height, width), flat_mask
            )
        else:
            structure = normal_loss(
                aligned.reshape(batch * views, height, width, 3),
                target.reshape(batch * views, height, width, 3),
                flat_mask,
            )
        return main + structure


class SupervisedLoss(Criterion):
    """Regress ground truth: cameras (camera-from-world, xyzw, world = first view), depth and points at the
    normalised scale of :func:`ground_truth`, and, for rigid scenes, tracks derived from depth and poses.

    Dense terms are confidence-weighted L1 plus the same structure terms as distillation, with no alignment:
    the model learns to predict at the normalised scale, as VGGT does. Differs from the reference's
    ``finetune.py``, whose pose term compares camera-to-world, scalar-first (wxyz) ground truth with the model's
    camera-from-world, scalar-last (xyzw) encoding.
    """

    def __call__(self, pred: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        gt = ground_truth(batch, self.section.normalization)
        batch_size, views, height, width = gt.depth.shape
        valid = gt.valid
        flat = valid.reshape(batch_size * views, height, width)
        alpha = self.section.conf_alpha
        depth = pred["depth"][..., 0]
        points = pred["world_points"]
        terms = {
            "camera": self.camera(pred, gt.pose_encoding),
            "depth": confidence_weighted_l1(depth[..., None], gt.depth[..., None], pred["depth_conf"], valid, alpha)
            + gradient_loss(depth.reshape(flat.shape), gt.depth.reshape(flat.shape), flat),
            "points": confidence_weighted_l1(points, gt.points, pred["world_points_conf"], valid, alpha)
            + normal_loss(points.reshape(*flat.shape, 3), gt.points.reshape(*flat.shape, 3), flat),
        }
        if self.uses_tracks and "track" in pred:
            terms["track"] = self._tracks(pred, batch, gt)
        return self.combine(terms)

    def _tracks(self, pred: dict, batch: dict, gt) -> Tensor:
        """Track term over the rigid-scene samples only (depth and poses say nothing about moving points)."""
        rigid = batch["static"].bool()
        if not bool(rigid.any()):
            # Zero, but through every track output: DDP needs a gradient for each trainable parameter.
            outputs = [pred[k] for k in ("track", "track_vis", "track_conf") if pred.get(k) is not None]
            return sum(t.sum() for t in outputs) * 0
        tracks, visible = track_targets(
            gt,
            batch["intrinsics"].float(),
            batch["extrinsics"].float(),
            batch["query_points"],
            self.section.track_visibility_tolerance,
        )
        conf = pred.get("track_conf")
        return track_loss(
            pred["track"][rigid],
            tracks[rigid],
            pred["track_vis"][rigid],
            visible[rigid],
            None if conf is None else conf[rigid],
            self.section.track_conf_alpha,
        )

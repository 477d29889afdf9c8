"""The verification hook on the model: a stateless offline forward over a few frames."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from streamvggt.geometry import pose_encoding_to_extri_intri

MAX_FRAMES = 48


@dataclass(frozen=True)
class FramePrediction:
    """One frame of a verification re-run: extrinsic [3, 4] camera-from-world in the first frame's camera,
    intrinsic [3, 3], depth [H, W] and depth_conf [H, W] (float32, the re-run's own units)."""

    extrinsic: np.ndarray
    intrinsic: np.ndarray
    depth: np.ndarray
    depth_conf: np.ndarray


def model_predictor(model: torch.nn.Module, max_frames: int = MAX_FRAMES) -> Callable[[Sequence[np.ndarray]], list]:
    """``predict(images)`` on ``model``: its offline forward ``model(images[None])`` (for StreamVGGT causal
    attention, the streaming semantics without any session's cache), under ``torch.inference_mode``.

    images: uint8 [H, W, 3] frames as the stream processed them (H, W multiples of the patch size), at most
    ``max_frames``: a re-run covers a few frames around two keyframes, never the video.
    """

    def predict(images: Sequence[np.ndarray]) -> list[FramePrediction]:
        if not 0 < len(images) <= max_frames:
            raise ValueError(f"predict takes 1 to {max_frames} frames, got {len(images)}")
        shapes = {np.asarray(image).shape for image in images}
        if len(shapes) != 1:
            raise ValueError(f"predict needs frames of one size, got {sorted(shapes)}")
        parameter = next(model.parameters())
        batch = torch.stack([torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) for image in images])
        batch = batch.to(parameter.device, torch.float32).div_(255.0)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                out = model(batch[None])
        finally:
            model.train(was_training)
        height, width = batch.shape[-2:]
        extrinsic, intrinsic = pose_encoding_to_extri_intri(out.pose_enc[0].float(), (height, width))
        depth = out.depth[0, ..., 0].float().cpu().numpy()
        conf = out.depth_conf[0].float().cpu().numpy()
        extrinsic, intrinsic = extrinsic.double().cpu().numpy(), intrinsic.double().cpu().numpy()
        return [FramePrediction(extrinsic[k], intrinsic[k], depth[k], conf[k]) for k in range(len(images))]

    return predict

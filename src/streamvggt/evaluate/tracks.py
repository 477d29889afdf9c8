"""Streaming a sequence with point tracks: the cameras and the track-head correspondences bundle adjustment needs.

Query points lie on a regular grid in frame 0 and are followed into each new frame by the session's causal tracker
(:mod:`streamvggt.stream_tracks`), in the same pass that predicts the cameras, so ``--use-ba`` costs no second
pass and its plain numbers are those of the run without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from streamvggt.evaluate.runner import eval_preprocessor
from streamvggt.geometry import pose_encoding_to_extri_intri
from streamvggt.io.preprocess import Preprocessor
from streamvggt.model.streamvggt import StreamVGGT

log = logging.getLogger(__name__)

GRID_STEP = 16  # pixels between query points: 32 x 24 = 768 tracks on a 518 x 392 frame


@dataclass(frozen=True)
class TrackedSequence:
    """A streamed sequence's cameras and tracks, at the model's resolution (pixel centres at integers)."""

    names: list[str]
    image_size: tuple[int, int]  # (H, W) of the frames the model saw
    extrinsics: np.ndarray  # [S, 3, 4] float64 camera-from-world
    intrinsics: np.ndarray  # [S, 3, 3] float64
    tracks: np.ndarray  # [S, N, 2] float64 (x, y) pixels; frame 0 holds the query points
    visibility: np.ndarray  # [S, N] in (0, 1)
    confidence: np.ndarray  # [S, N] in (0, 1); ones when the track head predicts none


def grid_queries(height: int, width: int, step: int = GRID_STEP) -> np.ndarray:
    """Query points [N, 2] (x, y pixels) at the centres of ``step``-pixel cells covering a [height, width] frame."""
    if step < 1:
        raise ValueError(f"the query grid step must be >= 1 pixel, got {step}")
    xs = np.arange(step / 2, width, step) - 0.5
    ys = np.arange(step / 2, height, step) - 0.5
    grid_x, grid_y = np.meshgrid(xs, ys)
    return np.stack((grid_x.ravel(), grid_y.ravel()), axis=-1)


@torch.no_grad()
def track_sequence(
    model: StreamVGGT,
    frames: Iterable[tuple[str, np.ndarray]],
    cache: str = "full",
    preprocessor: Preprocessor | None = None,
    step: int = GRID_STEP,
) -> TrackedSequence:
    """Stream ``frames`` ((name, [H, W, 3] uint8 RGB)) through one session with grid queries in frame 0.

    The frames go through a fresh copy of ``preprocessor`` (default :func:`eval_preprocessor`), and the cameras are
    decoded as :class:`streamvggt.reconstruction.Reconstructor` decodes them, so they equal
    :func:`streamvggt.evaluate.runner.stream_sequence`'s for the same inputs.
    """
    template = preprocessor or eval_preprocessor()
    fresh = Preprocessor(template.mode, template.size, template.patch_size)
    device = next(model.parameters()).device
    session, size = None, (0, 0)
    names, extrinsics, intrinsics, tracks, visibility, confidence = [], [], [], [], [], []
    for name, image in frames:
        prepared = fresh(image, name)
        if session is None:
            size = prepared.image.shape[:2]
            queries = torch.from_numpy(grid_queries(*size, step)).float()[None].to(device)
            session = model.stream(batch_size=1, cache=cache, query_points=queries)
        pixels = torch.tensor(prepared.image, device=device).permute(2, 0, 1).float().div(255)
        out = session.step(pixels[None])
        extrinsic, intrinsic = pose_encoding_to_extri_intri(out["pose_enc"][0].cpu().double(), size)
        names.append(name)
        extrinsics.append(extrinsic.numpy())
        intrinsics.append(intrinsic.numpy())
        tracks.append(out["track"][0].cpu().double().numpy())
        visibility.append(out["track_vis"][0].float().cpu().numpy())
        conf = out.get("track_conf")
        confidence.append(np.ones_like(visibility[-1]) if conf is None else conf[0].float().cpu().numpy())
    if session is None:
        raise ValueError("no frames to track")
    log.debug("tracked %d grid points through %d frames", tracks[0].shape[0], len(tracks))
    return TrackedSequence(
        names,
        size,
        np.stack(extrinsics),
        np.stack(intrinsics),
        np.stack(tracks),
        np.stack(visibility),
        np.stack(confidence),
    )

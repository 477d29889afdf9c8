"""Streaming a sequence with point tracks: the cameras and the track-head correspondences bundle adjustment needs.

Query points lie on a regular grid in frame 0 and are followed into each new frame by the session's causal tracker
(:mod:`streamvggt.streaming.tracks`), in the same pass that predicts the cameras, so ``--use-ba`` costs no second
pass and its plain numbers are those of the run without it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from streamvggt.evaluate.runner import stream_sequence
from streamvggt.io.inputs.preprocess import Preprocessor
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


def track_sequence(
    model: StreamVGGT,
    frames: Iterable[tuple[str, np.ndarray]],
    cache: str = "full",
    preprocessor: Preprocessor | None = None,
    step: int = GRID_STEP,
) -> TrackedSequence:
    """Stream ``frames`` ((name, [H, W, 3] uint8 RGB)) through one session with grid queries in frame 0.

    The stream is :func:`streamvggt.evaluate.runner.stream_sequence`'s with query points added, so the cameras
    equal that function's for the same inputs.
    """
    queries = functools.partial(_grid_for_size, step=step)
    results = stream_sequence(model, frames, cache, preprocessor, query_points=queries)
    if not results:
        raise ValueError("no frames to track")
    log.debug("tracked %d grid points through %d frames", results[0].tracks.shape[0], len(results))
    return TrackedSequence(
        names=[r.name for r in results],
        image_size=results[0].image_size,
        extrinsics=np.stack([r.extrinsic for r in results]),
        intrinsics=np.stack([r.intrinsic for r in results]),
        tracks=np.stack([r.tracks for r in results]),
        visibility=np.stack([r.track_vis for r in results]),
        confidence=np.stack([r.track_conf for r in results]),
    )


def _grid_for_size(size: tuple[int, int], step: int) -> np.ndarray:
    return grid_queries(*size, step)

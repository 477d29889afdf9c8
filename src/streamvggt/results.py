"""A reconstructed frame as numpy arrays: what the orchestrator yields and the writers and viewers consume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamvggt.geometry import unproject_depth


@dataclass(frozen=True)
class FrameResult:
    """One frame's reconstruction (numpy, on the CPU), in the conventions of :mod:`streamvggt.geometry`."""

    index: int  # position in the stream
    name: str  # frame name in the input
    source_index: int  # position in the input before sampling
    timestamp: float | None  # seconds, for video and streams
    image: np.ndarray  # [H, W, 3] uint8: the processed frame the model saw
    valid: np.ndarray  # [H, W] bool: False on padding (pad mode)
    extrinsic: np.ndarray  # [3, 4] float64 camera-from-world, OpenCV axes
    intrinsic: np.ndarray  # [3, 3] float64
    depth: np.ndarray  # [H, W] float32, z in the camera frame
    depth_conf: np.ndarray  # [H, W] float32
    world_points: np.ndarray  # [H, W, 3] float32 from the point head, world (first camera) frame
    world_points_conf: np.ndarray  # [H, W] float32
    # With query points (see Reconstructor): their positions in this frame, (x, y) pixels [N, 2] float64, and
    # visibility and confidence [N] float32 in (0, 1) (confidence ones when the track head predicts none).
    tracks: np.ndarray | None = None
    track_vis: np.ndarray | None = None
    track_conf: np.ndarray | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def points(self, source: str = "depth") -> tuple[np.ndarray, np.ndarray]:
        """World points [H, W, 3] and their confidence [H, W]: ``"depth"`` unprojects the depth map with the
        predicted camera, ``"pointmap"`` is the point head's output."""
        if source == "pointmap":
            return self.world_points, self.world_points_conf
        if source != "depth":
            raise ValueError(f"unknown point source '{source}': use depth or pointmap")
        points = unproject_depth(
            torch.from_numpy(self.depth), torch.from_numpy(self.extrinsic), torch.from_numpy(self.intrinsic)
        )
        return points.numpy(), self.depth_conf

"""What the viewer holds and shows, apart from any GUI: frames, and the points a selection of them gives.

Each frame keeps its camera, image and point grids (from the depth map and, when known, the point map) sampled
every ``stride`` pixels so that a long stream stays within what a browser draws smoothly. A :class:`Selection`
(frame slider, time mode, point source, confidence percentile) picks the frames and points on screen; the GUI
(:mod:`streamvggt.viewer.server`) and the PLY export both read them from here, so they always agree.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from streamvggt.geometry import camera_centers, unproject_depth
from streamvggt.io.atomic import atomic_output
from streamvggt.io.outputs.ply import ply_bytes, write_ply
from streamvggt.io.outputs.points import confident_points

if TYPE_CHECKING:
    from streamvggt.pipeline.reconstructor import FrameResult

# Sampled pixels per frame: 60k keeps 100 frames (3M points after the default confidence filter) drawable in a
# browser; a 518x392 frame is sampled every 2nd pixel (50,764 points).
MAX_POINTS_PER_FRAME = 60_000
CUMULATIVE, SINGLE = "cumulative", "single"  # show frames 0..t, or frame t alone
SOURCES = ("depth", "pointmap")


@dataclass(frozen=True)
class ViewFrame:
    """One frame as the viewer holds it (numpy, CPU).

    image: [H, W, 3] uint8, the processed frame (shown in its camera frustum).
    extrinsic: [3, 4] camera-from-world (OpenCV axes); intrinsic: [3, 3] in pixels of ``image``.
    stride: the sampled pixel grid takes every stride-th row and column of the image.
    colors: [h, w, 3] uint8 and valid: [h, w] bool (False on padding), on the sampled pixel grid.
    points: source ("depth", "pointmap") -> (world points [h, w, 3] float32, confidence [h, w] float32).
    """

    index: int
    name: str
    image: np.ndarray
    extrinsic: np.ndarray
    intrinsic: np.ndarray
    stride: int
    colors: np.ndarray
    valid: np.ndarray
    points: Mapping[str, tuple[np.ndarray, np.ndarray]]

    @property
    def centre(self) -> np.ndarray:
        """Camera centre [3] in world coordinates."""
        return camera_centers(torch.from_numpy(self.extrinsic)).numpy()

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians."""
        return 2.0 * math.atan(self.image.shape[0] / (2.0 * self.intrinsic[1, 1]))

    def confident(self, source: str, percentile: float) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, 3] float32 and colours [N, 3] uint8 at or above this frame's ``percentile`` of confidence
        (taken over its valid sampled pixels, as :func:`streamvggt.io.outputs.points.confident_points` does for
        ``points.ply``)."""
        if source not in self.points:
            raise ValueError(f"frame {self.index} has no '{source}' points")
        xyz, conf = self.points[source]
        records = confident_points(xyz, conf, self.colors, self.valid, self.index, percentile)
        return records["xyz"], records["rgb"]


def make_view_frame(
    index: int,
    name: str,
    image: np.ndarray,
    extrinsic: np.ndarray,
    intrinsic: np.ndarray,
    depth: np.ndarray,
    depth_conf: np.ndarray,
    valid: np.ndarray,
    pointmap: tuple[np.ndarray, np.ndarray] | None = None,
    max_points: int = MAX_POINTS_PER_FRAME,
) -> ViewFrame:
    """A :class:`ViewFrame` from full-resolution outputs: depth [H, W] (z, model units) and its confidence,
    valid [H, W], and optionally the point map (world points [H, W, 3], confidence [H, W])."""
    stride = sampling_stride(depth.shape, max_points)
    grid = (slice(None, None, stride), slice(None, None, stride))
    extrinsic, intrinsic = np.asarray(extrinsic, dtype=np.float64), np.asarray(intrinsic, dtype=np.float64)
    from_depth = unproject_depth(
        torch.from_numpy(np.asarray(depth, dtype=np.float32)), torch.from_numpy(extrinsic), torch.from_numpy(intrinsic)
    ).numpy()
    points = {"depth": (from_depth[grid], np.asarray(depth_conf, dtype=np.float32)[grid])}
    if pointmap is not None:
        points["pointmap"] = (np.asarray(pointmap[0], dtype=np.float32)[grid], np.asarray(pointmap[1])[grid])
    return ViewFrame(
        index=index,
        name=name,
        image=image,
        extrinsic=extrinsic,
        intrinsic=intrinsic,
        stride=stride,
        colors=image[grid],
        valid=valid[grid],
        points=points,
    )


def view_frame_from_result(result: FrameResult, max_points: int = MAX_POINTS_PER_FRAME) -> ViewFrame:
    """A streamed frame's :class:`ViewFrame`, with both point sources."""
    return make_view_frame(
        result.index,
        result.name,
        result.image,
        result.extrinsic,
        result.intrinsic,
        result.depth,
        result.depth_conf,
        result.valid,
        (result.world_points, result.world_points_conf),
        max_points,
    )


def moved_view_frame(frame: ViewFrame, transform: np.ndarray, extrinsic: np.ndarray) -> ViewFrame:
    """``frame`` re-placed by a long-video map's correction: its points moved by the world-to-world similarity
    ``transform`` [3, 4] ([sR | t]), its camera set to ``extrinsic`` [3, 4] (camera-from-world)."""
    linear, shift = transform[:, :3], transform[:, 3]
    points = {
        source: ((xyz.astype(np.float64) @ linear.T + shift).astype(np.float32), conf)
        for source, (xyz, conf) in frame.points.items()
    }
    return dataclasses.replace(frame, extrinsic=np.asarray(extrinsic, dtype=np.float64), points=points)


def sampling_stride(shape: tuple[int, ...], max_points: int) -> int:
    """The smallest pixel stride that leaves at most ``max_points`` of an [H, W] grid."""
    height, width = shape[:2]
    stride = 1
    while math.ceil(height / stride) * math.ceil(width / stride) > max_points:
        stride += 1
    return stride


@dataclass(frozen=True)
class Selection:
    """What is on screen: ``frame`` t with ``mode`` CUMULATIVE (frames 0..t) or SINGLE (t alone), points from
    ``source`` above each frame's ``percentile`` of confidence."""

    frame: int
    mode: str = CUMULATIVE
    source: str = "depth"
    percentile: float = 50.0


class SceneState:
    """The frames received so far, added from one thread while others read.

    Every method reads one snapshot of the frame list taken under the lock, so a read that looks at several
    frames (the points on screen, the trajectory) sees the frames of one moment, never half of an add.
    """

    def __init__(self) -> None:
        self._frames: list[ViewFrame] = []
        self._lock = threading.Lock()

    def _snapshot(self) -> tuple[ViewFrame, ...]:
        with self._lock:
            return tuple(self._frames)

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def add(self, frame: ViewFrame) -> int:
        """Append the next frame; returns the number of frames."""
        with self._lock:
            if frame.index != len(self._frames):
                raise ValueError(f"frame {frame.index} arrived after {len(self._frames)} frames: frames come in order")
            self._frames.append(frame)
            return len(self._frames)

    def replace(self, index: int, frame: ViewFrame) -> None:
        """Put ``frame`` in place of the frame with this index (a corrected copy; IndexError if it has not arrived)."""
        with self._lock:
            if frame.index != index:
                raise ValueError(f"frame {frame.index} cannot replace frame {index}")
            self._frames[index] = frame

    def frame(self, index: int) -> ViewFrame:
        """The frame with this index (IndexError if it has not arrived)."""
        with self._lock:
            return self._frames[index]

    @property
    def sources(self) -> tuple[str, ...]:
        """Point sources every frame has ("depth" always; "pointmap" when streamed or saved)."""
        frames = self._snapshot()
        return tuple(s for s in SOURCES if frames and all(s in f.points for f in frames)) or ("depth",)

    def shown_frames(self, selection: Selection) -> list[int]:
        """Indices of the frames on screen; the slider position is clamped to the frames there are."""
        return _shown_frames(len(self), selection)

    def shown_points(self, selection: Selection) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, 3] float32 and colours [N, 3] uint8 of the frames on screen, in frame order."""
        frames = self._snapshot()
        shown = _shown_frames(len(frames), selection)
        parts = [frames[i].confident(selection.source, selection.percentile) for i in shown]
        if not parts:
            return np.empty((0, 3), dtype=np.float32), np.empty((0, 3), dtype=np.uint8)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def trajectory(self, last: int) -> np.ndarray:
        """Camera centres [n, 3] of frames 0..last."""
        frames = self._snapshot()[: last + 1]
        if not frames:
            return np.empty((0, 3), dtype=np.float64)
        return camera_centers(torch.from_numpy(np.stack([f.extrinsic for f in frames]))).numpy()

    def ply_bytes(self, selection: Selection) -> tuple[bytes, int]:
        """The points on screen as a PLY file in memory, and how many points it holds."""
        xyz, rgb = self.shown_points(selection)
        return ply_bytes(xyz, rgb), len(xyz)

    def export_ply(self, path: Path, selection: Selection) -> int:
        """Write the points on screen to ``path`` (binary PLY, atomically); returns how many were written."""
        xyz, rgb = self.shown_points(selection)
        with atomic_output(Path(path)) as tmp:
            write_ply(tmp, xyz, rgb)
        return len(xyz)


def _shown_frames(count: int, selection: Selection) -> list[int]:
    """Indices of the frames ``selection`` shows out of ``count`` frames."""
    if not count:
        return []
    t = min(max(selection.frame, 0), count - 1)
    if selection.mode == SINGLE:
        return [t]
    if selection.mode != CUMULATIVE:
        raise ValueError(f"unknown time mode '{selection.mode}': use {CUMULATIVE} or {SINGLE}")
    return list(range(t + 1))

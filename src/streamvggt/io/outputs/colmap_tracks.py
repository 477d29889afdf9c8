"""Multi-view tracks for the COLMAP export: which frames see each 3D point, judged by their own depth maps.

A point is observed by frame j when it projects inside frame j, in front of the camera, onto a pixel whose depth
is trusted (inside the image content and confident enough to have made points itself) and agrees with the point's
depth in that camera within a relative tolerance. Its observation there is the projection itself, so each recorded
2D point is where the point reprojects. The frame a point came from always observes it at its own pixel.

Tracks are capped: a point seen by hundreds of frames keeps a uniformly random (seeded) subset, so the model stays a
size COLMAP's bundle adjuster handles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamvggt.io.outputs.cameras import CameraRecord

DEPTH_TOLERANCE = 0.02  # |z - depth| / depth below which a frame's depth agrees with a point
MAX_TRACK_LENGTH = 8  # observations per point, the source frame included
_CHUNK = 1 << 18  # points projected at a time


@dataclass(frozen=True)
class Observations:
    """Observations [M]: point index, frame index, model pixel (u, v) [M, 2]; sorted by point, each point's own
    frame first, then the frames that see it in order."""

    point: np.ndarray
    frame: np.ndarray
    uv: np.ndarray


def multiview_tracks(
    cameras: list[CameraRecord],
    records: np.ndarray,
    trusted_depth: Callable[[int], tuple[np.ndarray, np.ndarray]],
    tolerance: float = DEPTH_TOLERANCE,
    max_length: int = MAX_TRACK_LENGTH,
    seed: int = 0,
    on_frame: Callable[[], object] | None = None,
) -> Observations:
    """Observations of point ``records`` (see :mod:`streamvggt.io.outputs.points`) in the frames of ``cameras``.

    trusted_depth(i): frame i's depth [H, W] (z, model units) and a mask [H, W] of pixels whose depth is trusted.
    on_frame: called once per camera (a progress bar's step), also for frames skipped once every track is full.
    """
    if not tolerance > 0:
        raise ValueError(f"the depth tolerance must be positive, got {tolerance}")
    if max_length < 1:
        raise ValueError(f"a track holds at least the point's own frame, got max_length={max_length}")
    count, slots = len(records), max_length - 1
    source = records["frame"].astype(np.int64)
    slot_frame = np.full((count, slots), -1, dtype=np.int32)
    slot_uv = np.zeros((count, slots, 2), dtype=np.float32)
    filled = np.zeros(count, dtype=np.int64)
    xyz = np.asarray(records["xyz"], dtype=np.float32)
    active = np.arange(count) if slots else np.arange(0)  # points with a free slot
    # Frames in a random order, each point taking the first agreeing ones: a uniform sample of the frames that see
    # it, and a point whose track is full is never projected again.
    done = (lambda: None) if on_frame is None else on_frame
    for i in np.random.default_rng(seed).permutation(len(cameras)):
        done()
        if not len(active):
            continue
        depth, trusted = trusted_depth(int(i))
        for start in range(0, len(active), _CHUNK):
            candidates = active[start : start + _CHUNK]
            index, uv = _agreeing(xyz[candidates], cameras[i], depth, trusted, tolerance)
            index = candidates[index]
            keep = source[index] != i
            index, uv = index[keep], uv[keep]
            slot_frame[index, filled[index]], slot_uv[index, filled[index]] = i, uv
            filled[index] += 1
        active = active[filled[active] < slots]
    used = slot_frame >= 0
    point = np.concatenate((np.arange(count), np.nonzero(used)[0]))
    frame = np.concatenate((source, slot_frame[used].astype(np.int64)))
    uv = np.concatenate((records["uv"].astype(np.float64), slot_uv[used].astype(np.float64)))
    own = np.zeros(len(point), dtype=bool)
    own[:count] = True
    order = np.lexsort((frame, ~own, point))
    return Observations(point[order], frame[order], uv[order])


def _agreeing(
    xyz: np.ndarray, camera: CameraRecord, depth: np.ndarray, trusted: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``xyz`` [N, 3] of the points ``camera`` sees with agreeing depth, and their pixels [n, 2]."""
    # In the points' precision (float32 from the writer): a hundredth of a pixel at most, and half the memory traffic.
    extrinsic, intrinsic = np.asarray(camera.extrinsic, xyz.dtype), np.asarray(camera.intrinsic, xyz.dtype)
    cam = xyz @ extrinsic[:, :3].T + extrinsic[:, 3]
    z = cam[:, 2]
    ahead = np.nonzero(z > 0)[0]
    z = z[ahead]
    u = intrinsic[0, 0] * cam[ahead, 0] / z + intrinsic[0, 2]
    v = intrinsic[1, 1] * cam[ahead, 1] / z + intrinsic[1, 2]
    height, width = depth.shape
    column, row = np.rint(u), np.rint(v)  # the model puts pixel centres at integers
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    ahead, z, u, v = ahead[inside], z[inside], u[inside], v[inside]
    column, row = column[inside].astype(np.int64), row[inside].astype(np.int64)
    seen = depth[row, column]
    agree = trusted[row, column] & (np.abs(z - seen) <= tolerance * seen)
    return ahead[agree], np.stack((u[agree], v[agree]), axis=-1)

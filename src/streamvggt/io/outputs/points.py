"""Collecting a stream's confident points without holding them in memory.

Each point is a record: position, colour, and the observation it came from (frame and pixel), which the COLMAP
export turns into a track. Without voxel downsampling the records go to a temporary file in the output folder
(read back memory-mapped); with it they are merged into a voxel grid whose size is bounded by the scene, not by
the number of frames.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from streamvggt.io.atomic import temporary_name

POINT_DTYPE = np.dtype([("xyz", "<f4", (3,)), ("rgb", "u1", (3,)), ("frame", "<u4"), ("uv", "<u2", (2,))])
MIN_CONFIDENCE = 1e-5  # as the reference demo: below this a pixel is never kept, whatever the percentile


def confident_points(
    points: np.ndarray,
    conf: np.ndarray,
    colors: np.ndarray,
    valid: np.ndarray,
    frame: int,
    percentile: float,
) -> np.ndarray:
    """Records of one frame's pixels whose confidence is at least its ``percentile``-th percentile.

    points [H, W, 3], conf [H, W], colors [H, W, 3] uint8, valid [H, W] bool (False: padding). The percentile is
    taken per frame over valid pixels, so the threshold needs no future frames. Non-finite points are dropped.
    """
    keep = valid & np.isfinite(points).all(-1) & np.isfinite(conf) & (conf > MIN_CONFIDENCE)
    if keep.any() and percentile > 0:
        keep &= conf >= np.percentile(conf[keep], percentile)
    v, u = np.nonzero(keep)
    records = np.empty(len(v), dtype=POINT_DTYPE)
    records["xyz"] = points[v, u]
    records["rgb"] = colors[v, u]
    records["frame"] = frame
    records["uv"] = np.stack((u, v), axis=-1)
    return records


class PointSpool:
    """Appends records to a hidden temporary file in ``folder``; :meth:`records` maps them back read-only."""

    def __init__(self, folder: Path) -> None:
        self.path = temporary_name(folder / "points")
        self._file = open(self.path, "wb")  # noqa: SIM115 (kept open across add() calls; closed in close())
        self.count = 0

    def add(self, records: np.ndarray) -> None:
        records.tofile(self._file)
        self.count += len(records)

    def records(self) -> np.ndarray:
        self._file.flush()
        if self.count == 0:
            return np.empty(0, dtype=POINT_DTYPE)
        return np.memmap(self.path, dtype=POINT_DTYPE, mode="r", shape=(self.count,))

    def close(self) -> None:
        """Delete the temporary file (the memory map returned by :meth:`records` must be dropped first)."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class VoxelGrid:
    """Merges records into voxels of ``size`` (world units): the mean position and colour of each occupied voxel.

    A voxel keeps the observation (frame, pixel) of its first point. New records are buffered and merged in
    batches, so the cost per frame stays near one sort of the occupied voxels.
    """

    def __init__(self, size: float, batch: int = 2_000_000) -> None:
        if not size > 0:
            raise ValueError(f"voxel size must be positive, got {size}")
        self.size = size
        self.batch = batch
        self._keys = np.empty((0, 3), dtype=np.int64)
        self._xyz_sum = np.empty((0, 3), dtype=np.float64)
        self._rgb_sum = np.empty((0, 3), dtype=np.float64)
        self._count = np.empty(0, dtype=np.int64)
        self._first = np.empty(0, dtype=POINT_DTYPE)
        self._pending: list[np.ndarray] = []
        self._pending_count = 0

    def add(self, records: np.ndarray) -> None:
        self._pending.append(records)
        self._pending_count += len(records)
        if self._pending_count >= self.batch:
            self._merge()

    def records(self) -> np.ndarray:
        """One record per occupied voxel (ordered by voxel index)."""
        self._merge()
        out = self._first.copy()
        out["xyz"] = self._xyz_sum / self._count[:, None]
        out["rgb"] = np.round(self._rgb_sum / self._count[:, None])
        return out

    def _merge(self) -> None:
        if not self._pending:
            return
        new = np.concatenate(self._pending)
        self._pending, self._pending_count = [], 0
        keys = np.concatenate((self._keys, np.floor(new["xyz"] / self.size).astype(np.int64)))
        xyz = np.concatenate((self._xyz_sum, new["xyz"].astype(np.float64)))
        rgb = np.concatenate((self._rgb_sum, new["rgb"].astype(np.float64)))
        count = np.concatenate((self._count, np.ones(len(new), dtype=np.int64)))
        first = np.concatenate((self._first, new))
        # Existing voxels come first in the concatenation, so return_index picks their observation over new ones.
        self._keys, index, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        groups = len(self._keys)
        self._count = np.bincount(inverse, weights=count, minlength=groups).astype(np.int64)
        self._xyz_sum = np.stack([np.bincount(inverse, xyz[:, i], groups) for i in range(3)], axis=-1)
        self._rgb_sum = np.stack([np.bincount(inverse, rgb[:, i], groups) for i in range(3)], axis=-1)
        self._first = first[index]


def subsample(records: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` records, drawn uniformly without replacement and kept in their order (a copy in memory)."""
    if len(records) <= limit:
        return np.array(records)
    index = np.sort(np.random.default_rng(seed).choice(len(records), size=limit, replace=False))
    return np.asarray(records[index])

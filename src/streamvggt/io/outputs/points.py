"""Collecting a stream's confident points without holding them in memory.

Each point is a record: position, colour, and the observation it came from (frame and pixel), which the COLMAP
export turns into a track. Without voxel downsampling the records go to a temporary file in the output folder
(read back memory-mapped); with it they are merged into a voxel grid whose size is bounded by the scene, not by
the number of frames.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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
    """Appends records to a file in ``folder``; :meth:`records` maps them back read-only.

    By default the file has a hidden temporary name and is deleted by :meth:`close`. With ``path`` (a resumable
    run) it has that stable name and outlives the object: :meth:`state` makes the records so far durable and
    returns their count and checksum, and :meth:`restore` continues the file from such a state, dropping records
    appended after it (by a run killed later).
    """

    def __init__(self, folder: Path, path: Path | None = None) -> None:
        self.stable = path is not None
        self.path = Path(path) if path is not None else temporary_name(folder / "points")
        self._file: BinaryIO | None = None
        self._digest = hashlib.sha256()  # of the records so far: a state's checksum costs no re-read
        self.count = 0

    def add(self, records: np.ndarray) -> None:
        if self._file is None:
            self._open()
        data = np.ascontiguousarray(records, dtype=POINT_DTYPE).tobytes()
        self._file.write(data)
        self._digest.update(data)
        self.count += len(records)

    def records(self) -> np.ndarray:
        if self._file is not None:
            self._file.flush()
        if self.count == 0:
            return np.empty(0, dtype=POINT_DTYPE)
        return np.memmap(self.path, dtype=POINT_DTYPE, mode="r", shape=(self.count,))

    def state(self) -> dict[str, int | str]:
        """The records so far made durable (flushed and fsynced): their count and SHA-256."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        return {"count": self.count, "sha256": self._digest.hexdigest()}

    def restore(self, state: dict[str, int | str]) -> None:
        """Continue the stable file from ``state`` (see :meth:`state`): check its first ``count`` records against
        the checksum, cut what follows, append after them. Raises ValueError (one line) when it cannot."""
        if not self.stable:
            raise ValueError("only a spool with a stable path can be restored")
        count = int(state["count"])
        length = count * POINT_DTYPE.itemsize
        if self._file is not None:
            self._file.close()
        try:
            handle = open(self.path, "r+b")  # noqa: SIM115 (kept open across add() calls; closed in close())
        except FileNotFoundError:
            if count:
                raise ValueError(f"the point spool {self.path} is missing") from None
            handle = open(self.path, "w+b")  # noqa: SIM115
        digest = hashlib.sha256()
        remaining = length
        while remaining:
            chunk = handle.read(min(remaining, 1 << 22))
            if not chunk:
                handle.close()
                raise ValueError(f"the point spool {self.path} is shorter than the saved state ({count} records)")
            digest.update(chunk)
            remaining -= len(chunk)
        if digest.hexdigest() != state["sha256"]:
            handle.close()
            raise ValueError(f"the point spool {self.path} does not match the saved state's checksum")
        handle.truncate(length)  # records of frames after the state are added again, as in a run never killed
        handle.seek(length)
        self._file, self._digest, self.count = handle, digest, count

    def close(self) -> None:
        """Close the file; delete it unless it is stable (the memory map of :meth:`records` must be dropped first)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.stable:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 (kept open across add() calls; closed in close())


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

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything the grid holds, merged and pending, as plain arrays (see :meth:`load_state_arrays`)."""
        pending = np.concatenate(self._pending) if self._pending else np.empty(0, dtype=POINT_DTYPE)
        return {
            "keys": self._keys,
            "xyz_sum": self._xyz_sum,
            "rgb_sum": self._rgb_sum,
            "count": self._count,
            **records_to_arrays("first", self._first),
            **records_to_arrays("pending", pending),
        }

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the contents saved by :meth:`state_arrays` (pending records stay pending: merging is batched the
        same way as in a run never interrupted)."""
        self._keys = arrays["keys"].astype(np.int64).reshape(-1, 3)
        self._xyz_sum = arrays["xyz_sum"].astype(np.float64).reshape(-1, 3)
        self._rgb_sum = arrays["rgb_sum"].astype(np.float64).reshape(-1, 3)
        self._count = arrays["count"].astype(np.int64).reshape(-1)
        self._first = records_from_arrays("first", arrays)
        pending = records_from_arrays("pending", arrays)
        self._pending = [pending] if len(pending) else []
        self._pending_count = len(pending)

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


def records_to_arrays(prefix: str, records: np.ndarray) -> dict[str, np.ndarray]:
    """Point records as one plain array per field (``prefix.xyz``...), for formats without structured dtypes."""
    return {f"{prefix}.{name}": np.ascontiguousarray(records[name]) for name in POINT_DTYPE.names}


def records_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The records saved by :func:`records_to_arrays`."""
    count = len(arrays[f"{prefix}.xyz"])
    records = np.empty(count, dtype=POINT_DTYPE)
    for name in POINT_DTYPE.names:
        records[name] = arrays[f"{prefix}.{name}"].reshape(records[name].shape)
    return records


REPLACE_CHUNK = 1 << 18  # records re-placed at a time: ~30 MB of float64 work arrays, whatever the spool's size


def replaced_chunks(
    records: np.ndarray,
    row_of_frame: np.ndarray,
    linear: np.ndarray,
    translation: np.ndarray,
    chunk: int = REPLACE_CHUNK,
) -> Iterator[np.ndarray]:
    """``records`` (a memory map or an array) with each point moved by its frame's similarity, ``chunk`` at a time:
    only one chunk is in memory, so a spool of any size is re-placed in bounded memory.

    row_of_frame [F] int: the row of each frame index's correction (-1: none, ValueError); linear [M, 3, 3] the
    similarities' sR, translation [M, 3] their t: xyz <- sR xyz + t (in float64, stored as float32).
    """
    for start in range(0, len(records), chunk):
        part = np.array(records[start : start + chunk])  # a copy: the map stays read-only
        frames = part["frame"].astype(np.int64)
        rows = row_of_frame[np.minimum(frames, len(row_of_frame) - 1)]
        bad = (frames >= len(row_of_frame)) | (rows < 0)
        if bad.any():
            raise ValueError(f"points of frame {int(frames[bad][0])} have no correction")
        xyz = part["xyz"].astype(np.float64)
        part["xyz"] = np.einsum("nij,nj->ni", linear[rows], xyz) + translation[rows]
        yield part


def subsample(records: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` records, drawn uniformly without replacement and kept in their order (a copy in memory)."""
    if len(records) <= limit:
        return np.array(records)
    index = np.sort(np.random.default_rng(seed).choice(len(records), size=limit, replace=False))
    return np.asarray(records[index])

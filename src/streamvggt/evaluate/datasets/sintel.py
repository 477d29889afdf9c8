"""MPI Sintel (training set, "final" pass): images, ``.dpt`` depth and ``.cam`` cameras of the Sintel depth SDK.

Layout (the training images and depth zips unpacked into one folder)::

    training/final/<sequence>/frame_0001.png
    training/depth/<sequence>/frame_0001.dpt
    training/camdata_left/<sequence>/frame_0001.cam

The protocols use every sequence (the reference's ``full_seq``), max depth 70 and a post-clip at 70.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamvggt.evaluate.datasets.base import DepthDataset, DepthSequence, folders_paired_by_name
from streamvggt.geometry import homogeneous_pose
from streamvggt.io.errors import InputError

# The SDK files start with this float32 tag (written little-endian; a wrong tag means a foreign or corrupt file).
SINTEL_TAG = 202021.25
_MAX_PIXELS = 100_000_000


def read_dpt(path: Path) -> np.ndarray:
    """A Sintel ``.dpt`` file as [H, W] float32 depth: tag (float32), width, height (int32), then H*W float32,
    all little-endian. Numpy reads it directly: no library knows this format."""
    data = _read_bytes(path)
    if len(data) < 12 or np.frombuffer(data, "<f4", 1)[0] != SINTEL_TAG:
        raise InputError(f"{path} is not a Sintel .dpt depth file (wrong tag)")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, offset=4))
    if width <= 0 or height <= 0 or width * height > _MAX_PIXELS or len(data) != 12 + 4 * width * height:
        raise InputError(f"{path}: corrupt .dpt file ({width}x{height} for {len(data)} bytes)")
    return np.frombuffer(data, "<f4", width * height, offset=12).reshape(height, width).astype(np.float32)


def read_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A Sintel ``.cam`` file: tag (float32), intrinsic M [3, 3] and extrinsic N [3, 4] (float64, row-major).

    Returns (intrinsic [3, 3], extrinsic [3, 4]); N maps world to camera coordinates (camera-from-world), with
    x right, y down, z forward as in OpenCV.
    """
    data = _read_bytes(path)
    if len(data) != 4 + 8 * 21 or np.frombuffer(data, "<f4", 1)[0] != SINTEL_TAG:
        raise InputError(f"{path} is not a Sintel .cam camera file ({len(data)} bytes, expected 172 with the tag)")
    values = np.frombuffer(data, "<f8", 21, offset=4)
    return values[:9].reshape(3, 3).copy(), values[9:].reshape(3, 4).copy()


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from error


class SintelDataset(DepthDataset):
    name = "sintel"
    folder_names = ("sintel", "MPI-Sintel")
    layout = "training/final/<sequence>/*.png and training/depth/<sequence>/*.dpt (MPI-Sintel training set)"
    max_depth = 70.0
    post_clip_max = 70.0

    def _looks_right(self, folder: Path) -> bool:
        return (folder / "training" / "final").is_dir() and (folder / "training" / "depth").is_dir()

    def sequences(self) -> list[DepthSequence]:
        images_root, depth_root = self.root / "training" / "final", self.root / "training" / "depth"
        sequences = folders_paired_by_name(images_root, depth_root, "*.dpt", "sintel")
        if not sequences:
            raise self._error("no sequence has both images and depth")
        return sequences

    def read_depth(self, path: Path) -> np.ndarray:
        return read_dpt(path)

    def cameras(self, sequence: DepthSequence) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth cameras of ``sequence``'s frames from ``training/camdata_left``: intrinsics [N, 3, 3]
        and camera-from-world extrinsics [N, 4, 4] (float64, OpenCV axes, Sintel's world frame)."""
        folder = self.root / "training" / "camdata_left" / sequence.name
        intrinsics, extrinsics = [], []
        for frame in sequence.frames:
            path = folder / f"{frame.name}.cam"
            if not path.is_file():
                raise self._error(f"missing camera {path.relative_to(self.root)}")
            intrinsic, extrinsic = read_cam(path)
            intrinsics.append(intrinsic)
            extrinsics.append(extrinsic)
        return np.stack(intrinsics), homogeneous_pose(torch.from_numpy(np.stack(extrinsics).astype(np.float64))).numpy()

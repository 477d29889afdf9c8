"""CUT3R's per-scene files (``scene_metadata.npz``, ``new_scene_metadata.npz``, depth PNGs) read with their
contents checked, so that a malformed scene is one error that names its file rather than a failure deep in a
training step.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# ARKitScenes split folders: CUT3R names the low-res test split after the raw data ("Test"), the high-res one
# after the raw high-res release ("Validation").
ARKIT_SPLIT_FOLDERS = {"train": "Training", "test": "Test"}
ARKIT_HIGHRES_SPLIT_FOLDERS = {"train": "Training", "test": "Validation"}


def arkit_split_folder(split: str, highres: bool) -> str:
    folders = ARKIT_HIGHRES_SPLIT_FOLDERS if highres else ARKIT_SPLIT_FOLDERS
    try:
        return folders[split]
    except KeyError:
        raise ValueError(f"unknown ARKitScenes split '{split}'; expected one of {', '.join(folders)}") from None


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def load_arrays(path: Path, what: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the .npz file ``path``; a missing file, a file numpy cannot read or a missing key
    is an error naming the file."""
    require_file(path, what)
    try:
        # CUT3R stores co-visibility dicts (and some name lists) as object arrays: pickles in the user's own data.
        with np.load(path, allow_pickle=True) as data:
            missing = [k for k in keys if k not in data.files]
            arrays = {k: data[k] for k in keys if k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"cannot read {what} {path}: {error}") from None
    if missing:
        raise ValueError(f"{what} {path} lacks {', '.join(missing)} (it has {', '.join(sorted(arrays)) or 'nothing'})")
    return arrays


def names(values: np.ndarray, path: Path) -> list[str]:
    """A 1-D array of file names as strings."""
    if values.ndim != 1:
        raise ValueError(f"{path}: 'images' must be a list of names, got shape {values.shape}")
    return [str(v) for v in values]


def camera_poses(values: np.ndarray, count: int, path: Path) -> np.ndarray:
    """``count`` finite camera-to-world matrices [count, 4, 4] (float64)."""
    poses = np.asarray(values, dtype=np.float64)
    if poses.shape != (count, 4, 4):
        raise ValueError(f"{path}: expected {count} camera poses of shape 4x4, got an array of shape {poses.shape}")
    bad = np.flatnonzero(~np.isfinite(poses).all(axis=(1, 2)))
    if bad.size:
        raise ValueError(f"{path}: camera pose {bad[0]} is not finite")
    return poses


def pinhole_rows(values: np.ndarray, count: int, path: Path) -> np.ndarray:
    """ARKit rows ``(w, h, fx, fy, cx, cy)`` [count, 6] -> intrinsics matrices [count, 3, 3] (float64)."""
    rows = np.asarray(values, dtype=np.float64)
    if rows.shape != (count, 6) or not np.isfinite(rows).all():
        raise ValueError(f"{path}: expected {count} finite rows (w, h, fx, fy, cx, cy), got shape {rows.shape}")
    matrices = np.zeros((count, 3, 3))
    matrices[:, 0, 0], matrices[:, 1, 1] = rows[:, 2], rows[:, 3]
    matrices[:, 0, 2], matrices[:, 1, 2] = rows[:, 4], rows[:, 5]
    matrices[:, 2, 2] = 1.0
    return matrices


def intrinsics_matrices(values: np.ndarray, count: int, path: Path) -> np.ndarray:
    """``count`` finite 3x3 intrinsics [count, 3, 3] (float64), as stored."""
    matrices = np.asarray(values, dtype=np.float64)
    if matrices.shape != (count, 3, 3) or not np.isfinite(matrices).all():
        raise ValueError(f"{path}: expected {count} finite 3x3 intrinsics, got an array of shape {matrices.shape}")
    return matrices


def covisibility(values: np.ndarray, count: int, path: Path) -> dict[int, list[tuple[int, float]]]:
    """An ``image_collection`` (a pickled dict: reference frame -> [(other frame, overlap score), ...])."""
    collection: Any = values.item() if values.dtype == object and values.ndim == 0 else None
    if not isinstance(collection, dict):
        raise ValueError(f"{path}: 'image_collection' must be a dict of co-visible frames")
    groups: dict[int, list[tuple[int, float]]] = {}
    for ref, members in collection.items():
        pairs = [(int(m[0]), float(m[1])) for m in members]
        if not all(0 <= i < count for i in (int(ref), *(i for i, _ in pairs))):
            raise ValueError(f"{path}: 'image_collection' refers to a frame outside the {count} of the scene")
        groups[int(ref)] = pairs
    return groups


def read_depth_mm(path: Path, image_shape: tuple[int, ...], what: str) -> np.ndarray:
    """A uint16 depth PNG in millimetres as metres [H, W] (0 stays 0: no depth), the size of its image."""
    with Image.open(require_file(path, what)) as image:
        depth = np.asarray(image, dtype=np.uint16).astype(np.float32) / 1000.0
    if depth.shape != tuple(image_shape[:2]):
        raise ValueError(f"{path}: depth of size {depth.shape} does not match its image of size {image_shape[:2]}")
    return depth

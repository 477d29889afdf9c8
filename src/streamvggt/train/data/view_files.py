"""The per-view files of the CUT3R-processed photo collections and driving logs, read and checked.

BlendedMVS, MegaDepth and Waymo store each view as three files side by side, ``{stem}.jpg`` (RGB),
``{stem}.exr`` (float depth in one channel, as OpenCV writes it: channel ``Y``) and ``{stem}.npz`` (camera);
Virtual KITTI 2 uses a 16-bit PNG for depth. Decoders of the optional formats are imported when first needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamvggt.extras import require
from streamvggt.train.data.base import Frame
from streamvggt.train.data.layouts import _require


def read_exr_depth(path: Path) -> np.ndarray:
    """A single-channel EXR depth map as [H, W] float32 (half-float files are widened)."""
    openexr = require("OpenEXR", "train", "reading EXR depth maps")
    _require(path, "EXR depth map")
    try:
        with openexr.File(str(path), separate_channels=True) as exr:
            channels = {name: channel.pixels for name, channel in exr.channels().items()}
    except RuntimeError as error:
        raise ValueError(f"unreadable EXR depth map {path}: {error}") from None
    if "Y" in channels:
        depth = channels["Y"]
    elif len(channels) == 1:
        depth = next(iter(channels.values()))
    else:
        raise ValueError(f"EXR depth map {path} has channels {sorted(channels)}, expected one (Y)")
    if depth.ndim != 2:
        raise ValueError(f"EXR depth map {path} has shape {depth.shape}, expected [H, W]")
    return np.asarray(depth, dtype=np.float32)


def read_camera(path: Path, *keys: str) -> list[np.ndarray]:
    """The arrays ``keys`` of a camera .npz, as float64; a missing file or key names the file."""
    _require(path, "camera file")
    with np.load(path) as camera:
        missing = [k for k in keys if k not in camera.files]
        if missing:
            raise ValueError(f"camera file {path} lacks {', '.join(missing)} (has {', '.join(camera.files)})")
        return [np.asarray(camera[k], dtype=np.float64) for k in keys]


def checked_frame(
    image: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray, cam_to_world: np.ndarray, source: Path
) -> Frame:
    """A Frame after checking shapes and finiteness; ``source`` (the camera or depth file) names the view."""
    if depth.shape != image.shape[:2]:
        raise ValueError(f"{source}: depth map {depth.shape} does not match the image {image.shape[:2]}")
    if intrinsics.shape != (3, 3) or not np.isfinite(intrinsics).all():
        raise ValueError(f"{source}: intrinsics must be a finite 3x3 matrix, got shape {intrinsics.shape}")
    if cam_to_world.shape != (4, 4) or not np.isfinite(cam_to_world).all():
        raise ValueError(f"{source}: camera pose must be a finite 4x4 matrix, got shape {cam_to_world.shape}")
    return Frame(image=image, depth=depth, intrinsics=intrinsics, cam_to_world=cam_to_world)

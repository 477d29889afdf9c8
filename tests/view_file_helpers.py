"""Writing the per-view files of the EXR layouts (BlendedMVS, MegaDepth, Waymo) as their preprocessing does."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

OpenEXR = pytest.importorskip("OpenEXR")


def save_exr(path: Path, depth: np.ndarray) -> None:
    """A float32 depth map as OpenCV's ``cv2.imwrite(*.exr)`` stores one channel: channel ``Y``, ZIP-compressed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"Y": np.ascontiguousarray(depth, dtype=np.float32)}).write(str(path))


def as_stored_jpeg(image: np.ndarray) -> np.ndarray:
    """The pixels a reader gets back from a JPEG that ``save_image`` wrote (lossy: ~10 levels are lost on the
    noisy synthetic textures, so frames are compared with these rather than with the render)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    with Image.open(buffer) as stored:
        return np.asarray(stored.convert("RGB"))

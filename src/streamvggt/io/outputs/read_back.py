"""Reading back a ``streamvggt reconstruct`` output folder: its ``cameras.json`` and the per-frame arrays and
images it names. Shared by the viewer (reopening a reconstruction) and the training importer (pseudo-labels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from streamvggt.io.errors import InputError


def read_cameras_json(path: Path) -> dict[str, Any]:
    """The parsed ``cameras.json`` of an output folder, with at least one frame (InputError otherwise)."""
    if not path.parent.is_dir():
        raise InputError(f"reconstruct output folder not found: {path.parent}")
    if not path.is_file():
        raise InputError(f"{path.parent} has no cameras.json: not a streamvggt reconstruct output folder")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("frames"), list) or not document["frames"]:
        raise InputError(f"{path} lists no frames: not a finished streamvggt reconstruction")
    return document


def read_frame_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A per-frame ``.npy`` (depth, confidence, point map) that must have ``shape`` as cameras.json says."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if array.shape != shape:
        raise InputError(f"{path} has shape {list(array.shape)}, expected {list(shape)} from cameras.json")
    return array


def read_frame_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A saved processed frame as [H, W, 3] uint8 RGB; ``size`` is (H, W) from cameras.json."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise InputError(f"cannot read image {path}: {error}") from None
    if pixels.shape[:2] != size:
        raise InputError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {size[1]}x{size[0]}")
    return pixels

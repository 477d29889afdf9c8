"""Reopening a finished reconstruction (an output folder of ``streamvggt reconstruct``) without the model.

``cameras.json`` lists every frame with its camera and the paths of its per-frame files: depth and confidence
(always), the processed image (folders written before images were saved have none: their points are grey), and
the point map (only when written with ``--pointmaps``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from streamvggt.io.depth import depth_names
from streamvggt.io.errors import InputError
from streamvggt.viewer.scene import MAX_POINTS_PER_FRAME, ViewFrame, make_view_frame

log = logging.getLogger(__name__)

GREY = 160  # colour of points whose frame image was not saved


def is_reconstruction(path: str | Path) -> bool:
    """Whether ``path`` is an output folder of ``streamvggt reconstruct`` (it holds cameras.json)."""
    return Path(path).is_dir() and (Path(path) / "cameras.json").is_file()


def load_reconstruction(folder: str | Path, max_points: int = MAX_POINTS_PER_FRAME) -> Iterator[ViewFrame]:
    """The frames of a finished reconstruction in stream order, read one at a time (InputError if unusable)."""
    folder = Path(folder)
    document = _read_cameras(folder / "cameras.json")
    box = document.get("preprocess", {}).get("content_box")  # top, left, height, width; absent: no padding
    missing_images = 0
    for entry in document["frames"]:
        try:
            index, name = int(entry["index"]), str(entry["name"])
            height, width = (int(v) for v in entry["image_size"])
            extrinsic = np.asarray(entry["extrinsic"], dtype=np.float64).reshape(3, 4)
            intrinsic = np.asarray(entry["intrinsic"], dtype=np.float64).reshape(3, 3)
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{folder / 'cameras.json'}: frame entry is malformed ({error})") from None
        size = (height, width)
        depth_file, conf_file, _ = depth_names(index)
        depth = _read_array(folder / entry.get("depth", f"depth/{depth_file}"), size)
        conf = _read_array(folder / entry.get("depth_conf", f"depth/{conf_file}"), size)
        image = _read_image(folder / entry["image"], size) if "image" in entry else None
        if image is None:
            missing_images += 1
            image = np.full((*size, 3), GREY, dtype=np.uint8)
        pointmap = None
        if "pointmap" in entry and "pointmap_conf" in entry:
            pointmap = (
                _read_array(folder / entry["pointmap"], (*size, 3)),
                _read_array(folder / entry["pointmap_conf"], size),
            )
        yield make_view_frame(
            index, name, image, extrinsic, intrinsic, depth, conf, _valid_mask(size, box), pointmap, max_points
        )
    if missing_images:
        log.warning("%d frames of %s have no saved image: their points are grey", missing_images, folder)


def _read_cameras(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("frames"), list) or not document["frames"]:
        raise InputError(f"{path} lists no frames: not a finished reconstruction")
    return document


def _read_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if array.shape != shape:
        raise InputError(f"{path} has shape {list(array.shape)}, expected {list(shape)} from cameras.json")
    return array


def _read_image(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """The saved processed image [H, W, 3] uint8, or None when the file is missing."""
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if pixels.shape[:2] != size:
        raise InputError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {size[1]}x{size[0]}")
    return pixels


def _valid_mask(size: tuple[int, int], box: list[int] | None) -> np.ndarray:
    """[H, W] bool: True inside the content box (the image, not padding)."""
    valid = np.zeros(size, dtype=bool)
    top, left, height, width = box if box else (0, 0, *size)
    valid[top : top + height, left : left + width] = True
    return valid

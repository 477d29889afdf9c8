"""Reopening a finished reconstruction (an output folder of ``streamvggt reconstruct``) without the model.

``cameras.json`` lists every frame with its camera and the paths of its per-frame files: depth and confidence
(always), the processed image (folders written before images were saved have none: their points are grey), and
the point map (only when written with ``--pointmaps``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from streamvggt.io.errors import InputError
from streamvggt.io.outputs.depth import depth_names
from streamvggt.io.outputs.read_back import read_cameras_json, read_frame_array, read_frame_image
from streamvggt.viewer.scene_state import MAX_POINTS_PER_FRAME, ViewFrame, make_view_frame

log = logging.getLogger(__name__)

GREY = 160  # colour of points whose frame image was not saved


def is_reconstruction(path: str | Path) -> bool:
    """Whether ``path`` is an output folder of ``streamvggt reconstruct`` (it holds cameras.json)."""
    return Path(path).is_dir() and (Path(path) / "cameras.json").is_file()


def load_reconstruction(folder: str | Path, max_points: int = MAX_POINTS_PER_FRAME) -> Iterator[ViewFrame]:
    """The frames of a finished reconstruction in stream order, read one at a time (InputError if unusable)."""
    folder = Path(folder)
    document = read_cameras_json(folder / "cameras.json")
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
        depth = read_frame_array(folder / entry.get("depth", f"depth/{depth_file}"), size)
        conf = read_frame_array(folder / entry.get("depth_conf", f"depth/{conf_file}"), size)
        image = _read_image(folder / entry["image"], size) if "image" in entry else None
        if image is None:
            missing_images += 1
            image = np.full((*size, 3), GREY, dtype=np.uint8)
        pointmap = None
        if "pointmap" in entry and "pointmap_conf" in entry:
            pointmap = (
                read_frame_array(folder / entry["pointmap"], (*size, 3)),
                read_frame_array(folder / entry["pointmap_conf"], size),
            )
        yield make_view_frame(
            index, name, image, extrinsic, intrinsic, depth, conf, _valid_mask(size, box), pointmap, max_points
        )
    if missing_images:
        log.warning("%d frames of %s have no saved image: their points are grey", missing_images, folder)


def _read_image(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """The saved processed image [H, W, 3] uint8, or None when the file is missing."""
    return read_frame_image(path, size) if path.is_file() else None


def _valid_mask(size: tuple[int, int], box: list[int] | None) -> np.ndarray:
    """[H, W] bool: True inside the content box (the image, not padding)."""
    valid = np.zeros(size, dtype=bool)
    top, left, height, width = box if box else (0, 0, *size)
    valid[top : top + height, left : left + width] = True
    return valid

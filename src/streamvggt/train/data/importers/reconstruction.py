"""Importing an output folder of ``streamvggt reconstruct`` (pseudo-labels) as a generic scene.

Read: ``cameras.json`` (per frame ``extrinsic`` 3x4 camera-from-world OpenCV, ``intrinsic`` 3x3 with pixel
centres at integers, ``image_size`` [H, W], and the paths of its ``image`` and ``depth``/``depth_conf`` files,
by default ``images/NNNNNN.png`` and ``depth/NNNNNN.npy``), and ``preprocess.content_box`` when frames were
padded: frames are cropped to it, so padding never becomes training pixels. Depth and poses are in the model's
units (not metric); non-finite or non-positive depth, and depth below the frame's ``min_conf_percentile``-th
confidence percentile, become 0 (unknown).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from streamvggt.io.errors import InputError
from streamvggt.io.outputs.depth import depth_names
from streamvggt.io.outputs.frames import IMAGE_DIR, image_name
from streamvggt.io.outputs.read_back import read_cameras_json, read_frame_array, read_frame_image
from streamvggt.train.data.importers.scene_writer import ImportedFrame, SceneWriter

logger = logging.getLogger(__name__)


def import_reconstruction(
    source: str | Path, output: str | Path, min_conf_percentile: float = 0.0, overwrite: bool = False
) -> Path:
    """Write the frames of the reconstruction folder ``source`` as the generic scene ``output`` (stream order).

    Raises InputError / OutputError with a one-line message; returns the scene folder.
    """
    if not 0.0 <= min_conf_percentile < 100.0:
        raise InputError(f"--min-conf-percentile must be in [0, 100), got {min_conf_percentile}")
    folder = Path(source)
    document = read_cameras_json(folder / "cameras.json")
    box = document.get("preprocess", {}).get("content_box")
    with SceneWriter(Path(output), overwrite) as writer:
        for entry in document["frames"]:
            writer.add(_frame(folder, entry, box, min_conf_percentile))
        provenance = {
            "source": "reconstruct",
            "path": str(folder.resolve()),
            "depth": "predicted",
            "min_conf_percentile": min_conf_percentile,
            "units": "the reconstructing model's units (not metric)",
            "is_metric": False,
            "static": True,
        }
        return writer.commit(provenance)


def _frame(folder: Path, entry: dict[str, Any], box: list[int] | None, min_conf_percentile: float) -> ImportedFrame:
    cameras = folder / "cameras.json"
    try:
        index, name = int(entry["index"]), str(entry["name"])
        height, width = (int(v) for v in entry["image_size"])
        extrinsic = np.asarray(entry["extrinsic"], dtype=np.float64).reshape(3, 4)
        intrinsics = np.asarray(entry["intrinsic"], dtype=np.float64).reshape(3, 3)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{cameras}: frame entry is malformed ({error})") from None
    if not (np.isfinite(extrinsic).all() and np.isfinite(intrinsics).all()):
        raise InputError(f"{cameras}: frame {index} has a non-finite camera")
    depth_file, conf_file, _ = depth_names(index)
    image = read_frame_image(folder / entry.get("image", f"{IMAGE_DIR}/{image_name(index)}"), (height, width))
    depth = read_frame_array(folder / entry.get("depth", f"depth/{depth_file}"), (height, width))
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    if min_conf_percentile > 0:
        conf = read_frame_array(folder / entry.get("depth_conf", f"depth/{conf_file}"), (height, width))
        depth[conf < np.percentile(conf, min_conf_percentile)] = 0.0
    if box:
        top, left, box_height, box_width = (int(v) for v in box)
        image = image[top : top + box_height, left : left + box_width]
        depth = depth[top : top + box_height, left : left + box_width]
        intrinsics = intrinsics.copy()
        intrinsics[0, 2] -= left
        intrinsics[1, 2] -= top
    cam_from_world = np.vstack([extrinsic, [0.0, 0.0, 0.0, 1.0]])
    return ImportedFrame(
        name=name,
        image=np.ascontiguousarray(image),
        depth=depth,
        intrinsics=intrinsics,
        cam_to_world=np.linalg.inv(cam_from_world),
    )

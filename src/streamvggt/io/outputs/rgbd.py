"""An RGB-D sequence in the TUM RGB-D benchmark layout, for RGB-D SLAM and TSDF fusion tools.

``rgbd/rgb/NNNNNN.png`` (the processed frames), ``rgbd/depth/NNNNNN.png`` (16-bit, metres x 5000, 0 = no depth),
``rgb.txt`` and ``depth.txt`` (``timestamp filename``), ``associate.txt`` (``t rgb/... t depth/...``, each colour
image with the depth of the same frame), ``groundtruth.txt`` (the predicted camera-to-world poses, ``timestamp tx ty
tz qx qy qz qw`` in metres) and, as TUM sequences leave intrinsics to their documentation, ``intrinsics.txt`` (per
frame ``timestamp fx fy cx cy``, pixel centres at integers) and ``camera_intrinsic.json`` (Open3D's format: the mean
intrinsics). Model units become metres by ``depth_scale`` (metres per model unit).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streamvggt.geometry import invert_pose, mat_to_quat
from streamvggt.io.atomic import atomic_output
from streamvggt.io.outputs.cameras import CameraRecord
from streamvggt.io.outputs.depth16 import write_depth16
from streamvggt.io.outputs.frames import image_name

RGBD_DIR = "rgbd"
TUM_DEPTH_FACTOR = 5000.0  # TUM: a depth PNG value of 5000 is one metre


def timestamp(camera: CameraRecord) -> float:
    """The frame's time in seconds for video and streams, its stream index otherwise (as trajectory.tum)."""
    return camera.timestamp if camera.timestamp is not None else float(camera.index)


def write_rgbd_frame(
    folder: Path, index: int, image: np.ndarray, depth: np.ndarray, valid: np.ndarray, depth_scale: float
) -> list[Path]:
    """Write frame ``index``'s colour image [H, W, 3] uint8 and depth [H, W] (model units) into ``folder``'s rgb/
    and depth/ (which exist)."""
    written = []
    with atomic_output(folder / "rgb" / image_name(index)) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    written.append(folder / "rgb" / image_name(index))
    written.append(write_depth16(folder / "depth" / image_name(index), depth, valid, TUM_DEPTH_FACTOR * depth_scale))
    return written


def write_rgbd_lists(folder: Path, cameras: list[CameraRecord], depth_scale: float, source: str) -> list[Path]:
    """Write the sequence's lists, trajectory and intrinsics for ``cameras`` (their frames already written)."""
    stamps = [f"{timestamp(cam):.6f}" for cam in cameras]
    names = [image_name(cam.index) for cam in cameras]
    header = f"# file: '{source}'"
    world_from_cam = invert_pose(torch.from_numpy(np.stack([c.extrinsic for c in cameras]).astype(np.float64)))
    centres = (world_from_cam[:, :3, 3] * depth_scale).numpy()
    quats = mat_to_quat(world_from_cam[:, :3, :3]).numpy()
    intrinsics = np.stack([c.intrinsic for c in cameras]).astype(np.float64)
    height, width = cameras[0].image_size
    mean = intrinsics.mean(axis=0)
    pinholes = intrinsics[:, [0, 1, 0, 1], [0, 1, 2, 2]]  # fx, fy, cx, cy
    contents = {
        "rgb.txt": ["# color images", header, "# timestamp filename"]
        + [f"{t} rgb/{n}" for t, n in zip(stamps, names, strict=True)],
        "depth.txt": ["# depth maps", header, "# timestamp filename"]
        + [f"{t} depth/{n}" for t, n in zip(stamps, names, strict=True)],
        "associate.txt": [f"{t} rgb/{n} {t} depth/{n}" for t, n in zip(stamps, names, strict=True)],
        "groundtruth.txt": ["# predicted camera-to-world poses, metres", header, "# timestamp tx ty tz qx qy qz qw"]
        + [" ".join([t, *(f"{v:.9g}" for v in (*c, *q))]) for t, c, q in zip(stamps, centres, quats, strict=True)],
        "intrinsics.txt": ["# pinhole intrinsics per frame (pixel centres at integers)", "# timestamp fx fy cx cy"]
        + [" ".join([t, *(f"{v:.9g}" for v in row)]) for t, row in zip(stamps, pinholes, strict=True)],
    }
    written = []
    for name, lines in contents.items():
        with atomic_output(folder / name) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(folder / name)
    open3d = {"width": width, "height": height, "intrinsic_matrix": mean.T.reshape(-1).tolist()}  # column-major
    with atomic_output(folder / "camera_intrinsic.json") as tmp:
        tmp.write_text(json.dumps(open3d) + "\n", encoding="utf-8")
    written.append(folder / "camera_intrinsic.json")
    return written

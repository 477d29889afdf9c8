"""``transforms.json``: the camera file of nerfstudio and instant-ngp (and the splat trainers that read it).

Each frame has ``file_path`` (relative to the output folder) and ``transform_matrix``, a 4x4 camera-to-world pose
with OpenGL camera axes (x right, y up, z backwards). Intrinsics (``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``,
corner-origin pixels as COLMAP's) sit at the top when every frame shares them, else in each frame.
``depth_file_path`` names a 16-bit PNG whose values times ``depth_unit_scale_factor`` are depths in the poses'
units; ``ply_file_path`` names the points for splat initialisation, in the same world frame; ``applied_transform``
(identity) says the poses are the reconstruction's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamvggt.io.outputs.cameras import CameraRecord
from streamvggt.io.outputs.image_views import ImageView

# OpenCV camera axes (x right, y down, z forward) to OpenGL's (x right, y up, z backwards): flip y and z.
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
DEPTH_UNIT_SCALE = 1e-3  # PNG value x this = depth in model units (millimetres when the units are metres)


def opengl_camera_to_world(extrinsic: np.ndarray) -> np.ndarray:
    """The 4x4 camera-to-world pose with OpenGL camera axes of a 3x4 OpenCV camera-from-world ``extrinsic``."""
    rotation, translation = np.asarray(extrinsic, dtype=np.float64)[:, :3], np.asarray(extrinsic, np.float64)[:, 3]
    pose = np.eye(4)
    pose[:3, :3] = rotation.T
    pose[:3, 3] = -rotation.T @ translation
    return pose @ OPENGL_FROM_OPENCV


def write_transforms(
    path: Path,
    cameras: list[CameraRecord],
    views: list[ImageView],
    ply_file: str,
    depth_files: list[str] | None = None,
) -> None:
    """Write ``transforms.json`` for ``cameras`` and their image ``views``; paths relative to ``path``'s folder."""
    intrinsics = [_intrinsics(cam, view) for cam, view in zip(cameras, views, strict=True)]
    shared = all(item == intrinsics[0] for item in intrinsics)
    frames = []
    for i, (cam, view) in enumerate(zip(cameras, views, strict=True)):
        frame = {"file_path": view.path, "transform_matrix": opengl_camera_to_world(cam.extrinsic).tolist()}
        if not shared:
            frame.update(intrinsics[i])
        if depth_files is not None:
            frame["depth_file_path"] = depth_files[i]
        frame["colmap_im_id"] = i + 1  # the image's id in colmap/, as nerfstudio's own converter records it
        frames.append(frame)
    document = {
        "camera_model": "OPENCV",  # no distortion terms: all zero
        **(intrinsics[0] if shared else {}),
        "ply_file_path": ply_file,
        # The poses are the model's world as is; without this key nerfstudio guesses a COLMAP axis swap.
        "applied_transform": np.eye(4)[:3].tolist(),
        **({"depth_unit_scale_factor": DEPTH_UNIT_SCALE} if depth_files is not None else {}),
        "frames": frames,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _intrinsics(camera: CameraRecord, view: ImageView) -> dict[str, float | int]:
    fx, fy, cx, cy = view.pinhole(camera.intrinsic)
    height, width = view.size
    return {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": width, "h": height}

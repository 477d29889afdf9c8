"""Camera outputs: ``cameras.json`` (per-frame extrinsic and intrinsic) and a TUM trajectory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamvggt.geometry import invert_pose, mat_to_quat

CONVENTION = {
    "extrinsic": "3x4 [R | t], camera-from-world (x_cam = R x_world + t); OpenCV camera axes: x right, y down, "
    "z forward",
    "intrinsic": "3x3 pinhole K in pixels of the processed image; principal point at (W/2, H/2); pixel (u, v) "
    "(column, row index) is at coordinates (u, v), so pixel centres are integers",
    "world": "the first frame's camera frame, in the model's units (scale is not metric)",
    "image_size": "[height, width] of the processed image the model saw",
    "depth": "per-frame .npy, float32 [H, W]: z in the camera frame, model units; _conf: the depth confidence",
    "image": "per-frame PNG: the processed image the model saw, [H, W] RGB",
    "pointmap": "per-frame .npy (optional), float32 [H, W, 3]: the point head's world points; _conf: its confidence",
    "precision": "the precision the model ran in: requested (auto, fp32, bf16, fp16, int8) and resolved on this "
    "machine",
}


@dataclass(frozen=True)
class CameraRecord:
    """One frame's camera and where the frame came from."""

    index: int  # position in the reconstructed stream
    name: str  # frame name in the input (file name or frame_NNNNNN)
    source_index: int  # position in the input before sampling
    timestamp: float | None  # seconds, for video and streams
    extrinsic: np.ndarray  # [3, 4] camera-from-world, OpenCV
    intrinsic: np.ndarray  # [3, 3]
    image_size: tuple[int, int]  # (H, W)


def write_cameras_json(path: Path, cameras: list[CameraRecord], extra: dict[str, Any], files: dict[int, dict]) -> None:
    """Write every camera with the conventions; ``extra`` adds top-level keys, ``files`` per-frame output paths."""
    frames = [
        {
            "index": cam.index,
            "name": cam.name,
            "source_index": cam.source_index,
            "timestamp": cam.timestamp,
            "image_size": list(cam.image_size),
            "extrinsic": np.asarray(cam.extrinsic, dtype=np.float64).tolist(),
            "intrinsic": np.asarray(cam.intrinsic, dtype=np.float64).tolist(),
            **files.get(cam.index, {}),
        }
        for cam in cameras
    ]
    document = {"convention": CONVENTION, **extra, "frames": frames}
    path.write_text(_to_json(document) + "\n", encoding="utf-8")


def _to_json(value: Any, depth: int = 0) -> str:
    """JSON indented by level, with each list of numbers on one line: a matrix takes three lines, not fifteen."""
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict) and value:
        items = ",\n".join(f"{inner}{json.dumps(key)}: {_to_json(item, depth + 1)}" for key, item in value.items())
        return f"{{\n{items}\n{pad}}}"
    if isinstance(value, list) and not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        items = ",\n".join(f"{inner}{_to_json(item, depth + 1)}" for item in value)
        return f"[\n{items}\n{pad}]"
    return json.dumps(value)


def write_tum(path: Path, cameras: list[CameraRecord]) -> None:
    """Write camera-to-world poses as TUM lines ``timestamp tx ty tz qx qy qz qw``.

    The timestamp is the frame's time in seconds for video and streams, its stream index otherwise.
    """
    extrinsics = torch.from_numpy(np.stack([np.asarray(c.extrinsic, dtype=np.float64) for c in cameras]))
    world_from_cam = invert_pose(extrinsics)
    quats = mat_to_quat(world_from_cam[:, :3, :3]).numpy()
    centres = world_from_cam[:, :3, 3].numpy()
    lines = ["# camera-to-world poses (OpenCV camera axes; world = first camera): timestamp tx ty tz qx qy qz qw"]
    for cam, centre, quat in zip(cameras, centres, quats, strict=True):
        stamp = cam.timestamp if cam.timestamp is not None else float(cam.index)
        lines.append(" ".join(f"{v:.9g}" for v in (stamp, *centre, *quat)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

"""A COLMAP text model (cameras.txt, images.txt, points3D.txt) of a reconstruction.

One PINHOLE camera per image (the model predicts intrinsics per frame). Each 3D point has a track of one
observation: the frame and pixel it was reconstructed from. COLMAP puts the centre of the top-left pixel at
(0.5, 0.5) where the model puts it at (0, 0), so principal points and observations are shifted by half a pixel.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from streamvggt.geometry import mat_to_quat, project_points
from streamvggt.io.atomic import atomic_output
from streamvggt.io.cameras import CameraRecord

PIXEL_OFFSET = 0.5  # COLMAP image coordinates = model pixel coordinates + this


def colmap_name(name: str) -> str:
    """COLMAP reads an image name up to the first space: spaces become underscores."""
    return re.sub(r"\s", "_", name)


def reprojection_errors(cameras: list[CameraRecord], records: np.ndarray) -> np.ndarray:
    """Pixel distance [N] between each record's point projected into its frame and the pixel it came from."""
    frames = torch.from_numpy(records["frame"].astype(np.int64))
    extrinsics = torch.from_numpy(np.stack([c.extrinsic for c in cameras]).astype(np.float64))[frames]
    intrinsics = torch.from_numpy(np.stack([c.intrinsic for c in cameras]).astype(np.float64))[frames]
    xyz = torch.from_numpy(records["xyz"].astype(np.float64))[:, None]  # [N, 1, 3]: one point per camera
    pixels, _ = project_points(xyz, extrinsics, intrinsics)
    error = (pixels[:, 0] - torch.from_numpy(records["uv"].astype(np.float64))).norm(dim=-1).numpy()
    return np.where(np.isfinite(error), error, -1.0)  # COLMAP's "unknown"


def write_colmap_text(folder: Path, cameras: list[CameraRecord], records: np.ndarray) -> list[Path]:
    """Write the model for ``cameras`` (frame i is image i + 1) and point records (see streamvggt.io.points)."""
    folder.mkdir(exist_ok=True)
    frames = records["frame"].astype(np.int64)
    order = np.argsort(frames, kind="stable")  # records grouped by frame, each group in record order
    bounds = np.searchsorted(frames[order], np.arange(len(cameras) + 1))
    point2d_index = np.empty(len(records), dtype=np.int64)
    for i in range(len(cameras)):
        members = order[bounds[i] : bounds[i + 1]]
        point2d_index[members] = np.arange(len(members))

    camera_lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    camera_lines.append(f"# Number of cameras: {len(cameras)}")
    image_lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(cameras)}",
    ]
    quats = mat_to_quat(torch.from_numpy(np.stack([c.extrinsic[:, :3] for c in cameras]).astype(np.float64)))
    for i, (cam, (qx, qy, qz, qw)) in enumerate(zip(cameras, quats.tolist(), strict=True)):
        height, width = cam.image_size
        k = cam.intrinsic
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2] + PIXEL_OFFSET, k[1, 2] + PIXEL_OFFSET
        camera_lines.append(f"{i + 1} PINHOLE {width} {height} {fx:.9g} {fy:.9g} {cx:.9g} {cy:.9g}")
        tx, ty, tz = cam.extrinsic[:, 3]
        pose = " ".join(f"{v:.12g}" for v in (qw, qx, qy, qz, tx, ty, tz))
        image_lines.append(f"{i + 1} {pose} {i + 1} {colmap_name(cam.name)}")
        members = order[bounds[i] : bounds[i + 1]]
        u, v = (records["uv"][members] + PIXEL_OFFSET).T.tolist()
        image_lines.append(" ".join(map("%.1f %.1f %d".__mod__, zip(u, v, (members + 1).tolist(), strict=True))))

    errors = reprojection_errors(cameras, records)
    point_lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {len(records)}",
    ]
    # Columns as Python lists and one %-format per row: formatting numpy scalars one by one is 20x slower.
    xyz, rgb = records["xyz"].T.tolist(), records["rgb"].T.tolist()
    columns = (range(1, len(records) + 1), *xyz, *rgb, errors.tolist(), (frames + 1).tolist(), point2d_index.tolist())
    point_lines += map("%d %.7g %.7g %.7g %d %d %d %.4g %d %d".__mod__, zip(*columns, strict=True))

    written = []
    for name, lines in (("cameras.txt", camera_lines), ("images.txt", image_lines), ("points3D.txt", point_lines)):
        with atomic_output(folder / name) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(folder / name)
    return written

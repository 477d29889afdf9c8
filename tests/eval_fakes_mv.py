"""Tiny fake datasets in the multi-view layouts (7-Scenes, NRGBD, CO3D, TUM, ScanNet, Sintel), in the real file
formats, with a known scene: a textured box room seen by a camera moving along x and turning slightly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.reconstruct_helpers import frame_pixels

WIDTH, HEIGHT = 64, 48  # the raw frames of the pose datasets (scaled by the protocols)
RGBD_WIDTH, RGBD_HEIGHT = 640, 480  # 7-Scenes and NRGBD: their fixed intrinsics are for this size
K_SINTEL = np.array([[52.5, 0.0, 32.0], [0.0, 52.5, 24.0], [0.0, 0.0, 1.0]])


def camera_to_world(index: int) -> np.ndarray:
    """A 4 x 4 OpenCV camera-to-world pose: the camera slides along x and yaws a little with each frame."""
    angle = 0.05 * index
    c, s = np.cos(angle), np.sin(angle)
    pose = np.eye(4)
    pose[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    pose[:3, 3] = [0.1 * index, 0.02 * index, 0.05 * index]
    return pose


def depth_map(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A slanted plane at 2-3 m with a hole of no measurement (0), float32 metres."""
    v, u = np.mgrid[0:height, 0:width]
    depth = (2.0 + u / width + 0.3 * v / height + 0.05 * index).astype(np.float32)
    depth[:4, :4] = 0.0
    return depth


def save_rgb(path: Path, index: int, width: int = WIDTH, height: int = HEIGHT) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame_pixels(index, width, height)).save(path)


def save_depth_png(path: Path, depth_m: np.ndarray, units_per_metre: float = 1000.0) -> None:
    """A 16-bit PNG of depth in 1 / units_per_metre steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(depth_m * units_per_metre).astype(np.uint16)).save(path)


def write_7scenes(root: Path, frames: int = 5) -> Path:
    """``root/chess/seq-01`` (in TestSplit.txt) with ``frames`` frames, and a one-frame ``seq-02`` not in it."""
    for seq, count in (("seq-01", frames), ("seq-02", 1)):
        for i in range(count):
            folder = root / "chess" / seq
            save_rgb(folder / f"frame-{i:06d}.color.png", i, RGBD_WIDTH, RGBD_HEIGHT)
            depth = depth_map(i, RGBD_HEIGHT, RGBD_WIDTH)
            depth[-1, -1] = 65.535  # 65535: no measurement
            save_depth_png(folder / f"frame-{i:06d}.depth.proj.png", depth)
            np.savetxt(folder / f"frame-{i:06d}.pose.txt", camera_to_world(i))
    (root / "chess" / "TestSplit.txt").write_text("sequence1\n")
    return root


def write_nrgbd(root: Path, frames: int = 6, nan_pose: int | None = None) -> Path:
    """``root/kitchen`` with images/img<i>.png, depth/depth<i>.png and poses.txt in OpenGL axes."""
    scene = root / "kitchen"
    lines = []
    for i in range(frames):
        save_rgb(scene / "images" / f"img{i}.png", i, RGBD_WIDTH, RGBD_HEIGHT)
        save_depth_png(scene / "depth" / f"depth{i}.png", depth_map(i, RGBD_HEIGHT, RGBD_WIDTH))
        gl_pose = camera_to_world(i) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
        if i == nan_pose:
            gl_pose = np.full((4, 4), np.nan)
        lines += [" ".join(f"{v:.9f}" for v in row) for row in gl_pose]
    (scene / "poses.txt").write_text("\n".join(lines) + "\n")
    return root


def pytorch3d_camera(cam_from_world_cv: np.ndarray) -> tuple[list, list]:
    """The PyTorch3D (R, T) of an OpenCV camera-from-world (inverse of the dataset's conversion)."""
    flip = np.diag([-1.0, -1.0, 1.0])
    rotation = (flip @ cam_from_world_cv[:3, :3]).T
    translation = flip @ cam_from_world_cv[:3, 3]
    return rotation.tolist(), translation.tolist()


def write_co3d(
    root: Path, sequences: dict[str, int], category: str = "apple", bad_translation: str | None = None
) -> Path:
    """CO3D images and ``annotations/<category>_test.jgz`` for sequences {name: frame count}."""
    annotations = {}
    for name, count in sequences.items():
        frames = []
        for i in range(count):
            filepath = f"{category}/{name}/images/frame{i + 1:06d}.jpg"
            save_rgb(root / filepath, i)
            rotation, translation = pytorch3d_camera(np.linalg.inv(camera_to_world(i)))
            if name == bad_translation:
                translation = [1e6, 0.0, 0.0]
            frames.append({"filepath": filepath, "R": rotation, "T": translation, "focal_length": [1.0, 1.0]})
        annotations[name] = frames
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "annotations" / f"{category}_test.jgz", "wt", encoding="utf-8") as file:
        json.dump(annotations, file)
    return root


def quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rotation).as_quat()


def write_tum(root: Path, frames: int = 4, sequence: str = "rgbd_dataset_freiburg3_walking_xyz") -> Path:
    """``root/<sequence>/rgb_90/*.png`` and ``groundtruth_90.txt`` (timestamp tx ty tz qx qy qz qw)."""
    folder = root / sequence
    lines = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
    for i in range(frames):
        stamp = 1341846313.5 + 0.1 * i
        save_rgb(folder / "rgb_90" / f"{stamp:.6f}.png", i)
        pose = camera_to_world(i)
        values = [stamp, *pose[:3, 3], *quaternion_xyzw(pose[:3, :3])]
        lines.append(" ".join(f"{v:.9f}" for v in values))
    (folder / "groundtruth_90.txt").write_text("\n".join(lines) + "\n")
    return root


def write_scannet(root: Path, frames: int = 4, scene: str = "scene0707_00", invalid: int | None = None) -> Path:
    """``root/<scene>/color_90/*.jpg`` and ``pose_90.txt`` (16 numbers per line, camera to world)."""
    folder = root / scene
    lines = []
    for i in range(frames):
        save_rgb(folder / "color_90" / f"{i * 10:06d}.jpg", i)
        pose = camera_to_world(i) if i != invalid else np.full((4, 4), -np.inf)
        lines.append(" ".join(f"{v:.9f}" for v in pose.ravel()))
    (folder / "pose_90.txt").write_text("\n".join(lines) + "\n")
    return root


SINTEL_TAG = 202021.25


def write_sintel(root: Path, frames: int = 4, sequence: str = "alley_2") -> Path:
    """``training/{final,depth,camdata_left}/<sequence>/frame_XXXX.{png,dpt,cam}`` (Sintel SDK formats)."""
    for i in range(frames):
        stem = f"frame_{i + 1:04d}"
        save_rgb(root / "training" / "final" / sequence / f"{stem}.png", i)
        depth = depth_map(i)
        dpt = root / "training" / "depth" / sequence / f"{stem}.dpt"
        dpt.parent.mkdir(parents=True, exist_ok=True)
        header = np.array([SINTEL_TAG], "<f4").tobytes() + np.array([WIDTH, HEIGHT], "<i4").tobytes()
        dpt.write_bytes(header + depth.astype("<f4").tobytes())
        cam = root / "training" / "camdata_left" / sequence / f"{stem}.cam"
        cam.parent.mkdir(parents=True, exist_ok=True)
        extrinsic = np.linalg.inv(camera_to_world(i))[:3]
        cam.write_bytes(
            np.array([SINTEL_TAG], "<f4").tobytes()
            + K_SINTEL.astype("<f8").tobytes()
            + extrinsic.astype("<f8").tobytes()
        )
    return root

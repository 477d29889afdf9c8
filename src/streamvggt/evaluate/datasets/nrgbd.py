"""Neural RGB-D scenes (Azinović et al.), in the layout of the Spann3R / CUT3R evaluation.

Layout::

    <scene>/images/img0.png ...      640 x 480 RGB
    <scene>/depth/depth0.png ...     uint16 millimetres
    <scene>/poses.txt                4 lines per frame: the camera-to-world matrix in OpenGL axes; "nan" = unknown

Poses are converted to OpenCV axes by negating the y and z columns of camera-to-world. All frames share the fixed
intrinsics (554.256, 554.256, 320, 240). The frames kept are every ``min(500, N // 2)``-th of the N images, which
gives 2 or 3 frames per scene; kept frames without a pose are left out (the reference used the identity).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from streamvggt.evaluate.datasets.base import DepthDataset, DepthFrame, DepthSequence, read_depth_png
from streamvggt.evaluate.datasets.sevenscenes import valid_range
from streamvggt.geometry import invert_pose
from streamvggt.io.errors import InputError

log = logging.getLogger(__name__)

FOCAL = 554.2562584220408
INTRINSIC = np.array([[FOCAL, 0.0, 320.0], [0.0, FOCAL, 240.0], [0.0, 0.0, 1.0]])
KF_EVERY = 500
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes: OpenGL (y up, z back) -> OpenCV (y down, z forward)


def read_poses(path: Path) -> np.ndarray:
    """``poses.txt`` -> camera-to-world [N, 4, 4] in OpenCV axes; NaN matrices for unknown poses."""
    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from error
    if len(lines) % 4:
        raise InputError(f"{path}: {len(lines)} lines, expected 4 per pose")
    poses = np.full((len(lines) // 4, 4, 4), np.nan)
    for i in range(len(poses)):
        block = lines[4 * i : 4 * i + 4]
        if any("nan" in line.lower() for line in block):
            continue
        try:
            poses[i] = np.array([line.split() for line in block], dtype=np.float64)
        except ValueError as error:
            raise InputError(f"{path}: pose {i} is not a 4 x 4 matrix ({error})") from error
    return poses @ GL_TO_CV


class NrgbdDataset(DepthDataset):
    name = "nrgbd"
    folder_names = ("neural_rgbd", "nrgbd")
    layout = "<scene>/images/img<i>.png, <scene>/depth/depth<i>.png and <scene>/poses.txt"

    def __init__(self, root: str | Path, kf_every: int = KF_EVERY) -> None:
        super().__init__(root)
        if kf_every < 1:
            raise ValueError(f"kf_every must be >= 1, got {kf_every}")
        self.kf_every = kf_every
        self._poses: dict[str, np.ndarray] = {}

    def _looks_right(self, folder: Path) -> bool:
        return folder.is_dir() and any((scene / "poses.txt").is_file() for scene in folder.iterdir())

    def sequences(self) -> list[DepthSequence]:
        sequences = []
        for scene in sorted(p for p in self.root.iterdir() if (p / "poses.txt").is_file()):
            count = sum(1 for _ in (scene / "images").glob("img*.png"))
            poses = self._scene_poses(scene.name)
            step = max(1, min(self.kf_every, count // 2))
            frames = []
            for i in range(0, count, step):
                if i >= len(poses) or not np.isfinite(poses[i]).all():
                    log.warning("nrgbd %s: frame %d has no pose, left out", scene.name, i)
                    continue
                frames.append(DepthFrame(str(i), scene / "images" / f"img{i}.png", scene / "depth" / f"depth{i}.png"))
            if frames:
                sequences.append(DepthSequence(scene.name, frames))
        if not sequences:
            raise self._error("no scene with posed frames")
        return sequences

    def read_depth(self, path: Path) -> np.ndarray:
        return valid_range(read_depth_png(path, 1000.0))

    def cameras(self, sequence: DepthSequence) -> tuple[np.ndarray, np.ndarray]:
        """Intrinsics [N, 3, 3] and camera-from-world extrinsics [N, 4, 4] (float64, OpenCV axes)."""
        poses = self._scene_poses(sequence.name)
        c2w = np.stack([poses[int(frame.name)] for frame in sequence.frames])
        return np.repeat(INTRINSIC[None], len(c2w), axis=0), invert_pose(torch.from_numpy(c2w)).numpy()

    def _scene_poses(self, scene: str) -> np.ndarray:
        if scene not in self._poses:
            self._poses[scene] = read_poses(self.root / scene / "poses.txt")
        return self._poses[scene]

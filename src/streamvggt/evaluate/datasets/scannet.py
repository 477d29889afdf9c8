"""ScanNet (v2 test scenes), in the 90-frame layout of the MonST3R / CUT3R preparation scripts.

Layout::

    <scene>/color_90/<frame>.jpg     90 frames subsampled from the scan
    <scene>/pose_90.txt              one line per frame: the camera-to-world matrix, 16 (or 12) numbers row-major

ScanNet marks frames without tracking with -inf poses: they stay non-finite here, and the protocol leaves them
out of the metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamvggt.evaluate.datasets.posed import PoseDataset, PoseSequence, read_matrix_rows
from streamvggt.geometry import invert_pose

IMAGES, POSES = "color_90", "pose_90.txt"


class ScanNetDataset(PoseDataset):
    name = "scannet"
    folder_names = ("scannetv2", "scannet")
    layout = f"<scene>/{IMAGES}/*.jpg and <scene>/{POSES} (ScanNet, MonST3R preparation)"

    def _looks_right(self, folder: Path) -> bool:
        return folder.is_dir() and any((scene / POSES).is_file() for scene in folder.iterdir() if scene.is_dir())

    def sequences(self) -> list[PoseSequence]:
        sequences = []
        for folder in sorted(p for p in self.root.iterdir() if (p / POSES).is_file()):
            images = sorted((folder / IMAGES).glob("*.jpg"))
            rows = read_matrix_rows(folder / POSES, (12, 16))
            if len(images) != len(rows):
                raise self._error(f"{folder.name} has {len(images)} images but {len(rows)} poses in {POSES}")
            sequences.append(PoseSequence(folder.name, images, cam_from_world_rows(rows)))
        if not sequences:
            raise self._error("no scene")
        return sequences


def cam_from_world_rows(rows: np.ndarray) -> np.ndarray:
    """Rows of camera-to-world matrices [N, 12 or 16] (row-major) -> camera-from-world [N, 4, 4]."""
    c2w = np.tile(np.eye(4), (len(rows), 1, 1))
    c2w[:, :3, :] = rows[:, :12].reshape(-1, 3, 4)
    with np.errstate(invalid="ignore"):
        return invert_pose(torch.from_numpy(c2w)).numpy()

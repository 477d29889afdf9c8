"""Microsoft 7-Scenes, test split, in the layout of the Spann3R / CUT3R evaluation (SimpleRecon's projected depth).

Layout::

    <scene>/TestSplit.txt                         lines like "sequence2": the test sequences
    <scene>/seq-02/frame-000000.color.png         640 x 480 RGB
    <scene>/seq-02/frame-000000.depth.proj.png    uint16 millimetres, registered to the colour camera; 65535 = none
    <scene>/seq-02/frame-000000.pose.txt          4 x 4 camera-to-world matrix

All frames share the fixed intrinsics (525, 525, 320, 240) the reference uses. Every 200th frame is kept
(``kf_every``), which gives 3 to 5 frames per sequence.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

from streamvggt.evaluate.datasets.base import DepthDataset, DepthFrame, DepthSequence, read_depth_png
from streamvggt.evaluate.datasets.posed import read_matrix_rows
from streamvggt.geometry import invert_pose
from streamvggt.io.errors import InputError

log = logging.getLogger(__name__)

INTRINSIC = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
KF_EVERY = 200
MIN_DEPTH, MAX_DEPTH = 1e-3, 10.0  # metres; depth outside is invalid (both datasets of the protocol)


class SevenScenesDataset(DepthDataset):
    name = "7scenes"
    folder_names = ("7scenes", "7-scenes")
    layout = "<scene>/TestSplit.txt and <scene>/seq-XX/frame-XXXXXX.{color.png,depth.proj.png,pose.txt}"

    def __init__(self, root: str | Path, kf_every: int = KF_EVERY) -> None:
        super().__init__(root)
        if kf_every < 1:
            raise ValueError(f"kf_every must be >= 1, got {kf_every}")
        self.kf_every = kf_every

    def _looks_right(self, folder: Path) -> bool:
        return folder.is_dir() and any((scene / "TestSplit.txt").is_file() for scene in folder.iterdir())

    def sequences(self) -> list[DepthSequence]:
        sequences = []
        for scene in sorted(p for p in self.root.iterdir() if (p / "TestSplit.txt").is_file()):
            for line in (scene / "TestSplit.txt").read_text(encoding="utf-8").split():
                digits = re.sub(r"\D", "", line)
                if not digits:
                    continue
                folder = scene / f"seq-{digits.zfill(2)}"
                colours = sorted(folder.glob("frame-*.color.png"))
                if not colours:
                    log.warning("7scenes: %s has no frames, left out", folder.relative_to(self.root))
                    continue
                frames = []
                for colour in colours[:: self.kf_every]:
                    stem = colour.name.removesuffix(".color.png")
                    frames.append(DepthFrame(stem, colour, folder / f"{stem}.depth.proj.png"))
                sequences.append(DepthSequence(f"{scene.name}/{folder.name}", frames))
        if not sequences:
            raise self._error("no test sequence with frames")
        return sequences

    def read_depth(self, path: Path) -> np.ndarray:
        # 65535 (no measurement) becomes 65.5 m, beyond the 10 m cap: valid_range clears it with the rest.
        return valid_range(read_depth_png(path, 1000.0))

    def cameras(self, sequence: DepthSequence) -> tuple[np.ndarray, np.ndarray]:
        """Intrinsics [N, 3, 3] and camera-from-world extrinsics [N, 4, 4] (float64, OpenCV axes)."""
        poses = []
        for frame in sequence.frames:
            path = frame.image.with_name(f"{frame.name}.pose.txt")
            if not path.is_file():
                raise self._error(f"missing pose {path.relative_to(self.root)}")
            pose = read_matrix_rows(path, (4,))
            if pose.shape != (4, 4):
                raise InputError(f"{path}: expected a 4 x 4 camera-to-world matrix, got {len(pose)} rows of 4")
            poses.append(pose)
        extrinsics = invert_pose(torch.from_numpy(np.stack(poses))).numpy()
        return np.repeat(INTRINSIC[None], len(poses), axis=0), extrinsics


def valid_range(depth: np.ndarray) -> np.ndarray:
    """Depth [H, W] float32 with values outside [1 mm, 10 m] (and non-finite ones) set to 0, as the protocol does."""
    depth = np.nan_to_num(depth.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.where((depth < MIN_DEPTH) | (depth > MAX_DEPTH), np.float32(0.0), depth)

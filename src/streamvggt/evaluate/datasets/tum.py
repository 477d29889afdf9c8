"""TUM RGB-D dynamic sequences, in the 90-frame layout of the MonST3R / CUT3R preparation scripts.

Layout::

    <sequence>/rgb_90/<timestamp>.png       90 frames subsampled from the sequence
    <sequence>/groundtruth_90.txt           one line per frame: timestamp tx ty tz qx qy qz qw (camera to world)

Frames and poses pair by position (the preparation script wrote them together), as the reference pairs them.
"""

from __future__ import annotations

from pathlib import Path

from streamvggt.evaluate.datasets.posed import PoseDataset, PoseSequence, read_matrix_rows, tum_to_cam_from_world

IMAGES, POSES = "rgb_90", "groundtruth_90.txt"


class TumDataset(PoseDataset):
    name = "tum"
    folder_names = ("tum",)
    layout = f"<sequence>/{IMAGES}/*.png and <sequence>/{POSES} (TUM RGB-D, MonST3R preparation)"

    def _looks_right(self, folder: Path) -> bool:
        return folder.is_dir() and any((seq / POSES).is_file() for seq in folder.iterdir() if seq.is_dir())

    def sequences(self) -> list[PoseSequence]:
        sequences = []
        for folder in sorted(p for p in self.root.iterdir() if (p / POSES).is_file()):
            images = sorted((folder / IMAGES).glob("*.png"))
            rows = read_matrix_rows(folder / POSES, (8,))
            if len(images) != len(rows):
                raise self._error(f"{folder.name} has {len(images)} images but {len(rows)} poses in {POSES}")
            sequences.append(PoseSequence(folder.name, images, tum_to_cam_from_world(rows[:, 1:])))
        if not sequences:
            raise self._error("no sequence")
        return sequences

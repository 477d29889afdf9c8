"""KITTI depth (validation selection): one sequence per drive, up to 110 frames each.

Layout (after the MonST3R / CUT3R preparation, prepare_kitti.py)::

    depth_selection/val_selection_cropped/image_gathered/<drive>_02/*.png
    depth_selection/val_selection_cropped/groundtruth_depth_gathered/<drive>_02/*.png   (16-bit, 256 per metre)

No max depth; images and ground truth share file names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamvggt.evaluate.datasets.base import DepthDataset, DepthSequence, folders_paired_by_name, read_depth_png

DEPTH_UNITS_PER_METRE = 256.0
_SELECTION = Path("depth_selection") / "val_selection_cropped"


class KittiDataset(DepthDataset):
    name = "kitti"
    folder_names = ("kitti",)
    layout = (
        f"{_SELECTION}/image_gathered/<drive>/*.png and {_SELECTION}/groundtruth_depth_gathered/<drive>/*.png "
        "(the MonST3R/CUT3R prepare_kitti.py output)"
    )

    def _looks_right(self, folder: Path) -> bool:
        return (folder / _SELECTION / "image_gathered").is_dir()

    def sequences(self) -> list[DepthSequence]:
        images_root = self.root / _SELECTION / "image_gathered"
        depth_root = self.root / _SELECTION / "groundtruth_depth_gathered"
        sequences = folders_paired_by_name(images_root, depth_root, "*.png", "kitti")
        if not sequences:
            raise self._error("no drive has both images and ground-truth depth")
        return sequences

    def read_depth(self, path: Path) -> np.ndarray:
        return read_depth_png(path, DEPTH_UNITS_PER_METRE)

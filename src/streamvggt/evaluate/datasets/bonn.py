"""Bonn RGB-D Dynamic: the five sequences of the video-depth protocol, 110 frames each.

Layout (after the MonST3R / CUT3R preparation, which copies frames 30-139 of each sequence)::

    rgbd_bonn_dataset/rgbd_bonn_<sequence>/rgb_110/*.png
    rgbd_bonn_dataset/rgbd_bonn_<sequence>/depth_110/*.png    (16-bit, 5000 units per metre)

Max depth 70.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamvggt.evaluate.datasets.base import DepthDataset, DepthSequence, paired_by_order, read_depth_png

BONN_SEQUENCES = ("balloon2", "crowd2", "crowd3", "person_tracking2", "synchronous")
DEPTH_UNITS_PER_METRE = 5000.0


class BonnDataset(DepthDataset):
    name = "bonn"
    folder_names = ("rgbd_bonn_dataset", "bonn", "bonn/rgbd_bonn_dataset")
    layout = (
        "rgbd_bonn_<sequence>/rgb_110/*.png and depth_110/*.png for "
        + ", ".join(BONN_SEQUENCES)
        + " (the MonST3R/CUT3R prepare_bonn.py output)"
    )
    max_depth = 70.0

    def _looks_right(self, folder: Path) -> bool:
        return any((folder / f"rgbd_bonn_{name}").is_dir() for name in BONN_SEQUENCES)

    def sequences(self) -> list[DepthSequence]:
        sequences = []
        for name in BONN_SEQUENCES:
            folder = self.root / f"rgbd_bonn_{name}"
            images, depths = sorted((folder / "rgb_110").glob("*.png")), sorted((folder / "depth_110").glob("*.png"))
            if not images or not depths:
                raise self._error(f"{folder.name} lacks rgb_110/*.png or depth_110/*.png")
            sequences.append(DepthSequence(name, paired_by_order(images, depths, f"bonn {name}")))
        return sequences

    def read_depth(self, path: Path) -> np.ndarray:
        return read_depth_png(path, DEPTH_UNITS_PER_METRE)

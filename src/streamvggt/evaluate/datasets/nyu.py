"""NYU-Depth v2 (the 654 official test images): single images, mono-depth only.

Layout (after the MonST3R / CUT3R preparation, prepare_nyuv2.py)::

    val/nyu_images/<name>.png
    val/nyu_depths/<name>.npy      ([H, W] float metres)

No max depth and no crop, as the reference; all images form one sequence ("val").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamvggt.evaluate.datasets.base import DepthDataset, DepthSequence, paired_by_name
from streamvggt.io.errors import InputError


class NyuDataset(DepthDataset):
    name = "nyu"
    folder_names = ("nyu_v2", "nyu-v2", "nyu")
    layout = "val/nyu_images/*.png and val/nyu_depths/*.npy (the MonST3R/CUT3R prepare_nyuv2.py output)"
    single_images = True  # not a video: the video-depth protocol does not apply

    def _looks_right(self, folder: Path) -> bool:
        return (folder / "val" / "nyu_images").is_dir() and (folder / "val" / "nyu_depths").is_dir()

    def sequences(self) -> list[DepthSequence]:
        images = sorted((self.root / "val" / "nyu_images").glob("*.png"))
        frames = paired_by_name(images, sorted((self.root / "val" / "nyu_depths").glob("*.npy")), "nyu")
        if not frames:
            raise self._error("no image has a depth file of the same name")
        return [DepthSequence("val", frames)]

    def read_depth(self, path: Path) -> np.ndarray:
        try:
            depth = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read depth {path}: {error}") from error
        if depth.ndim == 3 and 1 in (depth.shape[0], depth.shape[-1]):
            depth = depth.squeeze()
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
            raise InputError(f"{path}: expected a [H, W] depth array, got {depth.dtype} {depth.shape}")
        return depth.astype(np.float32)

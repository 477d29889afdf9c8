"""Waymo Open (perception v1.4) as processed by CUT3R: driving logs with sparse lidar depth, metric.

Layout: ``ROOT/{segment}/{frame:05d}_{camera}.jpg``, ``.exr`` (float z-depth in metres of the lidar points seen
by the camera, 0 elsewhere) and ``.npz`` (``intrinsics`` 3x3, ``cam2world`` 4x4 OpenCV, ``distortion``, unused:
the images are not undistorted, as in the reference). ``ROOT/invalid_files.h5`` has one group per segment with
an ``invalid_pairs`` dataset of byte strings ``"{camera}_{frame}"``: views left out.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from streamvggt.extras import require
from streamvggt.train.data.base import Frame, SequenceDataset
from streamvggt.train.data.layouts import _require, _sampling, read_rgb
from streamvggt.train.data.sampling import ClipSampling
from streamvggt.train.data.view_files import checked_frame, read_camera, read_exr_depth

INVALID_FILE = "invalid_files.h5"
SKIPPED_CAMERA = "5"  # SIDE_RIGHT in Waymo's numbering (1 FRONT ... 5); left out by the reference
SIDE_CAMERA = "4"  # SIDE_LEFT: the scene moves faster across it, so half the maximum stride


def read_invalid_views(path: Path) -> dict[str, set[tuple[str, str]]]:
    """{segment: {(camera, frame)}} of the views ``invalid_files.h5`` excludes."""
    h5py = require("h5py", "train", "reading Waymo's invalid_files.h5")
    invalid: dict[str, set[tuple[str, str]]] = {}
    with h5py.File(_require(path, "Waymo invalid-view list"), "r") as h5:
        for segment, group in h5.items():
            pairs = set()
            for entry in group["invalid_pairs"][:]:
                text = entry.decode("utf-8") if isinstance(entry, bytes) else str(entry)
                camera, _, frame = text.partition("_")
                pairs.add((camera, frame))
            invalid[segment] = pairs
    return invalid


class WaymoDataset(SequenceDataset):
    """One sequence per (segment, camera); clips are mostly video-like with strides up to 8 frames (4 for camera
    4). Moving vehicles make the scenes dynamic (``static`` False).

    The processed folder holds the training segments only, so ``split`` must be ``"train"`` or None (the
    reference passes None). Deviation: ``is_video`` is what the sampling drew; the reference marks every Waymo
    clip as video, also the 10% that are shuffled.
    """

    name = "waymo"
    static = False

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str | None = None,
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        if split not in (None, "train"):
            raise ValueError(f"Waymo has no '{split}' split: its processed folder is the training set")
        default = ClipSampling(max_interval=8, video_prob=0.9, fixed_interval_prob=0.9, block_shuffle=16)
        self.sampling = _sampling(sampling, default)
        half = max(self.sampling.min_interval, self.sampling.max_interval // 2)
        self.side_sampling = replace(self.sampling, max_interval=half)
        base = _require(Path(root), "Waymo folder")
        invalid = read_invalid_views(base / INVALID_FILE)
        for segment in sorted(p for p in base.iterdir() if p.is_dir()):
            excluded = invalid.get(segment.name, set())
            cameras: dict[str, list[str]] = {}
            for image in segment.glob("*.jpg"):
                frame, _, camera = image.stem.partition("_")
                if camera != SKIPPED_CAMERA and (camera, frame) not in excluded:
                    cameras.setdefault(camera, []).append(frame)
            for camera, frames in sorted(cameras.items()):
                self.sequences.append((f"{segment.name}/{camera}", [(segment, f, camera) for f in sorted(frames)]))
        if not self.sequences:
            raise ValueError(f"no Waymo segment with images under {base}")
        self.index_sequences()

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        seq_index, start = self._starts[index]
        frames = self.sequences[seq_index][1]
        sampling = self.side_sampling if frames[0][2] == SIDE_CAMERA else self.sampling
        positions, is_video = sampling.sample(len(frames), start, self.num_views, rng)
        return [frames[p] for p in positions], is_video

    def load_frame(self, handle: tuple[Path, str, str]) -> Frame:
        segment, frame, camera = handle
        stem = segment / f"{frame}_{camera}"
        source = stem.with_suffix(".npz")
        intrinsics, cam_to_world = read_camera(source, "intrinsics", "cam2world")
        depth = read_exr_depth(stem.with_suffix(".exr"))
        return checked_frame(read_rgb(stem.with_suffix(".jpg")), depth, intrinsics, cam_to_world, source)

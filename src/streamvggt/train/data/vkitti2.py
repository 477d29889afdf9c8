"""Virtual KITTI 2 as processed by CUT3R: rendered driving scenes with dense metric depth and sky.

Layout: ``ROOT/{scene}/{variation}/Camera_{0|1}/{b}_rgb.jpg``, ``{b}_depth.png`` (uint16 centimetres; the
renderer's far value 65535, i.e. 655.35 m, is sky) and ``{b}_cam.npz`` (``camera_intrinsics`` 3x3,
``camera_pose`` 4x4 camera-to-world OpenCV), ``b`` the five-digit frame number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamvggt.train.data.base import Frame, SequenceDataset
from streamvggt.train.data.layouts import _require, _sampling, read_rgb, read_uint16
from streamvggt.train.data.sampling import ClipSampling
from streamvggt.train.data.view_files import checked_frame, read_camera

CAMERAS = ("Camera_0", "Camera_1")
SKY_DEPTH = 655.0  # metres; depth at or beyond it is the sky (stored as 655.35 m)


class VirtualKitti2Dataset(SequenceDataset):
    """One sequence per (scene, variation, camera); clips are videos with strides up to 5 frames. Cars move,
    so the scenes are dynamic (``static`` False); sky depth comes out negative.

    ``split``: ``"all"`` (or None, the reference recipe's choice) reads every scene, ``"train"`` all but the
    last scene in name order, ``"test"`` only the last.
    """

    name = "vkitti2"
    static = False

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str | None = "all",
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        default = ClipSampling(max_interval=5, video_prob=1.0, fixed_interval_prob=0.9)
        self.sampling = _sampling(sampling, default)
        base = _require(Path(root), "Virtual KITTI 2 folder")
        scenes = sorted(p for p in base.iterdir() if p.is_dir())
        if split == "train":
            scenes = scenes[:-1]
        elif split == "test":
            scenes = scenes[-1:]
        elif split not in (None, "all"):
            raise ValueError(f"Virtual KITTI 2 split must be all, train or test, got '{split}'")
        for scene in scenes:
            for variation in sorted(p for p in scene.iterdir() if p.is_dir()):
                for camera in CAMERAS:
                    folder = _require(variation / camera, "Virtual KITTI 2 camera folder")
                    frames = sorted(p.name[:5] for p in folder.iterdir() if p.name.endswith(".jpg"))
                    self.sequences.append((f"{scene.name}/{variation.name}/{camera}", [(folder, b) for b in frames]))
        if not self.sequences:
            raise ValueError(f"no Virtual KITTI 2 scene for split '{split}' under {base}")
        self.index_sequences()

    def load_frame(self, handle: tuple[Path, str]) -> Frame:
        folder, frame = handle
        source = folder / f"{frame}_cam.npz"
        intrinsics, cam_to_world = read_camera(source, "camera_intrinsics", "camera_pose")
        depth = read_uint16(_require(folder / f"{frame}_depth.png", "depth map")) / 100.0
        depth[depth >= SKY_DEPTH] = -1.0
        return checked_frame(read_rgb(folder / f"{frame}_rgb.jpg"), depth, intrinsics, cam_to_world, source)

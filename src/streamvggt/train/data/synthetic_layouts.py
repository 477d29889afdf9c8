"""Readers for the four synthetic datasets CUT3R stores as per-scene ``rgb/``, ``depth/`` and ``cam/`` folders.

Every scene holds ``rgb/{b}.png|jpg``, ``depth/{b}.npy`` (float z-depth) and ``cam/{b}.npz`` (``intrinsics``
[3, 3] OpenCV, ``pose`` [4, 4] camera-to-world). What differs between them, as in the reference readers:

- ``spring``: ``ROOT/{scene}``, PNG frames, metric depth from disparity (0 where there was none); dynamic.
- ``mvs_synth``: ``ROOT/{scene}``, JPEG frames (GTA V); up to scale; depth above the frame's 98th percentile
  or above 1000 is dropped (far city and sky). Its stored world is mirrored (x and y swapped by the
  preprocessing), which relative poses cancel.
- ``pointodyssey``: ``ROOT/{split}/{scene}`` for a fixed list of scenes, JPEG frames, metric depth (0-1000 m,
  above 1000 dropped); dynamic.
- ``omniobject3d``: ``ROOT/{object}`` with ``ROOT/scale.json`` ({object: scale}); PNG frames named ``r_{n}``
  in numeric order; depth and camera positions stored in millimetres times the object's scale. Up to scale;
  clips are shuffled collections of turntable views.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from streamvggt.train.data.base import Frame, SequenceDataset
from streamvggt.train.data.layouts import _require, _sampling, read_rgb
from streamvggt.train.data.sampling import ClipSampling


class SceneFolderDataset(SequenceDataset):
    """Scenes of ``rgb/``, ``depth/`` and ``cam/`` folders; subclasses set where scenes are and how files read.

    Class attributes: ``image_suffix`` (the frames' extension), ``default_sampling`` (the reference's clip
    options), ``is_metric`` and ``static``.
    """

    image_suffix = ".png"
    default_sampling = ClipSampling()

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str | None = "train",
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        self.sampling = _sampling(sampling, self.default_sampling)
        self.root = _require(Path(root), f"{self.name} dataset folder")
        for scene in self.scene_folders(split):
            rgb = _require(scene / "rgb", f"{self.name} image folder")
            names = [p.stem for p in rgb.iterdir() if p.suffix == self.image_suffix]
            self.sequences.append((scene.name, [(scene, b) for b in self.order_frames(names)]))
        if not self.sequences:
            raise ValueError(f"{self.name}: no scene folder in {self.root}")
        self.index_sequences()

    def scene_folders(self, split: str | None) -> list[Path]:
        """The scene folders to read (the three datasets without splits store their training set at ``root``;
        None, the reference recipe's split for spring and omniobject3d, reads it too)."""
        if split not in (None, "train"):
            raise ValueError(f"{self.name} has only a training set (split 'train'), got split '{split}'")
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def order_frames(self, names: list[str]) -> list[str]:
        return sorted(names)

    def convert(self, scene: Path, depth: np.ndarray, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored depth and pose -> the dataset's depth (0 invalid) and camera-to-world; by default unchanged."""
        return depth, cam_to_world

    def load_frame(self, handle: tuple[Path, str]) -> Frame:
        scene, base = handle
        image = read_rgb(_require(scene / "rgb" / f"{base}{self.image_suffix}", f"{self.name} image"))
        depth_path = _require(scene / "depth" / f"{base}.npy", f"{self.name} depth")
        depth = np.load(depth_path).astype(np.float32)
        if depth.shape != image.shape[:2]:
            raise ValueError(f"{depth_path}: depth of shape {depth.shape}, the image is {image.shape[:2]}")
        depth[~np.isfinite(depth)] = 0.0
        cam_path = _require(scene / "cam" / f"{base}.npz", f"{self.name} camera")
        intrinsics, pose = read_camera(cam_path)
        depth, pose = self.convert(scene, depth, pose)
        return Frame(image=image, depth=depth, intrinsics=intrinsics, cam_to_world=pose)


def read_camera(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``intrinsics`` [3, 3] and ``pose`` [4, 4] (float64) of a ``cam/*.npz``; anything else is a ValueError."""
    with np.load(path) as cam:
        missing = {"intrinsics", "pose"} - set(cam.files)
        if missing:
            raise ValueError(f"{path}: missing {', '.join(sorted(missing))}")
        intrinsics, pose = cam["intrinsics"].astype(np.float64), cam["pose"].astype(np.float64)
    if intrinsics.shape != (3, 3) or pose.shape != (4, 4):
        raise ValueError(f"{path}: intrinsics {intrinsics.shape} and pose {pose.shape}, expected (3, 3) and (4, 4)")
    if not (np.isfinite(intrinsics).all() and np.isfinite(pose).all()):
        raise ValueError(f"{path}: non-finite intrinsics or pose")
    return intrinsics, pose


class SpringDataset(SceneFolderDataset):
    """Spring (Blender film scenes) as processed by CUT3R: metric, dynamic, video clips with strides up to 16."""

    name = "spring"
    static = False
    default_sampling = ClipSampling(max_interval=16, video_prob=1.0, fixed_interval_prob=1.0)


class MVSSynthDataset(SceneFolderDataset):
    """MVS-Synth (GTA V street sequences) as processed by CUT3R: up to scale, video clips with strides up to 4.

    Far depth is dropped per frame as in the reference: values above the 98th percentile of the frame's valid
    depth, and above 1000. Marked dynamic (``static`` False): GTA V streets carry traffic and pedestrians,
    which depth-derived track targets would get wrong.
    """

    name = "mvs_synth"
    is_metric = False
    static = False
    image_suffix = ".jpg"
    default_sampling = ClipSampling(max_interval=4, video_prob=1.0, fixed_interval_prob=1.0)
    far_percentile = 98.0
    far_limit = 1000.0

    def convert(self, scene: Path, depth: np.ndarray, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = depth[depth > 0]
        threshold = np.percentile(valid, self.far_percentile) if valid.size else 0.0
        depth = np.where((depth > threshold) | (depth > self.far_limit), 0.0, depth).astype(np.float32)
        return depth, cam_to_world


# The reference trains on these PointOdyssey sequences only (the cab_h_bench ones are left out).
POINTODYSSEY_SCENES = frozenset(
    {
        "cnb_dlab_0215_3rd",
        "cnb_dlab_0215_ego1",
        "cnb_dlab_0225_3rd",
        "cnb_dlab_0225_ego1",
        "dancing",
        "dancingroom0_3rd",
        "footlab_3rd",
        "footlab_ego1",
        "footlab_ego2",
        "girl",
        "girl_egocentric",
        "human_egocentric",
        "human_in_scene",
        "human_in_scene1",
        "kg",
        "kg_ego1",
        "kg_ego2",
        "kitchen_gfloor",
        "kitchen_gfloor_ego1",
        "kitchen_gfloor_ego2",
        "scene_carb_h_tables",
        "scene_carb_h_tables_ego1",
        "scene_carb_h_tables_ego2",
        "scene_j716_3rd",
        "scene_j716_ego1",
        "scene_j716_ego2",
        "scene_recording_20210910_S05_S06_0_3rd",
        "scene_recording_20210910_S05_S06_0_ego2",
        "scene1_0129",
        "scene1_0129_ego",
        "seminar_h52_3rd",
        "seminar_h52_ego1",
        "seminar_h52_ego2",
    }
)


class PointOdysseyDataset(SceneFolderDataset):
    """PointOdyssey as processed by CUT3R: ``ROOT/{train|test|val}/{scene}``, only the reference's scene list;
    metric, dynamic, video clips with strides up to 4; depth above 1000 m dropped."""

    name = "pointodyssey"
    static = False
    image_suffix = ".jpg"
    default_sampling = ClipSampling(max_interval=4, video_prob=1.0, fixed_interval_prob=1.0)
    splits = ("train", "test", "val")
    far_limit = 1000.0

    def scene_folders(self, split: str) -> list[Path]:
        if split not in self.splits:
            raise ValueError(f"pointodyssey split must be one of {', '.join(self.splits)}, got '{split}'")
        base = _require(self.root / split, "pointodyssey split folder")
        return sorted(p for p in base.iterdir() if p.is_dir() and p.name in POINTODYSSEY_SCENES)

    def convert(self, scene: Path, depth: np.ndarray, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.where(depth > self.far_limit, 0.0, depth).astype(np.float32), cam_to_world


def first_number(name: str) -> int:
    """The first run of digits in ``name`` (``r_10`` -> 10), 0 if none: the reference's frame order."""
    match = re.search(r"\d+", name)
    return int(match.group()) if match else 0


class OmniObject3DDataset(SceneFolderDataset):
    """OmniObject3D renders as processed by CUT3R: up to scale, static, shuffled clips with strides up to 100.

    Depth and camera positions are stored in millimetres times the object's entry in ``ROOT/scale.json``;
    both are divided by 1000 x scale on loading, as in the reference.
    """

    name = "omniobject3d"
    is_metric = False
    default_sampling = ClipSampling(max_interval=100, video_prob=0.0)

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str | None = "train",
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        scale_path = _require(Path(root) / "scale.json", "omniobject3d scale file")
        try:
            scales = json.loads(scale_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{scale_path}: not JSON ({error})") from None
        if not isinstance(scales, dict):
            raise ValueError(f"{scale_path}: expected an object {{scene: scale}}")
        self.scales = scales
        super().__init__(root, num_views, split, sampling, aug_crop, color_jitter)

    def scene_folders(self, split: str) -> list[Path]:
        scenes = super().scene_folders(split)
        scale_path = self.root / "scale.json"
        for scene in scenes:
            scale = self.scales.get(scene.name)
            if not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
                raise ValueError(f"{scale_path}: no positive scale for scene {scene.name}")
        return scenes

    def order_frames(self, names: list[str]) -> list[str]:
        return sorted(names, key=lambda name: (first_number(name), name))

    def convert(self, scene: Path, depth: np.ndarray, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        to_units = 1.0 / (float(self.scales[scene.name]) * 1000.0)
        cam_to_world = cam_to_world.copy()
        cam_to_world[:3, 3] *= to_units
        return (depth * to_units).astype(np.float32), cam_to_world

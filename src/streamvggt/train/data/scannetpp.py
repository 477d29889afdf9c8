"""ScanNet++ as processed by CUT3R (``preprocess_scannetpp.py`` then ``generate_set_scannetpp.py``).

Layout: ``ROOT/all_metadata.npz`` (``scenes``); per scene ``new_scene_metadata.npz`` with ``images`` (basenames
without extension, sorted: DSLR ``DSC*`` then iPhone ``frame_*``), ``intrinsics`` [N, 3, 3] (COLMAP convention:
pixel centres at +0.5), ``trajectories`` [N, 4, 4] camera-to-world (OpenCV axes) and ``image_collection``
(frame -> [(co-visible frame, overlap score)]); ``images/{name}.jpg`` (undistorted) and ``depth/{name}.png``
(uint16 millimetres rendered from the mesh, 0 where there is no mesh or the anonymisation mask hides it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamvggt.train.data.base import Frame, MultiViewDataset
from streamvggt.train.data.layouts import _sampling, read_rgb
from streamvggt.train.data.sampling import ClipSampling
from streamvggt.train.data.scene_files import (
    camera_poses,
    covisibility,
    intrinsics_matrices,
    load_arrays,
    names,
    read_depth_mm,
    require_file,
)

logger = logging.getLogger(__name__)

# COLMAP puts the first pixel's centre at (0.5, 0.5), OpenCV at (0, 0).
_COLMAP_TO_OPENCV = np.array([[0.0, 0.0, -0.5], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0]])


@dataclass(frozen=True)
class CovisibleGroup:
    """A reference frame's co-visible frames (global frame indices, most overlapping first, the reference
    itself first) and the frames of the same camera's capture in order (the video a clip may be cut from)."""

    members: list[int]
    video: list[int]


class ScanNetppDataset(MultiViewDataset):
    """ScanNet++ (DSLR and iPhone captures of indoor scenes): metric, static.

    One clip per co-visibility group (a reference frame and the frames that overlap it). With probability 0.7
    the clip is cut from a capture with ``sampling`` (strides up to 3, video-like with probability 0.8); else it
    takes ``num_views`` frames from the group's first ``num_views * U(2, 4)`` members, in frame order, and with
    probability 0.25 shuffled. Frames listed in the metadata but missing from ``images/`` are not used (as the
    reference); scenes without a group of ``num_views`` frames are skipped.

    Deviations from the reference reader (bugs there):

    - the stored intrinsics are COLMAP's (the depth was rendered with them by pyrender, whose principal point is
      in continuous pixel coordinates); they are moved to OpenCV's convention (-0.5 px), so that depth and
      intrinsics give the mesh's points exactly; the reference uses them as they are. (The preprocess converts
      the undistorted camera to OpenCV twice, which leaves the images about 0.25 px off either choice.)
    - a group's video is its reference frame's own camera (the reference takes the other camera's capture);
    - the group members a clip draws from are the most overlapping ones (the reference sorts them by score and
      then by frame index, so it takes the earliest frames instead);
    - the reference lists every group ten times; the mix draws each group equally often without that.
    """

    name = "scannetpp"
    is_metric = True
    static = True
    video_choice = 0.7  # probability of a clip cut from a capture
    shuffled_group = 0.25  # probability of a group clip in random order

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str = "train",
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        if split != "train":
            raise ValueError(f"ScanNet++ (CUT3R processing) has only a 'train' split, got split '{split}'")
        default = ClipSampling(max_interval=3, video_prob=0.8, fixed_interval_prob=0.5, block_shuffle=16)
        self.sampling = _sampling(sampling, default)
        index = Path(root) / "all_metadata.npz"
        scenes = names(load_arrays(index, "ScanNet++ scene index", ["scenes"])["scenes"], index)
        if not scenes:
            raise ValueError(f"ScanNet++ scene index {index} lists no scenes")
        # Frames of all scenes in one list: (scene folder, name, OpenCV intrinsics, camera-to-world).
        self.frames: list[tuple[Path, str, np.ndarray, np.ndarray]] = []
        self.groups: list[CovisibleGroup] = []
        for scene in scenes:
            self._add_scene(Path(root) / scene)
        if not self.groups:
            raise ValueError(f"{self.name}: no scene under {root} has a co-visible group of {num_views} frames")

    def _add_scene(self, scene: Path) -> None:
        path = scene / "new_scene_metadata.npz"
        keys = ["images", "intrinsics", "trajectories", "image_collection"]
        meta = load_arrays(path, "ScanNet++ scene metadata", keys)
        frame_names = names(meta["images"], path)
        count = len(frame_names)
        intrinsics = intrinsics_matrices(meta["intrinsics"], count, path) + _COLMAP_TO_OPENCV
        poses = camera_poses(meta["trajectories"], count, path)
        collection = covisibility(meta["image_collection"], count, path)
        on_disk = {p.stem for p in (scene / "images").glob("*.jpg")}
        offset = len(self.frames)
        captures = {
            camera: [offset + i for i, n in enumerate(frame_names) if n.startswith(prefix) and n in on_disk]
            for camera, prefix in (("dslr", "DSC"), ("iphone", "frame"))
        }
        groups = []
        for ref, others in collection.items():
            if len(others) + 1 < self.num_views:
                continue
            # A stable sort keeps the reference (score 1) ahead of members that tie with it.
            ranked = sorted([(ref, 1.0), *others], key=lambda member: -member[1])
            camera = "iphone" if frame_names[ref].startswith("frame") else "dslr"
            groups.append(CovisibleGroup([offset + i for i, _ in ranked], captures[camera]))
        if not groups:
            logger.info("%s: skipping scene %s (no group of %d frames)", self.name, scene.name, self.num_views)
            return
        self.frames.extend(zip([scene] * count, frame_names, intrinsics, poses, strict=True))
        self.groups.extend(groups)

    def __len__(self) -> int:
        return len(self.groups)

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        group = self.groups[index]
        choice = rng.random()
        if choice < self.video_choice and len(group.video) >= self.num_views:
            start = int(rng.integers(0, len(group.video) - self.num_views + 1))
            positions, is_video = self.sampling.sample(len(group.video), start, self.num_views, rng)
            return [group.video[p] for p in positions], is_video
        candidates = group.members[: int(self.num_views * (2 + 2 * rng.random()))]
        chosen = sorted(int(i) for i in rng.permutation(candidates)[: self.num_views])
        if choice > 1.0 - self.shuffled_group:
            return [int(i) for i in rng.permutation(chosen)], False
        return chosen, True

    def load_frame(self, handle: int) -> Frame:
        scene, name, intrinsics, pose = self.frames[handle]
        image = read_rgb(require_file(scene / "images" / f"{name}.jpg", "ScanNet++ image"))
        depth = read_depth_mm(scene / "depth" / f"{name}.png", image.shape, "ScanNet++ depth")
        return Frame(image=image, depth=depth, intrinsics=intrinsics, cam_to_world=pose)

"""MegaDepth as processed by CUT3R (DUSt3R's preprocessing): internet photos of landmarks, up to scale.

Layout: ``ROOT/megadepth_sets_64.npz`` holds ``scenes`` (strings ``"{scene} {subscene}"``), ``images`` (names,
e.g. ``"1234_abc.jpg"``) and ``sets`` [N, 65] int (a scene index, then 64 indices into ``images`` of co-visible
photos). View ``img`` of scene ``"s u"`` is ``ROOT/s/u/{img}.jpg``, ``{img}.exr`` (float depth, 0 = unknown) and
``{img}.npz`` (``intrinsics`` 3x3, ``cam2world`` 4x4 OpenCV).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamvggt.train.data.base import Frame, MultiViewDataset
from streamvggt.train.data.layouts import _require, read_rgb
from streamvggt.train.data.view_files import checked_frame, read_camera, read_exr_depth

INDEX_FILE = "megadepth_sets_64.npz"
# The reference holds these scenes out of training and validates on them.
VALIDATION_SCENES = ("0015", "0022")


class MegaDepthDataset(MultiViewDataset):
    """One clip per set of the index: ``num_views`` distinct photos of the set drawn at random, unordered.

    ``split``: ``"train"`` leaves out the sets of scenes 0015 and 0022, ``"val"`` keeps only those, ``"all"``
    (or None) keeps every set. Unlike the reference, a training index without the held-out scenes is accepted.
    """

    name = "megadepth"
    is_metric = False

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str | None = "train",
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        self.root = Path(root)
        index = _require(self.root / INDEX_FILE, "MegaDepth index")
        # The index stores names as object arrays (pickled strings) in the user's own data file.
        with np.load(index, allow_pickle=True) as data:
            self.scenes = [str(s) for s in data["scenes"]]
            self.images = [str(i) for i in data["images"]]
            sets = np.asarray(data["sets"])
        if sets.ndim != 2 or sets.shape[1] < 2 or not np.issubdtype(sets.dtype, np.integer):
            raise ValueError(f"{index}: 'sets' must be an integer array [N, 1 + views], got {sets.dtype} {sets.shape}")
        if sets.shape[1] - 1 < num_views:
            raise ValueError(f"{index}: sets have {sets.shape[1] - 1} images, fewer than {num_views} views")
        if sets.min() < 0 or sets[:, 0].max() >= len(self.scenes) or sets[:, 1:].max() >= len(self.images):
            raise ValueError(f"{index}: 'sets' refers to scenes or images the index does not list")
        held_out = np.array([s.startswith(VALIDATION_SCENES) for s in self.scenes], dtype=bool)
        in_held_out = held_out[sets[:, 0]]
        if split == "train":
            sets = sets[~in_held_out]
        elif split == "val":
            sets = sets[in_held_out]
        elif split not in (None, "all"):
            raise ValueError(f"MegaDepth split must be train, val or all, got '{split}'")
        if len(sets) == 0:
            raise ValueError(f"{index}: no image set for split '{split}'")
        self.sets = sets

    def __len__(self) -> int:
        return len(self.sets)

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        scene, members = int(self.sets[index][0]), self.sets[index][1:65]
        chosen = rng.choice(members, self.num_views, replace=False)
        return [(scene, int(i)) for i in chosen], False

    def load_frame(self, handle: tuple[int, int]) -> Frame:
        scene, image = handle
        scene_name, subscene = self.scenes[scene].split()
        stem = self.root / scene_name / subscene / self.images[image]
        camera = Path(f"{stem}.npz")
        intrinsics, cam_to_world = read_camera(camera, "intrinsics", "cam2world")
        depth = read_exr_depth(Path(f"{stem}.exr"))
        return checked_frame(read_rgb(Path(f"{stem}.jpg")), depth, intrinsics, cam_to_world, camera)

"""The synthetic training set: clips of procedural rooms (:mod:`streamvggt.scenes.procedural_room`)."""

from __future__ import annotations

import numpy as np

from streamvggt.scenes.procedural_room import SyntheticScene
from streamvggt.train.data.base import Frame, SequenceDataset
from streamvggt.train.data.sampling import ClipSampling, item_rng


class SyntheticDataset(SequenceDataset):
    """Clips of procedural scenes (see the module docstring): ``num_scenes`` scenes of ``frames_per_scene``
    frames, each scene drawn from ``(seed, scene index)``; views are rendered at the requested size directly
    (``aug_crop`` is not used: there is no larger stored image to crop from)."""

    name = "synthetic"

    def __init__(
        self,
        num_views: int,
        num_scenes: int = 64,
        frames_per_scene: int = 24,
        seed: int = 0,
        supersample: int = 2,
        sampling: dict | None = None,
        color_jitter: bool = True,
        aug_crop: int = 0,
        root: str | None = None,
        split: str = "train",
    ) -> None:
        """``root`` and ``split`` are accepted for a uniform config and must stay unset / "train"."""
        if root is not None:
            raise ValueError("the synthetic dataset is generated, it takes no root folder")
        super().__init__(num_views, aug_crop, color_jitter)
        default = ClipSampling(max_interval=3, video_prob=0.8, fixed_interval_prob=0.5)
        self.sampling = ClipSampling(**{**default.__dict__, **(sampling or {})})
        # The test split uses other scene seeds than the training split.
        self.seed = seed + (0 if split == "train" else 1_000_003)
        self.frames_per_scene = frames_per_scene
        self.supersample = supersample
        self._scenes: dict[int, SyntheticScene] = {}
        self.sequences = [(f"scene{i:05d}", [(i, f) for f in range(frames_per_scene)]) for i in range(num_scenes)]
        self.index_sequences()

    def scene(self, index: int) -> SyntheticScene:
        """Scene ``index``, generated on first use (a scene is a few kilobytes: all are kept)."""
        if index not in self._scenes:
            self._scenes[index] = SyntheticScene(item_rng(self.seed, index), self.frames_per_scene)
        return self._scenes[index]

    def view(self, handle: tuple[int, int], size: tuple[int, int], rng: np.random.Generator) -> Frame:
        scene_index, frame = handle
        scene = self.scene(scene_index)
        width, height = size
        image, depth = scene.render(frame, width, height, self.supersample)
        return Frame(
            image=image, depth=depth, intrinsics=scene.intrinsics(width, height), cam_to_world=scene.cam_to_world[frame]
        )

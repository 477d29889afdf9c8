"""Multi-view clip datasets: the common part of every reader (clip sampling, cropping, jitter, output format).

A dataset item is one clip of ``num_views`` frames as a dict of tensors, every geometric quantity in the model's
conventions:

- ``images`` [S, 3, H, W] float in [0, 1] (colour-jittered as one sequence)
- ``depth`` [S, H, W] float, z-depth; 0 where unknown, negative where sky
- ``valid_mask`` [S, H, W] bool, depth > 0
- ``intrinsics`` [S, 3, 3] float, pixel centres at integers, principal point at the image centre
- ``extrinsics`` [S, 4, 4] float, camera-from-world (OpenCV) with the world the first view's camera
- ``is_metric``, ``static``, ``is_video`` bool scalars and ``dataset`` (its name)

Readers store camera-to-world poses in their own world frame; the change to the first camera happens here in
float64, so that large world coordinates (driving datasets) lose no precision.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from streamvggt.train.data.sampling import ClipSampling
from streamvggt.train.data.transforms import ColorJitter, crop_resize

logger = logging.getLogger(__name__)


@dataclass
class Frame:
    """One stored view: image [H, W, 3] uint8, depth [H, W] (0 unknown), intrinsics [3, 3], camera-to-world [4, 4]."""

    image: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray


class MultiViewDataset(Dataset):
    """Base class of the readers: ``len(dataset)`` clip anchors; ``dataset.clip(index, size, rng)`` builds one.

    Subclasses implement :meth:`clip_frames` (which stored frames form clip ``index``) and :meth:`load_frame`, or
    override :meth:`view` to produce views another way (the synthetic dataset renders them).
    """

    name = "dataset"
    is_metric = True  # depth and poses in metres
    static = True  # the scene does not move, so depth and poses give correspondences (track targets)

    def __init__(self, num_views: int, aug_crop: int = 16, color_jitter: bool = True) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be positive, got {num_views}")
        if aug_crop < 0:
            raise ValueError(f"aug_crop must be >= 0, got {aug_crop}")
        self.num_views = num_views
        self.aug_crop = aug_crop
        self.color_jitter = color_jitter

    def __len__(self) -> int:
        raise NotImplementedError

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        """Handles of the ``num_views`` frames of clip ``index`` (passed to :meth:`load_frame`) and is_video."""
        raise NotImplementedError

    def load_frame(self, handle) -> Frame:
        raise NotImplementedError

    def view(self, handle, size: tuple[int, int], rng: np.random.Generator) -> Frame:
        """The frame at ``size`` (W, H): loaded, cropped around its principal point and resized."""
        frame = self.load_frame(handle)
        enlarge = int(rng.integers(0, self.aug_crop)) if self.aug_crop > 1 else 0
        image, depth, intrinsics = crop_resize(frame.image, frame.depth, frame.intrinsics, size, enlarge)
        return Frame(image=image, depth=depth, intrinsics=intrinsics, cam_to_world=frame.cam_to_world)

    def clip(self, index: int, size: tuple[int, int], rng: np.random.Generator) -> dict:
        """Clip ``index`` at ``size`` (W, H) as the dict described in the module docstring."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip {index} out of range for {self.name} with {len(self)} clips")
        handles, is_video = self.clip_frames(index, rng)
        jitter = ColorJitter.sample(rng) if self.color_jitter else None
        views = [self.view(handle, size, rng) for handle in handles]
        images = torch.from_numpy(np.stack([v.image for v in views])).permute(0, 3, 1, 2).float() / 255.0
        if jitter is not None:
            images = jitter(images)
        depth = np.stack([v.depth for v in views]).astype(np.float32)
        depth[~np.isfinite(depth)] = 0.0
        return {
            "images": images,
            "depth": torch.from_numpy(depth),
            "valid_mask": torch.from_numpy(depth > 0),
            "intrinsics": torch.from_numpy(np.stack([v.intrinsics for v in views]).astype(np.float32)),
            "extrinsics": torch.from_numpy(relative_extrinsics([v.cam_to_world for v in views]).astype(np.float32)),
            "is_metric": torch.tensor(self.is_metric),
            "static": torch.tensor(self.static),
            "is_video": torch.tensor(is_video),
            "dataset": self.name,
        }


def relative_extrinsics(cam_to_world: Sequence[np.ndarray]) -> np.ndarray:
    """Camera-to-world poses [4, 4] in any world frame -> camera-from-world [S, 4, 4] with world = first camera.

    A point X0 in camera 0 is c2w_0 X0 in the stored world, so camera i sees it at inv(c2w_i) c2w_0 X0.
    """
    poses = np.stack([np.asarray(p, dtype=np.float64) for p in cam_to_world])
    if poses.shape[1:] != (4, 4) or not np.isfinite(poses).all():
        raise ValueError("camera poses must be finite 4x4 camera-to-world matrices")
    return np.linalg.inv(poses) @ poses[0]


class SequenceDataset(MultiViewDataset):
    """A reader whose data is a list of sequences (videos or scans); a clip starts at any frame of a sequence
    that leaves room for ``num_views`` frames, and is drawn with ``sampling``.

    Subclasses fill ``self.sequences`` with (name, frames) pairs (frames: the handles :meth:`load_frame` takes)
    and call :meth:`index_sequences`.
    """

    sampling = ClipSampling()

    def __init__(self, num_views: int, aug_crop: int = 16, color_jitter: bool = True) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        self.sequences: list[tuple[str, list]] = []
        self._starts: list[tuple[int, int]] = []

    def index_sequences(self) -> None:
        """List the clip anchors; sequences shorter than a clip are left out (logged)."""
        self._starts = []
        for seq_index, (name, frames) in enumerate(self.sequences):
            if len(frames) < self.num_views:
                logger.info(
                    "%s: skipping sequence %s (%d frames < %d views)", self.name, name, len(frames), self.num_views
                )
                continue
            self._starts.extend((seq_index, start) for start in range(len(frames) - self.num_views + 1))
        if not self.sequences:  # e.g. a folder in another layout: "too short" would send the user the wrong way
            raise ValueError(f"{self.name}: no sequence found: the folder is not in the {self.name} layout")
        if not self._starts:
            longest = max(len(frames) for _, frames in self.sequences)
            raise ValueError(
                f"{self.name}: no sequence has {self.num_views} frames "
                f"({len(self.sequences)} found, the longest has {longest})"
            )

    def __len__(self) -> int:
        return len(self._starts)

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        seq_index, start = self._starts[index]
        frames = self.sequences[seq_index][1]
        positions, is_video = self.sampling.sample(len(frames), start, self.num_views, rng)
        return [frames[p] for p in positions], is_video

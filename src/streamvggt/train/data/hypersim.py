"""Hypersim as processed by CUT3R (``preprocess_hypersim.py``).

Layout: ``ROOT/{scene}/{camera}/{frame:06d}_rgb.png`` (tone-mapped), ``{frame:06d}_depth.npy`` (float32 z-depth in
metres, converted from the ray distances; NaN where no geometry was hit) and ``{frame:06d}_cam.npz``
(``intrinsics`` [3, 3] from the OpenGL projection, in continuous pixel coordinates; ``pose`` [4, 4]
camera-to-world, OpenCV axes, metres). Frame numbers may have gaps (frames with bad poses were dropped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamvggt.train.data.base import Frame, SequenceDataset
from streamvggt.train.data.layouts import _sampling, read_rgb
from streamvggt.train.data.sampling import ClipSampling
from streamvggt.train.data.scene_files import camera_poses, intrinsics_matrices, load_arrays, require_file

_RGB_SUFFIX = "rgb.png"
# The projection-derived principal point has the first pixel's centre at (0.5, 0.5); OpenCV's at (0, 0).
_CONTINUOUS_TO_OPENCV = np.array([[0.0, 0.0, -0.5], [0.0, 0.0, -0.5], [0.0, 0.0, 0.0]])


class HypersimDataset(SequenceDataset):
    """Hypersim (photorealistic synthetic indoor scenes): metric, static. Each camera trajectory of a scene
    (a non-empty folder under the scene) is one sequence, sampled with strides up to 4 (``sampling``);
    trajectories with fewer frames than a clip are skipped.

    Deviations from the reference reader: the stored principal point is moved to OpenCV's convention (-0.5 px;
    the reference uses it as is, half a pixel off its own depth conversion), and only ``*rgb.png`` files count
    as frames (the reference takes any PNG and then fails on its depth file). The reference lists every clip
    start ten times; the mix draws each start equally often without that.
    """

    name = "hypersim"
    is_metric = True
    static = True

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
            raise ValueError(f"Hypersim (CUT3R processing) is one set of scenes, used as 'train'; got split '{split}'")
        self.sampling = _sampling(sampling, ClipSampling(max_interval=4, block_shuffle=16))
        base = Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"Hypersim folder not found: {base}")
        for scene in sorted(p for p in base.iterdir() if p.is_dir()):
            for camera in sorted(p for p in scene.iterdir() if p.is_dir() and any(p.iterdir())):
                frames = sorted(p for p in camera.iterdir() if p.name.endswith(_RGB_SUFFIX))
                self.sequences.append((f"{scene.name}/{camera.name}", frames))
        if not self.sequences:
            raise ValueError(f"Hypersim folder {base} has no camera folders ({{scene}}/{{camera}}/*rgb.png)")
        self.index_sequences()

    def load_frame(self, handle: Path) -> Frame:
        stem = handle.name.removesuffix(_RGB_SUFFIX)
        image = read_rgb(handle)
        depth_path = require_file(handle.with_name(f"{stem}depth.npy"), "Hypersim depth")
        try:
            depth = np.load(depth_path).astype(np.float32)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read Hypersim depth {depth_path}: {error}") from None
        if depth.shape != image.shape[:2]:
            raise ValueError(f"{depth_path}: depth of shape {depth.shape} does not match its image {image.shape[:2]}")
        depth[~np.isfinite(depth)] = 0.0  # rays that hit no geometry
        cam_path = handle.with_name(f"{stem}cam.npz")
        cam = load_arrays(cam_path, "Hypersim camera", ["intrinsics", "pose"])
        intrinsics = intrinsics_matrices(cam["intrinsics"][None], 1, cam_path)[0] + _CONTINUOUS_TO_OPENCV
        pose = camera_poses(cam["pose"][None], 1, cam_path)[0]
        return Frame(image=image, depth=depth, intrinsics=intrinsics, cam_to_world=pose)

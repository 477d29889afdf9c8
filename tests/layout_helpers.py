"""Writing small datasets in on-disk layouts and checking what a reader returns, shared by the layout tests.

Frames come from a synthetic scene, so depth, intrinsics and poses are exact before they are written. Two checks
follow: a frame loaded back equals the ground truth in the model's units and conventions
(:func:`assert_frame_equals`), and a read clip agrees with itself: view 0's depth, moved into view s with the
clip's extrinsics and intrinsics, lands on view s's own depth (:func:`check_clip`). A wrong pose convention,
depth unit or intrinsics update breaks one or the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streamvggt.scenes.procedural_room import SyntheticScene
from streamvggt.train.data.base import Frame
from streamvggt.train.data.check import reprojection

WIDTH, HEIGHT, FRAMES = 64, 48, 6
SIZE = (28, 28)  # (W, H) read back
# An off-centre principal point: the reader must crop around it.
INTRINSICS = np.array([[40.0, 0.0, 29.0], [0.0, 40.0, 25.0], [0.0, 0.0, 1.0]])


def render_sequence(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image uint8, depth metres, camera-to-world) for the first frames of a synthetic scene's 24-frame path
    (small motion between them, so views overlap)."""
    scene = SyntheticScene(np.random.default_rng(seed), 24)
    frames = []
    for f in range(FRAMES):
        image, depth = scene.render(f, WIDTH, HEIGHT, intrinsics=INTRINSICS)
        frames.append((image, depth, scene.cam_to_world[f]))
    return frames


def save_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def save_uint16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(values).astype(np.uint16)).save(path)


def save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def check_clip(clip: dict, num_views: int) -> None:
    width, height = SIZE
    assert clip["images"].shape == (num_views, 3, height, width)
    assert clip["images"].dtype == torch.float32 and clip["images"].min() >= 0 and clip["images"].max() <= 1
    assert clip["depth"].shape == clip["valid_mask"].shape == (num_views, height, width)
    assert clip["valid_mask"].float().mean() > 0.3
    assert torch.allclose(clip["extrinsics"][0], torch.eye(4), atol=1e-5)
    # The crop put the principal point at the image centre (within a pixel of the resampling).
    assert torch.allclose(clip["intrinsics"][:, :2, 2], torch.tensor([width / 2, height / 2]), atol=1.0)
    for view in range(1, num_views):
        agree, impossible = reprojection(clip, view)
        assert agree > 0.7 and impossible < 0.02, (view, agree, impossible)


READ_OPTIONS = {"aug_crop": 4, "color_jitter": True}


def read_clips(dataset, count: int = 3) -> list[dict]:
    return [dataset.clip(i % len(dataset), SIZE, np.random.default_rng(i)) for i in range(count)]


def assert_frame_equals(
    frame: Frame,
    image: np.ndarray,
    depth: np.ndarray,
    intrinsics: np.ndarray,
    cam_to_world: np.ndarray,
    depth_atol: float = 1e-5,
    image_atol: int = 0,
) -> None:
    """A frame loaded by a reader equals the ground truth it was written from: depth in metres (``depth_atol``
    covers the layout's quantisation, e.g. 5e-4 for millimetres), OpenCV intrinsics, camera-to-world pose."""
    assert frame.image.shape == image.shape and frame.image.dtype == np.uint8
    assert np.abs(frame.image.astype(int) - image.astype(int)).mean() <= max(image_atol, 0.5)
    valid = depth > 0
    np.testing.assert_allclose(frame.depth[valid], depth[valid], atol=depth_atol, rtol=0)
    np.testing.assert_allclose(np.asarray(frame.intrinsics, dtype=np.float64), intrinsics, atol=1e-6)
    np.testing.assert_allclose(np.asarray(frame.cam_to_world, dtype=np.float64), cam_to_world, atol=1e-6)


def assert_relative_poses(clip: dict, cam_to_world: list[np.ndarray]) -> None:
    """The clip's extrinsics are the ground-truth poses relative to its first view (camera-from-world)."""
    expected = np.linalg.inv(np.stack(cam_to_world)) @ cam_to_world[0]
    np.testing.assert_allclose(clip["extrinsics"].numpy(), expected, atol=1e-4)

"""Malformed-folder cases shared by the tests of the ``rgb/ depth/ cam/`` scene-folder readers.

Each case damages one file of the first frame of a written dataset and reads a clip that contains that frame
(clip 0 starts there): the reader must fail with one error that names the damaged file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamvggt.train.data.base import MultiViewDataset
from tests.layout_helpers import SIZE


def _read_first_clip(dataset: MultiViewDataset) -> None:
    dataset.clip(0, SIZE, np.random.default_rng(0))


def assert_damaged_frames_name_their_file(
    build: Callable[[], MultiViewDataset], scene: Path, base: str, image_suffix: str
) -> None:
    """A missing image, a depth map of the wrong shape, a non-finite pose and a missing camera file of frame
    ``base`` in ``scene`` each raise an error whose message holds the file's path."""
    image, depth, cam = (
        scene / "rgb" / f"{base}{image_suffix}",
        scene / "depth" / f"{base}.npy",
        scene / "cam" / f"{base}.npz",
    )
    dataset = build()

    saved_depth = np.load(depth)
    np.save(depth, saved_depth[:, :-1])
    with pytest.raises(ValueError, match=re.escape(str(depth))):
        _read_first_clip(dataset)
    np.save(depth, saved_depth)

    with np.load(cam) as stored:
        saved_cam = dict(stored)
    np.savez(cam, **{**saved_cam, "pose": np.full((4, 4), np.nan)})
    with pytest.raises(ValueError, match=re.escape(str(cam))):
        _read_first_clip(dataset)
    np.savez(cam, **{**saved_cam, "pose": np.eye(3)})
    with pytest.raises(ValueError, match=re.escape(str(cam))):
        _read_first_clip(dataset)
    cam.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(cam))):
        _read_first_clip(dataset)
    np.savez(cam, **saved_cam)

    image.rename(image.with_name("moved"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(image))):
        _read_first_clip(dataset)
    image.with_name("moved").rename(image)
    _read_first_clip(dataset)  # restored: reads again


def assert_empty_folder_is_an_error(build: Callable[[Path], MultiViewDataset], root: Path) -> None:
    """A dataset folder without scenes, and a missing one, are errors naming the folder."""
    root.mkdir(parents=True, exist_ok=True)
    with pytest.raises(ValueError, match=re.escape(str(root))):
        build(root)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "absent"))):
        build(root / "absent")

"""Tiny fake evaluation datasets in the real layouts and file formats (Sintel .dpt/.cam, Bonn PNG/5000, KITTI
PNG/256, NYU .npy), and the depth each frame's ground truth holds, so tests can fake a perfect prediction."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from streamvggt.evaluate.datasets.bonn import BONN_SEQUENCES
from streamvggt.evaluate.datasets.sintel import SINTEL_TAG
from streamvggt.model.execution import ExecutionPrecision
from tests.reconstruct_helpers import frame_pixels

# Where a test replaces the streaming, the protocols read only the model's precision record: this stands in.
FAKE_MODEL = SimpleNamespace(execution=ExecutionPrecision())

WIDTH, HEIGHT = 70, 56
SINTEL_SEQUENCES = ("alley_1", "market_2")
KITTI_DRIVES = ("2011_09_26_drive_0002_sync_02", "2011_09_26_drive_0005_sync_02")
# Ground truth = (UNITS + 20 * red) / UNITS metres: exact in 16-bit PNGs, and Sintel's reaches past its 70 m cap.
UNITS = {"sintel": 64.0, "bonn": 5000.0, "kitti": 256.0, "nyu": 100.0}


def depth_of(image: np.ndarray, dataset: str) -> np.ndarray:
    """The ground-truth depth [H, W] float32 (metres) the fakes store for ``image`` [H, W, 3]."""
    return ((UNITS[dataset] + 20.0 * image[..., 0].astype(np.float64)) / UNITS[dataset]).astype(np.float32)


def write_dpt(path: Path, depth: np.ndarray) -> None:
    """Sintel depth SDK format: tag, width, height, then the float32 values, little-endian."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = depth.shape
    header = np.array([SINTEL_TAG], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    path.write_bytes(header + depth.astype("<f4").tobytes())


def write_cam(path: Path, intrinsic: np.ndarray, extrinsic: np.ndarray) -> None:
    """Sintel camera format: tag, then M [3, 3] and N [3, 4] as float64, little-endian."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = np.concatenate((intrinsic.ravel(), extrinsic.ravel())).astype("<f8").tobytes()
    path.write_bytes(np.array([SINTEL_TAG], "<f4").tobytes() + body)


def write_depth_png(path: Path, depth: np.ndarray, units_per_metre: float, sparse: bool = False) -> None:
    """A 16-bit depth PNG of ``depth`` * units; ``sparse`` zeroes (no measurement) 3 pixels out of 4, as KITTI."""
    values = np.round(depth.astype(np.float64) * units_per_metre).astype(np.uint16)
    if sparse:
        values[np.indices(values.shape).sum(0) % 4 != 0] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


def _image(folder: Path, name: str, index: int) -> np.ndarray:
    pixels = frame_pixels(index, WIDTH, HEIGHT)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / name)
    return pixels


def sintel_camera(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(intrinsic, camera-from-world [3, 4]) of fake frame ``index``: a camera moving along x."""
    intrinsic = np.array([[60.0, 0, 35], [0, 60.0, 28], [0, 0, 1]])
    extrinsic = np.hstack((np.eye(3), [[-0.1 * index], [0.0], [0.5]]))
    return intrinsic, extrinsic


def fake_sintel(root: Path, frames: int = 3) -> Path:
    for sequence in SINTEL_SEQUENCES:
        for i in range(frames):
            name = f"frame_{i + 1:04d}"
            image = _image(root / "training" / "final" / sequence, f"{name}.png", i)
            write_dpt(root / "training" / "depth" / sequence / f"{name}.dpt", depth_of(image, "sintel"))
            write_cam(root / "training" / "camdata_left" / sequence / f"{name}.cam", *sintel_camera(i))
    return root


def fake_bonn(root: Path, frames: int = 3) -> Path:
    """The five sequences; depth files are named by other timestamps than the images, as in the real data."""
    for sequence in BONN_SEQUENCES:
        folder = root / "rgbd_bonn_dataset" / f"rgbd_bonn_{sequence}"
        for i in range(frames):
            image = _image(folder / "rgb_110", f"1548266469.{10 + i:02d}0000.png", i)
            write_depth_png(folder / "depth_110" / f"1548266469.{10 + i:02d}5000.png", depth_of(image, "bonn"), 5000)
    return root


def fake_kitti(root: Path, frames: int = 3) -> Path:
    selection = root / "depth_selection" / "val_selection_cropped"
    for drive in KITTI_DRIVES:
        for i in range(frames):
            name = f"{i + 5:010d}.png"
            image = _image(selection / "image_gathered" / drive, name, i)
            depth = depth_of(image, "kitti")
            write_depth_png(selection / "groundtruth_depth_gathered" / drive / name, depth, 256, sparse=True)
    return root


def fake_nyu(root: Path, frames: int = 3) -> Path:
    for i in range(frames):
        image = _image(root / "val" / "nyu_images", f"{i:04d}.png", i)
        (root / "val" / "nyu_depths").mkdir(parents=True, exist_ok=True)
        np.save(root / "val" / "nyu_depths" / f"{i:04d}.npy", depth_of(image, "nyu"))
    return root


FAKES = {"sintel": fake_sintel, "bonn": fake_bonn, "kitti": fake_kitti, "nyu": fake_nyu}

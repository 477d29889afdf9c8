"""What the evaluation datasets share: the root check, reading images and 16-bit depth PNGs, and the depth
datasets' frame lists."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from streamvggt.io.errors import InputError
from streamvggt.io.inputs.preprocess import to_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthFrame:
    """One evaluation frame: an image and its ground-truth depth file."""

    name: str  # file stem, unique within its sequence
    image: Path
    depth: Path


@dataclass(frozen=True)
class DepthSequence:
    """Frames in stream order."""

    name: str
    frames: list[DepthFrame]


class DepthDataset(ABC):
    """A depth benchmark in its standard preprocessed layout, with the protocol caps of SPEC §5.

    max_depth: ground truth at or beyond it is not scored (metres); post_clip_max: the aligned prediction is
    clipped to it. ``root`` may be the dataset folder itself or a folder holding it under one of ``folder_names``.
    """

    name: str
    folder_names: tuple[str, ...]  # the usual names of the dataset folder, e.g. data/eval/sintel
    layout: str  # the expected layout, relative to the dataset folder, for error messages
    max_depth: float | None = None
    post_clip_max: float | None = None
    single_images = False  # unrelated images rather than videos: only the mono-depth protocol applies

    def __init__(self, root: str | Path) -> None:
        self.root = locate_root(Path(root), self.folder_names, self._looks_right, self.name, self.layout)

    @abstractmethod
    def _looks_right(self, folder: Path) -> bool:
        """Whether ``folder`` has the dataset's top-level layout."""

    @abstractmethod
    def sequences(self) -> list[DepthSequence]:
        """The protocol's sequences, each with its frames in order."""

    @abstractmethod
    def read_depth(self, path: Path) -> np.ndarray:
        """Ground-truth depth [H, W] float32 in metres; 0 where there is none."""

    def read_image(self, path: Path) -> np.ndarray:
        """An input image as [H, W, 3] uint8 RGB."""
        return read_rgb(path)

    def _error(self, message: str) -> InputError:
        return InputError(f"{self.name} at {self.root}: {message} (expected {self.layout})")


def locate_root(
    root: Path, folder_names: tuple[str, ...], looks_right: Callable[[Path], bool], name: str, layout: str
) -> Path:
    """A dataset's folder: ``root`` itself or ``root/<one of folder_names>``, the first that ``looks_right``;
    InputError naming the expected ``layout`` when none does."""
    for candidate in (root, *(root / folder for folder in folder_names)):
        if looks_right(candidate):
            return candidate
    raise InputError(f"no {name} dataset at {root}: expected {layout}")


def read_rgb(path: Path) -> np.ndarray:
    """An image file as [H, W, 3] uint8 RGB; InputError when it cannot be read."""
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"cannot read image {path}: {error}") from error


def read_depth_png(path: Path, units_per_metre: float) -> np.ndarray:
    """A 16-bit depth PNG as [H, W] float32 metres (value / units_per_metre); 0 stays 0 (no measurement).

    8-bit PNGs are rejected: they are visualisations, not depth, and would silently score nonsense.
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise InputError(f"cannot read depth PNG {path}: {error}") from error
    if mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N") or values.ndim != 2:
        raise InputError(f"{path} is not a 16-bit single-channel depth PNG (mode {mode})")
    return (values.astype(np.float64) / units_per_metre).astype(np.float32)


def paired_by_name(images: list[Path], depths: list[Path], where: str) -> list[DepthFrame]:
    """Images and depth files matched by file stem, in sorted order.

    Matching by name (not by position, as the reference does) cannot pair an image with another frame's depth
    when a file is missing; unmatched images are reported and left out.
    """
    by_stem = {path.stem: path for path in depths}
    frames = [DepthFrame(image.stem, image, by_stem[image.stem]) for image in sorted(images) if image.stem in by_stem]
    unmatched = len(images) - len(frames)
    if unmatched:
        log.warning("%s: %d images without a depth file of the same name are left out", where, unmatched)
    return frames


def folders_paired_by_name(images_root: Path, depth_root: Path, depth_glob: str, dataset: str) -> list[DepthSequence]:
    """One sequence per sub-folder of ``images_root`` (its ``*.png``), paired by name with the files matching
    ``depth_glob`` in the same-named sub-folder of ``depth_root``; folders with no pair are left out."""
    sequences = []
    for folder in sorted(p for p in images_root.iterdir() if p.is_dir()):
        depths = sorted((depth_root / folder.name).glob(depth_glob))
        frames = paired_by_name(sorted(folder.glob("*.png")), depths, f"{dataset} {folder.name}")
        if frames:
            sequences.append(DepthSequence(folder.name, frames))
    return sequences


def paired_by_order(images: list[Path], depths: list[Path], where: str) -> list[DepthFrame]:
    """Images and depth files paired by position in sorted order, for datasets whose names differ (timestamps of
    two sensors); InputError when the counts differ, because then every later pair would be wrong."""
    if len(images) != len(depths):
        raise InputError(f"{where}: {len(images)} images but {len(depths)} depth maps, they must pair one to one")
    return [DepthFrame(image.stem, image, depth) for image, depth in zip(sorted(images), sorted(depths), strict=True)]

"""What the camera-pose datasets share: sequences of images with ground-truth cameras, and the root check."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamvggt.evaluate.datasets.base import locate_root, read_rgb
from streamvggt.geometry import invert_pose, quat_to_mat
from streamvggt.io.errors import InputError


@dataclass(frozen=True)
class PoseSequence:
    """Frames in stream order and their ground-truth cameras."""

    name: str
    images: list[Path]
    cam_from_world: np.ndarray  # [N, 4, 4] float64, OpenCV axes; non-finite where the dataset has no pose

    def head(self, count: int | None) -> PoseSequence:
        """The first ``count`` frames (all when None)."""
        return PoseSequence(self.name, self.images[:count], self.cam_from_world[:count])


class PoseDataset(ABC):
    """A camera-pose benchmark in its standard preprocessed layout.

    ``root`` may be the dataset folder itself or a folder holding it under one of ``folder_names``.
    """

    name: str
    folder_names: tuple[str, ...]
    layout: str  # the expected layout, relative to the dataset folder, for error messages

    def __init__(self, root: str | Path) -> None:
        self.root = locate_root(Path(root), self.folder_names, self._looks_right, self.name, self.layout)

    @abstractmethod
    def _looks_right(self, folder: Path) -> bool:
        """Whether ``folder`` has the dataset's top-level layout."""

    @abstractmethod
    def sequences(self) -> list[PoseSequence]:
        """The protocol's sequences, each with its frames in order."""

    def read_image(self, path: Path) -> np.ndarray:
        """An input image as [H, W, 3] uint8 RGB."""
        return read_rgb(path)

    def _error(self, message: str) -> InputError:
        return InputError(f"{self.name} at {self.root}: {message} (expected {self.layout})")


def read_matrix_rows(path: Path, columns: tuple[int, ...]) -> np.ndarray:
    """A whitespace-separated text table [N, C] (``#`` comments skipped) whose rows have one of ``columns``
    counts; InputError naming the file otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from error
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    widths = {len(row) for row in rows}
    if not rows or len(widths) != 1 or widths.pop() not in columns:
        expected = " or ".join(map(str, columns))
        raise InputError(f"{path}: expected rows of {expected} numbers")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as error:
        raise InputError(f"{path}: not a table of numbers ({error})") from error


def tum_to_cam_from_world(rows: np.ndarray) -> np.ndarray:
    """TUM trajectory rows [N, 7] (tx ty tz qx qy qz qw: the camera-to-world pose) -> camera-from-world [N, 4, 4]."""
    c2w = np.tile(np.eye(4), (len(rows), 1, 1))
    c2w[:, :3, :3] = quat_to_mat(torch.from_numpy(rows[:, 3:7])).numpy()
    c2w[:, :3, 3] = rows[:, :3]
    return invert_pose(torch.from_numpy(c2w)).numpy()

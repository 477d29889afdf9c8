"""CO3Dv2 camera-pose test set, with the annotation files of VGGT's ``preprocess_co3d.py`` (from RelPose++).

Layout::

    <category>/<sequence>/images/frame000001.jpg ...        the CO3Dv2 images
    annotations/<category>_test.jgz (or <category>_test.jgz beside the categories)
        gzip JSON {sequence: [{"filepath": "<category>/<sequence>/images/...", "R": 3x3, "T": 3, ...}, ...]}

``R``, ``T`` are PyTorch3D cameras (row vectors: x_cam = x_world R + T; x left, y up): the OpenCV
camera-from-world is R_cv = diag(-1, -1, 1) R^T, t_cv = diag(-1, -1, 1) T. The protocol (VGGT's, which the
reference follows) uses the 41 "seen" categories, sequences of at least 50 frames whose translations pass a sanity
check, and 10 frames per sequence drawn with one numpy RandomState seeded once (seed 0) and consumed in category
order, then sorted sequence-name order: the same draws as the reference's global ``np.random.seed``. (Both
reference scripts, StreamVGGT's ``src/eval/pose_evaluation/test_co3d.py`` and VGGT's ``evaluation/test_co3d.py``,
iterate ``sorted(annotation.keys())``, not the file's own order.)
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np

from streamvggt.evaluate.datasets.base import read_rgb
from streamvggt.evaluate.datasets.posed import PoseSequence
from streamvggt.evaluate.options import CO3D_NUM_FRAMES
from streamvggt.io.errors import InputError

log = logging.getLogger(__name__)

SEEN_CATEGORIES = (
    "apple", "backpack", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "bottle", "bowl", "broccoli",
    "cake", "car", "carrot", "cellphone", "chair", "cup", "donut", "hairdryer", "handbag", "hydrant", "keyboard",
    "laptop", "microwave", "motorcycle", "mouse", "orange", "parkingmeter", "pizza", "plant", "stopsign",
    "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain", "toytruck", "tv", "umbrella", "vase",
    "wineglass",
)  # fmt: skip
MIN_FRAMES = 50
NUM_FRAMES = CO3D_NUM_FRAMES
MAX_TRANSLATION_SUM = 1e5  # the reference's sanity check on T[0] + T[1] + T[2] of every frame
PT3D_TO_CV = np.diag([-1.0, -1.0, 1.0])  # PyTorch3D camera axes (x left, y up) -> OpenCV (x right, y down)


def pytorch3d_to_opencv(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """A PyTorch3D camera (R [3, 3], T [3]; x_cam = x_world R + T) as an OpenCV camera-from-world [4, 4]."""
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = PT3D_TO_CV @ np.asarray(rotation, dtype=np.float64).T
    extrinsic[:3, 3] = PT3D_TO_CV @ np.asarray(translation, dtype=np.float64)
    return extrinsic


class Co3dDataset:
    """The CO3Dv2 test annotations at ``root`` (images under ``root``, annotations in ``root/annotations`` or
    ``root`` itself)."""

    name = "co3d"
    layout = "<category>/<sequence>/images/*.jpg and annotations/<category>_test.jgz (VGGT's preprocess_co3d.py)"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for folder in (self.root / "annotations", self.root):
            if any((folder / f"{category}_test.jgz").is_file() for category in SEEN_CATEGORIES):
                self.annotations = folder
                return
        raise InputError(f"no co3d annotations at {self.root}: expected {self.layout}")

    def categories(self) -> list[str]:
        """The seen categories that have a test annotation file, in the protocol's order."""
        return [c for c in SEEN_CATEGORIES if (self.annotations / f"{c}_test.jgz").is_file()]

    def read_annotations(self, category: str) -> dict[str, list[dict]]:
        """{sequence: [frame annotation]} of one category's ``_test.jgz`` (gzip JSON)."""
        path = self.annotations / f"{category}_test.jgz"
        try:
            with gzip.open(path, "rt", encoding="utf-8") as file:
                annotations = json.load(file)
        except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read co3d annotations {path}: {error}") from error
        if not isinstance(annotations, dict):
            raise InputError(f"{path}: expected a JSON object of sequences")
        return annotations

    def sequences(
        self,
        category: str,
        rng: np.random.RandomState,
        num_frames: int = NUM_FRAMES,
        min_frames: int = MIN_FRAMES,
    ) -> list[PoseSequence]:
        """The category's usable sequences, each with ``num_frames`` frames drawn by ``rng`` (in draw order).

        Sequences shorter than ``min_frames``, failing the translation check, or missing on disk are skipped
        without drawing, as the reference skips them.
        """
        if num_frames < 2 or num_frames > min_frames:
            raise ValueError(f"num_frames must be in [2, {min_frames}], got {num_frames}")
        annotations = self.read_annotations(category)
        sequences, missing = [], 0
        for name in sorted(annotations):  # the reference's order (see the module docstring), whatever the file's
            frames = annotations[name]
            if len(frames) < min_frames:
                continue
            try:
                if any(sum(frame["T"][:3]) > MAX_TRANSLATION_SUM for frame in frames):
                    continue
                paths = [self.root / frame["filepath"] for frame in frames]
                extrinsics = [pytorch3d_to_opencv(frame["R"], frame["T"]) for frame in frames]
            except (KeyError, TypeError, ValueError) as error:
                raise InputError(f"co3d {category}/{name}: malformed frame annotation ({error})") from error
            if not paths[0].parent.is_dir():
                missing += 1
                continue
            chosen = rng.choice(len(frames), num_frames, replace=False)
            sequences.append(
                PoseSequence(
                    f"{category}/{name}", [paths[i] for i in chosen], np.stack([extrinsics[i] for i in chosen])
                )
            )
        if missing:
            log.warning("co3d %s: %d sequences are not on disk, skipped", category, missing)
        return sequences

    def read_image(self, path: Path) -> np.ndarray:
        """An input image as [H, W, 3] uint8 RGB (``path`` from a :class:`PoseSequence` of this dataset)."""
        return read_rgb(path)

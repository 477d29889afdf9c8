"""Which image file a camera belongs to in the trainer exports (COLMAP, transforms.json), and how its pixels relate
to the processed frame the model saw.

``processed``: the frame the model saw (``images/NNNNNN.png``). ``original``: the decoded source frame at full
resolution (``images_original/NNNNNN.png``); the processed frame is a resized (and cropped or padded) copy of it, so
intrinsics and pixels scale by the resize factors and shift by the crop or pad. Coordinates here put the top-left
corner of the image at (0, 0) and pixel centres at +0.5, as COLMAP and nerfstudio do; the model's intrinsics put
pixel centres at integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from streamvggt.io.atomic import atomic_output
from streamvggt.io.outputs.frames import IMAGE_DIR, image_name

IMAGE_CHOICES = ("processed", "original")
ORIGINAL_DIR = "images_original"
PIXEL_OFFSET = 0.5  # corner-origin image coordinates = model pixel coordinates + this


@dataclass(frozen=True)
class ImageView:
    """One frame's image file for a trainer and the map from processed-frame pixels to its pixels.

    image = (processed + 0.5 - origin) * scale, per axis (x, y), in corner-origin coordinates.
    """

    path: str  # relative to the output folder, POSIX separators
    size: tuple[int, int]  # (H, W) of that file
    scale: tuple[float, float] = (1.0, 1.0)  # image pixels per processed pixel (x, y)
    origin: tuple[float, float] = (0.0, 0.0)  # the image's top-left corner in processed corner coordinates (x, y)

    @property
    def name(self) -> str:
        """The file name inside its images folder."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        return self.path.rsplit("/", 1)[0]

    def pixels(self, uv: np.ndarray) -> np.ndarray:
        """Model pixel coordinates [N, 2] of the processed frame as corner-origin coordinates [N, 2] of the image."""
        return (np.asarray(uv, dtype=np.float64) + PIXEL_OFFSET - self.origin) * self.scale

    def pinhole(self, intrinsic: np.ndarray) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) of the image in corner-origin coordinates from the processed frame's 3x3 ``intrinsic``."""
        sx, sy = self.scale
        cx, cy = self.pixels(intrinsic[:2, 2][None])[0]
        return float(intrinsic[0, 0] * sx), float(intrinsic[1, 1] * sy), float(cx), float(cy)


def processed_view(index: int, image_size: tuple[int, int]) -> ImageView:
    """The processed frame ``index`` of (H, W) ``image_size`` as written in ``images/``."""
    return ImageView(f"{IMAGE_DIR}/{image_name(index)}", image_size)


def original_view(index: int, source_size: tuple[int, int], resized_box: tuple[int, int, int, int]) -> ImageView:
    """The source frame ``index`` of (H, W) ``source_size`` in ``images_original/``.

    resized_box: where the whole resized frame lies in the processed frame (top, left, height, width), see
    :meth:`streamvggt.io.inputs.preprocess.Preprocessor.resized_box`.
    """
    top, left, height, width = resized_box
    scale = (source_size[1] / width, source_size[0] / height)
    return ImageView(
        path=f"{ORIGINAL_DIR}/{image_name(index)}", size=source_size, scale=scale, origin=(float(left), float(top))
    )


def write_original(folder: Path, index: int, image: np.ndarray) -> Path:
    """Write the decoded source frame [H, W, 3] uint8 of frame ``index`` as PNG into ``folder`` (images_original/)."""
    path = folder / image_name(index)
    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)  # full-resolution frames: favour speed
    return path

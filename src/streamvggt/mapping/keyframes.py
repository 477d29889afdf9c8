"""Keyframe records of fixed size, their sparse points, and where their images are kept for verification."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from streamvggt.mapping.sim3 import Sim3


@dataclass
class Keyframe:
    """One keyframe: a bounded record whatever the image size.

    raw: the world-from-camera similarity of the keyframe as the stream gave it, in the map's frame (the first
    segment's world; scale 1 there). pixels [N, 2] uint16 (row, column) where the points were sampled; points
    [N, 3] float16 in the keyframe's camera frame, in the stream's depth units; conf [N] float16.
    """

    frame: int
    node: int
    segment: int
    raw: Sim3
    intrinsic: np.ndarray  # [3, 3] float32
    image_size: tuple[int, int]  # H, W
    descriptor: np.ndarray  # [D] float16
    pixels: np.ndarray
    points: np.ndarray
    conf: np.ndarray
    median_depth: float  # stream units

    def nbytes(self) -> int:
        """Bytes held by the record's arrays plus its fixed fields (poses as 3 x 4 float64 + scale)."""
        arrays = self.intrinsic.nbytes + self.descriptor.nbytes + self.pixels.nbytes + self.points.nbytes
        return arrays + self.conf.nbytes + 13 * 8 + 6 * 8


def sample_points(
    depth: np.ndarray,
    conf: np.ndarray,
    valid: np.ndarray | None,
    intrinsic: np.ndarray,
    count: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At most ``count`` well-spread confident points of a depth map [H, W]: the most confident valid pixel of each
    cell of a grid with about ``count`` cells. Returns pixels [N, 2] uint16 (row, col), camera points [N, 3]
    float16 (x right, y down, z depth; pixel (u, v) at integer coordinates as in
    :func:`streamvggt.geometry.depth_to_camera_points`) and confidence [N] float16.

    A grid rather than the top-N by confidence: the points must cover the view for the Sim(3) to be well posed.
    """
    height, width = depth.shape
    usable = np.isfinite(depth) & (depth > 0) & np.isfinite(conf) & (conf > 0)
    if valid is not None:
        usable &= valid
    cell = max(1, int(np.floor(np.sqrt(height * width / max(count, 1)))))
    while (-(-height // cell)) * (-(-width // cell)) > count:
        cell += 1
    rows, cols = -(-height // cell), -(-width // cell)
    score = np.full((rows * cell, cols * cell), -np.inf, np.float32)
    score[:height, :width] = np.where(usable, conf, -np.inf)
    blocks = score.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(rows, cols, cell * cell)
    best = blocks.argmax(-1)
    keep = np.isfinite(np.take_along_axis(blocks, best[..., None], -1)[..., 0])
    block_r, block_c = np.nonzero(keep)
    offset = best[keep]
    r = block_r * cell + offset // cell
    c = block_c * cell + offset % cell
    z = depth[r, c].astype(np.float64)
    k = np.asarray(intrinsic, dtype=np.float64)
    x = (c - k[0, 2]) / k[0, 0] * z
    y = (r - k[1, 2]) / k[1, 1] * z
    pixels = np.stack((r, c), -1).astype(np.uint16)
    points = np.stack((x, y, z), -1).astype(np.float16)
    return pixels, points, conf[r, c].astype(np.float16)


def camera_points_at(depth: np.ndarray, intrinsic: np.ndarray, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Camera points [N, 3] float64 of a depth map [h, w] at ``pixels`` [N, 2] (row, col) given on an image of
    ``size`` (H, W); a depth map of another resolution is read at the scaled pixel (nearest)."""
    h, w = depth.shape
    scale_r, scale_c = h / size[0], w / size[1]
    r = np.clip(np.floor((pixels[:, 0].astype(np.float64) + 0.5) * scale_r), 0, h - 1).astype(np.int64)
    c = np.clip(np.floor((pixels[:, 1].astype(np.float64) + 0.5) * scale_c), 0, w - 1).astype(np.int64)
    z = depth[r, c].astype(np.float64)
    k = np.asarray(intrinsic, dtype=np.float64)
    x = (c - k[0, 2]) / k[0, 0] * z
    y = (r - k[1, 2]) / k[1, 1] * z
    return np.stack((x, y, z), -1)


class ImageStore:
    """Keyframe images for verification re-runs: JPEG bytes in memory (quality 95: ~1/10 of the raw size), or
    nothing when ``source(frame_index) -> [H, W, 3] uint8`` can read frames back from the input."""

    def __init__(self, source: Callable[[int], np.ndarray] | None = None, quality: int = 95) -> None:
        self.source = source
        self.quality = quality
        self._jpeg: dict[int, bytes] = {}

    def put(self, frame: int, image: np.ndarray) -> None:
        if self.source is not None:
            return
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=self.quality)
        self._jpeg[frame] = buffer.getvalue()

    def get(self, frame: int) -> np.ndarray:
        if self.source is not None:
            image = np.asarray(self.source(frame))
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                got = f"{image.dtype} {image.shape}"
                raise ValueError(f"image source returned {got} for frame {frame}: need [H, W, 3] uint8")
            return image
        if frame not in self._jpeg:
            raise KeyError(f"no image kept for frame {frame} (only keyframes' images are kept)")
        return np.asarray(Image.open(io.BytesIO(self._jpeg[frame])).convert("RGB"))

    def nbytes(self) -> int:
        return sum(len(b) for b in self._jpeg.values())

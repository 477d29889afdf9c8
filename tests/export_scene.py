"""A scene with known geometry for the export tests: three cameras sliding sideways in front of a flat wall.

Every camera looks down +z (identity rotation) from (0.17 i, 0, 0); the wall is the plane z = 4, so every depth is 4
and each wall point reprojects 1.275 px further left in each next frame. Frames are written through the real
ReconstructionWriter, so the exports under test are exactly what ``reconstruct`` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamvggt.io.outputs.interchange import ExportOptions
from streamvggt.io.outputs.writer import ReconstructionWriter
from streamvggt.results import FrameResult

WIDTH, HEIGHT = 32, 24
FOCAL = 30.0
WALL = 4.0  # depth of the wall in every camera
STEP = 0.17  # camera centres at x = STEP * i: shifts of 1.275 px, never a tie between two pixels
FRAMES = 3


def intrinsic(focal: float = FOCAL) -> np.ndarray:
    return np.array([[focal, 0.0, WIDTH / 2], [0.0, focal, HEIGHT / 2], [0.0, 0.0, 1.0]])


def extrinsic(i: int) -> np.ndarray:
    """Camera-from-world of camera i: x_cam = x_world - centre."""
    return np.concatenate((np.eye(3), [[-STEP * i], [0.0], [0.0]]), axis=1)


def image(i: int) -> np.ndarray:
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack(((8 * u) % 256, (10 * v) % 256, np.full_like(u, 40 * i)), axis=-1).astype(np.uint8)


def frame(i: int, depth: np.ndarray | None = None, focal: float = FOCAL) -> FrameResult:
    depth = np.full((HEIGHT, WIDTH), WALL, dtype=np.float32) if depth is None else depth.astype(np.float32)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    world = np.stack(((u - WIDTH / 2) / focal * depth + STEP * i, (v - HEIGHT / 2) / focal * depth, depth), axis=-1)
    conf = np.linspace(1.5, 3.0, HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH)
    return FrameResult(
        index=i,
        name=f"view {i}.jpg",
        source_index=i,
        timestamp=None,
        image=image(i),
        valid=np.ones((HEIGHT, WIDTH), dtype=bool),
        extrinsic=extrinsic(i),
        intrinsic=intrinsic(focal),
        depth=depth,
        depth_conf=conf,
        world_points=world.astype(np.float32),
        world_points_conf=conf,
    )


def write_scene(
    out: Path,
    exports: ExportOptions | None = None,
    depths: dict[int, np.ndarray] | None = None,
    focals: list[float] | None = None,
) -> Path:
    """Write the wall scene into ``out`` (every pixel kept as a point); ``depths`` replaces frames' depth maps."""
    depths, focals = depths or {}, focals or [FOCAL] * FRAMES
    with ReconstructionWriter(out, conf_threshold=0.0, exports=exports) as writer:
        for i in range(FRAMES):
            writer.add(frame(i, depths.get(i), focals[i]))
        writer.finish({"source": "wall"})
    return out

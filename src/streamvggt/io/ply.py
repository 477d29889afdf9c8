"""Binary PLY point clouds: position (float32) and colour (uint8) per vertex, written in chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, chunk: int = 1 << 20) -> None:
    """Write points [N, 3] with colours [N, 3] uint8 as binary little-endian PLY.

    Inputs may be memory-mapped: they are read ``chunk`` points at a time, so memory stays bounded.
    """
    if len(xyz) != len(rgb):
        raise ValueError(f"{len(xyz)} points but {len(rgb)} colours")
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by streamvggt\n"
        f"element vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        for start in range(0, len(xyz), chunk):
            part = np.asarray(xyz[start : start + chunk], dtype=np.float32)
            vertices = np.empty(len(part), dtype=_VERTEX)
            vertices["x"], vertices["y"], vertices["z"] = part.T
            colours = np.asarray(rgb[start : start + chunk], dtype=np.uint8)
            vertices["red"], vertices["green"], vertices["blue"] = colours.T
            vertices.tofile(f)

"""Binary PLY point clouds: position (float32) and colour (uint8) per vertex, written in chunks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, chunk: int = 1 << 20) -> None:
    """Write points [N, 3] with colours [N, 3] uint8 as binary little-endian PLY.

    Inputs may be memory-mapped: they are read ``chunk`` points at a time, so memory stays bounded.
    """
    _check_lengths(xyz, rgb)  # before the file exists
    with open(path, "wb") as f:
        write_ply_stream(f, xyz, rgb, chunk)


def ply_bytes(xyz: np.ndarray, rgb: np.ndarray) -> bytes:
    """The PLY file of :func:`write_ply` in memory (for sending to a browser)."""
    buffer = io.BytesIO()
    write_ply_stream(buffer, xyz, rgb)
    return buffer.getvalue()


def write_ply_stream(f: BinaryIO, xyz: np.ndarray, rgb: np.ndarray, chunk: int = 1 << 20) -> None:
    """Write the PLY of points [N, 3] and colours [N, 3] uint8 to the binary stream ``f``."""
    _check_lengths(xyz, rgb)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by streamvggt\n"
        f"element vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    )
    f.write(header.encode("ascii"))
    for start in range(0, len(xyz), chunk):
        part = np.asarray(xyz[start : start + chunk], dtype=np.float32)
        vertices = np.empty(len(part), dtype=_VERTEX)
        vertices["x"], vertices["y"], vertices["z"] = part.T
        colours = np.asarray(rgb[start : start + chunk], dtype=np.uint8)
        vertices["red"], vertices["green"], vertices["blue"] = colours.T
        f.write(vertices.tobytes())


def _check_lengths(xyz: np.ndarray, rgb: np.ndarray) -> None:
    if len(xyz) != len(rgb):
        raise ValueError(f"{len(xyz)} points but {len(rgb)} colours")

"""Removing what an earlier ``reconstruct`` wrote into an output folder, so that a re-run leaves the folder exactly
as a run into an empty folder would (no depth, images or RGB-D frames of a longer earlier run).

Only reconstruct's own names go: any other file (a user's notes, a viewer's ``view_NNN.ply``) stays, and so does
every folder that still holds one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from streamvggt.io.outputs.depth import DEPTH_DIR
from streamvggt.io.outputs.frames import IMAGE_DIR, POINTMAP_DIR
from streamvggt.io.outputs.image_views import ORIGINAL_DIR
from streamvggt.io.outputs.interchange import COLMAP_DIR, TRANSFORMS_DEPTH_DIR
from streamvggt.io.outputs.rgbd import RGBD_DIR

log = logging.getLogger(__name__)

WHOLE_RUN_FILES = ("points.ply", "scene.glb", "cameras.json", "trajectory.tum", "transforms.json", "loops.json")
# Per-frame folders; rgbd/'s come before rgbd/ itself, which can then empty.
FRAME_DIRS = (
    DEPTH_DIR,
    IMAGE_DIR,
    POINTMAP_DIR,
    ORIGINAL_DIR,
    TRANSFORMS_DEPTH_DIR,
    f"{RGBD_DIR}/rgb",
    f"{RGBD_DIR}/depth",
)
FRAME_FILE = re.compile(r"\d{6}(_conf)?\.(npy|png)")  # NNNNNN.npy, NNNNNN_conf.npy, NNNNNN.png
RGBD_FILES = ("rgb.txt", "depth.txt", "associate.txt", "groundtruth.txt", "intrinsics.txt", "camera_intrinsic.json")
COLMAP_STEMS = ("cameras", "images", "points3D", "frames", "rigs")
COLMAP_FILES = tuple(f"{stem}.{ext}" for stem in COLMAP_STEMS for ext in ("txt", "bin"))
SPARSE_LINK = "sparse/0"


def check_source_outside_outputs(source: str, output_dir: Path) -> None:
    """Refuse an input that lies in one of the folders a re-run clears (``reconstruct out/images -o out``): its
    frames would be removed before they are read. Raises ValueError with a one-line message."""
    if source.isdigit() or "://" in source:
        return  # a camera index or a stream URL
    # A glob's folder is the part before its first wildcard.
    folder = Path(re.split(r"[*?\[]", source, maxsplit=1)[0] or ".").resolve()
    output = Path(output_dir).resolve()
    for name in FRAME_DIRS:
        cleared = output / name
        if folder == cleared or cleared in folder.parents:
            raise ValueError(f"input {source} lies in {cleared}, which this run rewrites: copy the frames elsewhere")


def remove_previous_outputs(output_dir: Path) -> int:
    """Remove the files an earlier reconstruct wrote into ``output_dir`` and the folders that empties; returns how
    many files went. Raises OSError when one cannot be removed."""
    removed = 0
    for name in WHOLE_RUN_FILES:
        removed += _remove_file(output_dir / name)
    for folder in FRAME_DIRS:
        path = output_dir / folder
        if path.is_dir() and not path.is_symlink():
            for file in path.iterdir():
                if FRAME_FILE.fullmatch(file.name):
                    removed += _remove_file(file)
    for name in RGBD_FILES:
        removed += _remove_file(output_dir / RGBD_DIR / name)
    for name in COLMAP_FILES:
        removed += _remove_file(output_dir / COLMAP_DIR / name)
    link = output_dir / SPARSE_LINK
    if link.is_symlink():  # the link to colmap/ this command makes; a real sparse/0 folder is someone else's
        link.unlink()
        removed += 1
    for folder in (*FRAME_DIRS, RGBD_DIR, COLMAP_DIR, "sparse"):
        _remove_if_empty(output_dir / folder)
    if removed:
        log.info("removed %d files of an earlier run from %s", removed, output_dir)
    return removed


def _remove_file(path: Path) -> int:
    """Remove ``path`` if it is a file; 1 if it went, else 0."""
    if path.is_file():
        path.unlink()
        return 1
    return 0


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()

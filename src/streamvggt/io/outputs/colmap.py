"""A COLMAP model (cameras, images, points3D; text, or binary through pycolmap) of a reconstruction.

Image names are file names inside the model's images folder (``images/`` for the processed frames, or
``images_original/`` for the source frames, see :mod:`streamvggt.io.outputs.image_views`), as COLMAP, 3DGS, gsplat and
nerfstudio join them with that folder. Cameras are PINHOLE: one per image (the model predicts intrinsics per frame),
or one for all when every image shares them (exactly, or averaged with ``shared_camera``). Each 3D point carries the
track of :mod:`streamvggt.io.outputs.colmap_tracks`. COLMAP puts the centre of the top-left pixel at (0.5, 0.5).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from streamvggt.extras import require
from streamvggt.geometry import mat_to_quat
from streamvggt.io.atomic import atomic_output
from streamvggt.io.outputs.cameras import CameraRecord
from streamvggt.io.outputs.colmap_tracks import Observations
from streamvggt.io.outputs.image_views import PIXEL_OFFSET, ImageView

__all__ = ["FORMATS", "PIXEL_OFFSET", "camera_ids", "link_sparse_model", "write_colmap"]

log = logging.getLogger(__name__)

FORMATS = ("text", "bin")
_TEXT_FILES = ("cameras.txt", "images.txt", "points3D.txt")
_BINARY_FILES = ("cameras.bin", "images.bin", "points3D.bin", "frames.bin", "rigs.bin")


def write_colmap(
    folder: Path,
    cameras: list[CameraRecord],
    views: list[ImageView],
    records: np.ndarray,
    observations: Observations,
    shared_camera: bool = False,
    file_format: str = "text",
    chunk: int = 100_000,
    advance: Callable[[int], object] | None = None,
) -> list[Path]:
    """Write the model of ``cameras`` (frame i is image i + 1, its file ``views[i]``), point ``records`` (see
    :mod:`streamvggt.io.outputs.points`) and their ``observations`` into ``folder``; returns the files written.

    A model of the other format left in ``folder`` by an earlier run is removed, so readers find one model.
    advance(n): progress, one step for images.txt, one per ``chunk`` points and one for the binary conversion.
    """
    if file_format not in FORMATS:
        raise ValueError(f"unknown COLMAP format '{file_format}': use text or bin")
    if file_format == "bin":
        pycolmap = require("pycolmap", "eval", purpose="--colmap-format bin")
    folder.mkdir(exist_ok=True)
    step = advance or (lambda n: None)
    model = (cameras, views, records, observations, shared_camera, chunk, step)
    if file_format == "text":
        with contextlib.ExitStack() as stack:
            temporaries = [stack.enter_context(atomic_output(folder / name)) for name in _TEXT_FILES]
            _write_text_model(*temporaries, *model)
        written = [folder / name for name in _TEXT_FILES]
    else:
        with tempfile.TemporaryDirectory(prefix=".colmap-", dir=folder) as scratch:
            text_dir, binary_dir = Path(scratch, "text"), Path(scratch, "bin")
            text_dir.mkdir()
            binary_dir.mkdir()
            _write_text_model(*(text_dir / name for name in _TEXT_FILES), *model)
            pycolmap.Reconstruction(str(text_dir)).write_binary(str(binary_dir))
            step(1)
            written = []
            for path in sorted(binary_dir.iterdir()):
                os.replace(path, folder / path.name)
                written.append(folder / path.name)
    stale = _BINARY_FILES if file_format == "text" else _TEXT_FILES
    for name in stale:
        if (folder / name).is_file():
            log.info("removing %s, left by an earlier run in the other COLMAP format", folder / name)
            (folder / name).unlink()
    return written


def link_sparse_model(output_dir: Path, model_dir: Path) -> Path | None:
    """Make ``output_dir/sparse/0`` a relative link to ``model_dir``: the layout 3DGS and gsplat look for.

    Returns the link, or None (with a warning) where links cannot be made or ``sparse/0`` is something else.
    """
    link = output_dir / "sparse" / "0"
    target = Path(os.path.relpath(model_dir, link.parent))
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return link
    if link.exists() or link.is_symlink():
        log.warning("%s exists and is not a link to %s: left as it is", link, model_dir)
        return None
    created = not link.parent.exists()
    try:
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
    except OSError as error:
        if created:
            with contextlib.suppress(OSError):
                link.parent.rmdir()
        log.warning("no sparse/0 link to %s (%s): point trainers at %s", model_dir, error.strerror or error, model_dir)
        return None
    return link


def camera_ids(views: list[ImageView], pinholes: np.ndarray, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Camera id of each image [F] and each camera's (fx, fy, cx, cy) [C, 4].

    shared: one camera with the mean intrinsics, when the images have one size (source frames of several sizes keep
    a camera each, with a warning: the run is over by then). Otherwise images whose size and intrinsics are all
    equal share one camera, and any difference gives each image its own.
    """
    sizes = {view.size for view in views}
    if shared and len(sizes) > 1:
        log.warning("--shared-camera: the images have %d sizes, so each keeps its own camera", len(sizes))
        shared = False
    if shared or (len(sizes) == 1 and (pinholes == pinholes[0]).all()):
        return np.ones(len(views), dtype=np.int64), pinholes.mean(axis=0, keepdims=True)
    return np.arange(1, len(views) + 1), pinholes


def _write_text_model(
    cameras_path: Path,
    images_path: Path,
    points_path: Path,
    cameras: list[CameraRecord],
    views: list[ImageView],
    records: np.ndarray,
    observations: Observations,
    shared_camera: bool,
    chunk: int = 100_000,
    advance: Callable[[int], object] = lambda n: None,
) -> None:
    """Write cameras.txt, images.txt and points3D.txt; points go out ``chunk`` at a time, so memory stays near the
    observation arrays rather than their text."""
    pinholes = np.array([view.pinhole(cam.intrinsic) for cam, view in zip(cameras, views, strict=True)])
    image_camera, params = camera_ids(views, pinholes, shared_camera)
    lines = [
        "# Camera list with one line of data per camera:",
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
        f"# Number of cameras: {len(params)}",
    ]
    for camera_id, (fx, fy, cx, cy) in enumerate(params.tolist(), start=1):
        height, width = views[np.argmax(image_camera == camera_id)].size
        lines.append(f"{camera_id} PINHOLE {width} {height} {fx:.17g} {fy:.17g} {cx:.17g} {cy:.17g}")
    cameras_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    frame, point = observations.frame, observations.point
    by_frame = np.argsort(frame, kind="stable")  # observations grouped by image, each group in point order
    bounds = np.searchsorted(frame[by_frame], np.arange(len(cameras) + 1))
    point2d_index = np.empty(len(frame), dtype=np.int64)
    distance = np.empty(len(frame), dtype=np.float64)  # image pixels between reprojection and observation
    xyz = np.asarray(records["xyz"], dtype=np.float64)
    quats = mat_to_quat(torch.from_numpy(np.stack([c.extrinsic[:, :3] for c in cameras]).astype(np.float64)))
    with open(images_path, "w", encoding="utf-8") as f:
        f.write(
            "# Image list with two lines of data per image:\n"
            "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
            f"#   POINTS2D[] as (X, Y, POINT3D_ID)\n# Number of images: {len(cameras)}\n"
        )
        for i, (cam, view, (qx, qy, qz, qw)) in enumerate(zip(cameras, views, quats.tolist(), strict=True)):
            members = by_frame[bounds[i] : bounds[i + 1]]
            point2d_index[members] = np.arange(len(members))
            pixels = view.pixels(observations.uv[members])
            distance[members] = np.linalg.norm(view.pixels(_project(xyz[point[members]], cam)) - pixels, axis=-1)
            tx, ty, tz = cam.extrinsic[:, 3]
            pose = " ".join(f"{v:.12g}" for v in (qw, qx, qy, qz, tx, ty, tz))
            u, v = pixels.T.tolist()
            keypoints = " ".join(map("%.4f %.4f %d".__mod__, zip(u, v, (point[members] + 1).tolist(), strict=True)))
            f.write(f"{i + 1} {pose} {image_camera[i]} {view.name}\n{keypoints}\n")
    advance(1)

    # COLMAP's ERROR: the mean over the track, -1 (unknown) where a projection is not finite.
    finite = np.isfinite(distance)
    total = np.bincount(point, weights=np.where(finite, distance, 0.0), minlength=len(records))
    unknown = np.bincount(point, weights=~finite, minlength=len(records)) > 0
    errors = np.where(unknown, -1.0, total / np.maximum(np.bincount(point, minlength=len(records)), 1))
    starts = np.searchsorted(point, np.arange(len(records) + 1))
    with open(points_path, "w", encoding="utf-8") as f:
        f.write(
            "# 3D point list with one line of data per point:\n"
            "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
            f"# Number of points: {len(records)}, mean track length: {len(point) / max(len(records), 1):.2f}\n"
        )
        for a in range(0, len(records), chunk):
            b = min(a + chunk, len(records))
            first, last = starts[a], starts[b]
            # Columns as Python lists and one %-format per row: numpy scalars formatted one by one are far slower
            # (benchmarks/README.md).
            ids = zip((frame[first:last] + 1).tolist(), point2d_index[first:last].tolist(), strict=True)
            elements = list(map("%d %d".__mod__, ids))
            offsets = (starts[a : b + 1] - first).tolist()
            tracks = (" ".join(elements[i:j]) for i, j in itertools.pairwise(offsets))
            xyz_rows, rgb_rows = records["xyz"][a:b].T.tolist(), records["rgb"][a:b].T.tolist()
            columns = (range(a + 1, b + 1), *xyz_rows, *rgb_rows, errors[a:b].tolist(), tracks)
            rows = map("%d %.7g %.7g %.7g %d %d %d %.4g %s".__mod__, zip(*columns, strict=True))
            f.write("\n".join(rows) + "\n")
            advance(1)


def _project(xyz: np.ndarray, camera: CameraRecord) -> np.ndarray:
    """Model pixel coordinates [N, 2] of world points [N, 3] in ``camera`` (not finite behind its centre plane)."""
    cam = xyz @ np.asarray(camera.extrinsic)[:, :3].T + np.asarray(camera.extrinsic)[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = cam @ np.asarray(camera.intrinsic).T
        return pixels[:, :2] / pixels[:, 2:]
